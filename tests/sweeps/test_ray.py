"""The Ray executor on a local Ray instance (loopback only): each run a Ray task with its CPU
request, results recorded by the driver, failures with their traceback, finished runs skipped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PLUGIN = '''
import hashlib
from lossnet.sweeps.tasks import register_task

def probe(run, work_dir):
    import ray
    if run["seed"] == run["settings"]["fail_seed"]:
        raise RuntimeError(f"probe failure at seed {run['seed']}")
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except Exception:
        assigned = {}
    h = hashlib.sha256(run["id"].encode()).hexdigest()
    return {"score": int(h[:8], 16) / 2**32, "cpus": assigned.get("CPU"), "pid": __import__("os").getpid()}

register_task("ray_probe", probe, defaults={"fail_seed": -1}, network=False)
register_task("ray_probe_wide", probe, defaults={"fail_seed": -1}, network=False)
'''


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    # a local instance on the loopback interface only, without usage reporting or dashboard
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'lossnet[ray]'): the Ray executor cannot be tested")
    plugin_dir = tmp_path_factory.mktemp("ray_plugins")
    (plugin_dir / "ray_probe_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(plugin_dir))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    sys.path.remove(str(plugin_dir))


def test_ray_executor_on_a_local_instance(ray_instance, tmp_path):
    from lossnet.sweeps.executors import RayExecutor
    from lossnet.sweeps.runner import run_sweep, sweep_status
    from lossnet.sweeps.store import ResultsStore

    ray = ray_instance
    assert all(k == "node:__internal_head__" or not k.startswith("node:") or k == "node:127.0.0.1"
               for k in ray.cluster_resources())
    spec = tmp_path / "ray.toml"
    spec.write_text(textwrap.dedent("""
        name = "ray-test"
        imports = ["ray_probe_plugin"]
        [[grid]]
        tasks = ["ray_probe"]
        seeds = [0, 1, 2, 3, 4, 5]
        [[grid]]
        tasks = ["ray_probe_wide"]
        seeds = [0, 1]
        [tasks.ray_probe]
        fail_seed = 3
        [tasks.ray_probe_wide]
        resources = { num_cpus = 2 }
        [resources]
        num_cpus = 1
    """))
    db = tmp_path / "results.sqlite"
    summary = run_sweep(spec, db, executor=RayExecutor(), progress=False)
    assert (summary["total"], summary["finished"], summary["failed"], summary["pending"]) == (8, 7, 1, 0)
    assert summary["executor"] == "ray" and summary["ran"]["claimed"] == 8

    store = ResultsStore(db)
    recs = store.records()
    by_task = {}
    for r in recs:
        by_task.setdefault(r.task, []).append(r)
    # each run was a Ray task holding the CPUs the spec asked for
    assert {r.metrics["cpus"] for r in by_task["ray_probe"] if r.status == "finished"} == {1.0}
    assert {r.metrics["cpus"] for r in by_task["ray_probe_wide"]} == {2.0}
    assert all(r.metrics["pid"] != os.getpid() for r in recs if r.metrics)
    assert all(r.environment and r.environment["versions"]["lossnet"] for r in recs)
    failed = [r for r in recs if r.status == "failed"]
    assert len(failed) == 1 and failed[0].seed == 3
    assert "RuntimeError: probe failure at seed 3" in failed[0].error
    assert "Traceback" in failed[0].traceback and "probe" in failed[0].traceback
    status = sweep_status(spec, db)
    assert status["failures"][0]["error"] == failed[0].error

    # the same metrics as the in-process executor
    clean = run_sweep(spec, tmp_path / "inprocess.sqlite", progress=False)
    assert clean["finished"] == 7
    inproc = {r.id: r.metrics["score"] for r in ResultsStore(tmp_path / "inprocess.sqlite").records() if r.metrics}
    assert {r.id: r.metrics["score"] for r in recs if r.metrics} == inproc

    # running again skips finished runs; --retry-failed reruns only the failed one (still failing)
    again = run_sweep(spec, db, executor="ray", progress=False)
    assert again["ran"]["claimed"] == 0 and again["skipped"] == 8
    retry = run_sweep(spec, db, executor="ray", retry_failed=True, progress=False)
    assert retry["ran"]["claimed"] == 1 and retry["failed"] == 1
    assert store.get(failed[0].id).attempts == 2

    # a request no node can meet would wait forever: a clear error on a local instance
    from lossnet.sweeps.executors import ExecutorError

    gpu_spec = {"name": "gpu", "imports": ["ray_probe_plugin"], "grid": {"tasks": ["ray_probe"], "seeds": [0]},
                "resources": {"num_gpus": 1}}
    with pytest.raises(ExecutorError, match="num_gpus = 1 but the Ray cluster has 0 GPUs"):
        run_sweep(gpu_spec, tmp_path / "gpu.sqlite", executor="ray", progress=False)
    assert sweep_status(gpu_spec, tmp_path / "gpu.sqlite")["pending"] == 1  # nothing was claimed



SLOW_PLUGIN = '''
import time
from pathlib import Path
from lossnet.sweeps.tasks import register_task

def ray_sleeper(run, work_dir):
    Path(run["settings"]["started"]).write_text("started")
    time.sleep(120)
    return {"score": 1.0}

register_task("ray_sleeper", ray_sleeper, defaults={"started": ""}, network=False)
'''


def _ray_processes(pid: int) -> dict[int, str]:
    from lossnet.sweeps.reaper import descendants

    out = {}
    for child, start in descendants(pid).items():
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                if b"ray" in fh.read():
                    out[child] = start
        except OSError:
            pass
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_local_ray_instance_never_outlives_its_driver(tmp_path, sig, plugin_spec):
    """Ray's agents outlive a killed driver by about a minute on their own; a sweep's local
    instance is stopped at once (SIGTERM: the driver shuts it down and gives its run back;
    SIGKILL: the reaper process stops it)."""
    pytest.importorskip("ray")
    from lossnet.sweeps.reaper import alive
    from lossnet.sweeps.store import ResultsStore

    started = tmp_path / "started"
    spec, plugin_dir = plugin_spec("ray_sleeper_plugin", SLOW_PLUGIN, "ray_sleeper", [0], spec_name="sleep",
                                   started=str(started))
    db = tmp_path / "r.sqlite"
    code = ("import sys\nfrom lossnet.sweeps.executors import RayExecutor\nfrom lossnet.sweeps.runner import run_sweep\n"
            "run_sweep(sys.argv[1], sys.argv[2], executor=RayExecutor(num_cpus=1, configure_logging=False), "
            "progress=False)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-c", code, str(spec), str(db)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not started.exists():
            assert proc.poll() is None, "the sweep driver exited early"
            assert time.time() < deadline, "the Ray task never started"
            time.sleep(0.1)
        time.sleep(1.0)  # the reaper's scan sees the task's worker too
        ray_procs = _ray_processes(proc.pid)
        names = set()
        for pid in ray_procs:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                names.add(fh.read().split(b"\0")[0].decode(errors="replace"))
        assert any("Agent" in n for n in names), names  # the agents that outlive a killed driver
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.time() + 30  # well under the ~65 s the agents live on by themselves
    while [p for p, st in ray_procs.items() if alive(p, st)]:
        assert time.time() < deadline, f"Ray processes outlived the driver: {[p for p, st in ray_procs.items() if alive(p, st)]}"
        time.sleep(0.2)
    if sig == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM
        store = ResultsStore(db)
        assert store.counts()["pending"] == 1  # the run in flight was given back
        assert [e["detail"] for e in store.events() if e["event"] == "released"] == ["driver interrupted"]
    else:
        assert code == -signal.SIGKILL
