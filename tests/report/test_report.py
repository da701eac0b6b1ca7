"""The sweep report from a generated results store: tables (best points, ranks) checked against
values computed independently here, Spearman against scipy, the Pareto frontier by hand, files."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from lossnet.report import tables
from lossnet.report.study import build_report
from lossnet.sweeps.spec import expand, load_spec
from lossnet.sweeps.store import ResultsStore

ARCHS = ["alexnet", "vgg16", "resnet18", "resnet50", "squeezenet1_1"]
SUBSETS = ["traditional", "cnn"]

SPEC = {
    "name": "report-test",
    "grid": [
        {"architectures": ARCHS, "points": "pihlgren", "distances": ["spatial"], "tasks": ["similarity"],
         "baselines": ["l2"]},
        {"architectures": ["resnet18"], "weights": ["random"], "points": "pihlgren", "tasks": ["similarity"]},
        {"architectures": ["vgg11"], "points": "combined", "tasks": ["similarity"]},
        {"architectures": ARCHS, "points": "pihlgren", "distances": ["mse"], "tasks": ["superres"], "seeds": [0, 1],
         "baselines": ["l2"]},
    ],
}


def _top1(arch: str) -> float:
    import torchvision

    return torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].meta["_metrics"]["ImageNet-1K"]["acc@1"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A store where every run of SPEC finished with seeded random metrics (one failed run)."""
    tmp = tmp_path_factory.mktemp("report")
    runs = expand(SPEC)
    store = ResultsStore(tmp / "results.sqlite")
    store.add_runs(runs, sweep="report-test")
    rng = random.Random(7)
    truth = {}
    failed_id = None
    for run in runs:
        claim = store.claim(run.id, "generator")
        if run.task == "superres" and run.arch == "alexnet" and run.label == "features.11" and run.seed == 1:
            store.fail(claim, "RuntimeError: out of memory", "Traceback ...")
            failed_id = run.id
            continue
        if run.task == "similarity":
            subsets = {s: 60 + 15 * rng.random() for s in SUBSETS}
            metrics = {"mean": sum(subsets.values()) / 2, "synthetic": False,
                       "subsets": {s: {"score": v, "n": 10} for s, v in subsets.items()}}
            if run.label == "combined":
                layer_means = {p: 60 + 15 * rng.random() for p in run.points}
                metrics["layer_means"] = {**layer_means, "combined": metrics["mean"]}
                metrics["layers"] = {p: {s: v for s in SUBSETS} for p, v in layer_means.items()}
        else:
            metrics = {"psnr": 20 + 5 * rng.random(), "ssim": rng.random()}
        store.finish(claim, metrics, {"device": "cpu"})
        truth[run.id] = metrics
    out = tmp / "report"
    result = build_report(SPEC, store.path, out)
    return {"runs": runs, "truth": truth, "result": result, "data": result["data"], "out": out,
            "failed_id": failed_id}


def _scores(generated, task: str, metric: str) -> dict[tuple[str, str], float]:
    """{(network, point): score averaged over seeds}, computed from the generated truth."""
    acc: dict[tuple[str, str], list[float]] = {}
    for run in generated["runs"]:
        if run.task != task or run.id not in generated["truth"]:
            continue
        net = f"pixel {run.distance}" if run.arch is None else run.network_label
        acc.setdefault((net, run.label), []).append(generated["truth"][run.id][metric])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _best(generated, task: str, metric: str) -> dict[str, tuple[str, float]]:
    """{network: (best point, score)}, computed independently (combined vgg11: its layer-wise rows too)."""
    scores = _scores(generated, task, metric)
    best: dict[str, tuple[str, float]] = {}
    for (net, point), s in scores.items():
        if point == "combined":
            continue
        if net not in best or s > best[net][1]:
            best[net] = (point, s)
    if task == "similarity":  # the combined vgg11 run also gives one row per point (layer-wise)
        vgg11 = next(generated["truth"][r.id] for r in generated["runs"] if r.arch == "vgg11")
        lm = {p: v for p, v in vgg11["layer_means"].items() if p != "combined"}
        p_best = max(lm, key=lm.get)
        best["vgg11"] = (p_best, lm[p_best]) if lm[p_best] > vgg11["mean"] else ("combined", vgg11["mean"])
    return best


@pytest.mark.parametrize("task, metric", [("similarity", "mean"), ("superres", "psnr")])
def test_best_points_and_ranks(generated, task, metric):
    scores = _scores(generated, task, metric)
    t = generated["data"]["tasks"][task]
    assert t["metric"] == metric
    # the best point per network, and ranks, computed independently
    best = _best(generated, task, metric)
    order = sorted(best, key=lambda n: -best[n][1])
    got = {b["network"]: b for b in t["best"]}
    assert set(got) == set(best)
    for rank, net in enumerate(order, start=1):
        assert got[net]["point"] == best[net][0]
        assert got[net]["score"] == pytest.approx(best[net][1])
        assert got[net]["rank"] == rank
    assert [b["network"] for b in t["best"]] == order
    # every configuration ranked
    ranked = t["ranked"]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    for r in ranked:
        if (r["network"], r["point"]) in scores:
            assert r["score"] == pytest.approx(scores[(r["network"], r["point"])])


def test_matrix_heatmap_values(generated):
    m = generated["data"]["tasks"]["superres"]["matrix"]
    scores = _scores(generated, "superres", "psnr")
    assert m["columns"] == ["P1", "P2", "P3", "P4"]  # the networks' points differ: slots, shallow to deep
    assert set(m["networks"]) == set(ARCHS)  # pixel baselines are not in the matrix
    for net in ARCHS:
        points = [r.label for r in generated["runs"] if r.task == "superres" and r.arch == net and r.seed == 0]
        for slot, point in enumerate(points, start=1):
            assert m["points"][net][f"P{slot}"] == point
            assert m["cells"][net][f"P{slot}"] == pytest.approx(scores[(net, point)])
    # alexnet features.11 has one seed (the other failed): its cell is that seed alone
    alex = [generated["truth"][r.id]["psnr"] for r in generated["runs"]
            if r.task == "superres" and r.arch == "alexnet" and r.label == "features.11" and r.id in generated["truth"]]
    assert len(alex) == 1 and m["cells"]["alexnet"]["P4"] == pytest.approx(alex[0])
    sim = generated["data"]["tasks"]["similarity"]["matrix"]
    assert "combined" in sim["columns"] and sim["cells"]["vgg11"]["combined"] is not None
    assert set(sim["cells"]["vgg11"]) == {"P1", "P2", "P3", "P4", "combined"}


def test_spearman_and_pareto(generated):
    t = generated["data"]["tasks"]["similarity"]
    best = _best(generated, "similarity", "mean")
    nets = ARCHS + ["vgg11"]  # ImageNet-weight networks with a known top-1 (not the random resnet18)
    x = [_top1(a) for a in nets]
    y = [best[a][1] for a in nets]
    c = t["top1"]
    assert c["n"] == len(nets)
    assert {d["arch"]: d["top1"] for d in c["points"]} == pytest.approx(dict(zip(nets, x)))
    assert {d["arch"]: d["score"] for d in c["points"]} == pytest.approx(dict(zip(nets, y)))
    expected = spearmanr(x, y)
    assert c["rho"] == pytest.approx(float(expected.statistic))
    assert c["p"] == pytest.approx(float(expected.pvalue))
    # the Pareto frontier of (top-1, PS): brute force here
    pts = c["points"]
    frontier = [i for i, a in enumerate(pts)
                if not any(b["top1"] >= a["top1"] and b["score"] >= a["score"] and b is not a for b in pts)]
    assert sorted(t["pareto"]["frontier"]) == sorted(frontier)


def test_pareto_frontier_by_hand():
    pts = [(56.5, 69.0), (71.6, 67.0), (69.8, 70.1), (76.1, 66.0), (58.2, 70.1), (76.1, 65.0), (60.0, 60.0)]
    # (56.5, 69.0) < (58.2, 70.1); (71.6, 67.0) is beaten by nobody with top-1 >= 71.6 and PS >= 67;
    # (58.2, 70.1) is beaten by (69.8, 70.1) (equal PS, higher top-1); (76.1, 65.0) by (76.1, 66.0)
    assert tables.pareto_frontier(pts) == [2, 1, 3]
    assert tables.pareto_frontier([(1.0, 1.0)]) == [0]
    assert tables.pareto_frontier([(1.0, 2.0), (1.0, 2.0)]) == [0, 1]  # identical points dominate neither
    assert tables.competition_ranks([5.0, 7.0, 5.0, 1.0]) == [2, 1, 2, 4]
    assert tables.competition_ranks([5.0, 7.0, 1.0], higher_is_better=False) == [2, 3, 1]
    assert tables.spearman([1.0, 2.0], [3.0, 4.0]) == (None, None)


def test_subset_table(generated):
    s = generated["data"]["tasks"]["similarity"]["subsets"]
    assert s["subsets"] == SUBSETS
    truth = {(r.network_label if r.arch else f"pixel {r.distance}", r.label): generated["truth"][r.id]
             for r in generated["runs"] if r.task == "similarity"}
    for row in s["rows"]:
        if (row["network"], row["point"]) in truth and row["point"] != "combined":
            m = truth[(row["network"], row["point"])]
            for sub in SUBSETS:
                assert row["scores"][sub] == pytest.approx(m["subsets"][sub]["score"])
            assert row["mean"] == pytest.approx(m["mean"])
    assert [r["mean"] for r in s["rows"]] == sorted((r["mean"] for r in s["rows"]), reverse=True)


def test_cross_task_ranks(generated):
    cross = generated["data"]["cross_task"]
    assert cross["tasks"] == ["similarity", "superres"]
    for net in ARCHS:
        ranks = cross["ranks"][net]
        assert set(ranks) == {"similarity", "superres"}
        assert cross["mean_rank"][net] == pytest.approx((ranks["similarity"] + ranks["superres"]) / 2)
        for task in ("similarity", "superres"):
            assert ranks[task] == next(b["rank"] for b in generated["data"]["tasks"][task]["best"]
                                       if b["network"] == net)


def test_report_files(generated):
    result, out = generated["result"], generated["out"]
    md = Path(result["markdown"]).read_text()
    html = Path(result["html"]).read_text()
    assert Path(result["json"]).is_file()
    assert len(result["figures"]) >= 7  # heatmaps, best bars, top-1 scatters, Pareto
    for fig in result["figures"]:
        data = Path(fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    for src in re.findall(r"<img src='([^']+)'", html):
        assert (out / src).is_file()
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file()
    assert html.count("<table>") >= 8 and "Pareto" in html and "Spearman" in html
    best = generated["data"]["tasks"]["superres"]["best"][0]
    assert f"| 1 | {best['network']} | {best['point']} | mse | {best['score']:.2f} |" in md
    # the failed run is listed with its error; the status line counts it
    assert "Failed runs" in md and "RuntimeError: out of memory" in md and generated["failed_id"] in md
    st = generated["data"]["status"]
    assert (st["failed"], st["finished"], st["total"]) == (1, st["total"] - 1, len(generated["runs"]))


def test_report_of_an_empty_store(tmp_path):
    spec = load_spec({"name": "empty", "grid": {"tasks": ["noop"], "seeds": [0]}})
    result = build_report(spec, tmp_path / "empty.sqlite", tmp_path / "rep")
    assert "No finished runs yet" in Path(result["markdown"]).read_text()
    assert result["figures"] == []
    assert not (tmp_path / "empty.sqlite").exists()  # reporting (or asking the status) creates no store


def test_the_report_says_when_a_weights_file_changed_and_shows_only_current_runs(tmp_path):
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"the first weights")
    spec = {"name": "w", "grid": {"tasks": ["superres"], "architectures": ["resnet18"], "points": ["layer1"],
                                  "weights": [str(weights)], "distances": ["mse"]}}
    store = ResultsStore(tmp_path / "results.sqlite")
    (old,) = expand(spec)
    store.add_runs([old], sweep="w")
    store.finish(store.claim(old.id, "generator"), {"psnr": 21.0, "ssim": 0.5}, {"device": "cpu"})
    first = build_report(spec, store.path, tmp_path / "first")
    assert first["data"]["weights_changed"] == [] and "changed" not in Path(first["markdown"]).read_text()

    weights.write_bytes(b"other weights under the same name")
    (new,) = expand(spec)
    assert new.id != old.id
    result = build_report(spec, store.path, tmp_path / "second")
    (change,) = result["data"]["weights_changed"]
    assert (change["previous_id"], change["id"]) == (old.id, new.id)
    text = Path(result["markdown"]).read_text()
    assert f"The weights file {weights} changed (sha256 {old.weights_sha256[:12]}... -> " \
           f"{new.weights_sha256[:12]}...): 1 run(s)" in text
    assert result["data"]["status"]["finished"] == 0 and result["data"]["tasks"] == {}  # the stale run is not shown
