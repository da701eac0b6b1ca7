"""Executors: the same numbers whichever executor runs a run (its torch thread count is part of
it), weights files checked by content, clear errors for executor settings, clean exits."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossnet.errors import LossnetError
from lossnet.sweeps.executors import ExecutorError, execute_run, get_executor
from lossnet.sweeps.runner import format_status, run_sweep, sweep_status
from lossnet.sweeps.spec import expand
from lossnet.sweeps.store import ResultsStore, process_alive
from lossnet.sweeps.tasks import register_task

# A test-only task whose result depends on the order of float32 sums, which the torch thread
# count changes: a convolution and its sums. Workers import it through the spec's imports.
PLUGIN = '''
import torch
from lossnet.sweeps.tasks import register_task

def thread_probe(run, work_dir):
    g = torch.Generator().manual_seed(run["seed"])
    x = torch.randn(16, 8, 48, 48, generator=g)
    w = torch.randn(32, 8, 3, 3, generator=g)
    y = torch.nn.functional.conv2d(x, w, padding=1)
    return {"threads": torch.get_num_threads(), "sum": float(y.sum()), "sq": float((y * y).mean()),
            "first": float(y.flatten()[12345])}

register_task("thread_probe", thread_probe, network=False)

def slow_probe(run, work_dir):
    import time
    time.sleep(float(run["settings"]["sleep"]))
    return {"score": float(run["seed"])}

register_task("slow_probe", slow_probe, defaults={"sleep": 0.0}, network=False)
'''


@pytest.fixture()
def plugin(tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "executor_probe_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(plugin_dir))
    yield plugin_dir
    sys.path.remove(str(plugin_dir))
    sys.modules.pop("executor_probe_plugin", None)


@pytest.mark.slow
def test_inprocess_and_processes_give_bit_identical_metrics(tmp_path, plugin):
    spec = {"name": "threads", "imports": ["executor_probe_plugin"], "threads": 1,
            "grid": {"tasks": ["thread_probe"], "seeds": [0, 1]}}
    ambient = torch.get_num_threads()
    torch.set_num_threads(3)  # whatever this process uses, a run uses its own thread count
    try:
        inproc = run_sweep(spec, tmp_path / "inprocess.sqlite", progress=False)
        assert torch.get_num_threads() == 3  # restored after the runs
    finally:
        torch.set_num_threads(ambient)
    procs = run_sweep(spec, tmp_path / "processes.sqlite", executor="processes", workers=2, progress=False)
    assert inproc["finished"] == procs["finished"] == 2
    a = {r.id: r for r in ResultsStore(tmp_path / "inprocess.sqlite").records()}
    b = {r.id: r for r in ResultsStore(tmp_path / "processes.sqlite").records()}
    assert set(a) == set(b) and len(a) == 2
    for rid in a:
        assert a[rid].metrics == b[rid].metrics  # bit-identical floats
        assert a[rid].metrics["threads"] == 1
        assert a[rid].config["threads"] == b[rid].config["threads"] == 1  # recorded as part of the run
        assert a[rid].environment["torch_threads"] == b[rid].environment["torch_threads"] == 1
    assert len({r.environment["pid"] for r in b.values()} | {os.getpid()}) > 1  # really other processes


def test_the_thread_count_changes_the_numbers_and_the_id(tmp_path, plugin):
    one = expand({"imports": ["executor_probe_plugin"], "threads": 1, "grid": {"tasks": ["thread_probe"]}})[0]
    two = expand({"imports": ["executor_probe_plugin"], "threads": 2, "grid": {"tasks": ["thread_probe"]}})[0]
    assert one.id != two.id
    assert execute_run(two.to_dict(), None)["metrics"]["threads"] == 2


def test_executor_settings_are_checked(tmp_path):
    for workers in (0, -1, 1.5, True):
        with pytest.raises(ExecutorError, match="--workers must be a whole number.*at least 1"):
            get_executor("processes", workers=workers)
    with pytest.raises(ExecutorError, match="--workers must be"):
        get_executor("ray", workers=-1)
    with pytest.raises(ExecutorError, match="--workers 3 needs --executor processes"):
        get_executor("inprocess", workers=3)
    with pytest.raises(ExecutorError, match="--address is for --executor ray"):
        get_executor("processes", address="auto")
    with pytest.raises(LossnetError, match="unknown executor 'threads'"):
        get_executor("threads")
    spec = {"grid": {"tasks": ["noop"], "seeds": [0]}}
    with pytest.raises(LossnetError, match="--limit must be"):
        run_sweep(spec, tmp_path / "r.sqlite", limit=-1, progress=False)
    with pytest.raises(ExecutorError, match="--workers must be"):
        run_sweep(spec, tmp_path / "r.sqlite", executor="processes", workers=0, progress=False)
    assert not (tmp_path / "r.sqlite").exists()  # bad settings fail before anything is written


@pytest.fixture()
def weights_task():
    def weights_probe(run, work_dir):
        return {"file_sha": hashlib.sha256(Path(run["weights"]).read_bytes()).hexdigest()}

    register_task("weights_probe", weights_probe, network=True)
    yield
    from lossnet.sweeps.tasks import TASKS

    TASKS.pop("weights_probe", None)


def test_a_changed_weights_file_makes_new_runs_and_says_which(tmp_path, weights_task):
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"the first weights")
    spec = {"name": "w", "grid": {"tasks": ["weights_probe"], "architectures": ["resnet18"], "points": ["layer1"],
                                  "weights": [str(weights)], "distances": ["spatial"]}}
    db = tmp_path / "r.sqlite"
    first = run_sweep(spec, db, progress=False)
    assert first["finished"] == 1 and first["weights_changed"] == []
    old = ResultsStore(db).records()[0]
    first_sha = hashlib.sha256(b"the first weights").hexdigest()
    assert old.config["weights_sha256"] == first_sha == old.metrics["file_sha"]
    assert old.environment["weights"]["sha256"] == first_sha

    weights.write_bytes(b"other weights under the same name")  # overwritten in place
    new_sha = hashlib.sha256(b"other weights under the same name").hexdigest()
    status = sweep_status(spec, db)
    assert (status["finished"], status["pending"]) == (0, 1)  # the stale run no longer counts as done
    (change,) = status["weights_changed"]
    assert change["previous_id"] == old.id and change["id"] != old.id
    assert (change["sha256"], change["previous_sha256"], change["previous_status"]) == (new_sha, first_sha, "finished")
    assert f"weights file {weights} changed (sha256 {first_sha[:12]}... -> {new_sha[:12]}...)" in format_status(status)
    assert f"{change['id']} (was {old.id})" in format_status(status)
    again = run_sweep(spec, db, progress=False)
    assert again["ran"]["claimed"] == 1 and again["finished"] == 1
    assert again["weights_changed"][0]["previous_id"] == old.id
    new = ResultsStore(db).get(change["id"])
    assert new.config["weights_sha256"] == new_sha == new.metrics["file_sha"]
    assert ResultsStore(db).get(old.id).metrics["file_sha"] == first_sha  # the old run is kept as it was

    # a file that changes between expansion and the run: the run fails, it is not recorded under the old id
    run = expand(spec)[0].to_dict()
    weights.write_bytes(b"changed again, mid-sweep")
    outcome = execute_run(run, None)
    assert outcome["status"] == "failed"
    assert "RunWeightsChanged" in outcome["error"] and "changed after the sweep was expanded" in outcome["error"]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, what
        time.sleep(0.05)


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigterm_ends_a_processes_sweep_cleanly(tmp_path, plugin):
    spec = tmp_path / "slow.toml"
    spec.write_text(textwrap.dedent("""
        name = "slow"
        imports = ["executor_probe_plugin"]
        [grid]
        tasks = ["slow_probe"]
        seeds = [0, 1, 2, 3]
        [tasks.slow_probe]
        sleep = 30
    """))
    db = tmp_path / "r.sqlite"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir),
               PYTHONPATH=os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys\nfrom lossnet.sweeps.runner import run_sweep\n"
            "run_sweep(sys.argv[1], sys.argv[2], executor='processes', workers=1, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(spec), str(db)], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _count(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == 1 or
                  proc.poll() is not None, 300, "the sweep never claimed a run")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        with sqlite3.connect(db, timeout=30) as conn:
            (worker_pid,) = conn.execute("SELECT pid FROM runs WHERE status = 'running'").fetchone()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    _wait_for(lambda: not process_alive(worker_pid), 30, "the worker outlived the sweep")
    store = ResultsStore(db)
    assert store.counts()["running"] == 0 and store.counts()["pending"] == 4  # the run in flight was given back
    assert [e["detail"] for e in store.events() if e["event"] == "released"] == ["interrupted"]
    assert not [p.name for p in tmpdir.iterdir() if p.name.startswith("lossnet-sweep-")]
