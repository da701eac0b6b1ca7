"""PSNR/SSIM on Y against scikit-image; road metrics against hand-counted masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lossnet.errors import LossnetError
from lossnet.tasks.metrics import (
    RoadCounts,
    psnr_y,
    quantize_8bit,
    rgb_to_y,
    road_counts,
    road_scores,
    ssim_y,
)


def _y_skimage(x: torch.Tensor) -> np.ndarray:
    """Y in [16, 235] computed by scikit-image from an (3, H, W) tensor in [0, 1]."""
    return rgb2ycbcr(x.permute(1, 2, 0).double().numpy())[..., 0]


@pytest.fixture(scope="module")
def sr_pair(photos):
    hr = photos[:2]
    g = torch.Generator().manual_seed(1)
    sr = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return sr, hr


def test_luma_matches_skimage(photos):
    y = rgb_to_y(photos[:1])[0, 0].double().numpy() * 255
    np.testing.assert_allclose(y, _y_skimage(photos[0]), rtol=0, atol=1e-3)
    assert rgb_to_y(torch.zeros(1, 3, 1, 1)).item() == pytest.approx(16 / 255)
    assert rgb_to_y(torch.ones(1, 3, 1, 1)).item() == pytest.approx(235 / 255)


@pytest.mark.parametrize("shave", [0, 4, 8])
def test_psnr_matches_skimage_with_border_shaved(sr_pair, shave):
    sr, hr = sr_pair
    ours = psnr_y(sr, hr, shave)
    for i in range(len(sr)):
        a, b = _y_skimage(sr[i]), _y_skimage(hr[i])
        if shave:
            a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
        ref = peak_signal_noise_ratio(b, a, data_range=255)
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("shave", [0, 4])
def test_ssim_matches_skimage_with_border_shaved(sr_pair, shave):
    sr, hr = sr_pair
    ours = ssim_y(sr, hr, shave)
    for i in range(len(sr)):
        a, b = _y_skimage(sr[i]), _y_skimage(hr[i])
        if shave:
            a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
        ref = structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)


def test_shaving_changes_the_value_and_checks_sizes(sr_pair):
    sr, hr = sr_pair
    sr = sr.clone()
    sr[..., :4, :] = 1 - sr[..., :4, :]  # damage only the top border
    assert psnr_y(sr, hr, 4)[0] > psnr_y(sr, hr, 0)[0] + 1
    assert math.isinf(psnr_y(hr, hr).max().item())
    with pytest.raises(LossnetError, match="differ in shape"):
        psnr_y(sr[..., :60, :], hr)
    with pytest.raises(LossnetError, match="shave"):
        ssim_y(sr, hr, 40)


def test_quantize_rounds_to_8_bits():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2, 0.1 / 255])
    assert quantize_8bit(x).tolist() == pytest.approx([0.0, 128 / 255, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------------------------------
# Road metrics: counted by hand.

def test_exact_counts_by_hand():
    true = torch.zeros(4, 4)
    true[0, :] = 1            # 4 road pixels in the top row
    pred = torch.zeros(4, 4)
    pred[0, :3] = 0.9         # 3 of them found (TP = 3, FN = 1)
    pred[2, 1] = 0.3          # exactly at the threshold: counts as road (FP)
    pred[3, 3] = 0.8          # FP
    pred[1, 0] = 0.29         # below the threshold: background
    c = road_counts(pred, true, threshold=0.3)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 2, 1, 10)
    s = road_scores(c)
    assert s["completeness"] == pytest.approx(3 / 4)
    assert s["correctness"] == pytest.approx(3 / 5)
    assert s["quality"] == pytest.approx(3 / 6)
    assert s["iou"] == pytest.approx(3 / 6)
    assert s["f1"] == pytest.approx(6 / 9)
    assert s["miou"] == pytest.approx((3 / 6 + 10 / 13) / 2)


def test_buffer_counts_by_hand():
    true = np.zeros((5, 5), bool)
    true[:, 2] = True          # a vertical road, 5 pixels
    pred = np.zeros((5, 5))
    pred[:, 3] = 1.0           # predicted one pixel to the right
    pred[0, 0] = 1.0           # a stray pixel 2 columns away from the road
    exact = road_counts(pred, true)
    assert (exact.tp, exact.fp, exact.fn) == (0, 6, 5)
    assert road_scores(exact)["quality"] == 0
    c1 = road_counts(pred, true, buffer=1)
    assert (c1.matched_pred, c1.n_pred, c1.matched_true, c1.n_true) == (5, 6, 5, 5)
    r1 = road_scores(c1, relaxed=True)
    assert r1["completeness"] == pytest.approx(1.0)
    assert r1["correctness"] == pytest.approx(5 / 6)
    assert r1["quality"] == pytest.approx((5 / 6) / (1 + 5 / 6 - 5 / 6))
    assert r1["f1"] == pytest.approx(2 * (5 / 6) / (1 + 5 / 6))
    c2 = road_counts(pred, true, buffer=2)
    assert c2.matched_pred == 6  # the stray pixel is exactly 2 pixels away


def test_buffer_uses_euclidean_distance():
    true = np.zeros((4, 4), bool)
    true[0, 0] = True
    pred = np.zeros((4, 4))
    pred[1, 1] = 1.0  # diagonal neighbour: distance sqrt(2)
    assert road_counts(pred, true, buffer=1).matched_pred == 0
    assert road_counts(pred, true, buffer=1.5).matched_pred == 1


def test_relaxed_with_zero_buffer_equals_exact_and_counts_add_up():
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 1, 12, 12, generator=g)
    true = (torch.rand(2, 1, 12, 12, generator=g) > 0.7).float()
    c = road_counts(pred, true, buffer=0)
    exact, relaxed = road_scores(c), road_scores(c, relaxed=True)
    for k in ("completeness", "correctness", "quality", "f1"):
        assert relaxed[k] == pytest.approx(exact[k])
    # micro-averaging: per-image counts sum to the batch counts, buffer distances stay per image
    parts = road_counts(pred[0], true[0], buffer=2) + road_counts(pred[1], true[1], buffer=2)
    assert parts == road_counts(pred, true, buffer=2)


def test_degenerate_masks():
    empty = torch.zeros(3, 3)
    s = road_scores(road_counts(empty, empty, buffer=1), relaxed=True)
    assert math.isnan(s["quality"]) and math.isnan(s["completeness"])
    true = torch.zeros(3, 3)
    true[1, 1] = 1
    s = road_scores(road_counts(empty, true, buffer=1), relaxed=True)
    assert s["completeness"] == 0 and s["quality"] == 0 and math.isnan(s["correctness"])
    assert road_scores(RoadCounts(tp=0, fp=0, fn=4, tn=5))["quality"] == 0
    with pytest.raises(LossnetError, match="differ in shape"):
        road_counts(torch.zeros(3, 3), torch.zeros(3, 4))
