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
    assert "mobilenet_v2" in lossnet.list_architectures(include_torchvision=True)


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
    for name, spec in ARCHITECTURES.items():
        assert spec.name == name
        for set_name, points in spec.layer_sets.items():
            assert list(points) == lossnet.layer_sets(name)[set_name]


def test_imagenet_top1_from_weights_metadata():
    assert lossnet.imagenet_top1("resnet18") == pytest.approx(69.758)
    assert lossnet.imagenet_top1("vgg16") == pytest.approx(71.592)
