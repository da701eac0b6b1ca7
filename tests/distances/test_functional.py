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


# --------------------------------------------------------------------------------------
# the FeatureDistance records: one implementation, prepared once, compared in groups
# --------------------------------------------------------------------------------------

ALL = ["spatial", "mean_pool", "style", "mse", "l1", "cosine"]
WITH_TERMS = ["spatial", "mean_pool", "mse", "l1"]


def _pair(seed=4, shape=(3, 5, 4, 6), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype), torch.randn(*shape, generator=g, dtype=dtype)


def test_registry_holds_records_for_every_distance():
    assert set(ALL) <= set(D.FEATURE_DISTANCES)
    for name, d in D.FEATURE_DISTANCES.items():
        assert isinstance(d, D.FeatureDistance) and d.name == name
    assert {n for n, d in D.FEATURE_DISTANCES.items() if d.terms is not None} >= set(WITH_TERMS)
    assert D.FEATURE_DISTANCES["style"].terms is None and not D.FEATURE_DISTANCES["style"].accepts_lin
    assert D.FEATURE_DISTANCES["cosine"].terms is None and not D.FEATURE_DISTANCES["cosine"].accepts_lin


@pytest.mark.parametrize("name", ALL)
def test_call_equals_compare_of_prepared(name):
    d = D.FEATURE_DISTANCES[name]
    f0, f1 = _pair()
    lins = [None] + ([torch.rand(5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)]
                     if d.accepts_lin else [])
    for lin in lins:
        got = d(f0, f1, lin)
        assert got.shape == (3,)
        torch.testing.assert_close(got, d.compare(d.prepare(f0), d.prepare(f1), lin), rtol=0, atol=0)
    # the public function of the same name is the record
    torch.testing.assert_close(getattr(D, name)(f0, f1), d(f0, f1), rtol=0, atol=0)


@pytest.mark.parametrize("name", WITH_TERMS)
def test_terms_sum_to_the_distance_with_and_without_lin(name):
    d = D.FEATURE_DISTANCES[name]
    f0, f1 = _pair(6)
    lin = torch.rand(5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    p0, p1 = d.prepare(f0), d.prepare(f1)
    terms = d.terms(p0, p1)
    assert terms.shape == (3, 5) and (terms >= 0).all()
    torch.testing.assert_close(d.compare(p0, p1, lin), (terms * lin).sum(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d.compare(p0, p1, None), terms.sum(1), rtol=1e-12, atol=1e-14)


def test_mse_terms_by_hand():
    # F0 - F1 per channel: c0 = (3, 1), c1 = (-1, -2); squared means 5 and 2.5, divided by C = 2
    d = D.FEATURE_DISTANCES["mse"]
    torch.testing.assert_close(d.terms(d.prepare(F0), d.prepare(F1)), _f([2.5, 1.25], (1, 2)))


@pytest.mark.parametrize("name", ALL)
def test_prepare_once_then_compare_group_views(name):
    """The scoring engine's pattern: prepare G*B images in one call, compare (G, B) views."""
    d = D.FEATURE_DISTANCES[name]
    g = torch.Generator().manual_seed(8)
    groups = torch.randn(3, 2, 4, 5, 5, generator=g, dtype=torch.float64)  # G=3 groups of B=2
    prepared = d.prepare(groups.flatten(0, 1))
    views = prepared.reshape(3, 2, *prepared.shape[1:])
    for a, b in [(0, 1), (0, 2)]:
        torch.testing.assert_close(d.compare(views[a], views[b], None), d(groups[a], groups[b]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_half_precision_is_promoted_in_prepare(name):
    d = D.FEATURE_DISTANCES[name]
    f0, f1 = _pair(9, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        p = d.prepare(f0.to(dtype))
        assert p.dtype == torch.float32
        torch.testing.assert_close(d(f0.to(dtype), f1.to(dtype)), d(f0.to(dtype).float(), f1.to(dtype).float()),
                                   rtol=2e-3, atol=1e-3)


def test_spatial_map_averages_to_spatial():
    f0, f1 = _pair(10)
    lin = torch.rand(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for w in (None, lin):
        m = D.spatial_map(f0, f1, w)
        assert m.shape == (3, 1, 4, 6)
        torch.testing.assert_close(m.mean((1, 2, 3)), D.spatial(f0, f1, w))


# --------------------------------------------------------------------------------------
# cosine (DreamSim): hand-computed values
# --------------------------------------------------------------------------------------


def test_cosine_of_embeddings_by_hand():
    # (1, 2, 2) . (2, 1, 2) = 8, both norms 3 -> cos 8/9 ; (1, 0, 0) vs (0, 3, 0) -> 0 ; (1,1,0) vs (-2,-2,0) -> -1
    e0 = _f([1, 2, 2, 1, 0, 0, 1, 1, 0], (3, 3, 1, 1))
    e1 = _f([2, 1, 2, 0, 3, 0, -2, -2, 0], (3, 3, 1, 1))
    torch.testing.assert_close(D.cosine(e0, e1), _f([1 / 9, 1.0, 2.0], (3,)), rtol=0, atol=1e-9)
    assert D.cosine(e0, 5 * e0).abs().max() < 1e-12  # scale-invariant


def test_cosine_flattens_feature_maps_per_image():
    # F0 flattened (c, h, w order) = (3, 4, 1, 0); F1 = (0, 5, 0, 2): dot 20, norms sqrt(26), sqrt(29)
    assert D.cosine(F0, F1).item() == pytest.approx(1 - 20 / math.sqrt(26 * 29), abs=1e-12)


def test_cosine_of_a_zero_vector_is_one():
    z = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    assert D.cosine(z, torch.ones(1, 3, 1, 1, dtype=torch.float64)).item() == pytest.approx(1.0)


def test_cosine_equals_torch_cosine_similarity():
    f0, f1 = _pair(11)
    expected = 1 - torch.nn.functional.cosine_similarity(f0.flatten(1), f1.flatten(1), dim=1)
    torch.testing.assert_close(D.cosine(f0, f1), expected)


# --------------------------------------------------------------------------------------
# zero feature vectors: finite gradients, LPIPS values unchanged (issue 9)
# --------------------------------------------------------------------------------------


def _with_zeros(dtype=torch.float64):
    f0, f1 = _pair(12, shape=(2, 4, 3, 3), dtype=dtype)
    f0[:, :, 0, :] = 0  # every channel zero along a row: zero vectors for spatial, cosine of a zero image below
    f1[:, :, 0, 0] = 0  # zero in both at one location
    f0[:, 2] = 0  # a channel zero everywhere: a zero row for style's spatial normalisation
    f0[1] = 0  # a whole image zero: mean_pool and cosine see a zero vector
    return f0.requires_grad_(True), f1.requires_grad_(True)


@pytest.mark.parametrize("name", ALL)
def test_gradients_are_finite_on_zero_features(name):
    d = D.FEATURE_DISTANCES[name]
    for lin in [None] + ([torch.rand(4, dtype=torch.float64)] if d.accepts_lin else []):
        f0, f1 = _with_zeros()
        value = d(f0, f1, lin)
        assert torch.isfinite(value).all()
        value.sum().backward()
        assert torch.isfinite(f0.grad).all() and torch.isfinite(f1.grad).all(), name


@pytest.mark.parametrize("name", ALL)
def test_float16_gradients_on_zero_features_stay_finite(name):
    f0, f1 = (f.detach().half().requires_grad_(True) for f in _with_zeros(torch.float32))
    D.FEATURE_DISTANCES[name](f0, f1).sum().backward()
    assert f0.grad.dtype == torch.float16
    assert torch.isfinite(f0.grad).all() and torch.isfinite(f1.grad).all(), name


def test_zero_features_keep_lpips_values():
    """The values are LPIPS's own f / (sqrt(sum f^2) + 1e-10), zeros included."""
    f0, f1 = (f.detach() for f in _with_zeros())

    def lpips_normalize(f):
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + 1e-10)

    expected = (lpips_normalize(f0) - lpips_normalize(f1)).pow(2).sum(1).mean((1, 2))
    torch.testing.assert_close(D.spatial(f0, f1), expected, rtol=1e-14, atol=0)
    t = f0.flatten(2)
    t = t / (torch.sqrt(torch.sum(t ** 2, dim=2, keepdim=True)) + 1e-10)
    torch.testing.assert_close(D.gram(f0), t @ t.transpose(1, 2), rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------
# bad input: clear errors, never a traceback from inside torch, never a silent NaN
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("b,match", [
    (torch.rand(1, 2, 2, 2), "batch sizes.*no broadcasting"),
    (torch.rand(2, 3, 2, 2), "channel counts"),
    (torch.rand(2, 2, 4, 2), "heights"),
    (torch.rand(2, 2), "2-D"),
    (torch.rand(2, 2, 2), "4-D"),
    (torch.ones(2, 2, 2, 2, dtype=torch.int64), "floating"),
    ([[1.0]], "torch.Tensor"),
])
@pytest.mark.parametrize("name", ["spatial", "style", "cosine"])
def test_feature_shape_errors(name, b, match):
    a = torch.rand(2, 2, 2, 2)
    with pytest.raises(LossnetError, match=match):
        D.feature_distance({"p": a}, {"p": b}, name)
    with pytest.raises(LossnetError, match=match):
        D.FEATURE_DISTANCES[name](a, b)


def test_two_d_features_error_says_how_to_reshape():
    with pytest.raises(LossnetError, match=r"\[:, :, None, None\]"):
        D.feature_distance({"p": torch.rand(2, 4)}, {"p": torch.rand(2, 4)})


@pytest.mark.parametrize("a,b", [({}, {}), ({}, {"p": torch.rand(1, 2, 2, 2)})])
def test_empty_feature_dicts_are_an_error(a, b):
    with pytest.raises(LossnetError, match="empty"):
        D.feature_distance(a, b)


def test_feature_dicts_must_be_mappings():
    with pytest.raises(LossnetError, match="dict"):
        D.feature_distance([torch.rand(1, 2, 2, 2)], [torch.rand(1, 2, 2, 2)])


@pytest.mark.parametrize("weights", [[-1.0, 1.0], [float("nan"), 1.0], [float("inf"), 1.0], {"q": -0.5}, ["x", 1]])
def test_bad_layer_weights_are_refused(weights):
    a = {"p": torch.rand(1, 2, 2, 2), "q": torch.rand(1, 2, 2, 2)}
    with pytest.raises(LossnetError, match="layer weight"):
        D.feature_distance(a, a, layer_weights=weights)


@pytest.mark.parametrize("lin,match", [
    (torch.tensor([1.0, -0.5]), ">= 0"),
    (torch.tensor([1.0, float("nan")]), ">= 0"),
    (torch.tensor([1.0, 2.0, 3.0]), "3 values.*2"),
])
def test_bad_lin_weights_are_refused(lin, match):
    a, b = {"p": torch.rand(1, 2, 2, 2)}, {"p": torch.rand(1, 2, 2, 2)}
    with pytest.raises(LossnetError, match=match):
        D.feature_distance(a, b, lin={"p": lin})
    with pytest.raises(LossnetError, match=match):
        D.spatial(a["p"], b["p"], lin)


@pytest.mark.parametrize("name", ["style", "cosine"])
def test_lin_on_a_distance_without_lin(name):
    a = {"p": torch.rand(1, 2, 2, 2)}
    with pytest.raises(LossnetError, match="no per-channel linear weights"):
        D.feature_distance(a, a, name, lin={"p": torch.ones(2)})


def test_per_layer_and_map_size_together_is_an_error():
    a = {"p": torch.rand(1, 2, 2, 2)}
    with pytest.raises(LossnetError, match="not both"):
        D.feature_distance(a, a, per_layer=True, map_size=(4, 4))


def test_non_finite_features_name_the_point():
    a = {"p": torch.rand(2, 2, 2, 2), "q": torch.rand(2, 2, 2, 2)}
    b = {"p": torch.rand(2, 2, 2, 2), "q": torch.rand(2, 2, 2, 2)}
    b["q"][1, 0, 0, 0] = float("nan")
    with pytest.raises(LossnetError, match=r"point 'q'.*samples \[1\].*weights"):
        D.feature_distance(a, b, "mse")
    with pytest.raises(LossnetError, match="point 'q'"):
        D.feature_distance(a, b, "spatial", per_layer=True)


def test_overflowing_features_are_reported():
    a = {"p": torch.full((1, 2, 2, 2), 1e30)}
    b = {"p": torch.full((1, 2, 2, 2), -1e30)}
    with pytest.raises(LossnetError, match="too large for torch.float32"):
        D.feature_distance(a, b, "mse")


def test_feature_distance_accepts_cosine_and_records():
    f0, f1 = _pair(13)
    a, b = {"p": f0, "q": f1}, {"p": f1, "q": f0}
    torch.testing.assert_close(D.feature_distance(a, b, "cosine"), 2 * D.cosine(f0, f1))
    torch.testing.assert_close(D.feature_distance(a, b, D.FEATURE_DISTANCES["l1"]), D.feature_distance(a, b, "l1"))


# --------------------------------------------------------------------------------------
# registering a distance
# --------------------------------------------------------------------------------------


@pytest.fixture
def scaled_l1():
    record = D.FeatureDistance("scaled_l1", D.L1.prepare, lambda a, b, lin: 3 * D.L1.compare(a, b, lin),
                               None, None, accepts_lin=False)
    yield record
    D.FEATURE_DISTANCES.pop("scaled_l1", None)


def test_register_distance_is_usable_by_name(scaled_l1):
    D.register_distance(scaled_l1)
    assert D.canonical_distance("scaled_l1") == "scaled_l1"
    f0, f1 = _pair(14)
    torch.testing.assert_close(D.feature_distance({"p": f0}, {"p": f1}, "scaled_l1"), 3 * D.l1(f0, f1))


def test_register_distance_refuses_duplicates(scaled_l1):
    D.register_distance(scaled_l1)
    with pytest.raises(LossnetError, match="already registered.*replace=True"):
        D.register_distance(scaled_l1)
    D.register_distance(scaled_l1, replace=True)
    with pytest.raises(LossnetError, match="already registered"):
        D.register_distance(D.FeatureDistance("spatial", D.MSE.prepare, D.MSE.compare, None, None, False))
    for name in ("ssim", "lpips"):
        with pytest.raises(LossnetError, match="pixel distance or an alias"):
            D.register_distance(D.FeatureDistance(name, D.MSE.prepare, D.MSE.compare, None, None, False), replace=True)
    with pytest.raises(LossnetError, match="FeatureDistance"):
        D.register_distance(D.l1)
    assert D.FEATURE_DISTANCES["spatial"] is D.SPATIAL


# --------------------------------------------------------------------------------------
# pixel distances: any float dtype, mixed dtypes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [D.pixel_l2, D.pixel_ssim])
def test_pixel_distances_take_any_float_dtype(fn, photos):
    x0, x1 = photos[:2], photos[2:]
    reference = fn(x0.double(), x1.double())
    for d0, d1 in [(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float64),
                   (torch.float16, torch.float32)]:
        got = fn(x0.to(d0), x1.to(d1))
        assert got.dtype in (torch.float32, torch.float64)
        torch.testing.assert_close(got.double(), reference, rtol=2e-2, atol=2e-3)


def test_pixel_distance_shape_errors():
    with pytest.raises(LossnetError, match="batch sizes"):
        D.pixel_l2(torch.rand(2, 3, 16, 16), torch.rand(1, 3, 16, 16))
