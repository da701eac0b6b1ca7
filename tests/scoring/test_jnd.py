"""JND mAP: hand-worked values, ties, flattening, and scoring against the lpips package's voc_ap."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lossnet
from lossnet.data import builtin_jnd, load_jnd, write_jnd_fixture
from lossnet.scoring import JNDResult, format_table, jnd_average_precision, score_jnd


def test_perfectly_separable_is_one():
    assert jnd_average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 1, 0, 0])) == 1.0


def test_hand_worked_example():
    # ranking: same, different, same, different
    # TP = 1 1 2 2, FP = 0 1 1 2 -> precision 1, 1/2, 2/3, 1/2; recall 1/2, 1/2, 1, 1
    # envelope at recall 1/2: 1; at recall 1: 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    ap = jnd_average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 1, 0]))
    assert ap == pytest.approx(5 / 6)


def test_hand_worked_soft_labels():
    # same = fractions of people: 1, 0.5, 0 -> TP = 1, 1.5, 1.5; FP = 0, 0.5, 1.5; positives 1.5
    # recall 2/3, 1, 1; precision 1, 3/4, 1/2 -> AP = 2/3 * 1 + 1/3 * 3/4 = 11/12
    ap = jnd_average_precision(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 0.0]))
    assert ap == pytest.approx(11 / 12)


def test_worst_ranking():
    # different first: precision 0 at recall 0 ... the single positive comes last: precision 1/3
    assert jnd_average_precision(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1])) == pytest.approx(1 / 3)


def test_order_is_by_distance_not_by_input_order():
    d = np.array([0.4, 0.1, 0.3, 0.2])
    same = np.array([0, 1, 0, 1])
    assert jnd_average_precision(d, same) == 1.0


def test_equal_distances_form_one_threshold():
    # the reference code's argsort would give 1.0 or 0.5 depending on input order; a tie cannot be ranked
    assert jnd_average_precision(np.array([1.0, 1.0]), np.array([1, 0])) == pytest.approx(0.5)
    assert jnd_average_precision(np.array([1.0, 1.0]), np.array([0, 1])) == pytest.approx(0.5)
    # tie between a same and a different pair after a clean same: TP 1 -> (2, 3); recall 1/2 -> 1
    ap = jnd_average_precision(np.array([0.1, 0.5, 0.5]), np.array([1, 1, 0]))
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_distances_are_flattened():
    d = np.array([0.4, 0.1, 0.3, 0.2])
    same = np.array([1, 0, 1, 0])
    assert jnd_average_precision(d.reshape(4, 1, 1, 1), same.reshape(4, 1)) == jnd_average_precision(d, same)


def test_no_positive_is_nan():
    assert np.isnan(jnd_average_precision(np.array([0.1, 0.2]), np.array([0, 0])))


def test_matches_lpips_voc_ap_without_ties():
    lpips_ref = pytest.importorskip("lpips")
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.random(200)
        same = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], size=200)
        order = np.argsort(d)
        tp = np.cumsum(same[order])
        fp = np.cumsum(1 - same[order])
        expected = lpips_ref.voc_ap(tp / same.sum(), tp / (tp + fp))
        assert jnd_average_precision(d, same) == pytest.approx(expected, abs=1e-12)


def test_score_jnd_on_fixture_matches_independent_distances(tmp_path):
    lpips_ref = pytest.importorskip("lpips")
    # 0/1 labels: the identical "same" pairs tie at d = 0, and a tie of positives ranks the same either way
    root = write_jnd_fixture(tmp_path, n=9, graded=False)
    sets = load_jnd(root)
    metric = lossnet.PerceptualLoss("alexnet", layers=["features.1", "features.4"], weights="random", seed=2)
    result = score_jnd(metric, sets, batch_size=4, progress=False)
    assert isinstance(result, JNDResult) and set(result.subsets) == {"traditional", "cnn"}
    for name, ds in sets.items():
        d, same = [], []
        with torch.no_grad():
            for i in range(len(ds)):
                item = ds[i]
                d.append(float(metric(item["p0"][None], item["p1"][None])))
                same.append(float(item["same"]))
        d, same = np.array(d), np.array(same)
        order = np.argsort(d)
        tp, fp = np.cumsum(same[order]), np.cumsum(1 - same[order])
        expected = 100 * lpips_ref.voc_ap(tp / same.sum(), tp / (tp + fp))
        assert result.subsets[name]["map"] == pytest.approx(expected, abs=1e-9)
        assert result.subsets[name]["n"] == 9
        for p in metric.points:
            assert 0 <= result.layers[p][name] <= 100
    assert result.mean == pytest.approx(np.mean([v["map"] for v in result.subsets.values()]))
    d = json.loads(result.to_json())
    assert d["task"] == "jnd" and set(d["layers"]) == {"features.1", "features.4", "combined"}
    assert "mAP" in format_table(result)


def test_identical_same_pairs_score_100():
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(6):
        x = torch.rand(3, 64, 64, generator=g)
        same = i % 2 == 0
        items.append({"p0": x, "p1": x if same else torch.rand(3, 64, 64, generator=g), "same": float(same)})
    for metric in ("l2", "ssim", lossnet.PerceptualLoss("alexnet", layers=["features.1"], weights="random")):
        assert score_jnd(metric, {"hand": items}, batch_size=4, progress=False).subsets["hand"]["map"] == 100.0


def test_builtin_jnd_is_synthetic():
    r = score_jnd("l2", builtin_jnd(n=9), progress=False)
    assert r.synthetic and "SYNTHETIC" in format_table(r)
