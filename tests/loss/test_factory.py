"""The one metric factory: presets as data, create_metric's rules, describe_metric."""
import pytest
import torch

import lossnet
from lossnet.errors import LossnetError, UnknownNameError
from lossnet.loss import METRIC_PRESETS, PerceptualLoss, create_metric, describe_metric
from lossnet.loss.presets import lpips_preset_name


@pytest.fixture(scope="module")
def alex():
    """A random AlexNet LPIPS metric, built once."""
    return create_metric("lpips-alex", weights="random", reduction="none")


# The timm foundation-model presets (ViT-B at full size) are built in tests/loss/test_foundation_presets.py.
@pytest.mark.parametrize("name", sorted(n for n, p in METRIC_PRESETS.items() if p.extra != "timm"))
def test_every_preset_is_constructible_offline(name):
    preset = METRIC_PRESETS[name]
    metric = create_metric(name, reduction="none") if preset.pixel else create_metric(name, weights="random",
                                                                                      reduction="none")
    assert isinstance(metric, PerceptualLoss) and metric.preset == name and metric.distance == preset.distance
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = metric(x, x.flip(-1))
    assert d.shape == (2,) and torch.isfinite(d).all() and (d > 0).all()
    if preset.lpips_net is not None:
        assert metric.net.arch == preset.arch
        assert metric.points == lossnet.layer_sets(preset.arch)["lpips"]
        assert (metric.lin is not None) == (preset.lin == "lpips")
        assert metric.net.input_norm == ("lpips" if preset.lpips_version == "0.1" else "lpips_v0.0")


def test_lpips_presets_use_the_versions_lin_weights():
    from lossnet.distances.lin import lpips_lin_weights

    for version in ("0.1", "0.0"):
        metric = create_metric(lpips_preset_name("alex", version), weights="random")
        for got, expected in zip(metric.lin.values(), lpips_lin_weights("alex", version)):
            torch.testing.assert_close(got, expected)


def test_lossnet_lpips_is_the_factory(photo_pairs):
    x0, x1 = photo_pairs
    via_lpips = lossnet.lpips("squeeze", weights="random", reduction="none")
    via_factory = create_metric("lpips-squeeze", weights="random", reduction="none")
    via_arch = create_metric("squeeze", lin="lpips", weights="random", reduction="none")
    via_arch_layers = create_metric("squeezenet1_1", layers="lpips", distance="spatial", lin="lpips",
                                    weights="random", reduction="none")
    assert {via_lpips.preset, via_arch.preset, via_arch_layers.preset} == {"lpips-squeeze"}
    with torch.no_grad():
        expected = via_factory(x0, x1)
        for m in (via_lpips, via_arch, via_arch_layers):
            torch.testing.assert_close(m(x0, x1), expected, rtol=0, atol=0)
    assert lossnet.lpips("vgg", version="0.0", lin=None, weights="random").preset == "lpips-vgg-v0.0-nolin"


# --------------------------------------------------------------------------------------
# a flag is never silently ignored
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": ["features.3"]}, r"preset 'lpips-vgg' fixes layers='lpips', but layers=\['features.3'\]"),
    ({"distance": "mse"}, r"preset 'lpips-vgg' fixes distance='spatial', but distance='mse' was given\. Drop distance="),
    ({"input_norm": "imagenet"}, "fixes input_norm='lpips'"),
    ({"lin": "some_file.pt"}, r"fixes lin='lpips'.*create_metric\('lpips-vgg-nolin', lin=\.\.\.\)"),
])
def test_a_preset_refuses_a_different_fixed_field(kwargs, match):
    with pytest.raises(LossnetError, match=match):
        create_metric("lpips-vgg", weights="random", **kwargs)


def test_every_conflicting_field_is_named_at_once():
    # the CLI's `--net vgg --layers features.3 --distance mse --lin lpips` reaches this call
    with pytest.raises(LossnetError, match=r"fixes distance='spatial', layers='lpips', but distance='mse', "
                                           r"layers='features.3' was given\. Drop distance=, layers="):
        create_metric("lpips-vgg", layers="features.3", distance="mse", weights="random")


def test_a_preset_accepts_its_own_values_spelled_another_way(alex):
    same = create_metric("lpips-alex", weights="random", reduction="none", distance="lpips", lin="lpips",
                         layers=["features.1", "features.4", "features.7", "features.9", "features.11"],
                         input_norm="lpips")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(x, x.flip(-1)), alex(x, x.flip(-1)))


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": ["features.3"]}, r"LPIPS layers of vgg16.*drop layers.*lpips-vgg"),
    ({"layers": "lpips", "distance": "mse"}, "spatial.*distance='mse'"),
    ({"input_norm": "imagenet"}, "input scaling"),
])
def test_lin_lpips_only_at_the_lpips_layers_with_spatial(kwargs, match):
    with pytest.raises(LossnetError, match=match):
        create_metric("vgg", lin="lpips", weights="random", **kwargs)


def test_lin_lpips_on_another_network_is_an_error():
    with pytest.raises(LossnetError, match="exist only for alexnet, vgg16, squeezenet1_1.*calibrate"):
        create_metric("resnet18", lin="lpips", weights="random")


def test_lin_lpips_v0_0_through_the_input_norm():
    assert create_metric("alex", lin="lpips", input_norm="lpips_v0.0", weights="random").preset == "lpips-alex-v0.0"


def test_no_name_needs_a_pixel_distance():
    for distance in (None, "mse", "spatial"):
        with pytest.raises(LossnetError, match="name a network or a preset"):
            create_metric(None, distance=distance)
    assert create_metric(None, distance="ssim").pixel
    assert create_metric(distance="l2").distance == "l2"


@pytest.mark.parametrize("kwargs", [{"weights": "random"}, {"lin": "x.pt"}, {"layers": "lpips"},
                                    {"input_norm": "none"}, {"layer_weights": [1.0]}])
def test_pixel_metrics_take_no_network_arguments(kwargs):
    with pytest.raises(LossnetError, match="uses no network"):
        create_metric(None, distance="l2", **kwargs)
    with pytest.raises(LossnetError, match="pixel baseline and uses no network"):
        create_metric("ssim", **kwargs)


def test_a_pixel_distance_with_a_network_is_an_error():
    with pytest.raises(LossnetError, match=r"pixel baseline.*create_metric\('l2'\)"):
        create_metric("vgg16", distance="l2", weights="random")
    with pytest.raises(LossnetError, match="fixes distance='ssim'"):
        create_metric("ssim", distance="l2")


def test_unknown_names_list_presets_and_say_any_architecture_works():
    with pytest.raises(UnknownNameError) as err:
        create_metric("lpips-alexx")
    msg = str(err.value)
    assert "Did you mean" in msg and "'lpips-alex'" in msg and "any architecture" in msg and "timm:" in msg


def test_unknown_arguments_are_an_error():
    with pytest.raises(LossnetError, match=r"unknown arguments \['layer'\]"):
        create_metric("lpips-alex", layer="features.1")
    with pytest.raises(LossnetError, match="name must be"):
        create_metric(3)


def test_a_metric_is_returned_as_is_only_without_other_arguments(alex):
    assert create_metric(alex) is alex
    with pytest.raises(LossnetError, match="already a PerceptualLoss"):
        create_metric(alex, distance="mse")


# --------------------------------------------------------------------------------------
# architectures, short names, ready networks
# --------------------------------------------------------------------------------------


def test_architecture_names_and_lpips_short_names(photo_pairs):
    m = create_metric("alex", distance="mse", weights="random", reduction="none")
    assert m.net.arch == "alexnet" and m.points == lossnet.layer_sets("alexnet")["lpips"] and m.lin is None
    assert m.preset is None and m.net.input_norm == "auto"
    other = create_metric("alexnet", layers=["features.4"], distance="l1", weights="random", input_norm="none",
                          reduction="none", layer_weights=[2.0])
    assert other.points == ["features.4"] and other.net.input_norm == "none"
    with torch.no_grad():
        ref = PerceptualLoss("alexnet", ["features.4"], "l1", weights="random", input_norm="none",
                             reduction="none")(*photo_pairs)
        torch.testing.assert_close(other(*photo_pairs), 2.0 * ref)


def test_default_distance_of_an_architecture_is_spatial():
    assert create_metric("resnet18", layers=["layer1"], weights="random").distance == "spatial"


def test_a_ready_loss_network(alex, photo_pairs):
    m = create_metric(alex.net, distance="mse", reduction="none")
    with torch.no_grad():
        torch.testing.assert_close(m(*photo_pairs), PerceptualLoss(network=alex.net, distance="mse",
                                                                   reduction="none")(*photo_pairs))
    lpips_again = create_metric(alex.net, lin="lpips", reduction="none")
    torch.testing.assert_close(torch.cat(list(lpips_again.lin.values())), torch.cat(list(alex.lin.values())))
    with pytest.raises(LossnetError, match="already fixes layers, weights"):
        create_metric(alex.net, layers=["features.1"], weights="random")


def test_seeded_random_weights_are_deterministic(photo_pairs):
    a = create_metric("lpips-squeeze-nolin", weights="random", seed=3, reduction="none")
    b = create_metric("lpips-squeeze-nolin", weights="random", seed=3, reduction="none")
    c = create_metric("lpips-squeeze-nolin", weights="random", seed=4, reduction="none")
    with torch.no_grad():
        assert torch.equal(a(*photo_pairs), b(*photo_pairs))
        assert not torch.equal(a(*photo_pairs), c(*photo_pairs))


# --------------------------------------------------------------------------------------
# describe_metric
# --------------------------------------------------------------------------------------


def test_describe_metric(alex):
    d = describe_metric(alex)
    preprocessing = d.pop("preprocessing")
    assert d == {"preset": "lpips-alex", "arch": "alexnet",
                 "points": ["features.1", "features.4", "features.7", "features.9", "features.11"],
                 "distance": "spatial", "weights": "random", "lin": True, "lin_source": "lpips v0.1 (alex)",
                 "layer_weights": None, "input_norm": "lpips", "resize": "none"}
    # LPIPS's ScalingLayer on [-1, 1] inputs: shift (-.030, -.088, -.188), scale (.458, .448, .450); on [0, 1]
    # inputs that is mean (1 + shift) / 2 and std scale / 2
    assert preprocessing["mean"] == pytest.approx([(1 - 0.030) / 2, (1 - 0.088) / 2, (1 - 0.188) / 2])
    assert preprocessing["std"] == pytest.approx([0.458 / 2, 0.448 / 2, 0.450 / 2]) and preprocessing["resize"] == "none"
    custom = describe_metric(create_metric("resnet18", layers=["layer1", "layer2"], distance="style",
                                           weights="random", layer_weights={"layer2": 2}))
    assert custom["preset"] is None and custom["layer_weights"] == {"layer1": 0.0, "layer2": 2.0}
    assert custom["lin"] is False and custom["input_norm"] == "auto"
    pixel = describe_metric(create_metric("ssim"))
    assert pixel["preset"] == "ssim" and pixel["arch"] is None and pixel["points"] == []
    assert pixel["resize"] == "none" and pixel["preprocessing"] is None
    with pytest.raises(LossnetError, match="PerceptualLoss"):
        describe_metric("lpips-alex")


def test_describe_metric_records_the_resize_policy_and_preprocessing():
    d = describe_metric(create_metric("vgg16", layers=["features.3"], weights="random", resize=(48, "bicubic")))
    assert d["resize"] == d["preprocessing"]["resize"] == "resize to 48x48 (bicubic, antialias)"
    # torchvision's VGG16_Weights.IMAGENET1K_V1 transforms: ImageNet mean/std, 224 px after resizing to 256
    assert d["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert d["preprocessing"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert (d["preprocessing"]["input_size"], d["preprocessing"]["resize_size"]) == (224, 256)
    raw = describe_metric(create_metric("vgg16", layers=["features.3"], weights="random", input_norm="none"))
    assert raw["preprocessing"]["mean"] == [0.0, 0.0, 0.0] and raw["preprocessing"]["std"] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------
# the resize policy: reaches every metric, a preset's own, never ignored
# --------------------------------------------------------------------------------------


@pytest.fixture
def fixed_resize_preset():
    from lossnet.loss import MetricPreset, register_metric

    preset = MetricPreset("test-vgg-relu1-48px", "vgg16", ("features.3",), "mse", resize=48,
                          description="VGG-16 relu1_2 at 48x48")
    register_metric(preset)
    yield preset
    METRIC_PRESETS.pop(preset.name, None)


def test_a_presets_resize_policy_reaches_its_network(fixed_resize_preset, photo_pairs):
    metric = create_metric(fixed_resize_preset.name, weights="random", reduction="none")
    assert metric.resize_policy == "resize to 48x48 (bilinear, antialias)"
    assert describe_metric(metric)["resize"] == "resize to 48x48 (bilinear, antialias)"
    plain = create_metric("vgg16", layers=["features.3"], distance="mse", weights="random", reduction="none")
    x0, x1 = (torch.nn.functional.interpolate(t, size=(48, 48), mode="bilinear", antialias=True)
              for t in photo_pairs)
    with torch.no_grad():
        torch.testing.assert_close(metric(*photo_pairs), plain(x0, x1), rtol=1e-5, atol=1e-6)
    same = create_metric(fixed_resize_preset.name, weights="random", resize=(48, "bilinear"))
    assert same.resize_policy == metric.resize_policy


def test_a_preset_that_fixes_resize_refuses_another(fixed_resize_preset):
    with pytest.raises(LossnetError, match=r"preset 'test-vgg-relu1-48px' fixes resize=48, but resize='none' was "
                                           r"given\. Drop resize="):
        create_metric(fixed_resize_preset.name, weights="random", resize="none")
    with pytest.raises(LossnetError, match=r"fixes distance='mse', resize=48, but distance='l1', resize=64"):
        create_metric(fixed_resize_preset.name, weights="random", distance="l1", resize=64)


def test_create_metric_resize_for_architectures_and_auto_presets(alex, photo_pairs):
    arch = create_metric("resnet18", layers=["layer1"], weights="random", resize=32)
    assert arch.resize_policy == "resize to 32x32 (bilinear, antialias)"
    lpips32 = create_metric("lpips-alex", weights="random", reduction="none", resize=32)  # "auto": replaceable
    assert lpips32.preset == "lpips-alex" and lpips32.resize_policy == "resize to 32x32 (bilinear, antialias)"
    small = [torch.nn.functional.interpolate(t, size=(32, 32), mode="bilinear", antialias=True) for t in photo_pairs]
    with torch.no_grad():
        torch.testing.assert_close(lpips32(*photo_pairs), alex(*small), rtol=1e-5, atol=1e-6)
    assert create_metric(alex.net, distance="mse", resize="none").resize_policy == "none"
    with pytest.raises(LossnetError, match="resize policy is 'none', but resize=32"):
        create_metric(alex.net, distance="mse", resize=32)


def test_pixel_metrics_refuse_resize():
    with pytest.raises(LossnetError, match="preset 'ssim' is a pixel baseline.*never resizes.*drop resize"):
        create_metric("ssim", resize=32)
    with pytest.raises(LossnetError, match="uses no network: drop resize"):
        create_metric(distance="l2", resize="none")


def test_a_builder_that_cannot_apply_resize_is_an_error():
    # DISTS's own resize option is its reference's rule (True/False): a size is refused by name
    with pytest.raises(LossnetError, match=r"resize must be True \(the reference's rule.*or False.*got 256"):
        create_metric("dists", weights="random", resize=256)
    assert create_metric("dists", weights="random", resize="none").resize_policy == "none"
