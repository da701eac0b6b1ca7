"""The classifier report reads its numbers from the store's evaluation rows: a store filled by
hand (metrics JSON without any headline number) gives the exact final points, best-PS
checkpoint per run, Pareto frontier, Table 1 gain and knob sweep."""
from __future__ import annotations

import pytest

from lossnet.networks import classifiers as C
from lossnet.report import classifier_study as R
from lossnet.sweeps import classifier_task  # noqa: F401  (registers the task)
from lossnet.sweeps.spec import expand, load_spec
from lossnet.sweeps.store import ResultsStore

ARCHS = ("kumar_resnet2_w0.125", "kumar_resnet2_w0.25")
WD = (None, 1e-5, 1e-3)
# (arch, weight decay) -> final (top1, PS): the frontier is C, B, D, F; A is dominated by B, E by D
FINAL = {(ARCHS[0], None): (30.0, 64.8), (ARCHS[0], 1e-5): (35.0, 65.0), (ARCHS[0], 1e-3): (25.0, 66.5),
         (ARCHS[1], None): (40.0, 64.0), (ARCHS[1], 1e-5): (38.0, 63.0), (ARCHS[1], 1e-3): (45.0, 62.0)}


def knob_spec() -> dict:
    for name in ARCHS:
        C.ensure_registered(name)
    return {"name": "kumar-store-test", "imports": ["lossnet.sweeps.classifier_task"],
            "grid": [{"architectures": list(ARCHS), "weights": ["random"], "points": "combined:kumar",
                      "distances": ["spatial"], "tasks": ["classifier"], "seeds": [0],
                      "settings": [{}, {"weight_decay": 1e-5}, {"weight_decay": 1e-3}]}],
            "tasks": {"classifier": {"config": "paper"}}}


def rows_of(top1: float, ps: float, bump: float) -> list[dict]:
    """Evaluations at steps 0, 5, 20: the untrained net scores 70, step 5 scores ``ps + bump``."""
    return [{"step": 0, "epoch": 0.0, "top1": 7.0, "ps": {"spatial": 70.0, "mean_pool": 69.0}},
            {"step": 5, "epoch": 0.5, "top1": top1 / 2, "ps": {"spatial": ps + bump, "mean_pool": 60.0}},
            {"step": 20, "epoch": 2.0, "top1": top1, "ps": {"spatial": ps, "mean_pool": 61.0}}]


def fill(db, spec) -> list:
    runs = expand(spec)
    with ResultsStore(db) as store:
        store.add_runs(runs, sweep=spec.name)
        for run in runs:
            wd = (run.settings.get("overrides") or {}).get("weight_decay")
            top1, ps = FINAL[(run.arch, wd)]
            bump = 1.0 if (run.arch, wd) == (ARCHS[0], None) else -0.5
            # no top1 / ps / best_ps in the metrics JSON: the report must take them from the rows
            metrics = {"arch_trained": run.arch, "synthetic": True, "evaluations": rows_of(top1, ps, bump)}
            assert store.finish(store.claim(run.id, worker="test"), metrics, environment={})
    return runs


def test_report_numbers_come_from_the_evaluation_rows(tmp_path):
    spec = load_spec(knob_spec())
    runs = fill(tmp_path / "r.sqlite", spec)
    assert len(runs) == 6
    data = R.study_data(spec, tmp_path / "r.sqlite")
    assert data["evaluations"] == 18 and data["runs"]["finished"] == 6
    nets = {n["name"]: n for n in data["networks"]}
    a = nets["ResNet-2 w0.125"]
    assert (a["top1"], a["ps"]["spatial"], a["ps"]["mean_pool"]) == (30.0, 64.8, 61.0)
    assert [p["step"] for p in a["curve"]] == [0, 5, 20]
    # best-PS checkpoint per run: over all rows the initialisation (70), over trained rows step 5 or 20
    by_net = {row["network"]: row for row in data["run_table"]}
    assert set(by_net) == set(nets) and all(row["evaluations"] == 3 for row in by_net.values())
    assert by_net["ResNet-2 w0.125"]["best_ps"] == 70.0 and by_net["ResNet-2 w0.125"]["best_ps_step"] == 0
    assert (by_net["ResNet-2 w0.125"]["best_trained_ps"], by_net["ResNet-2 w0.125"]["best_trained_ps_step"],
            by_net["ResNet-2 w0.125"]["best_trained_ps_top1"]) == (pytest.approx(65.8), 5, 15.0)
    other = by_net["ResNet-2 w0.25 weight_decay=0.001"]
    assert (other["best_trained_ps"], other["best_trained_ps_step"], other["best_trained_ps_top1"]) == (62.0, 20, 45.0)
    # the Pareto frontier of the final points, exact
    p = data["pareto"]
    on = {p["points"][i]["network"] for i in p["frontier"]}
    assert on == {"ResNet-2 w0.125 weight_decay=0.001", "ResNet-2 w0.125 weight_decay=1e-05", "ResNet-2 w0.25",
                  "ResNet-2 w0.25 weight_decay=0.001"}
    # Table 1: the weight-decay and width gains around ResNet-2 w0.125 (default 64.8)
    t1 = {row["network"]: row for row in data["table1"]["rows"]}
    assert set(t1) == {"ResNet-2 w0.125", "ResNet-2 w0.25"}
    assert t1["ResNet-2 w0.125"]["gains"]["weight_decay"] == pytest.approx(66.5 - 64.8)
    assert t1["ResNet-2 w0.125"]["gains"]["width"] == pytest.approx(64.0 - 64.8)
    assert t1["ResNet-2 w0.125"]["gains"]["train_steps"] == pytest.approx(1.0)
    # the weight-decay sweep, with the default's value taken from the recipe (kumar-resnet: 1e-4)
    series = {s["points"][0][1]: s for s in data["knob_sweeps"]["weight_decay"]}
    assert [pt[0] for pt in series[35.0]["points"]] == [1e-5, 1e-4, 1e-3]
    assert [pt[1:] for pt in series[35.0]["points"]] == [(35.0, 65.0), (30.0, 64.8), (25.0, 66.5)]
    assert series[35.0]["model"] == "ResNet-2"


def test_report_files_show_the_best_checkpoint_of_every_run(tmp_path):
    spec = load_spec(knob_spec())
    fill(tmp_path / "r.sqlite", spec)
    result = R.build_classifier_report(spec, tmp_path / "r.sqlite", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Best-PS checkpoint of every run" in md and "From the 18 evaluation rows" in md
    assert "| ResNet-2 w0.125 | 0 |" in md and "| 65.80 | 5 | 15.0 |" in md
    assert "knob_sweeps.png" in {p.rsplit("/", 1)[-1] for p in result["figures"]}
    assert "Weight decay" in md and "<table" in (tmp_path / "report" / "report.html").read_text()
