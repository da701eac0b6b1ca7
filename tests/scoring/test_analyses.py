"""Kumar et al. analyses: entropy, distortion sensitivity, rank correlation, all from one pass."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import lossnet
from lossnet.data import load_2afc, write_bapps_fixture
from lossnet.scoring import score_2afc
from lossnet.scoring.analyses import (
    EntropyMeter,
    analyze_2afc,
    distortion_sensitivity,
    format_analysis,
    normalized_entropy,
    rank_correlation,
)

JUDGES = [0.0, 1.0, 0.2, 1.0, 0.0, 0.6, 1.0, 0.0, 0.4, 0.5]


def test_normalized_entropy_matches_scipy():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 4, 5, 6, generator=g) * 3
    got = normalized_entropy(f)
    for b in range(3):
        x = f[b].flatten().double().numpy()
        p = np.exp(x - x.max())
        p /= p.sum()
        assert float(got[b]) == pytest.approx(stats.entropy(p) / math.log(x.size), rel=1e-5)
    assert normalized_entropy(torch.zeros(2, 3, 4, 4)).tolist() == pytest.approx([1.0, 1.0])
    spike = torch.zeros(1, 8, 8, 8)
    spike[0, 0, 0, 0] = 100.0
    assert float(normalized_entropy(spike)) < 0.01


def test_distortion_sensitivity_uses_unanimous_triplets_only():
    d0 = np.array([3.0, 1.0, 5.0, 2.0])
    d1 = np.array([1.0, 2.0, 0.0, 4.0])
    judge = np.array([1.0, 0.0, 0.6, 0.0])
    # judge 1: p1 nearer (far d0=3, near d1=1); judge 0: p0 nearer (far 2, near 1) and (far 4, near 2); 0.6 ignored
    s = distortion_sensitivity(d0, d1, judge)
    assert s["n"] == 3
    assert s["far"] == pytest.approx((3 + 2 + 4) / 3) and s["near"] == pytest.approx((1 + 1 + 2) / 3)
    assert s["margin"] == pytest.approx(s["far"] - s["near"])
    assert distortion_sensitivity(d0, d1, np.full(4, 0.5))["n"] == 0


def test_rank_correlation_is_spearman_of_margin_with_judge():
    rng = np.random.default_rng(0)
    d0, d1, judge = rng.random(30), rng.random(30), rng.random(30)
    assert rank_correlation(d0, d1, judge) == pytest.approx(stats.spearmanr(d1 - d0, judge)[0])
    # a metric that agrees with people: p1 closer (judge high) <=> d1 < d0: negative rho
    assert rank_correlation(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), np.array([0.0, 0.5, 1.0])) == -1.0


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = write_bapps_fixture(tmp_path_factory.mktemp("bapps"), n=len(JUDGES), judges=JUDGES)
    return load_2afc(root)


def test_analyze_2afc_from_one_pass(sets):
    metric = lossnet.PerceptualLoss("alexnet", layers=["features.1", "features.7"], weights="random", seed=3)
    calls = []
    handle = metric.net.body.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        report = analyze_2afc(metric, sets, batch_size=4, bootstrap=50, progress=False)
    finally:
        handle.remove()
    n_triplets = 2 * len(JUDGES)
    assert sum(calls) == 3 * n_triplets  # ONE pass: every analysis comes from the same features

    assert list(report["distance_functions"]) == ["spatial", "mean_pool", "style"]
    ref = score_2afc(metric, sets, distances=["spatial", "mean_pool", "style"], batch_size=4, bootstrap=50,
                     progress=False)
    for d in ("spatial", "mean_pool", "style"):
        assert report["distance_functions"][d]["mean"] == pytest.approx(ref.distances[d]["mean"])
        for p in ("features.1", "features.7", "combined"):
            for s, v in ref.distances[d]["layers"][p].items():
                assert report["layerwise_ps"][d][p][s] == pytest.approx(v)
            t = ref.triplets
            sens = report["distortion_sensitivity"][d][p]["all"]
            exp = distortion_sensitivity(t.d0[d][p], t.d1[d][p], t.judges)
            assert sens == pytest.approx(exp)
            rho = report["rank_correlation"][d][p]["all"]
            assert rho == pytest.approx(stats.spearmanr(t.d1[d][p] - t.d0[d][p], t.judges)[0])
            assert report["rank_agreement"][d][p]["all"] == pytest.approx(-rho)
            assert set(report["distortion_sensitivity"][d][p]) == {"all", "traditional", "cnn"}
    # unanimous triplets: judge 0 or 1 in both subsets
    assert report["distortion_sensitivity"]["spatial"]["combined"]["all"]["n"] == 2 * sum(j in (0, 1) for j in JUDGES)

    # entropy: every image of the pass (ref, p0, p1), computed independently here
    ent = {p: [] for p in metric.points}
    with torch.no_grad():
        for ds in sets.values():
            for i in range(len(ds)):
                x = torch.stack([ds[i]["ref"], ds[i]["p0"], ds[i]["p1"]])
                for p, f in metric.net.extract(x).items():
                    for b in range(3):
                        v = f[b].flatten().double()
                        prob = torch.softmax(v, 0)
                        ent[p].append(float(-(prob * prob.log()).sum() / math.log(v.numel())))
    for p in metric.points:
        assert report["entropy"][p] == pytest.approx(np.mean(ent[p]), rel=1e-5)
        assert 0 < report["entropy"][p] <= 1
    json.dumps(report, allow_nan=False)
    text = format_analysis(report)
    assert "margin" in text and "entropy" in text


def test_analyze_pixel_metric_has_no_entropy(sets):
    report = analyze_2afc(lossnet.PerceptualLoss(distance="ssim"), sets, bootstrap=0, progress=False)
    assert report["entropy"] is None and list(report["distance_functions"]) == ["ssim"]
    assert report["distortion_sensitivity"]["ssim"]["combined"]["all"]["n"] > 0


def test_entropy_meter_averages_over_images():
    meter = EntropyMeter()
    meter({"a": torch.zeros(2, 3, 2, 2)}, 2)
    spike = torch.zeros(1, 3, 2, 2)
    spike[0, 0, 0, 0] = 1000.0
    meter({"a": spike}, 1)
    assert meter.result()["a"] == pytest.approx(2 / 3)
