import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossnet
from lossnet.errors import InputError, LossnetError, UnknownNameError


@pytest.fixture(scope="module")
def vgg_loss():
    return lossnet.PerceptualLoss("vgg16", layers=["features.3", "features.8"], distance="spatial",
                                  weights="random", reduction="none")


def test_reductions(vgg_loss, photo_pairs):
    x0, x1 = photo_pairs
    per_sample = vgg_loss(x0, x1)
    assert per_sample.shape == (4,) and (per_sample > 0).all()
    mean = lossnet.PerceptualLoss(network=vgg_loss.net, reduction="mean")(x0, x1)
    total = lossnet.PerceptualLoss(network=vgg_loss.net, reduction="sum")(x0, x1)
    torch.testing.assert_close(mean, per_sample.mean())
    torch.testing.assert_close(total, per_sample.sum())
    torch.testing.assert_close(vgg_loss(x0, x0), torch.zeros(4))


def test_distance_equals_functional_on_features(vgg_loss, photo_pairs):
    x0, x1 = photo_pairs
    for name in ("spatial", "mean_pool", "style", "mse", "l1"):
        loss = lossnet.PerceptualLoss(network=vgg_loss.net, distance=name, reduction="none")
        f0, f1 = vgg_loss.net(x0), vgg_loss.net(x1)
        torch.testing.assert_close(loss(x0, x1), lossnet.feature_distance(f0, f1, name))


def test_per_layer_distances(vgg_loss, photo_pairs):
    per = vgg_loss.distance_per_layer(*photo_pairs)
    assert list(per) == ["features.3", "features.8"]
    torch.testing.assert_close(per["features.3"] + per["features.8"], vgg_loss(*photo_pairs))


def test_training_loss_backward_only_through_input(vgg_loss, photo_pairs):
    x0, x1 = photo_pairs
    generator = nn.Conv2d(3, 3, 3, padding=1)
    out = torch.sigmoid(generator(x0))
    loss = lossnet.PerceptualLoss(network=vgg_loss.net, distance="mse")(out, x1)
    loss.backward()
    assert generator.weight.grad is not None and generator.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg_loss.net.parameters())


def test_gradient_matches_joint_computation(vgg_loss, photo_pairs):
    """Separate passes for input and target give the same gradient as a naive computation."""
    x0, x1 = photo_pairs
    x = x0.clone().requires_grad_(True)
    lossnet.PerceptualLoss(network=vgg_loss.net)(x, x1).backward()
    y = x0.clone().requires_grad_(True)
    f0, f1 = vgg_loss.net(y), vgg_loss.net(x1)
    lossnet.feature_distance(f0, f1, "spatial").mean().backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_pixel_baselines(photo_pairs):
    x0, x1 = photo_pairs
    l2 = lossnet.PerceptualLoss(distance="l2", reduction="none")(x0, x1)
    torch.testing.assert_close(l2, ((x0 - x1) ** 2).mean((1, 2, 3)))
    ssim = lossnet.PerceptualLoss(distance="ssim", reduction="none")
    assert (ssim(x0, x1) > 0).all() and torch.allclose(ssim(x0, x0), torch.zeros(4), atol=1e-6)
    with pytest.raises(LossnetError, match="uses no network"):
        lossnet.PerceptualLoss("vgg16", distance="l2")


def test_spatial_map(vgg_loss, photo_pairs):
    m = lossnet.PerceptualLoss(network=vgg_loss.net, spatial=True, reduction="none")(*photo_pairs)
    assert m.shape == (4, 1, 64, 64) and (m >= 0).all()


def test_layer_weights(vgg_loss, photo_pairs):
    per = vgg_loss.distance_per_layer(*photo_pairs)
    weighted = lossnet.PerceptualLoss(network=vgg_loss.net, reduction="none", layer_weights=[0.25, 4.0])
    torch.testing.assert_close(weighted(*photo_pairs), 0.25 * per["features.3"] + 4.0 * per["features.8"])


def test_bfloat16_autocast_on_cpu(photo_pairs):
    x0, x1 = (x[:2, :, :32, :32] for x in photo_pairs)
    loss = lossnet.PerceptualLoss("resnet18", ["relu", "layer1"], weights="random", reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(x0, x1)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    torch.testing.assert_close(low, loss(x0, x1), rtol=0.1, atol=1e-3)


def test_deterministic_on_cpu(photo_pairs):
    a = lossnet.PerceptualLoss("resnet18", "pihlgren", weights="random", seed=5, reduction="none")(*photo_pairs)
    b = lossnet.PerceptualLoss("resnet18", "pihlgren", weights="random", seed=5, reduction="none")(*photo_pairs)
    assert torch.equal(a, b)


def test_moves_with_to(vgg_loss):
    loss = lossnet.lpips("alex", weights="random").to(torch.float64)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert loss(x, x.flip(-1)).dtype == torch.float64


@pytest.mark.parametrize("bad,match", [
    (torch.rand(3, 64, 64), r"unsqueeze\(0\)"),
    (torch.rand(2, 64, 64, 3), "permute"),
    (torch.rand(2, 1, 64, 64), "expand_grayscale=True"),
    (torch.rand(2, 4, 64, 64), "alpha"),
    (torch.rand(2, 3, 64, 64) * 255, "divide by 255"),
    (torch.rand(2, 3, 64, 64) * 2 - 1, "input_range='-1,1'"),
    (torch.full((2, 3, 64, 64), float("nan")), "NaN"),
    (torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), r"\.float\(\) / 255"),
    ([[0.0]], "must be a torch.Tensor"),
])
def test_bad_inputs_get_clear_errors(vgg_loss, bad, match):
    good = torch.rand(2, 3, 64, 64)
    with pytest.raises(InputError, match=match):
        vgg_loss(bad, good if getattr(bad, "shape", None) == good.shape else bad)


def test_mismatched_sizes(vgg_loss):
    with pytest.raises(InputError, match="different shapes"):
        vgg_loss(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32))


def test_grayscale_expanded_on_request(vgg_loss):
    gray = torch.rand(2, 1, 64, 64)
    loss = lossnet.PerceptualLoss(network=vgg_loss.net, expand_grayscale=True, reduction="none")
    torch.testing.assert_close(loss(gray, gray.flip(-1)), vgg_loss(gray.expand(-1, 3, -1, -1), gray.flip(-1).expand(-1, 3, -1, -1)))


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="spatial"):
        lossnet.PerceptualLoss(distance="spacial")
    with pytest.raises(UnknownNameError, match="mean"):
        lossnet.PerceptualLoss(distance="l2", reduction="avg")
    with pytest.raises(UnknownNameError, match="alex"):
        lossnet.lpips("alexnet")


def test_lin_lpips_only_for_lpips_trunks():
    from lossnet.errors import WeightsError

    with pytest.raises(WeightsError, match="calibrate"):
        lossnet.PerceptualLoss("resnet18", "pihlgren", weights="random", lin="lpips")


# --------------------------------------------------------------------------------------
# issue 9: zero features, dtypes, bad arguments, non-finite results
# --------------------------------------------------------------------------------------


def _black_band(photos):
    x = photos[:2].clone()
    x[:, :, 20:40, :] = 0.0  # a black band: zero conv outputs where the bias is zero
    return x


def test_zero_features_give_finite_gradients_vgg16_features0(photos):
    """The issue's case: vgg16 features.0, input_norm='none', a black band (3072 NaN gradient entries before)."""
    loss = lossnet.PerceptualLoss("vgg16", layers=["features.0"], weights="random", input_norm="none")
    x = _black_band(photos).requires_grad_(True)
    feats = loss.net(x.detach())["features.0"]
    assert (feats.flatten(2).norm(dim=1) == 0).sum() > 0  # the band really gives zero feature vectors
    value = loss(x, photos[2:])
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("distance", ["spatial", "mean_pool", "style", "mse", "l1", "cosine"])
def test_zero_features_give_finite_gradients_for_every_distance(distance, photos):
    loss = lossnet.PerceptualLoss("squeezenet1_1", layers=["features.0", "features.2"], distance=distance,
                                  weights="random", input_norm="none")
    x = _black_band(photos).requires_grad_(True)
    target = photos[2:].clone()
    target[:, :, 30:50, :] = 0.0
    loss(x, target).backward()
    assert torch.isfinite(x.grad).all(), distance


@pytest.fixture(scope="module")
def squeeze_loss():
    return lossnet.PerceptualLoss("squeezenet1_1", layers=["features.2", "features.5"], weights="random",
                                  reduction="none")


@pytest.mark.parametrize("distance", ["spatial", "mse", "l2", "ssim"])
def test_any_float_dtype_in(squeeze_loss, photo_pairs, distance):
    loss = (lossnet.PerceptualLoss(distance=distance, reduction="none") if distance in ("l2", "ssim") else
            lossnet.PerceptualLoss(network=squeeze_loss.net, distance=distance, reduction="none"))
    x0, x1 = photo_pairs
    reference = loss(x0, x1)
    for d0, d1, tol in [(torch.float64, torch.float64, 1e-5), (torch.float16, torch.float16, 3e-2),
                        (torch.bfloat16, torch.bfloat16, 6e-2), (torch.float64, torch.float32, 1e-5)]:
        got = loss(x0.to(d0), x1.to(d1))
        assert got.dtype in (torch.float32, torch.float64) and torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), reference, rtol=tol, atol=tol * 1e-2)


def test_float64_training_gradients(squeeze_loss, photo_pairs):
    x = photo_pairs[0].double().requires_grad_(True)
    lossnet.PerceptualLoss(network=squeeze_loss.net)(x, photo_pairs[1].double()).backward()
    assert x.grad.dtype == torch.float64 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("weights", [[-1.0, 1.0], [float("nan"), 1.0], {"nope": 1.0}])
def test_bad_layer_weights_are_refused_at_construction(squeeze_loss, weights):
    with pytest.raises(LossnetError, match="layer"):
        lossnet.PerceptualLoss(network=squeeze_loss.net, layer_weights=weights)


def test_network_with_arch_or_layers_is_an_error(squeeze_loss):
    with pytest.raises(LossnetError, match="already fixes arch, layers"):
        lossnet.PerceptualLoss("vgg16", layers=["features.3"], network=squeeze_loss.net)
    with pytest.raises(LossnetError, match="pass it as network="):
        lossnet.PerceptualLoss(squeeze_loss.net)


@pytest.mark.parametrize("kwargs,match", [
    ({"distance": "style", "lin": {"features.2": torch.ones(128), "features.5": torch.ones(256)}},
     "no per-channel linear weights"),
    ({"distance": "style", "spatial": True}, "per-location map"),
    ({"distance": "cosine", "spatial": True}, "per-location map"),
])
def test_distance_specific_arguments(squeeze_loss, kwargs, match):
    with pytest.raises(LossnetError, match=match):
        lossnet.PerceptualLoss(network=squeeze_loss.net, **kwargs)


def test_pixel_loss_refuses_network_arguments():
    for kwargs in ({"weights": "random"}, {"layer_weights": [1.0]}, {"layers": "lpips"}, {"input_norm": "none"}):
        with pytest.raises(LossnetError, match="uses no network"):
            lossnet.PerceptualLoss(distance="ssim", **kwargs)


def test_cosine_distance_as_a_loss(squeeze_loss, photo_pairs):
    loss = lossnet.PerceptualLoss(network=squeeze_loss.net, distance="cosine", reduction="none")
    x0, x1 = photo_pairs
    f0, f1 = squeeze_loss.net(x0), squeeze_loss.net(x1)
    by_hand = sum(1 - torch.nn.functional.cosine_similarity(f0[p].flatten(1), f1[p].flatten(1)) for p in f0)
    torch.testing.assert_close(loss(x0, x1), by_hand)


def _own_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))


def test_own_module_as_arch(photo_pairs):
    module = _own_module()
    loss = lossnet.PerceptualLoss(module, layers=["1", "2"], distance="mse", input_norm="none", reduction="none")
    x0, x1 = photo_pairs
    with torch.no_grad():
        h0, h1 = module[1](module[0](x0)), module[1](module[0](x1))
        expected = ((h0 - h1) ** 2).mean((1, 2, 3)) + ((module[2](h0) - module[2](h1)) ** 2).mean((1, 2, 3))
        torch.testing.assert_close(loss(x0, x1), expected)
    via_factory = lossnet.loss.create_metric(module, layers=["1", "2"], distance="mse", input_norm="none",
                                             reduction="none")
    with torch.no_grad():
        torch.testing.assert_close(via_factory(x0, x1), expected)


def test_non_finite_distance_names_the_point(photo_pairs):
    module = _own_module()
    with torch.no_grad():
        module[2].weight.mul_(1e36)  # finite weights whose output overflows float32
    loss = lossnet.PerceptualLoss(module, layers=["1", "2"], distance="mse", input_norm="none")
    with pytest.raises(LossnetError, match="point '2'"):
        loss(*photo_pairs)


# --- the resize policy ------------------------------------------------------------------------


def test_resize_reaches_the_network(photo_pairs):
    x0, x1 = photo_pairs  # 64x64
    resized = lossnet.PerceptualLoss("vgg16", ["features.3"], "mse", weights="random", reduction="none", resize=32)
    plain = lossnet.PerceptualLoss("vgg16", ["features.3"], "mse", weights="random", reduction="none")
    assert resized.net.resize_policy == resized.resize_policy == "resize to 32x32 (bilinear, antialias)"
    assert plain.resize_policy == "none"

    def small(t):
        return F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)

    with torch.no_grad():
        got = resized(x0, x1)
        torch.testing.assert_close(got, plain(small(x0), small(x1)), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got, plain(x0, x1))  # not the distance at 64x64
    bicubic = lossnet.PerceptualLoss(network=lossnet.LossNetwork("vgg16", ["features.3"], weights="random",
                                                                 resize=(32, "bicubic")), distance="mse")
    assert bicubic.resize_policy == "resize to 32x32 (bicubic, antialias)"


def test_resize_with_a_ready_network_must_be_its_own(squeeze_loss):
    net = squeeze_loss.net  # takes any size: "auto" and "none" both mean "none"
    for same in ("none", "auto"):
        assert lossnet.PerceptualLoss(network=net, resize=same).resize_policy == "none"
    with pytest.raises(LossnetError, match=r"resize policy is 'none', but resize=64 asks for 'resize to 64x64 "
                                           r"\(bilinear, antialias\)': drop resize=, or build the LossNetwork"):
        lossnet.PerceptualLoss(network=net, resize=64)
    with pytest.raises(LossnetError, match="resize must be 'auto', 'none'"):
        lossnet.PerceptualLoss("vgg16", ["features.3"], weights="random", resize="nearest")


def test_pixel_distances_never_resize():
    for distance in ("ssim", "l2"):
        with pytest.raises(LossnetError, match="uses no network: drop resize.*never resize"):
            lossnet.PerceptualLoss(distance=distance, resize=32)
    assert lossnet.PerceptualLoss(distance="l2").resize_policy == "none"
