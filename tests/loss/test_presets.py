"""Metric presets as data: the built-in table, listing, registering."""
import pytest

from lossnet.errors import LossnetError
from lossnet.loss import (
    METRIC_PRESETS,
    MetricPreset,
    PerceptualLoss,
    create_metric,
    list_metrics,
    register_metric,
)
from lossnet.loss.presets import get_preset, lpips_preset_name

LPIPS_ARCH = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def test_builtin_presets_are_listed():
    names = list_metrics()
    for net in LPIPS_ARCH:
        for version in ("", "-v0.0"):
            for lin in ("", "-nolin"):
                assert f"lpips-{net}{version}{lin}" in names
    assert {"l2", "ssim"} <= set(names)
    assert names == sorted(names)
    assert list_metrics("lpips-vgg*") == ["lpips-vgg", "lpips-vgg-nolin", "lpips-vgg-v0.0", "lpips-vgg-v0.0-nolin"]
    assert all(METRIC_PRESETS[n].description for n in names)


# --------------------------------------------------------------------------------------
# registering presets
# --------------------------------------------------------------------------------------


@pytest.fixture
def custom_preset():
    preset = MetricPreset("test-alex-relu2-mse", "alexnet", ("features.4",), "mse", input_norm="none",
                          description="AlexNet relu2, MSE")
    yield preset
    METRIC_PRESETS.pop(preset.name, None)
    METRIC_PRESETS.pop("test-built", None)


def test_register_metric(custom_preset):
    register_metric(custom_preset)
    assert "test-alex-relu2-mse" in list_metrics()
    m = create_metric("test-alex-relu2-mse", weights="random")
    assert m.points == ["features.4"] and m.distance == "mse" and m.net.input_norm == "none"
    with pytest.raises(LossnetError, match="fixes distance='mse'"):
        create_metric("test-alex-relu2-mse", distance="spatial", weights="random")
    with pytest.raises(LossnetError, match="already registered.*replace=True"):
        register_metric(custom_preset)
    register_metric(custom_preset, replace=True)


@pytest.mark.parametrize("bad,match", [
    (MetricPreset("vgg16", "vgg16", "lpips", "spatial"), "architecture name"),
    (MetricPreset("alex", "alexnet", "lpips", "spatial"), "architecture name"),
    (MetricPreset("x-pixel", "vgg16", None, "l2"), "must all be None"),
    (MetricPreset("x-lin", "vgg16", "lpips", "spatial", lin="lpips"), "lpips_net"),
    (MetricPreset("x-file", "vgg16", "lpips", "spatial", lin="/tmp/lin.pt"), "no file paths"),
    (MetricPreset("x-alias", "vgg16", "lpips", "lpips"), "canonical distance name 'spatial'"),
    (MetricPreset("x-noarch", None, None, "mse"), "needs an arch and layers"),
])
def test_register_metric_refuses_bad_presets(bad, match):
    with pytest.raises(LossnetError, match=match):
        register_metric(bad)
    assert bad.name not in METRIC_PRESETS or bad.name in ("l2", "ssim")


def test_a_preset_with_a_builder(custom_preset):
    calls = {}

    def build(weights, seed, **kwargs):
        calls.update(weights=weights, seed=seed, **kwargs)
        return PerceptualLoss("alexnet", ["features.1"], "mse", weights=weights, seed=seed, **kwargs)

    register_metric(MetricPreset("test-built", None, None, "mse", weights="random", builder=build))
    m = create_metric("test-built", seed=2, reduction="none")
    assert m.preset == "test-built" and calls == {"weights": "random", "seed": 2, "reduction": "none"}
    calls.clear()
    m = create_metric("test-built", resize=40)  # a builder is given the caller's resize
    assert calls["resize"] == 40 and m.resize_policy == "resize to 40x40 (bilinear, antialias)"


def test_a_builder_that_drops_resize_is_caught(custom_preset):
    def build(weights, seed, resize="auto", **kwargs):  # forgets to pass resize on
        return PerceptualLoss("alexnet", ["features.1"], "mse", weights=weights, seed=seed, **kwargs)

    register_metric(MetricPreset("test-built", None, None, "mse", weights="random", builder=build))
    with pytest.raises(LossnetError, match="builds its own network, which does not apply resize=40"):
        create_metric("test-built", resize=40)


def test_preset_describe_and_preprocessing_carry_the_resize_policy(custom_preset):
    preset = MetricPreset("test-fixed", "vgg16", ("features.3",), "mse", resize=(48, "bicubic"))
    assert preset.describe()["resize"] == [48, "bicubic"] and preset.describe()["extra"] is None
    assert preset.preprocessing()["resize"] == "resize to 48x48 (bicubic, antialias)"
    assert METRIC_PRESETS["lpips-alex"].preprocessing()["resize"] == "none"


def test_lpips_preset_names_and_fields():
    assert lpips_preset_name("squeeze") == "lpips-squeeze"
    assert lpips_preset_name("alex", "0.0", lin=False) == "lpips-alex-v0.0-nolin"
    p = get_preset("lpips-vgg-v0.0")
    assert (p.arch, p.layers, p.distance, p.lin, p.input_norm, p.lpips_net, p.lpips_version) == (
        "vgg16", "lpips", "spatial", "lpips", "lpips_v0.0", "vgg", "0.0")
    assert get_preset("lpips-alex-nolin").lin is None and get_preset("lpips-alex-nolin").input_norm == "lpips"
    assert get_preset("ssim").describe()["arch"] is None
    with pytest.raises(LossnetError, match="Did you mean 'lpips-vgg'"):
        get_preset("lpips-vgq")
    with pytest.raises(LossnetError, match="LPIPS net"):
        lpips_preset_name("alexnet")
