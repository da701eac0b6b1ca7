"""MOS correlations (SROCC, KROCC, PLCC): equal to scipy.stats, with a documented sign convention."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

import lossnet
from lossnet import data as D
from lossnet.scoring import MOSResult, format_table, mos_correlations, score_mos


def test_correlations_equal_scipy_with_sign_flipped_for_mos():
    rng = np.random.default_rng(0)
    d = rng.random(50)
    s = 5 - 3 * d + 0.3 * rng.standard_normal(50)
    c = mos_correlations(d, s, higher_is_better=True)
    assert c["srocc"] == pytest.approx(stats.spearmanr(-d, s)[0])
    assert c["krocc"] == pytest.approx(stats.kendalltau(-d, s)[0])
    assert c["plcc"] == pytest.approx(stats.pearsonr(-d, s)[0])
    assert c["srocc"] == pytest.approx(-stats.spearmanr(d, s)[0])
    assert min(c.values()) > 0  # distance falls as quality rises: a good metric is positive


def test_sign_for_scores_where_higher_is_worse():
    d = np.array([0.1, 0.4, 0.2, 0.9])
    dmos = np.array([1.0, 3.0, 2.0, 4.0])  # higher = worse
    c = mos_correlations(d, dmos, higher_is_better=False)
    assert c["srocc"] == pytest.approx(1.0) and c["krocc"] == pytest.approx(1.0)
    assert c["plcc"] == pytest.approx(stats.pearsonr(d, dmos)[0])
    assert mos_correlations(d, -dmos, higher_is_better=True)["srocc"] == pytest.approx(1.0)


def test_constant_input_is_nan():
    assert np.isnan(mos_correlations(np.ones(4), np.arange(4.0))["srocc"])


def _l2_from_files(ds) -> np.ndarray:
    out = []
    for r, d in zip(ds.ref_paths, ds.dist_paths):
        a = np.asarray(Image.open(r).convert("RGB"), dtype=np.float64) / 255
        b = np.asarray(Image.open(d).convert("RGB"), dtype=np.float64) / 255
        out.append(((a - b) ** 2).mean())
    return np.array(out)


MOS_FIXTURES = {  # the dataset of each kind's generated fixture, written under a folder
    "tid2013": lambda root: D.load_tid2013(D.write_tid2013_fixture(root)),
    "kadid10k": lambda root: D.load_kadid10k(D.write_kadid_fixture(root)),
    "csv": lambda root: D.load_mos_csv(D.write_mos_csv_fixture(root), higher_is_better=False),
}


@pytest.mark.parametrize("kind", list(MOS_FIXTURES))
def test_score_mos_equals_scipy_on_independent_distances(tmp_path, kind):
    ds = MOS_FIXTURES[kind](tmp_path)
    result = score_mos("l2", ds, batch_size=3, progress=False)
    assert isinstance(result, MOSResult) and result.n == len(ds) == 8
    d = _l2_from_files(ds)
    np.testing.assert_allclose(result.values["distances"]["l2"]["combined"], d, rtol=1e-5)
    x = -d if ds.higher_is_better else d
    assert result.srocc == pytest.approx(stats.spearmanr(x, ds.scores)[0], abs=1e-9)
    assert result.krocc == pytest.approx(stats.kendalltau(x, ds.scores)[0], abs=1e-9)
    assert result.plcc == pytest.approx(stats.pearsonr(x, ds.scores)[0], rel=1e-4)
    assert result.higher_is_better is ds.higher_is_better
    assert result.srocc > 0  # stronger distortions: larger distance and worse score


def test_score_mos_network_layers_and_json(tmp_path):
    ds = MOS_FIXTURES["tid2013"](tmp_path)
    metric = lossnet.PerceptualLoss("alexnet", layers=["features.1", "features.4"], weights="random")
    result = score_mos(metric, ds, distances=["spatial", "style"], progress=False)
    assert set(result.layers) == {"features.1", "features.4", "combined"}
    assert set(result.distances) == {"spatial", "style"}
    with torch.no_grad():
        d = np.array([float(metric(ds[i]["ref"][None], ds[i]["dist"][None])) for i in range(len(ds))])
    assert result.srocc == pytest.approx(stats.spearmanr(-d, ds.scores)[0], abs=1e-9)
    out = json.loads(result.to_json(tmp_path / "mos.json"))
    assert out["task"] == "mos" and out["dataset"] == "tid2013" and "sign" in out
    assert "SROCC" in format_table(result)


def test_mixed_image_sizes_are_scored_in_separate_runs():
    g = torch.Generator().manual_seed(0)
    items = []
    for k, size in enumerate([32, 32, 48, 32, 48]):
        ref = torch.rand(3, size, size, generator=g)
        dist = (ref + 0.1 * (k + 1) * torch.randn(3, size, size, generator=g)).clamp(0, 1)
        items.append({"ref": ref, "dist": dist, "score": 5.0 - k})
    result = score_mos("l2", items, batch_size=5, progress=False, higher_is_better=True)
    expected = [float(((it["ref"] - it["dist"]) ** 2).mean()) for it in items]
    np.testing.assert_allclose(result.values["distances"]["l2"]["combined"], expected, rtol=1e-6)
    assert result.srocc == pytest.approx(1.0)
