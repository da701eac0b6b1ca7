"""The Kumar et al. classifier families: layouts, stage shapes, parameter counts, names, and a
trained checkpoint loading strictly as a loss network."""
from __future__ import annotations

import pytest
import torch
import torchvision

import lossnet
from lossnet.errors import LossnetError, UnknownNameError, WeightsError
from lossnet.networks import classifiers as C


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout


def _bn(c: int) -> int:
    return 2 * c


@pytest.mark.parametrize("depth, name", [(18, "resnet18"), (34, "resnet34"), (50, "resnet50"), (101, "resnet101"),
                                         (152, "resnet152")])
def test_standard_depths_have_torchvisions_keys_shapes_and_outputs(depth, name):
    with torch.device("meta"):
        ours, theirs = C.KumarResNet(depth), torchvision.models.get_model(name)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    if depth == 18:  # same weights -> same logits (same block maths, stride placement, stem)
        tv = torchvision.models.resnet18().eval()
        net = C.KumarResNet(18).eval()
        net.load_state_dict(tv.state_dict())
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(net(x), tv(x), atol=1e-5)


def test_resnet200_follows_he_et_al():
    kind, stages = C.resnet_layout(200)
    assert kind == "bottleneck" and [len(s) for s in stages] == [3, 24, 36, 3]
    assert 2 + 3 * sum(len(s) for s in stages) == 200


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17, 18, 26, 49, 50, 51, 52, 77, 200])
def test_depth_counts_the_stem_the_classifier_and_the_branch_convolutions(depth):
    kind, stages = C.resnet_layout(depth)
    assert 2 + sum(sum(s) for s in stages) == depth
    assert kind == ("basic" if depth < 50 else "bottleneck")
    with torch.device("meta"):
        net = C.KumarResNet(depth)
    convs = sum(1 for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and "downsample" not in n)
    assert convs + 1 == depth  # + the classifier


def test_small_depth_layouts():
    assert C.resnet_layout(2)[1] == [[], [], [], []]
    assert C.resnet_layout(3)[1] == [[1], [], [], []]
    assert C.resnet_layout(6)[1] == [[2], [2], [], []]
    assert C.resnet_layout(10)[1] == [[2], [2], [2], [2]]
    assert C.resnet_layout(14)[1] == [[2, 2], [2, 2], [2], [2]]


def _resnet6_params(w: float, classes: int, skip: bool) -> int:
    s, p = round(64 * w), [round(64 * w * 2 ** i) for i in range(4)]
    n = _conv(7, 3, s) + _bn(s)
    n += 2 * (_conv(3, p[0], p[0]) + _bn(p[0]))                                 # layer1: one basic block
    n += _conv(3, p[0], p[1]) + _bn(p[1]) + _conv(3, p[1], p[1]) + _bn(p[1])    # layer2: one basic block
    if skip:
        n += _conv(1, p[0], p[1]) + _bn(p[1])                                   # its projection shortcut
    n += _conv(1, p[1], p[2]) + _bn(p[2]) + _conv(1, p[2], p[3]) + _bn(p[3])    # empty layer3, layer4
    return n + p[3] * classes + classes


@pytest.mark.parametrize("width, classes, skip", [(1.0, 1000, True), (0.25, 14, True), (0.5, 100, False),
                                                  (2.5, 10, True)])
def test_resnet6_parameter_count_by_formula(width, classes, skip):
    net = C.build_classifier(C.resnet_name(6, width, skip, classes), seed=0)
    assert _params(net) == _resnet6_params(width, classes, skip)


def test_resnet50_width_and_noskip_parameter_counts():
    with torch.device("meta"):
        full, narrow, noskip = C.KumarResNet(50), C.KumarResNet(50, 0.5), C.KumarResNet(50, skip=False)
    assert _params(full) == 25_557_032
    projections = sum(p.numel() for n, p in full.named_parameters() if "downsample" in n)
    assert _params(noskip) == _params(full) - projections
    assert not any("downsample" in n for n, _ in noskip.named_parameters())
    # every conv of a half-width net has a quarter of the weights (stem in-channels stay 3: half)
    w_full = {n: p.numel() for n, p in full.named_parameters() if p.dim() == 4}
    w_half = {n: p.numel() for n, p in narrow.named_parameters() if p.dim() == 4}
    assert all(w_half[n] * (2 if n == "conv1.weight" else 4) == w_full[n] for n in w_full)


@pytest.mark.parametrize("name", ["kumar_resnet2", "kumar_resnet3_w0.25", "kumar_resnet6_w0.25_noskip",
                                  "kumar_resnet10_w0.5", "kumar_resnet18_w0.125", "kumar_resnet50_w0.125"])
def test_reduction_stages_are_16_8_4_2_pixels(name):
    net = C.build_classifier(name, seed=0).eval()
    with torch.no_grad():
        feats = C.stage_outputs(net, torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    c0 = feats[0].shape[1]
    assert [f.shape[1] for f in feats] == [c0, 2 * c0, 4 * c0, 8 * c0]


def test_noskip_really_has_no_skip():
    """Zeroing the residual branch's last BN kills a no-skip block's output but not a skip block's."""
    for skip, expect_zero in ((True, False), (False, True)):
        block = C.ResidualBlock("basic", 4, 4, 1, 2, skip=skip).eval()
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
        out = block(torch.rand(1, 4, 5, 5) + 0.1)
        assert bool((out == 0).all()) == expect_zero


def _vit_params(p: int, d: int, layers: int, mlp: int, classes: int) -> int:
    tokens = (64 // p) ** 2 + 1
    per_layer = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d)
    return (p * p * 3 * d + d) + d + tokens * d + layers * per_layer + 2 * d + d * classes + classes


@pytest.mark.parametrize("name, sizes", [
    ("kumar_vit_b8", (8, 768, 12, 3072, 1000)), ("kumar_vit_b4", (4, 768, 12, 3072, 1000)),
    ("kumar_vit_l8", (8, 1024, 24, 4096, 1000)), ("kumar_vit_l4", (4, 1024, 24, 4096, 1000)),
    ("kumar_vit_p8_w64_d2_h4_m128_c10", (8, 64, 2, 128, 10)),
])
def test_vit_presets_and_custom_sizes_by_formula(name, sizes):
    parsed = C.parse_name(name)
    kw = parsed.build_kwargs
    with torch.device("meta"):
        net = C.vision_transformer(kw["patch"], kw["hidden"], kw["depth"], kw["heads"], kw["mlp"], kw["num_classes"])
    assert _params(net) == _vit_params(*sizes)
    assert len(net.encoder.layers) == kw["depth"]


def test_vit_runs_at_64_with_patch_4():
    net = C.build_classifier("kumar_vit_p4_w32_d2_h2_m64_c5", seed=0)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 5)


@pytest.mark.parametrize("variant", [0, 3])
def test_efficientnet_kumar_points_are_16_8_4_2(variant):
    net = C.build_classifier(f"kumar_efficientnet_b{variant}_c10").eval()
    x = torch.rand(1, 3, 64, 64)
    sizes = {}
    with torch.no_grad():
        for i, block in enumerate(net.features):
            x = block(x)
            sizes[f"features.{i}"] = x.shape[-1]
    assert [sizes[p] for p in C.kumar_layers(C.parse_name("kumar_efficientnet_b0"))] == [16, 8, 4, 2]
    assert net.classifier[-1].out_features == 10


def test_names_round_trip_and_bad_names_are_clear():
    assert C.resnet_name(6, 0.25) == "kumar_resnet6_w0.25"
    assert C.parse_name("kumar_resnet6_w1").name == "kumar_resnet6"   # canonical form
    assert C.parse_name("kumar_vit_p8_w768_d12_h12_m3072").name == "kumar_vit_b8"
    assert C.with_classes("kumar_vit_b8_c10", 1000) == "kumar_vit_b8"
    for bad, message in [("kumar_resnet1", "2 to 200"), ("kumar_resnet201", "2 to 200"),
                         ("kumar_efficientnet_b7", "B0..B5"), ("kumar_vit_p8_w100_d2_h3_m64", "divisible"),
                         ("kumar_vit_p7_w64_d2_h4_m64", "divide 64"), ("kumar_resnet6_c1", "at least 2"),
                         ("kumar_resnet6_x2", "forms")]:
        with pytest.raises(UnknownNameError, match=message):
            C.parse_name(bad)


def test_bn_momentum_uses_the_tensorflow_convention():
    net = C.build_classifier("kumar_resnet2_w0.125", bn_momentum=0.9)
    momenta = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(momenta) == 4 and momenta == pytest.approx([0.1] * 4)
    with pytest.raises(LossnetError, match="momentum"):
        C.build_classifier("kumar_resnet2", bn_momentum=1.5)


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = C.build_classifier("kumar_resnet4_w0.25", seed=3).state_dict()
    assert torch.equal(state, torch.get_rng_state())
    b = C.build_classifier("kumar_resnet4_w0.25", seed=3).state_dict()
    c = C.build_classifier("kumar_resnet4_w0.25", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


# ------------------------------------------------------------------------------------------
# As loss networks


def test_catalogue_names_are_registered_architectures():
    C.register_catalogue()
    names = set(lossnet.list_architectures())
    assert {"kumar_resnet6", "kumar_resnet200", "kumar_vit_l4", "kumar_efficientnet_b5"} <= names
    spec = lossnet.get_spec(C.ensure_registered("kumar_resnet13_w0.3"))
    assert spec.layer_sets["kumar"] == ("layer1", "layer2", "layer3", "layer4")


def test_a_trained_resnet_checkpoint_is_a_loss_network_in_one_line(tmp_path):
    name = C.ensure_registered("kumar_resnet6_w0.25_c14")
    model = C.build_classifier(name, seed=1)
    model(torch.rand(4, 3, 64, 64))  # train mode: BN running statistics move away from their init
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    net = lossnet.LossNetwork(name, layers="kumar", weights=str(path), input_norm="none")
    x = torch.rand(2, 3, 64, 64)
    feats = net(x)
    with torch.no_grad():
        expected = C.stage_outputs(model.eval(), x)
    assert list(feats) == ["layer1", "layer2", "layer3", "layer4"]
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert all(torch.allclose(f, e, atol=1e-5) for f, e in zip(feats.values(), expected))
    metric = lossnet.PerceptualLoss(name, layers="kumar", weights=str(path))
    assert metric(x, x).item() == 0.0 and metric(x, x.flip(-1)).item() > 0
    other = C.ensure_registered("kumar_resnet6_w0.5_c14")
    with pytest.raises(WeightsError, match="does not fit"):
        lossnet.PerceptualLoss(other, layers="kumar", weights=str(path))


def test_a_vit_checkpoint_gives_the_cls_token_after_every_block(tmp_path):
    name = C.ensure_registered("kumar_vit_p8_w32_d3_h2_m64_c7")
    model = C.build_classifier(name, seed=0).eval()
    path = tmp_path / "vit.pt"
    torch.save(model.state_dict(), path)
    net = lossnet.LossNetwork(name, layers="kumar", weights=str(path), input_norm="none")
    x = torch.rand(2, 3, 64, 64)
    feats = list(net(x).values())
    with torch.no_grad():
        tokens = model._process_input(x)
        tokens = torch.cat([model.class_token.expand(2, -1, -1), tokens], dim=1) + model.encoder.pos_embedding
        expected = []
        for layer in model.encoder.layers:
            tokens = layer(tokens)
            expected.append(tokens[:, 0])
    assert len(feats) == 3
    assert all(torch.allclose(f.flatten(1), e, atol=1e-5) for f, e in zip(feats, expected))
