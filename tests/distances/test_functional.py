import math

import numpy as np
import pytest
import torch

from lossnet.distances import functional as D
from lossnet.errors import LossnetError, UnknownNameError


def _f(values, shape):
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


# One sample, 2 channels, 1x2 locations: location vectors a0=(3,4), a1=(1,0); b0=(0,5), b1=(0,2)
F0 = _f([3.0, 1.0, 4.0, 0.0], (1, 2, 1, 2))
F1 = _f([0.0, 0.0, 5.0, 2.0], (1, 2, 1, 2))


def test_spatial_by_hand():
    # unit vectors: a0=(.6,.8) b0=(0,1) -> .36+.04=.40 ; a1=(1,0) b1=(0,1) -> 2 ; mean = 1.2
    assert D.spatial(F0, F1).item() == pytest.approx(1.2, abs=1e-9)


def test_spatial_with_lin_by_hand():
    lin = torch.tensor([2.0, 0.5], dtype=torch.float64)
    # location 0: 2*.36 + .5*.04 = .74 ; location 1: 2*1 + .5*1 = 2.5 ; mean 1.62
    assert D.spatial(F0, F1, lin).item() == pytest.approx(1.62, abs=1e-9)


def test_mean_pool_by_hand():
    # means: f0 = (2, 2) -> (.7071, .7071) ; f1 = (0, 3.5) -> (0, 1) ; dist = .5 + (1-.7071)^2
    expected = 0.5 + (1 - 1 / math.sqrt(2)) ** 2
    assert D.mean_pool(F0, F1).item() == pytest.approx(expected, abs=1e-9)


def test_style_by_hand():
    # f0 channels over space: c0=(3,1)/sqrt10, c1=(4,0)/4=(1,0); G0 = [[1, .9487],[.9487, 1]]
    # f1: c0=(0,0) -> 0 ; c1=(5,2)/sqrt29 ; G1 = [[0,0],[0,1]]
    g01 = 3 / math.sqrt(10)
    expected = (1 + 2 * g01**2 + 0) / 4
    assert D.style(F0, F1).item() == pytest.approx(expected, abs=1e-9)


def test_mse_and_l1_by_hand():
    diffs = np.array([3 - 0, 1 - 0, 4 - 5, 0 - 2], dtype=float)
    assert D.mse(F0, F1).item() == pytest.approx(np.mean(diffs**2))
    assert D.l1(F0, F1).item() == pytest.approx(np.mean(np.abs(diffs)))


def test_pixel_l2_by_hand():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    b = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64)
    b[1] = 0.0
    assert D.pixel_l2(a, b).tolist() == [0.25, 0.0]


def test_style_equals_frobenius_norm_over_c_squared():
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.rand(3, 5, 4, 4, generator=g, dtype=torch.float64), torch.rand(3, 5, 4, 4, generator=g, dtype=torch.float64)
    g0, g1 = D.gram(f0), D.gram(f1)
    expected = torch.linalg.matrix_norm(g0 - g1) ** 2 / 25
    torch.testing.assert_close(D.style(f0, f1), expected)


def test_kumar_numpy_reference():
    """The numpy snippets of Kumar et al. (Appendix L), on (B, H, W, C) arrays."""
    rng = np.random.default_rng(0)
    t0, t1 = rng.random((2, 3, 4, 6)), rng.random((2, 3, 4, 6))
    eps = 1e-10

    def perceptual(a, b):
        a = a / (np.linalg.norm(a, axis=-1, keepdims=True) + eps)
        b = b / (np.linalg.norm(b, axis=-1, keepdims=True) + eps)
        return np.mean(np.sum((a - b) ** 2, axis=-1), axis=(1, 2))

    def gram(t):
        _, h, w, c = t.shape
        t = t.reshape(-1, h * w, c)
        t = t / (np.linalg.norm(t, axis=1, keepdims=True) + eps)
        return np.matmul(t.transpose(0, 2, 1), t)

    f0, f1 = (torch.from_numpy(t).permute(0, 3, 1, 2) for t in (t0, t1))
    np.testing.assert_allclose(D.spatial(f0, f1).numpy(), perceptual(t0, t1), rtol=1e-10)
    np.testing.assert_allclose(D.mean_pool(f0, f1).numpy(),
                               perceptual(t0.mean((1, 2), keepdims=True), t1.mean((1, 2), keepdims=True)), rtol=1e-10)
    np.testing.assert_allclose(D.style(f0, f1).numpy(), np.mean((gram(t0) - gram(t1)) ** 2, axis=(1, 2)), rtol=1e-10)


@pytest.mark.parametrize("name", ["spatial", "mean_pool", "style", "mse", "l1"])
def test_gradcheck_feature_distances(name):
    g = torch.Generator().manual_seed(1)
    f0 = (torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    f1 = (torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    if name == "l1":  # |x| is not differentiable at 0; keep differences away from it
        f1 = (f0.detach() + 0.3).requires_grad_(True)
    fn = D.FEATURE_DISTANCES[name]
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b), (f0, f1))


def test_gradcheck_lin_weights_and_pixel_distances():
    g = torch.Generator().manual_seed(2)
    f0 = torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    f1 = torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lin = torch.rand(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(D.spatial, (f0, f1, lin))
    x0 = torch.rand(1, 1, 11, 12, generator=g, dtype=torch.float64, requires_grad=True)
    x1 = torch.rand(1, 1, 11, 12, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(D.pixel_ssim, (x0, x1), fast_mode=True)
    assert torch.autograd.gradcheck(D.pixel_l2, (x0, x1))


def test_ssim_equals_skimage(photos):
    from skimage.metrics import structural_similarity

    x0 = photos[:2].double()
    x1 = (x0 * 0.7 + 0.1 * torch.rand_like(x0)).clamp(0, 1)
    ours = D.ssim(x0, x1)
    for i in range(2):
        ref = structural_similarity(x0[i].numpy(), x1[i].numpy(), channel_axis=0, data_range=1.0,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
    torch.testing.assert_close(D.ssim(x0, x0), torch.ones(2, dtype=torch.float64))


def test_ssim_too_small():
    with pytest.raises(LossnetError, match="at least 11x11"):
        D.ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_feature_distance_combines_layers_with_weights():
    g = torch.Generator().manual_seed(3)
    a = {"p": torch.rand(2, 4, 5, 5, generator=g), "q": torch.rand(2, 6, 3, 3, generator=g)}
    b = {"p": torch.rand(2, 4, 5, 5, generator=g), "q": torch.rand(2, 6, 3, 3, generator=g)}
    per = D.feature_distance(a, b, "spatial", per_layer=True)
    torch.testing.assert_close(D.feature_distance(a, b, "spatial"), per["p"] + per["q"])
    torch.testing.assert_close(D.feature_distance(a, b, "spatial", layer_weights=[2.0, 0.5]),
                               2 * per["p"] + 0.5 * per["q"])
    torch.testing.assert_close(D.feature_distance(a, b, "spatial", layer_weights={"q": 1.0}), per["q"])
    m = D.feature_distance(a, b, "spatial", map_size=(10, 10))
    assert m.shape == (2, 1, 10, 10)
    # the mean of an upsampled map with align_corners=False preserves the layer mean only approximately;
    # a 1x1 upsample target equals the per-location mean exactly
    torch.testing.assert_close(D.feature_distance({"p": a["p"]}, {"p": b["p"]}, "spatial", map_size=(5, 5)).mean((1, 2, 3)),
                               per["p"])


def test_feature_distance_errors():
    a = {"p": torch.rand(1, 2, 2, 2)}
    with pytest.raises(UnknownNameError, match="mean_pool"):
        D.feature_distance(a, a, "meanpoool")
    with pytest.raises(LossnetError, match="different points"):
        D.feature_distance(a, {"q": a["p"]})
    with pytest.raises(LossnetError, match="one per point"):
        D.feature_distance(a, a, layer_weights=[1.0, 2.0])
    with pytest.raises(LossnetError, match="no spatial map"):
        D.feature_distance(a, a, "style", map_size=(4, 4))
    with pytest.raises(LossnetError, match="pixel distance"):
        D.feature_distance(a, a, "ssim")


def test_half_precision_features_are_promoted():
    f0 = torch.zeros(1, 4, 2, 2, dtype=torch.float16)
    f1 = torch.rand(1, 4, 2, 2).half()
    d = D.spatial(f0, f1)  # all-zero features: eps would underflow in float16
    assert d.dtype == torch.float32 and torch.isfinite(d).all()
