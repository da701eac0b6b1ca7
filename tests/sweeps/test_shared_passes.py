"""Sweeps share passes: similarity runs of one network, weights, data and input size are scored
from ONE pass (every point and distance at once), with exactly the numbers each run gets alone;
each run is still recorded on its own, exactly once, and a kill -9 at any moment loses nothing
finished and makes the rerun redo only the unrecorded runs, in every executor."""
from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest

import lossnet
from lossnet.data import write_bapps_fixture
from lossnet.networks.extraction import LossNetwork
from lossnet.sweeps.executors import describe_plan, execute_group, plan_units
from lossnet.sweeps.runner import run_sweep
from lossnet.sweeps.spec import expand
from lossnet.sweeps.store import ResultsStore

POINTS = ["features.1", ["features.1", "features.4"]]  # a single point and a combined run


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    root = tmp_path_factory.mktemp("bapps")
    write_bapps_fixture(root, n=4)  # 2 subsets x 4 triplets: 2 batches of 4 per pass
    return root


def similarity_spec(bapps: Path, weights: list[str], points=POINTS, distances=("spatial", "style"),
                    baselines=("l2", "ssim")) -> dict:
    return {"name": "shared", "threads": 1,
            "grid": {"architectures": ["alexnet"], "weights": list(weights), "points": list(points),
                     "distances": list(distances), "tasks": ["similarity"], "baselines": list(baselines),
                     "seeds": [0]},
            "tasks": {"similarity": {"data": str(bapps), "batch_size": 4, "bootstrap": 20, "size": 64,
                                     "device": "cpu"}}}


@pytest.fixture()
def forward_log(monkeypatch):
    """Every forward pass of a loss network (one per batch): the points it extracted."""
    calls: list[tuple[str, ...]] = []
    extract = LossNetwork.extract

    def counted(self, x, check=True):
        calls.append(tuple(self.points))
        return extract(self, x, check)

    monkeypatch.setattr(LossNetwork, "extract", counted)
    return calls


def metrics_of(db: Path) -> dict[str, dict]:
    out = {}
    for rec in ResultsStore(db).records():
        assert rec.status == "finished", (rec.id, rec.error)
        m = dict(rec.metrics)
        assert m.pop("seconds") >= 0  # the only field that is a timing
        out[rec.id] = m
    return out


def test_grouped_results_equal_each_run_alone_and_one_forward_pass_per_group(tmp_path, bapps, trunk, forward_log,
                                                                             capsys):
    spec = similarity_spec(bapps, ["random", str(trunk)])
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 2 + 2  # 2 weights x 2 point runs x 2 distances + 2 pixel baselines
    shared = run_sweep(spec, tmp_path / "shared.sqlite", progress=True)
    err = capsys.readouterr().err
    assert "10 runs in 3 passes" in err  # two network groups (random, the file) and the pixel group
    shared_calls = list(forward_log)
    forward_log.clear()
    alone = run_sweep(spec, tmp_path / "alone.sqlite", progress=True, share=False)
    assert "10 runs in 10 passes" in capsys.readouterr().err
    alone_calls = list(forward_log)
    assert shared["finished"] == alone["finished"] == 10
    assert (shared["ran"]["passes"], alone["ran"]["passes"]) == (3, 10)
    assert shared["plan"] == {"runs": 10, "passes": 3}

    a, b = metrics_of(tmp_path / "shared.sqlite"), metrics_of(tmp_path / "alone.sqlite")
    assert set(a) == set(b) == {r.id for r in runs}
    for rid in a:
        assert a[rid] == b[rid], rid  # float equality: the same features, the same float32 sums
    by_id = {r.id: r for r in runs}
    for rid, m in a.items():
        run = by_id[rid]
        expected = ["combined"] if run.arch is None else [*run.points, "combined"]
        assert list(m["layers"]) == expected and m["distance"] == run.distance

    # forward passes: one per batch of each group's pass; alone, one per batch of each network run
    per_pass = len(alone_calls) // 8
    assert per_pass >= 2 and len(alone_calls) == 8 * per_pass
    assert len(shared_calls) == 2 * per_pass
    assert set(shared_calls) == {("features.1", "features.4")}  # every point of the group at once
    # the shared runs record which pass served them
    env = {r.id: r.environment for r in ResultsStore(tmp_path / "shared.sqlite").records()}
    served = {tuple(e["shared_pass"]["runs"]) for e in env.values()}
    assert sorted(len(s) for s in served) == [2, 4, 4]
    assert all("shared_pass" not in r.environment for r in ResultsStore(tmp_path / "alone.sqlite").records())


def test_a_partial_group_computes_only_its_pending_points(tmp_path, bapps, forward_log):
    spec = similarity_spec(bapps, ["random"], points=["features.1", "features.4", "features.7"], baselines=())
    runs = expand(spec)
    assert [(r.label, r.distance) for r in runs[:2]] == [("features.1", "spatial"), ("features.1", "style")]
    db = tmp_path / "partial.sqlite"
    first = run_sweep(spec, db, progress=False, limit=2)  # the features.1 runs only: one pass, one point
    assert (first["finished"], first["ran"]["passes"]) == (2, 1)
    assert set(forward_log) == {("features.1",)}
    forward_log.clear()
    second = run_sweep(spec, db, progress=False)
    assert (second["skipped"], second["ran"]["claimed"], second["ran"]["passes"]) == (2, 4, 1)
    assert set(forward_log) == {("features.4", "features.7")}  # the finished point is not computed again
    forward_log.clear()
    whole = run_sweep(spec, tmp_path / "whole.sqlite", progress=False)
    assert whole["ran"]["passes"] == 1 and set(forward_log) == {("features.1", "features.4", "features.7")}
    assert metrics_of(db) == metrics_of(tmp_path / "whole.sqlite")
    again = run_sweep(spec, db, progress=False)  # a finished group is never recomputed
    assert again["ran"]["claimed"] == 0 and again["skipped"] == 6


def test_training_runs_are_never_grouped_and_mini_plans_its_passes(tmp_path):
    runs = [r.to_dict() for r in expand("mini")]
    units = plan_units(runs)
    sizes = {tuple(sorted({r["task"] for r in u})): [] for u in units}
    for u in units:
        assert len({r["task"] for r in u}) == 1
        sizes[(u[0]["task"],)].append(len(u))
    # similarity: ImageNet and untrained EfficientNet-Lite0 (3 points each) and the pixel baselines
    assert sorted(sizes[("similarity",)]) == [2, 3, 3]
    assert all(len(u) == 1 for u in units if u[0]["task"] != "similarity")
    assert describe_plan(units) == f"{len(runs)} runs in {len(units)} passes"
    assert len(plan_units(runs, share=False)) == len(runs)
    with pytest.raises(lossnet.LossnetError, match="share must be True or False"):
        run_sweep("mini", tmp_path / "unused.sqlite", share="no", progress=False)
    assert not (tmp_path / "unused.sqlite").exists()  # refused before the store is made


def test_runs_that_see_different_features_are_not_grouped(bapps):
    base = similarity_spec(bapps, ["random"], points=["features.1"], distances=["spatial"], baselines=())
    variants = []
    for change in ({"size": 32}, {"device": "cpu", "n_per_subset": 3}, {"input_norm": "imagenet"},
                   {"lin": "lpips"}):
        spec = json.loads(json.dumps(base))
        spec["tasks"]["similarity"].update(change)
        variants.append(expand(spec)[0].to_dict())
    runs = [expand(base)[0].to_dict(), *variants]
    other_seed = dict(runs[0], seed=1, id="x")
    assert len(plan_units([*runs, other_seed])) == len(runs) + 1


# ----------------------------------------------------------------------------------------------
# A test-only task with a shared pass: quick, deterministic, and logging each pass.

PLUGIN = '''
import hashlib, os, time
from lossnet.sweeps.tasks import SharedPass, register_task

def _metrics(run):
    h = hashlib.sha256(run["id"].encode()).hexdigest()
    return {"score": int(h[:8], 16) / 2**32, "seed": run["seed"]}

def probe(run, work_dir):
    s = run["settings"]
    with open(s["log"], "a") as fh:
        fh.write(f"alone {run['id']}\\n")
    if run["seed"] == s["fail_seed"]:
        raise RuntimeError(f"probe failure at seed {run['seed']}")
    return _metrics(run)

def probe_shared(runs, work_dirs):
    s = runs[0]["settings"]
    with open(s["log"], "a") as fh:
        fh.write("pass " + ",".join(r["id"] for r in runs) + "\\n")
    time.sleep(float(s["sleep"]))
    if s["fail_shared"]:
        raise RuntimeError("the shared pass failed")
    return [_metrics(r) for r in runs]

register_task("share_probe", probe, network=False,
              defaults={"sleep": 0.0, "log": "", "group": 4, "fail_seed": -1, "fail_shared": False},
              shared=SharedPass(lambda run: str(run["seed"] // run["settings"]["group"]), probe_shared))
'''

N_RUNS = 12
GROUP = 4


@pytest.fixture()
def probe_spec(tmp_path, plugin_spec):
    log = tmp_path / "passes.log"

    def make(sleep: float = 0.0, **settings) -> Path:
        return plugin_spec("share_probe_plugin", PLUGIN, "share_probe", range(N_RUNS), sleep=sleep, log=str(log),
                           group=GROUP, **settings)[0]

    return make, tmp_path / "plugins", log


def passes(log: Path) -> list[list[str]]:
    return [line.split()[1].split(",") for line in log.read_text().splitlines() if line.startswith("pass ")]


def units(log: Path) -> list[list[str]]:
    """Every unit of work in the log, in order: a shared pass's runs, or one run done alone."""
    return [line.split()[1].split(",") for line in log.read_text().splitlines()
            if line.startswith(("pass ", "alone "))]


def test_a_failing_shared_pass_runs_each_run_alone(tmp_path, probe_spec):
    make, _, log = probe_spec
    spec = make(fail_shared=True, fail_seed=5)
    summary = run_sweep(spec, tmp_path / "r.sqlite", progress=False)
    assert (summary["finished"], summary["failed"]) == (N_RUNS - 1, 1)  # one bad run does not fail its group
    assert len(passes(log)) == N_RUNS // GROUP
    assert sum(line.startswith("alone ") for line in log.read_text().splitlines()) == N_RUNS
    recs = {r.seed: r for r in ResultsStore(tmp_path / "r.sqlite").records()}
    assert "probe failure at seed 5" in recs[5].error
    assert "the shared pass failed" in recs[0].environment["shared_pass_error"]


def test_execute_group_checks_what_the_shared_pass_returns(probe_spec):
    make, _, _ = probe_spec
    runs = [r.to_dict() for r in expand(make())][:GROUP]
    import share_probe_plugin  # noqa: F401  (registered by the spec's imports)
    from lossnet.sweeps.tasks import TASKS, SharedPass, TaskAdapter

    good = execute_group(runs, None)
    assert [o["status"] for o in good] == ["finished"] * GROUP
    assert len({json.dumps(o["environment"]["shared_pass"]) for o in good}) == 1
    adapter = TASKS["share_probe"]
    short = TaskAdapter("share_probe", adapter.fn, adapter.defaults, network=False,
                        shared=SharedPass(adapter.shared.key, lambda rs, dirs: [{"score": 1.0}]))
    out = execute_group(runs, None, short)  # a wrong count falls back to each run alone, with the reason
    assert [o["status"] for o in out] == ["finished"] * GROUP
    assert "returned list for 4 runs" in out[0]["environment"]["shared_pass_error"]


@pytest.mark.slow
def test_sigkill_during_shared_passes_then_resume(tmp_path, probe_spec, sweep_processes):
    make, plugin_dir, log = probe_spec
    spec = make(sleep=0.25)
    db = tmp_path / "results.sqlite"
    rng = random.Random(11)
    kills = 0
    for executor, workers in [("inprocess", 1), ("processes", 2)]:
        finished = sweep_processes.count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
        # most often inside a pass (0.25 s of each 0.25 s + recording)
        kills += sweep_processes.kill_after_a_claim(sweep_processes.SWEEP, [spec, db, executor, workers], plugin_dir,
                                                    db, rng.uniform(0.0, 0.5))
        assert sweep_processes.count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'") >= finished
    assert kills >= 2
    mid = sweep_processes.count(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
    assert mid < N_RUNS
    before = len(units(log))
    recorded = {r.id for r in ResultsStore(db).records(status="finished")}
    summary = run_sweep(spec, db, progress=False)
    assert (summary["finished"], summary["failed"], summary["pending"], summary["running"]) == (N_RUNS, 0, 0, 0)
    assert summary["skipped"] == mid and summary["ran"]["claimed"] == N_RUNS - mid
    sweep_processes.check_exactly_once(db, N_RUNS)
    ids = {r.seed: r.id for r in ResultsStore(db).records()}
    group_of = {rid: seed // GROUP for seed, rid in ids.items()}
    for p in passes(log):
        assert len({group_of[rid] for rid in p}) == 1  # a pass serves the runs of one group only
    # the resumed sweep's units cover exactly the runs that were not recorded, each run once; a
    # group left with one unrecorded run runs it alone (a pass of one would share nothing)
    resumed = units(log)[before:]
    assert sorted(rid for u in resumed for rid in u) == sorted(set(ids.values()) - recorded)
    for u in resumed:
        left_in_group = [rid for rid in set(ids.values()) - recorded if group_of[rid] == group_of[u[0]]]
        assert len(u) == len(left_in_group)
    clean_db = tmp_path / "clean.sqlite"
    run_sweep(spec, clean_db, progress=False)
    assert {r.id: r.metrics for r in ResultsStore(clean_db).records()} == {
        r.id: r.metrics for r in ResultsStore(db).records()}


KILL_BETWEEN_RECORDS = """
import os, signal, sys
from lossnet.sweeps import store as store_mod
from lossnet.sweeps.runner import run_sweep
finish = store_mod.ResultsStore.finish
done = []
def finish_then_die(self, claim, *args, **kwargs):
    ok = finish(self, claim, *args, **kwargs)
    done.append(claim.run_id)
    if len(done) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between two runs of one group's records
    return ok
store_mod.ResultsStore.finish = finish_then_die
run_sweep(sys.argv[1], sys.argv[2], progress=False)
"""


def test_sigkill_between_the_records_of_a_group_redoes_only_the_unrecorded_runs(tmp_path, probe_spec, sweep_processes):
    make, plugin_dir, log = probe_spec
    spec = make()
    db = tmp_path / "results.sqlite"
    proc = sweep_processes.start(KILL_BETWEEN_RECORDS, [str(spec), str(db), "2"], plugin_dir)
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    first = passes(log)
    assert len(first) == 1 and len(first[0]) == GROUP  # killed after 2 of the first group's 4 records
    recorded = {r.id for r in ResultsStore(db).records(status="finished")}
    assert recorded == set(first[0][:2])
    summary = run_sweep(spec, db, progress=False)
    assert summary["finished"] == N_RUNS and summary["ran"]["claimed"] == N_RUNS - 2
    assert passes(log)[1] == first[0][2:]  # the rest of the group, in one pass, and nothing recorded redone
    assert len(passes(log)) == 1 + N_RUNS // GROUP
    sweep_processes.check_exactly_once(db, N_RUNS)


KILL_MID_PASS = """
import os, signal, sys
from lossnet.networks.extraction import LossNetwork
from lossnet.sweeps.runner import run_sweep
extract = LossNetwork.extract
calls = []
def extract_then_die(self, x, check=True):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # in the middle of the first group's pass
    return extract(self, x, check)
LossNetwork.extract = extract_then_die
run_sweep(sys.argv[1], sys.argv[2], progress=False)
"""


def test_sigkill_in_the_middle_of_a_real_shared_pass_records_nothing_of_it(tmp_path, bapps, sweep_processes):
    spec_path = tmp_path / "shared.json"
    spec = similarity_spec(bapps, ["random"], points=["features.1", "features.4"], baselines=())
    db = tmp_path / "results.sqlite"
    code = KILL_MID_PASS.replace("run_sweep(sys.argv[1]", "import json\nrun_sweep(json.load(open(sys.argv[1]))")
    spec_path.write_text(json.dumps(spec))
    proc = sweep_processes.start(code, [str(spec_path), str(db)], tmp_path)
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    store = ResultsStore(db)
    assert store.counts()["finished"] == 0 and store.counts()["running"] == 4  # claimed together, none recorded
    summary = run_sweep(spec, db, progress=False)
    assert (summary["finished"], summary["ran"]["claimed"], summary["ran"]["passes"]) == (4, 4, 1)
    sweep_processes.check_exactly_once(db, 4)
    run_sweep(spec, tmp_path / "clean.sqlite", progress=False, share=False)
    assert metrics_of(db) == metrics_of(tmp_path / "clean.sqlite")


@pytest.mark.slow
def test_a_group_is_one_unit_of_work_for_worker_processes(tmp_path, bapps):
    spec = similarity_spec(bapps, ["random"], points=["features.1", "features.4"], distances=["spatial"],
                           baselines=["l2"])
    procs = run_sweep(spec, tmp_path / "procs.sqlite", executor="processes", workers=2, progress=False)
    assert procs["finished"] == 3 and procs["ran"]["passes"] == 2
    inproc = run_sweep(spec, tmp_path / "inproc.sqlite", progress=False)
    assert metrics_of(tmp_path / "procs.sqlite") == metrics_of(tmp_path / "inproc.sqlite")
    served = {tuple(r.environment["shared_pass"]["runs"]) for r in ResultsStore(tmp_path / "procs.sqlite").records()
              if "shared_pass" in r.environment}
    assert sorted(len(s) for s in served) == [2] and inproc["ran"]["passes"] == 2  # the pixel run is alone


@pytest.mark.slow
def test_a_group_is_one_ray_task(tmp_path, probe_spec, sweep_processes):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'lossnet[ray]')")
    from lossnet.sweeps.executors import RayExecutor

    make, _, log = probe_spec
    spec = make()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        summary = run_sweep(spec, tmp_path / "ray.sqlite", executor=RayExecutor(), progress=False)
        unshared = run_sweep(spec, tmp_path / "ray-alone.sqlite", executor=RayExecutor(), progress=False,
                             share=False)
    finally:
        ray.shutdown()
    assert summary["finished"] == N_RUNS and summary["ran"]["passes"] == N_RUNS // GROUP
    assert unshared["finished"] == N_RUNS and unshared["ran"]["passes"] == N_RUNS
    assert [len(p) for p in passes(log)] == [GROUP] * (N_RUNS // GROUP)  # unshared runs never use the pass
    sweep_processes.check_exactly_once(tmp_path / "ray.sqlite", N_RUNS)
    a = {r.id: r.metrics for r in ResultsStore(tmp_path / "ray.sqlite").records()}
    b = {r.id: r.metrics for r in ResultsStore(tmp_path / "ray-alone.sqlite").records()}
    assert a == b
