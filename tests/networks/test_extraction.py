import pytest
import torch
from torch import nn

import lossnet
from lossnet.networks.extraction import LossNetwork

# (arch, points) checked against forward hooks on the full torchvision model
HOOK_CASES = [
    ("vgg16", ["features.3", "features.8", "features.15", "features.29"]),
    ("alexnet", ["features.1", "features.4", "features.7", "features.9", "features.11"]),
    ("resnet18", ["relu", "layer1", "layer2", "layer4"]),
    ("squeezenet1_1", ["features.1", "features.3", "features.7", "features.12"]),
    ("densenet121", ["features.relu0", "features.denseblock1", "features.denseblock2"]),
    ("efficientnet_b0", ["features.0", "features.1", "features.4"]),
    ("googlenet", ["conv1", "inception3a", "inception4a"]),
]


def _hooked_features(model: nn.Module, points: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [modules[p].register_forward_hook(lambda m, i, o, p=p: seen.__setitem__(p, o.clone()))
               for p in points]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("arch,points", HOOK_CASES, ids=[c[0] for c in HOOK_CASES])
def test_points_equal_forward_hooks_on_full_model(arch, points, photos):
    net = LossNetwork(arch, points, weights="random", seed=3)
    full = lossnet.load_model(arch, weights="random", seed=3).eval()
    x = photos[:2]
    ours = net(x)
    # the full model sees the same normalised input; its own forward logic runs
    theirs = _hooked_features(full, points, net.prepare(x))
    assert list(ours) == points
    for p in points:
        torch.testing.assert_close(ours[p], theirs[p], rtol=1e-5, atol=1e-6)


def test_inception_transform_input_runs(photos):
    """inception_v3's forward applies transform_input before the first conv; children in
    sequence would skip it."""
    net = LossNetwork("inception_v3", ["Conv2d_1a_3x3"], weights="random")
    full = lossnet.load_model("inception_v3", weights="random")
    assert full.transform_input
    x = torch.nn.functional.interpolate(photos[:1], size=(96, 96))
    prepared = net.prepare(x)
    via_hook = _hooked_features(full, ["Conv2d_1a_3x3"], prepared)["Conv2d_1a_3x3"]
    skipped = full.Conv2d_1a_3x3(prepared)  # what running the children in sequence gives
    torch.testing.assert_close(net(x)["Conv2d_1a_3x3"], via_hook)
    assert not torch.allclose(via_hook, skipped)


def test_truncation_keeps_no_parameters_past_the_deepest_point():
    net = LossNetwork("vgg16", ["features.3"], weights="random")
    full = lossnet.load_model("vgg16", weights="random")
    expected = sum(p.numel() for p in full.features[:4].parameters())
    assert sum(p.numel() for p in net.parameters()) == expected
    assert not hasattr(net.body, "classifier")


def test_stays_in_eval_mode_inside_a_training_parent(photos):
    net = LossNetwork("resnet18", ["layer1"], weights="random")
    parent = nn.Sequential(nn.Conv2d(3, 3, 1), net)
    bn = net.body.bn1
    before = bn.running_mean.clone()
    parent.train()
    assert not net.training and not bn.training
    with torch.no_grad():
        net(photos)
    torch.testing.assert_close(bn.running_mean, before)
    assert all(not p.requires_grad for p in net.parameters())


def test_input_is_not_changed_in_place(photos):
    x = photos.clone()
    net = LossNetwork("vgg16", ["features.0", "features.1"], weights="random")
    feats = net(x)
    torch.testing.assert_close(x, photos)
    # in-place ReLUs are switched off, so the conv output is not overwritten by the ReLU after it
    assert (feats["features.0"] < 0).any()


def test_gradients_flow_to_the_input(photos):
    x = photos[:1].clone().requires_grad_(True)
    LossNetwork("resnet18", ["layer2"], weights="random")(x)["layer2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_input_norm_none_feeds_raw_images(photos):
    raw = LossNetwork("vgg16", ["features.0"], weights="random", input_norm="none")
    auto = LossNetwork("vgg16", ["features.0"], weights="random")
    conv = lossnet.load_model("vgg16", weights="random").features[0]
    with torch.no_grad():
        torch.testing.assert_close(raw(photos)["features.0"], conv(photos))
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        torch.testing.assert_close(auto(photos)["features.0"], conv((photos - mean) / std))


def test_random_weights_are_seeded():
    a = LossNetwork("resnet18", ["layer1"], weights="random", seed=1)
    b = LossNetwork("resnet18", ["layer1"], weights="random", seed=1)
    c = LossNetwork("resnet18", ["layer1"], weights="random", seed=2)
    assert torch.equal(a.body.conv1.weight, b.body.conv1.weight)
    assert not torch.equal(a.body.conv1.weight, c.body.conv1.weight)


def test_points_are_returned_shallow_to_deep_whatever_the_order_given():
    net = LossNetwork("resnet18", ["layer2", "relu"], weights="random")
    assert net.points == ["relu", "layer2"]


def test_fine_graph_nodes_are_accepted(photos):
    net = LossNetwork("resnet18", ["layer1.0.relu"], weights="random")
    assert net(photos)["layer1.0.relu"].shape[1] == 64


def test_vit_cls_token_per_block(photos):
    net = LossNetwork("vit_b_32", ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"],
                      weights="random")
    feats = net(photos[:1])  # resized to 224 inside
    assert [tuple(f.shape) for f in feats.values()] == [(1, 768, 1, 1), (1, 768, 1, 1)]
    patches = LossNetwork("vit_b_32", ["encoder.layers.encoder_layer_0"], weights="random", tokens="patches")
    assert tuple(patches(photos[:1])["encoder.layers.encoder_layer_0"].shape) == (1, 768, 7, 7)


def test_timm_backbone(photos):
    net = LossNetwork("timm:resnet18", "kumar", weights="random")
    shapes = [tuple(f.shape) for f in net(photos[:1]).values()]
    assert shapes == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]


def test_swin_maps_are_channels_first(photos):
    net = LossNetwork("swin_t", ["features.1"], weights="random")
    assert tuple(net(photos[:1])["features.1"].shape) == (1, 96, 16, 16)


class _InPlaceAfterPoint(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.act = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.a(x)
        y += 1.0  # in place on a returned feature
        z = self.act(self.b(y))
        return z


def test_in_place_ops_after_a_point_do_not_change_returned_features():
    from torchvision.models.feature_extraction import create_feature_extractor

    from lossnet.networks.extraction import _protect_returned_features

    model = _InPlaceAfterPoint().eval()
    body = create_feature_extractor(model, {"a": "a", "b": "b", "act": "act"})
    _protect_returned_features(body)
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        out = body(x)
        torch.testing.assert_close(out["a"], model.a(x))  # not a + 1
        torch.testing.assert_close(out["b"], model.b(model.a(x) + 1))  # not clamped by the in-place ReLU
        torch.testing.assert_close(out["act"], torch.relu(model.b(model.a(x) + 1)))


def test_in_place_relu_kept_where_it_overwrites_nothing_returned():
    net = LossNetwork("vgg16", ["features.0", "features.3"], weights="random")
    inplace = {name for name, m in net.body.named_modules() if getattr(m, "inplace", False)}
    assert "features.1" not in inplace  # its input, features.0, is returned
    assert "features.3" in inplace  # its input, features.2, is not


# --- careless inputs (issue 9) ---------------------------------------------------------------

from lossnet.errors import InputError, LossnetError  # noqa: E402


@pytest.fixture(scope="module")
def small_vgg():
    return LossNetwork("vgg11", ["features.1", "features.4"], weights="random", seed=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_inputs_of_any_float_dtype_are_cast_to_the_network(small_vgg, photos, dtype):
    reference = small_vgg(photos)
    feats = small_vgg(photos.to(dtype))
    tol = {torch.float64: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for p, f in feats.items():
        assert f.dtype == torch.float32
        torch.testing.assert_close(f, reference[p], rtol=tol, atol=tol)


def test_double_input_keeps_its_gradient(small_vgg, photos):
    x = photos[:1].double().requires_grad_(True)
    small_vgg(x)["features.4"].sum().backward()
    assert x.grad.dtype == torch.float64 and x.grad.abs().sum() > 0


def test_a_half_precision_network_returns_float32(photos):
    net = LossNetwork("squeezenet1_1", ["features.1"], weights="random").to(torch.bfloat16)
    feats = net(photos[:1])
    assert net.dtype == torch.bfloat16 and feats["features.1"].dtype == torch.float32


def test_meta_and_mismatched_device_inputs_are_clear_errors(small_vgg, photos):
    with pytest.raises(InputError, match="meta device"):
        small_vgg.extract(torch.empty(1, 3, 32, 32, device="meta"), check=False)
    on_meta = LossNetwork("squeezenet1_1", ["features.1"], weights="random").to("meta")
    with pytest.raises(InputError, match="input is on cpu but the network is on meta.*network.to\\('cpu'\\)"):
        on_meta(photos)


def test_images_too_small_for_the_points_say_the_minimum(photos):
    net = LossNetwork("vgg16", ["features.3", "features.29"], weights="random")
    assert net.min_input_size() == 16
    for shape in [(1, 3, 15, 15), (1, 3, 1, 4096)]:
        with pytest.raises(InputError, match=r"too small for the extraction points .* need at least 16x16 px"):
            net(torch.rand(*shape))
    assert net(torch.rand(1, 3, 16, 16))["features.29"].shape == (1, 512, 1, 1)


@pytest.mark.parametrize("arch,point", [("vgg16", "features.30"), ("alexnet", "features.12"),
                                        ("squeezenet1_1", "features.12")])
def test_minimum_size_of_the_last_trunk_point_is_torchvisions_min_size(arch, point):
    import torchvision

    from lossnet.networks.build import meta_model

    # the same network on the meta device: probing needs shapes only, not weights
    net = LossNetwork(meta_model(lossnet.get_spec(arch)), [point], input_norm="none")
    expected = torchvision.models.get_model_weights(arch).DEFAULT.meta["min_size"]
    assert (net.min_input_size(),) * 2 == expected


@pytest.mark.parametrize("layers", [3, [3], ["features.1", 4], torch.nn.ReLU(), {"features.1": 1}])
def test_layers_of_the_wrong_kind_name_the_valid_forms(layers):
    with pytest.raises(LossnetError, match="layers must be a layer-set name .* or a list of point names") as err:
        LossNetwork("squeezenet1_1", layers, weights="random")
    assert "lossnet.extraction_points('squeezenet1_1')" in str(err.value)


@pytest.mark.parametrize("arch", [3, None, ["vgg16"]])
def test_arch_of_the_wrong_kind_is_a_clear_error(arch):
    with pytest.raises(LossnetError, match="an architecture is a name .* an ArchSpec or an nn.Module"):
        LossNetwork(arch, weights="random")
