"""The classifier-study report: the Pareto frontier and Table 1 of hand-made networks are exact,
and a store filled by hand gives the Markdown/HTML report with its figures."""
from __future__ import annotations

import json

import pytest

from lossnet.networks import classifiers as C
from lossnet.report import classifier_study as R
from lossnet.report.tables import pareto_frontier
from lossnet.sweeps import classifier_task  # noqa: F401  (registers the task)
from lossnet.sweeps.spec import expand, load_spec
from lossnet.sweeps.store import ResultsStore


def test_pareto_frontier_of_hand_made_points_is_exact():
    pts = [(10.0, 66.0), (20.0, 69.0), (30.0, 68.5), (35.0, 68.5), (50.0, 67.0), (45.0, 66.0), (60.0, 65.0),
           (20.0, 68.0)]
    # (35, 68.5) dominates (30, 68.5); (50, 67) dominates (45, 66); (20, 69) dominates (10, 66) and (20, 68)
    assert pareto_frontier(pts) == [1, 3, 4, 6]


def _net(arch: str, ps: float, top1: float, curve_ps=(), overrides=None) -> dict:
    curve = [{"step": i, "ps": {"spatial": v}, "top1": 0.0} for i, v in enumerate(curve_ps)]
    return {"name": R.display_name(arch, overrides), "knobs": R.knobs(arch, overrides), "family": "",
            "distance": "spatial", "ps": {"spatial": ps}, "top1": top1, "curve": curve}


def test_table1_gains_are_exact():
    networks = [
        _net("kumar_resnet50", 68.2, 60.0, curve_ps=(64.0, 69.7, 68.2)),
        _net("kumar_resnet50_w0.5", 68.6, 50.0), _net("kumar_resnet50_w0.25", 68.4, 40.0),
        _net("kumar_resnet50", 68.9, 55.0, overrides={"weight_decay": 1e-5}),
        _net("kumar_resnet6", 69.1, 30.0, curve_ps=(65.0, 69.1)),
        _net("kumar_resnet6_noskip", 68.0, 20.0),
    ]
    t = R.knob_table(networks)
    rows = {r["network"]: r for r in t["rows"]}
    assert set(rows) == {"ResNet-50", "ResNet-6"}   # the variants are no rows of their own
    r50 = rows["ResNet-50"]
    assert r50["default"] == 68.2
    assert r50["gains"]["width"] == pytest.approx(0.4)
    assert r50["gains"]["weight_decay"] == pytest.approx(0.7)
    assert r50["gains"]["train_steps"] == pytest.approx(1.5)
    assert r50["best"] == pytest.approx(69.7)
    r6 = rows["ResNet-6"]
    assert r6["gains"]["skip"] == pytest.approx(-1.1) and r6["gains"]["train_steps"] == 0.0
    assert r6["best"] == pytest.approx(69.1)
    assert t["knobs"][:2] == ["width", "skip"]


def _spec() -> dict:
    for name in ("kumar_resnet2_w0.125", "kumar_resnet2_w0.25"):
        C.ensure_registered(name)
    return {"name": "kumar-report-test", "imports": ["lossnet.sweeps.classifier_task"],
            "grid": [{"architectures": ["kumar_resnet2_w0.125", "kumar_resnet2_w0.25"], "weights": ["random"],
                      "points": "combined:kumar", "distances": ["spatial"], "tasks": ["classifier"],
                      "seeds": [0, 1]}]}


def _evaluations(final_ps: float, top1: float) -> list[dict]:
    rows = []
    for step, frac in ((0, 0.0), (10, 0.5), (40, 1.0)):
        ps = {"spatial": 60 + (final_ps - 60) * frac + (3 if step == 10 else 0),
              "mean_pool": 61.0 + frac, "style": 62.0}
        rows.append({"step": step, "epoch": step / 10, "top1": top1 * frac + 7, "ps": ps,
                     "layerwise": {"spatial": {f"layer{i}": ps["spatial"] - i for i in range(1, 5)}},
                     "sensitivity": {d: {"margin": 0.1 * step, "far": 1.0, "near": 0.9, "n": 5} for d in ps},
                     "entropy": {"layer1": 0.9, "mean": 0.8 - 0.001 * step},
                     "frequency": {"clean_top1": top1, "sizes": {"3": {"top1": 1.0, "normalized": 0.2 + frac / 10},
                                                                 "9": {"top1": 2.0, "normalized": 0.6}}},
                     "synthetic": True})
    return rows


def test_report_from_a_hand_filled_store(tmp_path):
    spec = load_spec(_spec())
    runs = expand(spec)
    db = tmp_path / "results.sqlite"
    values = {("kumar_resnet2_w0.125", 0): (64.0, 30.0), ("kumar_resnet2_w0.125", 1): (66.0, 32.0),
              ("kumar_resnet2_w0.25", 0): (63.0, 40.0), ("kumar_resnet2_w0.25", 1): (63.0, 42.0)}
    with ResultsStore(db) as store:
        store.add_runs(runs, sweep=spec.name)
        for run in runs:
            ps, top1 = values[(run.arch, run.seed)]
            evals = _evaluations(ps, top1)
            metrics = {"top1": evals[-1]["top1"], "ps": ps, "ps_spatial": evals[-1]["ps"]["spatial"],
                       "ps_mean_pool": evals[-1]["ps"]["mean_pool"], "ps_style": evals[-1]["ps"]["style"],
                       "best_ps": max(e["ps"]["spatial"] for e in evals), "best_ps_step": 10,
                       "best_ps_top1": evals[1]["top1"], "arch_trained": run.arch, "synthetic": True,
                       "evaluations": evals}
            store.finish(store.claim(run.id, worker="test"), metrics, environment={})
    result = R.build_classifier_report(spec, db, tmp_path / "report")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    nets = {n["name"]: n for n in data["networks"]}
    assert set(nets) == {"ResNet-2 w0.125", "ResNet-2 w0.25"}
    a = nets["ResNet-2 w0.125"]
    assert a["seeds"] == [0, 1] and a["ps"]["spatial"] == pytest.approx(65.0)
    assert a["ps_sem"]["spatial"] == pytest.approx(1.0)  # std of (64, 66) / sqrt(2)
    assert a["top1"] == pytest.approx(38.0) and [p["step"] for p in a["curve"]] == [0, 10, 40]
    # frontier: w0.125 (65.0 at 38 %) and w0.25 (63.0 at 48 %) do not dominate each other
    assert len(data["pareto"]["frontier"]) == 2
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Pareto frontier" in md and "Table 1" in md and "SYNTHETIC" in md
    names = {p.rsplit("/", 1)[-1] for p in result["figures"]}
    assert {"fig1_pareto.png", "along_training.png", "trajectories.png", "layerwise.png", "entropy.png",
            "frequency.png"} <= names
    assert all((tmp_path / "report" / "figures" / n).stat().st_size > 1000 for n in names)
    assert "<table" in (tmp_path / "report" / "report.html").read_text()
