"""Transformer tokens: class, register and patch tokens read from the model (timm, torchvision)."""
import pytest
import torch

from lossnet.errors import LossnetError
from lossnet.networks import ArchSpec, LossNetwork, load_model

timm = pytest.importorskip("timm")

# A tiny DINOv2-style ViT with 4 register tokens (timm's own class), random weights, 56 px.
REG4 = ArchSpec(name="tiny_vit_reg4", source="timm", builder="vit_small_patch14_reg4_dinov2",
                points_roots=("", "blocks"), default_layers="kumar",
                build_kwargs={"img_size": 56, "depth": 2, "embed_dim": 32, "num_heads": 2})
# The same without a class token (SigLIP-style, mean-pooled): no prefix tokens at all.
NO_CLS = ArchSpec(name="tiny_vit_nocls", source="timm", builder="vit_small_patch14_reg4_dinov2",
                  points_roots=("", "blocks"), default_layers="kumar",
                  build_kwargs={"img_size": 56, "depth": 1, "embed_dim": 32, "num_heads": 2, "class_token": False,
                                "reg_tokens": 0, "global_pool": "avg", "no_embed_class": True})


def _block_output(spec: ArchSpec, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The last block's (B, N, D) tokens from a forward hook on the full timm model."""
    model = load_model(spec, weights="random", seed=seed)
    seen = {}
    model.blocks[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    with torch.no_grad():
        model(x)
    return seen["out"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))


def test_prefix_tokens_are_counted_from_the_model(images):
    net = LossNetwork(REG4, ["blocks.1"], weights="random", tokens="patches", input_norm="none")
    assert net.num_prefix_tokens == 5  # 1 class + 4 register tokens, timm's num_prefix_tokens
    tokens = _block_output(REG4, images)
    assert tokens.shape == (2, 1 + 4 + 16, 32)
    patches = net(images)["blocks.1"]
    assert patches.shape == (2, 32, 4, 4)
    expected = tokens[:, 5:].transpose(1, 2).reshape(2, 32, 4, 4)  # row-major patch grid
    torch.testing.assert_close(patches, expected)


def test_cls_and_mean_tokens(images):
    tokens = _block_output(REG4, images)
    cls = LossNetwork(REG4, ["blocks.1"], weights="random", tokens="cls", input_norm="none")(images)["blocks.1"]
    mean = LossNetwork(REG4, ["blocks.1"], weights="random", tokens="mean", input_norm="none")(images)["blocks.1"]
    torch.testing.assert_close(cls, tokens[:, 0, :, None, None])
    torch.testing.assert_close(mean, tokens[:, 5:].mean(1)[:, :, None, None])  # patch tokens only, no registers
    assert not torch.allclose(mean, tokens.mean(1)[:, :, None, None])


def test_fixed_size_is_the_models_and_inputs_are_resized(images):
    net = LossNetwork(REG4, ["blocks.0"], weights="random", tokens="patches", input_norm="none")
    assert net.spec.fixed_input_size == 56
    big = torch.nn.functional.interpolate(images, size=(80, 80), mode="bilinear", align_corners=False)
    assert net(big)["blocks.0"].shape == (2, 32, 4, 4)
    assert net.weights_info.resize_policy == "resize to 56x56 (bicubic, antialias)"


def test_a_model_without_class_token(images):
    default = LossNetwork(NO_CLS, ["blocks.0"], weights="random", input_norm="none")
    assert default.num_prefix_tokens == 0 and default.tokens == "mean"
    tokens = _block_output(NO_CLS, images)
    torch.testing.assert_close(default(images)["blocks.0"], tokens.mean(1)[:, :, None, None])
    with pytest.raises(LossnetError, match="no class token.*tokens='mean' or 'patches'"):
        LossNetwork(NO_CLS, ["blocks.0"], weights="random", tokens="cls")


def test_torchvision_vit_has_one_class_token(photos):
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    point = "encoder.layers.encoder_layer_1"
    net = LossNetwork(vit, [point], tokens="patches", input_norm="none")
    assert net.num_prefix_tokens == 1 and net.spec.fixed_input_size == 32
    seen = {}
    vit.encoder.layers[1].register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    x = torch.nn.functional.interpolate(photos[:1], size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        vit(x)
    torch.testing.assert_close(net(x)[point], seen["out"][:, 1:].transpose(1, 2).reshape(1, 16, 4, 4))


def test_tokens_on_a_cnn_or_unknown_mode_are_errors():
    with pytest.raises(LossnetError, match="applies to transformers.*drop tokens="):
        LossNetwork("squeezenet1_1", ["features.1"], weights="random", tokens="patches")
    with pytest.raises(LossnetError, match="unknown tokens mode 'patch'"):
        LossNetwork(REG4, ["blocks.0"], weights="random", tokens="patch")
