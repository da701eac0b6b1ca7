"""timm names with create_model options, and the explicit resize policy of a LossNetwork."""
import pytest
import torch
import torch.nn.functional as F

from lossnet.errors import InputError, LossnetError, UnknownNameError
from lossnet.networks import ArchSpec, LossNetwork, load_model
from lossnet.networks.extraction import resize_plan
from lossnet.networks.registry import get_spec, timm_arch_name

timm = pytest.importorskip("timm")

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}
# A tiny fixed-size ViT (56 px, patch 14) and the same with timm's dynamic image size.
FIXED = ArchSpec(name="tiny_vit_fixed", source="timm", builder="vit_small_patch14_reg4_dinov2",
                 points_roots=("", "blocks"), default_layers="kumar", build_kwargs={"img_size": 56, **TINY})
DYNAMIC = ArchSpec(name="tiny_vit_dynamic", source="timm", builder="vit_small_patch14_reg4_dinov2",
                   points_roots=("", "blocks"), default_layers="kumar",
                   build_kwargs={"img_size": 56, "dynamic_img_size": True, **TINY})


def test_timm_names_carry_size_options():
    name = timm_arch_name("vit_small_patch14_dinov2.lvd142m", dynamic_img_size=True)
    assert name == "timm:vit_small_patch14_dinov2.lvd142m[dynamic_img_size=True]"
    spec = get_spec(name)
    assert spec.name == name and spec.builder == "vit_small_patch14_dinov2.lvd142m"
    assert dict(spec.build_kwargs) == {"dynamic_img_size": True}
    assert get_spec("timm:vit_small_patch14_dinov2").build_kwargs == {}
    with pytest.raises(UnknownNameError, match="img_size"):
        get_spec("timm:vit_small_patch14_dinov2[img_size=224]")  # changes parameters: not a name option
    with pytest.raises(LossnetError, match="True or False"):
        get_spec("timm:vit_small_patch14_dinov2[dynamic_img_size=yes]")


def test_auto_resizes_a_fixed_size_model_with_the_weights_interpolation():
    net = LossNetwork(FIXED, ["blocks.0"], weights="random", tokens="cls", input_norm="none")
    assert net.resize_policy == "resize to 56x56 (bicubic, antialias)"  # timm's cfg says bicubic
    x = torch.rand(2, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    model = load_model(FIXED, weights="random")
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    with torch.no_grad():
        model(F.interpolate(x, size=(56, 56), mode="bicubic", align_corners=False, antialias=True))
        torch.testing.assert_close(net(x)["blocks.0"], seen["out"][:, 0, :, None, None])


def test_resize_none_refuses_another_size_and_names_it():
    net = LossNetwork(FIXED, ["blocks.0"], weights="random", input_norm="none", resize="none")
    assert net.resize_policy == "none (inputs must be 56x56)"
    assert net(torch.rand(1, 3, 56, 56))["blocks.0"].shape == (1, 32, 1, 1)
    with pytest.raises(InputError, match=r"56x56 images only.*80x80"):
        net(torch.rand(1, 3, 80, 80))


def test_named_interpolation_and_sizes():
    bilinear = LossNetwork(FIXED, ["blocks.0"], weights="random", input_norm="none", resize="bilinear")
    assert bilinear.resize_policy == "resize to 56x56 (bilinear, antialias)"
    with pytest.raises(LossnetError, match="takes 56x56 inputs only.*resize=70"):
        LossNetwork(FIXED, ["blocks.0"], weights="random", resize=70)
    with pytest.raises(LossnetError, match="takes any size.*resize=\\(224, 'bicubic'\\)"):
        LossNetwork(DYNAMIC, ["blocks.0"], weights="random", resize="bicubic")
    with pytest.raises(LossnetError, match="multiple of 14: use 56 or 70"):
        LossNetwork(DYNAMIC, ["blocks.0"], weights="random", resize=60)
    with pytest.raises(LossnetError, match="resize must be"):
        LossNetwork(DYNAMIC, ["blocks.0"], weights="random", resize=(56, "lanczos"))


def test_dynamic_size_takes_multiples_of_the_patch_and_refuses_others():
    net = LossNetwork(DYNAMIC, ["blocks.0"], weights="random", tokens="patches", input_norm="none")
    assert net.spec.fixed_input_size is None
    assert net.resize_policy == "none (sides must be multiples of 14)"
    assert net(torch.rand(1, 3, 70, 84))["blocks.0"].shape == (1, 32, 5, 6)
    with pytest.raises(InputError, match=r"multiples of 14.*64x64.*56x56.*resize=224"):
        net(torch.rand(1, 3, 64, 64))
    resized = LossNetwork(DYNAMIC, ["blocks.0"], weights="random", tokens="patches", input_norm="none",
                          resize=(42, "bilinear"))
    assert resized.resize_policy == "resize to 42x42 (bilinear, antialias)"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(F.interpolate(x, size=(42, 42), mode="bilinear", align_corners=False, antialias=True))
        torch.testing.assert_close(resized(x)["blocks.0"], expected["blocks.0"])


def test_resize_plan_without_building():
    assert resize_plan(FIXED).policy == "resize to 56x56 (bicubic, antialias)"
    assert resize_plan(FIXED, "none").required == 56
    assert resize_plan(DYNAMIC).multiple == 14
    assert resize_plan("resnet18", "none").policy == "none"
