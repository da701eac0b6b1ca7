import pytest

import lossnet
from lossnet.errors import UnknownNameError
from lossnet.networks.registry import ARCHITECTURES

PIHLGREN = {
    "alexnet": ["features.1", "features.4", "features.7", "features.11"],
    "vgg11": ["features.1", "features.4", "features.9", "features.19"],
    "vgg16": ["features.3", "features.8", "features.15", "features.29"],
    "vgg16_bn": ["features.5", "features.12", "features.22", "features.42"],
    "vgg19": ["features.3", "features.8", "features.17", "features.35"],
    "densenet121": ["features.relu0", "features.denseblock1", "features.denseblock2", "features.denseblock4"],
    "resnet18": ["relu", "layer1", "layer2", "layer4"],
    "resnet50": ["relu", "layer1", "layer2", "layer4"],
    "resnext50_32x4d": ["relu", "layer1", "layer2", "layer4"],
    "googlenet": ["conv1", "inception3a", "inception4a", "inception5b"],
    "inception_v3": ["Conv2d_2b_3x3", "Mixed_5b", "Mixed_5d", "Mixed_6e"],
    "squeezenet1_1": ["features.1", "features.3", "features.7", "features.12"],
    "efficientnet_b0": ["features.0", "features.1", "features.4", "features.7"],
    "efficientnet_b7": ["features.0", "features.1", "features.4", "features.7"],
}


@pytest.mark.parametrize("arch", sorted(PIHLGREN))
def test_pihlgren_points_are_the_studys(arch):
    assert lossnet.layer_sets(arch)["pihlgren"] == PIHLGREN[arch]
    points = lossnet.extraction_points(arch)
    # every point of the set is a valid point, listed shallow to deep
    assert [points.index(p) for p in PIHLGREN[arch]] == sorted(points.index(p) for p in PIHLGREN[arch])


def test_lpips_layer_sets():
    assert lossnet.layer_sets("alexnet")["lpips"] == ["features.1", "features.4", "features.7", "features.9", "features.11"]
    assert lossnet.layer_sets("vgg16")["lpips"] == ["features.3", "features.8", "features.15", "features.22", "features.29"]
    assert len(lossnet.layer_sets("squeezenet1_1")["lpips"]) == 7


def test_kumar_sets():
    assert lossnet.layer_sets("resnet50")["kumar"] == ["layer1", "layer2", "layer3", "layer4"]
    vit = lossnet.layer_sets("vit_b_16")["kumar"]
    assert vit == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]


def test_list_architectures_has_the_study_networks():
    names = lossnet.list_architectures()
    assert set(PIHLGREN) <= set(names)
    assert "efficientnet_lite0" in names
    assert names == sorted(names)
    # regnet_y_400mf has no entry: only include_torchvision lists it (mobilenet_v2 is in the table)
    assert "regnet_y_400mf" not in names
    assert "regnet_y_400mf" in lossnet.list_architectures(include_torchvision=True)


def test_extraction_points_shallow_to_deep():
    assert lossnet.extraction_points("resnet18") == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert lossnet.extraction_points("vgg16") == [f"features.{i}" for i in range(31)]
    dense = lossnet.extraction_points("densenet121")
    assert dense.index("features.denseblock1") < dense.index("features.transition1") < dense.index("features.denseblock2")


def test_unknown_architecture_lists_close_matches():
    with pytest.raises(UnknownNameError) as err:
        lossnet.extraction_points("vgg61")
    msg = str(err.value)
    assert "vgg61" in msg and "vgg16" in msg and "Did you mean" in msg and "timm:" in msg


def test_unknown_layer_lists_valid_points():
    with pytest.raises(UnknownNameError) as err:
        lossnet.LossNetwork("resnet18", ["layer5"], weights="random")
    msg = str(err.value)
    assert "layer5" in msg and "layer4" in msg and "pihlgren" in msg


def test_unknown_layer_set():
    with pytest.raises(UnknownNameError, match="lpips"):
        lossnet.LossNetwork("resnet18", "lpips", weights="random")


def test_timm_models_are_accepted():
    assert lossnet.extraction_points("timm:resnet18")[:4] == ["conv1", "bn1", "act1", "maxpool"]
    assert lossnet.layer_sets("timm:resnet18")["kumar"] == ["layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(UnknownNameError, match="timm model"):
        lossnet.extraction_points("timm:not_a_model_xyz")


def test_registry_is_data():
    """Every built-in entry names itself, and its layer sets are real points, shallow to deep."""
    builtin = {n: s for n, s in ARCHITECTURES.items() if s.source != "factory"}  # factories: their own tests
    assert len(builtin) >= 50
    for name, spec in builtin.items():
        assert spec.name == name
        if not spec.layer_sets:
            continue
        points = lossnet.extraction_points(spec)
        for set_name, set_points in spec.layer_sets.items():
            index = [points.index(p) for p in set_points]  # ValueError: not an extraction point
            assert index == sorted(index), (name, set_name)


def test_imagenet_top1_from_weights_metadata():
    assert lossnet.imagenet_top1("resnet18") == pytest.approx(69.758)
    assert lossnet.imagenet_top1("vgg16") == pytest.approx(71.592)


# --- public registration and wildcards -------------------------------------------------------

import torch  # noqa: E402
from torch import nn  # noqa: E402

from lossnet.errors import LossnetError  # noqa: E402
from lossnet.networks import ArchSpec, register_architecture  # noqa: E402


@pytest.fixture
def clean_registry():
    """Registrations made by a test are removed afterwards."""
    before = dict(ARCHITECTURES)
    yield
    ARCHITECTURES.clear()
    ARCHITECTURES.update(before)


class _TwoStage(nn.Module):
    def __init__(self, width: int = 4, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.fc(self.stage(self.stem(x)).mean((2, 3)))


def _factory_spec(name="two_stage_test", **kw):
    fields = {"build_kwargs": {"width": 6}, "points_roots": ("", "stem", "stage"),
              "layer_sets": {"pihlgren": ["stem.1", "stage.1"]}, **kw}
    return ArchSpec(name=name, source="factory", builder="two_stage", factory=_TwoStage, **fields)


def test_registered_factory_spec_builds_with_its_kwargs(clean_registry, photos):
    spec = register_architecture(_factory_spec())
    assert spec.layer_sets["pihlgren"] == ("stem.1", "stage.1")  # stored as tuples
    assert lossnet.get_spec("two_stage_test") is spec
    assert "two_stage_test" in lossnet.list_architectures("two_stage*")
    model = lossnet.load_model("two_stage_test", weights="random", seed=1)
    assert model.stem[0].out_channels == 6  # build_kwargs reached the factory
    with torch.random.fork_rng():
        torch.manual_seed(1)
        reference = _TwoStage(width=6).eval()
    feats = lossnet.LossNetwork("two_stage_test", weights="random", seed=1, input_norm="none")(photos[:1])
    assert list(feats) == ["stem.1", "stage.1"]
    with torch.no_grad():
        torch.testing.assert_close(feats["stage.1"], reference.stage(reference.stem(photos[:1])))
    assert lossnet.extraction_points("two_stage_test") == ["stem.0", "stem.1", "stage.0", "stage.1"]


def test_duplicate_registration_is_refused_unless_replace(clean_registry):
    register_architecture(_factory_spec())
    with pytest.raises(LossnetError, match="'two_stage_test' is registered already.*replace=True"):
        register_architecture(_factory_spec())
    new = register_architecture(_factory_spec(build_kwargs={"width": 2}), replace=True)
    assert lossnet.get_spec("two_stage_test") is new
    assert lossnet.load_model("two_stage_test", weights="random").stem[0].out_channels == 2
    with pytest.raises(LossnetError, match="registered already"):
        register_architecture(ARCHITECTURES["vgg16"])


def test_registration_refuses_what_cannot_work(clean_registry):
    with pytest.raises(LossnetError, match="torchvision model name"):
        register_architecture(ArchSpec(name="regnet_y_400mf", source="torchvision", builder="regnet_y_400mf",
                                       default_layers="all"))
    with pytest.raises(LossnetError, match="no callable factory"):
        register_architecture(ArchSpec(name="x1", source="factory", builder="x", default_layers="all"))
    with pytest.raises(LossnetError, match="used only with source='factory'"):
        register_architecture(ArchSpec(name="x2", source="torchvision", builder="vgg16", factory=_TwoStage,
                                       default_layers="all"))
    with pytest.raises(UnknownNameError, match="architecture source"):
        register_architecture(ArchSpec(name="x3", source="module", builder="x", default_layers="all"))
    with pytest.raises(UnknownNameError, match="default layer set"):
        register_architecture(_factory_spec(name="x4", default_layers="deep"))
    with pytest.raises(LossnetError, match="'timm:'"):
        register_architecture(ArchSpec(name="timm:mine", source="timm", builder="resnet18"))
    with pytest.raises(LossnetError, match="takes an ArchSpec"):
        register_architecture("vgg16")
    assert not {"x1", "x2", "x3", "x4", "regnet_y_400mf"} & set(ARCHITECTURES)


def test_list_architectures_wildcards():
    assert lossnet.list_architectures("vgg*") == [
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
    assert lossnet.list_architectures("resnet?8") == ["resnet18"]
    assert lossnet.list_architectures("nothing_like_this*") == []
    assert "regnet_y_400mf" in lossnet.list_architectures("regnet_*", include_torchvision=True)
    assert lossnet.list_architectures("regnet_*") == []
    timm_names = lossnet.list_architectures("timm:vit_small_patch14_reg4*")
    assert "timm:vit_small_patch14_reg4_dinov2" in timm_names and all(n.startswith("timm:") for n in timm_names)
    with pytest.raises(LossnetError, match="include_torchvision=... by keyword"):
        lossnet.list_architectures(True)


def test_functions_take_a_resolved_spec(monkeypatch):
    """A spec resolved once at the edge travels inward: no name lookup further down."""
    from lossnet.networks import extraction, registry

    spec = lossnet.get_spec("resnet18")
    calls = []
    real = registry.get_spec
    monkeypatch.setattr(registry, "_generic_torchvision_spec", lambda n: calls.append(n) or real(n))
    monkeypatch.setattr(registry, "ARCHITECTURES", {})  # a name lookup would now fail
    assert extraction.extraction_points(spec)[-1] == "layer4"
    assert extraction.layer_sets(spec)["pihlgren"] == ["relu", "layer1", "layer2", "layer4"]
    assert extraction.resolve_layers(spec, "pihlgren") == ["relu", "layer1", "layer2", "layer4"]
    net = extraction.LossNetwork(spec, "pihlgren", weights="random")
    assert net.points == ["relu", "layer1", "layer2", "layer4"]
    assert lossnet.networks.imagenet_top1(spec) == pytest.approx(69.758)
    assert calls == []
