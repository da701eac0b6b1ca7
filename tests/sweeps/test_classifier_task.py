"""The ``classifier`` sweep task: specs expand, a tiny sweep records every evaluation in the
results store, and running it again runs nothing."""
from __future__ import annotations

import pytest

from lossnet.errors import LossnetError
from lossnet.networks import classifiers as C
from lossnet.sweeps import classifier_task  # noqa: F401  (registers the task)
from lossnet.sweeps.runner import run_sweep
from lossnet.sweeps.spec import expand, load_spec
from lossnet.sweeps.store import ResultsStore
from lossnet.sweeps.tasks import TaskError, get_task
from lossnet.utils.devices import run_threads

KUMAR_SPECS = ("kumar-mini", "kumar-defaults", "kumar-width", "kumar-depth", "kumar-classes", "kumar-noskip",
               "kumar-weight-decay", "kumar-label-smoothing", "kumar-dropout", "kumar-crop", "kumar-train-steps")


@pytest.fixture(autouse=True)
def one_thread():
    with run_threads(1):
        yield


def test_ready_made_specs_expand_to_classifier_runs():
    counts = {}
    for name in KUMAR_SPECS:
        runs = expand(name)
        assert all(r.task == "classifier" and r.weights == "random" for r in runs)
        assert all(r.points == C.kumar_layers(C.parse_name(r.arch)) for r in runs)
        counts[name] = len(runs)
    assert counts["kumar-defaults"] == 25 * 5  # 15 ResNets, 6 EfficientNets, 4 ViTs, 5 seeds each
    assert counts["kumar-mini"] == len(C.MINI_NETWORKS)
    assert {r.arch for r in expand("kumar-mini")} == set(C.MINI_NETWORKS)
    assert {r.settings["config"] for r in expand("kumar-defaults")} == {"paper"}


def _tiny_spec() -> dict:
    for name in ("kumar_resnet2_w0.125", "kumar_resnet3_w0.125"):  # outside the catalogue: registered by hand
        C.ensure_registered(name)
    return {
        "name": "kumar-tiny", "imports": ["lossnet.sweeps.classifier_task"],
        "grid": [{"architectures": ["kumar_resnet2_w0.125", "kumar_resnet3_w0.125"], "weights": ["random"],
                  "points": "combined:kumar", "distances": ["mean_pool"], "tasks": ["classifier"], "seeds": [0]}],
        "tasks": {"classifier": {"config": "mini", "data": "builtin", "device": "cpu",
                                 "overrides": {"train_steps": 6, "batch_size": 16, "builtin_train": 4,
                                               "builtin_val": 2, "ps_n_per_subset": 4, "eval_points": 2,
                                               "eval_first": 2}}},
    }


@pytest.mark.slow
def test_tiny_sweep_stores_every_evaluation_and_resumes(tmp_path):
    db = tmp_path / "results.sqlite"
    summary = run_sweep(_tiny_spec(), db, progress=False)
    assert summary["finished"] == 2 and summary["failed"] == 0
    with ResultsStore(db) as store:
        records = store.records()
        evaluations = store.evaluations()
        assert store.evaluation_count() == 6  # one row of the evaluations table per checkpoint evaluation
    for rec in records:
        m = rec.metrics
        assert m["arch_trained"].endswith("_c14") and "evaluations" not in m
        rows = evaluations[rec.id]
        assert [r["step"] for r in rows] == [0, 2, 6]
        assert all(list(r["ps"]) == ["mean_pool", "spatial", "style"] for r in rows)  # the run's distance first
        assert m["best_ps"] == max(r["ps"]["mean_pool"] for r in rows)
        assert m["top1"] == rows[-1]["top1"]
    again = run_sweep(_tiny_spec(), db, progress=False)
    assert again["skipped"] == 2 and again["ran"] is None or again["ran"]["finished"] == 0


def test_bad_classifier_runs_are_clear_errors(tmp_path):
    adapter = get_task("classifier")
    with pytest.raises(TaskError, match="kumar_resnet"):
        adapter({"arch": "vgg16", "weights": "random", "settings": {}}, tmp_path)
    with pytest.raises(TaskError, match="random"):
        adapter({"arch": "kumar_resnet2", "weights": "imagenet", "settings": {}}, tmp_path)
    spec = _tiny_spec()
    spec["tasks"]["classifier"]["learning_rate"] = 0.1
    with pytest.raises(LossnetError, match="learning_rate"):
        load_spec(spec)
