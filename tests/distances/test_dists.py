"""The DISTS distance over feature dicts: hand-computed values, the record contract, errors."""
import pytest
import torch

import lossnet
from lossnet.distances import functional as D
from lossnet.distances.dists import (
    DISTS,
    dists,
    dists_distance,
    dists_lin,
    dists_terms,
    structure_texture,
)
from lossnet.errors import LossnetError, WeightsError

C = 1e-6
# One sample, 3 channels, 1x2 locations (float64):
#   channel 0: f0 = (1, 3), f1 = (3, 1): means 2, 2; variances 1, 1; covariance -1
#   channel 1: f0 = (0, 2), f1 = (1, 1): means 1, 1; variances 1, 0; covariance 0
#   channel 2: f0 = (2, 2), f1 = (4, 4): means 2, 4; variances 0, 0; covariance 0
F0 = torch.tensor([[1.0, 3.0], [0.0, 2.0], [2.0, 2.0]], dtype=torch.float64).reshape(1, 3, 1, 2)
F1 = torch.tensor([[3.0, 1.0], [1.0, 1.0], [4.0, 4.0]], dtype=torch.float64).reshape(1, 3, 1, 2)
S1 = [1.0, 1.0, (16 + C) / (20 + C)]
S2 = [(-2 + C) / (2 + C), C / (1 + C), 1.0]


def test_structure_and_texture_by_hand():
    s1, s2 = structure_texture(F0, F1)
    assert s1.flatten().tolist() == pytest.approx(S1, abs=1e-12)
    assert s2.flatten().tolist() == pytest.approx(S2, abs=1e-12)


def test_dists_with_alpha_beta_by_hand():
    alpha, beta = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])  # total 21
    expected = 1 - (sum(a * s for a, s in zip([1, 2, 3], S1)) + sum(b * s for b, s in zip([4, 5, 6], S2))) / 21
    got = dists_distance({"p": F0}, {"p": F1}, alpha, beta)
    assert got.item() == pytest.approx(expected, abs=1e-7)  # the weights are float32, as in DISTS
    assert expected == pytest.approx(0.6476186, abs=1e-6)


def test_alpha_beta_are_normalised_over_all_points():
    f0 = {"a": F0, "b": F0[:, :2].flip(-1)}
    f1 = {"a": F1, "b": F1[:, :2]}
    alpha, beta = torch.rand(5), torch.rand(5)
    d = dists_distance(f0, f1, alpha, beta)
    assert torch.allclose(d, dists_distance(f0, f1, 10 * alpha, 10 * beta))
    # the definition, term by term: 1 - sum over both points of (alpha S1 + beta S2) / total
    total = alpha.sum() + beta.sum()
    sim = 0.0
    for (p, c), a, b in zip({"a": 3, "b": 2}.items(), alpha.split([3, 2]), beta.split([3, 2])):
        s1, s2 = structure_texture(f0[p], f1[p])
        sim = sim + (a.double() * s1).sum(1) + (b.double() * s2).sum(1)
    assert d.item() == pytest.approx(1 - (sim / total.double()).item(), abs=1e-6)


def test_no_weights_is_equal_weight_over_every_channel():
    g = torch.Generator().manual_seed(0)
    f0 = {"a": torch.rand(2, 3, 6, 6, generator=g), "b": torch.rand(2, 5, 3, 3, generator=g)}
    f1 = {p: (f + 0.3 * torch.rand(f.shape, generator=g)) for p, f in f0.items()}
    s = [structure_texture(f0[p], f1[p]) for p in f0]
    mean_similarity = torch.cat([(s1 + s2) / 2 for s1, s2 in s], dim=1).mean(1)
    torch.testing.assert_close(dists_distance(f0, f1), 1 - mean_similarity)
    # one point without lin: the channel mean of 1 - (S1 + S2) / 2
    s1, s2 = s[0]
    torch.testing.assert_close(dists(f0["a"], f1["a"]), (1 - (s1 + s2) / 2).mean(1))


def test_registered_record_keeps_the_terms_contract():
    assert D.FEATURE_DISTANCES["dists"] is DISTS and DISTS.lin_per_channel == 2
    g = torch.Generator().manual_seed(1)
    f0, f1 = torch.rand(3, 4, 5, 5, generator=g), torch.rand(3, 4, 5, 5, generator=g)
    lin = torch.rand(8, generator=g)
    p0, p1 = DISTS.prepare(f0), DISTS.prepare(f1)
    terms = dists_terms(p0, p1)
    assert terms.shape == (3, 8)
    torch.testing.assert_close(DISTS.compare(p0, p1, lin), (terms * lin).sum(1))
    torch.testing.assert_close(DISTS.compare(p0, p1, None), terms.sum(1))
    # feature_distance sums points; identical features are at distance 0
    fd = D.feature_distance({"a": f0, "b": f1}, {"a": f1, "b": f1}, "dists")
    torch.testing.assert_close(fd, dists(f0, f1))


def test_dists_lin_reproduces_dists_through_feature_distance():
    g = torch.Generator().manual_seed(2)
    f0 = {"a": torch.rand(2, 3, 4, 4, generator=g), "b": torch.rand(2, 2, 2, 2, generator=g)}
    f1 = {p: f.roll(1, dims=-1) for p, f in f0.items()}
    alpha, beta = torch.rand(1, 5, 1, 1, generator=g), torch.rand(1, 5, 1, 1, generator=g)
    lin = dists_lin(alpha, beta, {"a": 3, "b": 2})
    assert [w.numel() for w in lin.values()] == [6, 4]
    torch.testing.assert_close(D.feature_distance(f0, f1, "dists", lin=lin), dists_distance(f0, f1, alpha, beta))


def test_half_precision_is_computed_in_float32():
    f0, f1 = torch.rand(2, 4, 4, 4), torch.rand(2, 4, 4, 4)
    half = dists(f0.half(), f1.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, dists(f0.half().float(), f1.half().float()))


def test_gradients_are_finite_on_constant_features():
    f0 = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    f1 = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64)
    d = dists(f0, f1)
    assert torch.allclose(d, torch.zeros(2, dtype=torch.float64), atol=1e-12)
    d.sum().backward()
    assert torch.isfinite(f0.grad).all()


def test_dists_on_any_backbone():
    metric = lossnet.PerceptualLoss("squeezenet1_1", layers="lpips", distance="dists", weights="random",
                                    reduction="none")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 48, 48, generator=g)
    y = (x + 0.2 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    d = metric(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(metric(x, x), torch.zeros(2), atol=1e-5)


def test_bad_weights_and_features_get_clear_errors():
    with pytest.raises(WeightsError, match="alpha has 4 values .* 3 channels"):
        dists_lin(torch.ones(4), torch.ones(3), {"p": 3})
    with pytest.raises(WeightsError, match="negative"):
        dists_lin(-torch.ones(3), torch.ones(3), {"p": 3})
    with pytest.raises(WeightsError, match="both alpha and beta"):
        dists_lin(torch.ones(3), None, {"p": 3})
    with pytest.raises(WeightsError, match="all zero"):
        dists_lin(torch.zeros(3), torch.zeros(3), {"p": 3})
    with pytest.raises(LossnetError, match="expects 6"):
        D.feature_distance({"p": F0}, {"p": F1}, "dists", lin={"p": torch.ones(3)})
    with pytest.raises(LossnetError, match="different"):
        dists(F0, F1[:, :2])
    with pytest.raises(LossnetError, match="feature dicts"):
        dists_distance(F0, F1)
