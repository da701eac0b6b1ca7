"""Resume after SIGKILL at random moments, repeated: no run lost, none recorded twice, none redone
after it finished, and every finished run's metrics equal those of a clean, uninterrupted sweep."""
from __future__ import annotations

import random

import pytest

from lossnet.sweeps.runner import run_sweep, sweep_status
from lossnet.sweeps.store import ResultsStore

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
def probe_spec(tmp_path, plugin_spec):
    log = tmp_path / "executions.log"
    spec, plugin_dir = plugin_spec("resume_probe_plugin", PLUGIN, "resume_probe", range(N_RUNS), sleep=0.05,
                                   log=str(log))
    return spec, plugin_dir, log


def test_sigkill_at_random_moments_then_resume(tmp_path, probe_spec, sweep_processes):
    spec, plugin_dir, log = probe_spec
    db = tmp_path / "results.sqlite"
    rng = random.Random(20240229)
    kills = 0
    tmpdir = tmp_path / "tmp"  # the sweep processes' temporary folder: nothing may be left in it
    tmpdir.mkdir()
    for executor, workers in [("inprocess", 1), ("processes", 2), ("inprocess", 1)]:
        finished = sweep_processes.count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
        if finished == N_RUNS:
            break
        # once this invocation has claimed something, kill it a random moment later
        kills += sweep_processes.kill_after_a_claim(sweep_processes.SWEEP, [spec, db, executor, workers], plugin_dir,
                                                    db, rng.uniform(0.0, 0.35), TMPDIR=str(tmpdir))
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

    sweep_processes.check_exactly_once(db, N_RUNS)
    store = ResultsStore(db)
    events = store.events()
    ids = [r.id for r in store.records()]
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
