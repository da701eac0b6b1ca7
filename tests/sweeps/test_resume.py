"""Resume after SIGKILL at random moments, repeated: no run lost, none recorded twice, none redone
after it finished, and every finished run's metrics equal those of a clean, uninterrupted sweep."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lossnet.sweeps.runner import run_sweep, sweep_status
from lossnet.sweeps.store import ResultsStore, process_alive

N_RUNS = 30

# A test-only task, registered through the registry by a module the spec imports (every
# worker process imports it too): a quick deterministic function of the run's config that
# logs each execution.
PLUGIN = '''
import hashlib, os, time
from lossnet.sweeps.tasks import register_task

def probe(run, work_dir):
    s = run["settings"]
    with open(s["log"], "a") as fh:
        fh.write(f"start {run['id']} {os.getpid()}\\n")
    time.sleep(float(s["sleep"]))
    h = hashlib.sha256(run["id"].encode()).hexdigest()
    return {"score": int(h[:8], 16) / 2**32, "seed": run["seed"], "nested": {"half": run["seed"] / 2}}

register_task("resume_probe", probe, defaults={"sleep": 0.0, "log": ""}, network=False)
'''


@pytest.fixture()
def probe_spec(tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "resume_probe_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(plugin_dir))
    log = tmp_path / "executions.log"
    spec = tmp_path / "probe.toml"
    spec.write_text(textwrap.dedent(f"""
        name = "probe"
        imports = ["resume_probe_plugin"]
        [grid]
        tasks = ["resume_probe"]
        seeds = {list(range(N_RUNS))}
        [tasks.resume_probe]
        sleep = 0.05
        log = "{log}"
    """))
    yield spec, plugin_dir, log
    sys.path.remove(str(plugin_dir))


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    for attempt in range(20):
        try:
            with sqlite3.connect(db, timeout=30) as conn:
                return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0
        except sqlite3.DatabaseError as exc:
            # a raw reader that opens the WAL file just as a sweep's last connection closes can
            # see "malformed" once (the store retries such reads too); ask again
            assert "malformed" in str(exc) and attempt < 19, exc
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _sweep_process(spec: Path, db: Path, plugin_dir: Path, executor: str, workers: int,
                   tmpdir: Path | None = None) -> subprocess.Popen:
    code = ("import sys\nfrom lossnet.sweeps.runner import run_sweep\n"
            "run_sweep(sys.argv[1], sys.argv[2], executor=sys.argv[3], workers=int(sys.argv[4]), progress=False)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen([sys.executable, "-c", code, str(spec), str(db), executor, str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_workers_gone(db: Path, timeout: float = 20.0) -> None:
    """Workers of a killed ``processes`` sweep die with their parent (PR_SET_PDEATHSIG)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with sqlite3.connect(db, timeout=30) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM runs WHERE status = 'running'")]
        if not any(process_alive(p) for p in pids):
            return
        time.sleep(0.1)
    raise AssertionError("worker processes outlived their killed parent")


def test_sigkill_at_random_moments_then_resume(tmp_path, probe_spec):
    spec, plugin_dir, log = probe_spec
    db = tmp_path / "results.sqlite"
    rng = random.Random(20240229)
    kills = 0
    tmpdir = tmp_path / "tmp"  # the sweep processes' temporary folder: nothing may be left in it
    tmpdir.mkdir()
    for executor, workers in [("inprocess", 1), ("processes", 2), ("inprocess", 1)]:
        claimed = _count(db, "SELECT COUNT(*) FROM events WHERE event = 'claimed'")
        finished = _count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
        if finished == N_RUNS:
            break
        proc = _sweep_process(spec, db, plugin_dir, executor, workers, tmpdir)
        deadline = time.time() + 300  # a loaded machine starts interpreters slowly
        # wait until this invocation has claimed something, then kill it a random moment later
        while _count(db, "SELECT COUNT(*) FROM events WHERE event = 'claimed'") <= claimed:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the sweep never started"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.35))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stderr.close()
        _wait_for_workers_gone(db)
        status = sweep_status(spec, db)
        assert status["failed"] == 0
        assert status["finished"] >= finished  # nothing finished is ever lost
    assert kills >= 2
    assert not [p.name for p in tmpdir.iterdir() if p.name.startswith("lossnet-sweep-")]
    mid = sweep_status(spec, db)
    assert mid["finished"] < N_RUNS  # the kills really interrupted the sweep

    summary = run_sweep(spec, db, progress=False)  # the same command again finishes what is missing
    assert (summary["finished"], summary["failed"], summary["pending"], summary["running"]) == (N_RUNS, 0, 0, 0)
    assert summary["skipped"] == mid["finished"]

    store = ResultsStore(db)
    events = store.events()
    ids = [r.id for r in store.records()]
    assert len(ids) == N_RUNS
    for rid in ids:
        kinds = [e["event"] for e in events if e["run_id"] == rid]
        assert kinds.count("finished") == 1, (rid, kinds)
        assert "claimed" not in kinds[kinds.index("finished"):], (rid, kinds)  # never redone once finished
        assert "discarded" not in kinds
    # runs killed while running were taken over because their worker process was gone
    assert any(e["detail"] == "worker process gone" for e in events if e["event"] == "claimed")
    executions = log.read_text().split("\n")
    started = {line.split()[1] for line in executions if line}
    assert started == set(ids)
    # a run executed more than once (killed mid-run) was still recorded once, with the clean metrics
    clean_db = tmp_path / "clean.sqlite"
    run_sweep(spec, clean_db, progress=False)
    clean = {r.id: r.metrics for r in ResultsStore(clean_db).records()}
    resumed = {r.id: r.metrics for r in store.records()}
    assert resumed == clean
    again = run_sweep(spec, db, progress=False)  # a finished sweep is never redone
    assert again["ran"]["claimed"] == 0 and again["skipped"] == N_RUNS
