"""Foundation-model ViT presets (DINO, DINOv2, CLIP, SigLIP, ViT through timm): listed,
resolvable offline, built with random weights, equal to timm itself, scored like any metric."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossnet.errors import InputError, LossnetError
from lossnet.loss import METRIC_PRESETS, create_metric, describe_metric, list_metrics
from lossnet.loss.presets import TIMM_VIT_FAMILIES, TOKEN_VARIANTS
from lossnet.networks.build import meta_model, token_layout
from lossnet.networks.registry import get_spec

timm = pytest.importorskip("timm")

FOUNDATION = sorted(n for n, p in METRIC_PRESETS.items() if p.extra == "timm")
EXPECTED = {"dino-vitb16-cls-cosine", "dino-vits16-cls-cosine", "dinov2-vitb14-cls-cosine",
            "dinov2-vitb14-reg4-cls-cosine", "dinov2-vitb14-reg4-patch-spatial", "clip-vitb16-cls-cosine",
            "clip-vitb32-mean-cosine", "siglip-vitb16-mean-cosine", "siglip-vitb16-patch-meanpool",
            "vit-b16-cls-cosine", "vit-ti16-patch-spatial"}


def _timm_model_of(preset):
    return get_spec(preset.arch).builder


def _oracle(model_name: str, seed: int = 0):
    """timm's own model with the same seeded random weights, and its pretrained cfg's mean/std."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(model_name, pretrained=False).eval()
    cfg = timm.get_pretrained_cfg(model_name)
    return model, torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 224, 224, generator=g)
    return x, (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def vit_ti_cls():
    return create_metric("vit-ti16-cls-cosine", weights="random", reduction="none")


@pytest.fixture(scope="module")
def dinov2_reg4_patches():
    return create_metric("dinov2-vits14-reg4-patch-spatial", weights="random", reduction="none")


# --- listed and resolvable offline -------------------------------------------------------------


def test_every_family_has_its_variants_listed():
    assert EXPECTED <= set(FOUNDATION)
    assert set(FOUNDATION) <= set(list_metrics())
    for prefix, _, _, _, has_cls, _, _ in TIMM_VIT_FAMILIES:
        for suffix, tokens, _, _ in TOKEN_VARIANTS:
            assert (f"{prefix}-{suffix}" in FOUNDATION) == (tokens != "cls" or has_cls)
    assert "siglip-vitb16-cls-cosine" not in METRIC_PRESETS  # SigLIP has no class token


def test_listed_by_the_cli_with_their_extra(capsys):
    from lossnet.cli.main import main

    assert main(["list", "--metrics"]) == 0
    out = capsys.readouterr().out
    for name in FOUNDATION:
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert line.split()[1] == "lossnet[timm]"


@pytest.mark.parametrize("name", FOUNDATION)
def test_resolved_config_matches_timm(name):
    """Without building: the timm model exists, has the extraction point and the token layout
    the preset relies on, and the recorded preprocessing is timm's pretrained cfg."""
    preset = METRIC_PRESETS[name]
    model_name = _timm_model_of(preset)
    assert model_name in timm.list_models(pretrained=True)
    model = meta_model(get_spec(preset.arch))
    assert preset.layers == ("norm",) and "norm" in dict(model.named_modules())
    layout = token_layout(model)
    assert layout is not None and (layout.num_prefix_tokens > 0 or preset.tokens != "cls")
    cfg = timm.get_pretrained_cfg(model_name)
    got = preset.preprocessing()
    assert got["mean"] == pytest.approx(list(cfg.mean)) and got["std"] == pytest.approx(list(cfg.std))
    assert (got["input_size"], got["interpolation"], got["crop_pct"], got["crop_mode"]) == (
        cfg.input_size[-1], cfg.interpolation, cfg.crop_pct, cfg.crop_mode)
    if "dinov2" in name:  # evaluated at 518 by timm; compared at 224 as DreamSim, position embeddings interpolated
        assert cfg.input_size[-1] == 518 and getattr(model, "dynamic_img_size", False)
        assert got["resize"] == "resize to 224x224 (bicubic, antialias)"
    else:
        assert got["resize"] == f"resize to {cfg.input_size[-1]}x{cfg.input_size[-1]} ({cfg.interpolation}, antialias)"
    assert preset.describe()["resize"] == preset.resize and preset.describe()["extra"] == "timm"


def test_register_tokens_are_counted_in_the_reg4_presets():
    for name, prefix in (("dinov2-vitb14-reg4-patch-spatial", 5), ("dinov2-vitb14-patch-spatial", 1),
                         ("siglip-vitb16-patch-spatial", 0)):
        layout = token_layout(meta_model(get_spec(METRIC_PRESETS[name].arch)))
        assert layout.num_prefix_tokens == prefix


# --- built with random weights: parity with timm itself --------------------------------------


def test_cls_cosine_equals_timm_forward_features(vit_ti_cls, pair):
    x, y = pair
    model, mean, std = _oracle("vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    with torch.no_grad():
        e0 = model.forward_features((x - mean) / std)[:, 0]
        e1 = model.forward_features((y - mean) / std)[:, 0]
        expected = 1 - F.cosine_similarity(e0, e1, dim=1)
        got = vit_ti_cls(x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert float(got.min()) > 0  # different images: a real distance, not zero
    with torch.no_grad():
        assert float(vit_ti_cls(x, x).abs().max()) < 1e-6


def test_other_sizes_are_resized_as_recorded(vit_ti_cls, pair):
    x, y = (F.interpolate(t, size=(160, 160), mode="bilinear", antialias=True) for t in pair)
    model, mean, std = _oracle("vit_tiny_patch16_224.augreg_in21k_ft_in1k")

    def embed(t):  # timm's cfg: bicubic to 224 (antialiased), then its mean/std
        t = F.interpolate((t - mean) / std, size=(224, 224), mode="bicubic", align_corners=False, antialias=True)
        return model.forward_features(t)[:, 0]

    with torch.no_grad():
        expected = 1 - F.cosine_similarity(embed(x), embed(y), dim=1)
        torch.testing.assert_close(vit_ti_cls(x, y), expected, rtol=1e-5, atol=1e-6)
    assert vit_ti_cls.net.resize_policy == "resize to 224x224 (bicubic, antialias)"
    described = describe_metric(vit_ti_cls)
    assert described["preset"] == "vit-ti16-cls-cosine"
    assert described["resize"] == "resize to 224x224 (bicubic, antialias)"
    cfg = timm.get_pretrained_cfg("vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert described["preprocessing"]["mean"] == pytest.approx(list(cfg.mean))
    assert (described["preprocessing"]["input_size"], described["preprocessing"]["interpolation"]) == (224, "bicubic")


def test_gradients_flow_and_are_finite(vit_ti_cls, pair):
    x = pair[0].clone().requires_grad_(True)
    vit_ti_cls(x, pair[1]).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_register_model_patch_map_skips_the_prefix_tokens(dinov2_reg4_patches):
    net = dinov2_reg4_patches.net
    assert net.num_prefix_tokens == 5 and net.tokens == "patches"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))  # resized to 224: 16x16 patches
    with torch.no_grad():
        got = net(x)["norm"]
    assert got.shape == (2, 384, 16, 16)
    model, mean, std = _oracle("vit_small_patch14_reg4_dinov2.lvd142m")
    model.set_input_size(img_size=224)  # timm resamples its position embeddings, as dynamic_img_size does on the fly
    with torch.no_grad():
        tokens = model.forward_features(F.interpolate((x - mean) / std, size=(224, 224), mode="bicubic",
                                                      antialias=True))
    assert tokens.shape == (2, 5 + 256, 384)
    torch.testing.assert_close(got, tokens[:, 5:].transpose(1, 2).reshape(2, 384, 16, 16), rtol=1e-4, atol=1e-4)


# --- resize policy and bad input --------------------------------------------------------------


def test_resize_none_refuses_other_sizes_naming_the_size(pair):
    metric = create_metric("vit-ti16-cls-cosine", weights="random", resize="none")  # "auto" preset: replaceable
    assert metric.net.resize_policy == "none (inputs must be 224x224)"
    assert describe_metric(metric)["resize"] == "none (inputs must be 224x224)"
    with torch.no_grad():
        metric(*pair)  # the model's own size works
        small = torch.rand(1, 3, 160, 160)
        with pytest.raises(InputError, match=r"224x224 images only.*160x160.*resize='auto'"):
            metric(small, small)


def _smooth_pair(size: int, seed: int):
    """Two smooth images in [0.1, 0.9] (no interpolation leaves [0, 1]), size x size."""
    g = torch.Generator().manual_seed(seed)
    low = 0.1 + 0.8 * torch.rand(2, 3, 24, 24, generator=g)
    other = (low + 0.15 * torch.randn(low.shape, generator=g)).clamp(0.1, 0.9)
    return tuple(F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False) for t in (low, other))


def test_a_given_interpolation_reaches_the_network(vit_ti_cls):
    metric = create_metric("vit-ti16-cls-cosine", weights="random", reduction="none", resize="bilinear")
    assert metric.resize_policy == "resize to 224x224 (bilinear, antialias)"
    x, y = _smooth_pair(160, 8)
    x224, y224 = (F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
                  for t in (x, y))
    with torch.no_grad():  # the preset's own policy (bicubic) leaves 224x224 inputs as they are
        got = metric(x, y)
        torch.testing.assert_close(got, vit_ti_cls(x224, y224), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got, vit_ti_cls(x, y), rtol=1e-4, atol=1e-7)  # bicubic gives another number


@pytest.fixture(scope="module")
def dinov2_small_patches():
    return create_metric("dinov2-vits14-patch-spatial", weights="random", reduction="none")


def test_dinov2_resizes_to_224_as_its_preset_fixes(dinov2_small_patches):
    """resize=224 (the preset's, DreamSim's protocol): a 256x256 input gives the metric of the input
    resized beforehand with the weights' interpolation (bicubic, antialiased)."""
    metric = dinov2_small_patches
    assert METRIC_PRESETS["dinov2-vits14-patch-spatial"].resize == 224
    assert metric.resize_policy == describe_metric(metric)["resize"] == "resize to 224x224 (bicubic, antialias)"
    x, y = _smooth_pair(256, 5)

    def to_224(t):
        return F.interpolate(t, size=(224, 224), mode="bicubic", align_corners=False, antialias=True)

    with torch.no_grad():
        got = metric(x, y)
        torch.testing.assert_close(got, metric(to_224(x), to_224(y)), rtol=1e-5, atol=1e-6)
    assert float(got.min()) > 0


def test_a_preset_fixed_resize_refuses_another():
    with pytest.raises(LossnetError, match=r"preset 'dinov2-vits14-patch-spatial' fixes resize=224, but "
                                           r"resize='none' was given\. Drop resize="):
        create_metric("dinov2-vits14-patch-spatial", weights="random", resize="none")


def test_bad_input_gets_the_core_errors(vit_ti_cls):
    with pytest.raises(InputError, match="channel"):
        vit_ti_cls(torch.rand(1, 4, 224, 224), torch.rand(1, 4, 224, 224))
    with pytest.raises(InputError):
        vit_ti_cls(torch.rand(1, 3, 224, 224), torch.rand(1, 3, 224, 200))
    with pytest.raises(InputError, match=r"\[0, 1\]|range"):
        vit_ti_cls(torch.rand(1, 3, 224, 224) * 5, torch.rand(1, 3, 224, 224))


def test_conflicting_arguments_are_refused():
    with pytest.raises(LossnetError, match="fixes distance='cosine'"):
        create_metric("dino-vitb16-cls-cosine", distance="spatial", weights="random")
    with pytest.raises(LossnetError, match="fixes tokens='cls'"):
        create_metric("dino-vitb16-cls-cosine", tokens="patches", weights="random")


# --- scored like every other metric -----------------------------------------------------------


def test_2afc_on_a_generated_fixture_equals_the_hand_count(vit_ti_cls):
    from lossnet import score_2afc
    from lossnet.scoring.twoafc import twoafc_scores

    g = torch.Generator().manual_seed(7)
    items = []
    for i in range(6):
        ref = torch.rand(3, 32, 32, generator=g)
        p0 = (ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
        p1 = (ref + 0.4 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
        items.append({"ref": ref, "p0": p0, "p1": p1, "judge": float(i % 3) / 2})
    result = score_2afc(vit_ti_cls, {"tiny": items}, batch_size=4, bootstrap=0, progress=False)
    refs = torch.stack([it["ref"] for it in items])
    with torch.no_grad():
        d0 = vit_ti_cls(refs, torch.stack([it["p0"] for it in items])).numpy()
        d1 = vit_ti_cls(refs, torch.stack([it["p1"] for it in items])).numpy()
    expected = 100 * twoafc_scores(d0, d1, np.array([it["judge"] for it in items])).mean()
    assert result.subsets["tiny"]["score"] == pytest.approx(expected, abs=1e-6)
    assert result.metric["preset"] == "vit-ti16-cls-cosine" and result.n == 6
    assert result.metric["resize"] == "resize to 224x224 (bicubic, antialias)"  # recorded with the score
