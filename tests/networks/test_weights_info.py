"""Weights carry their preprocessing and metadata: WeightsInfo against its sources."""
import dataclasses

import pytest
import torch
import torchvision

import lossnet
from lossnet.errors import LossnetError, WeightsError
from lossnet.networks import ArchSpec, LossNetwork, WeightsInfo, weights_info


@pytest.mark.parametrize("arch,tag", [("resnet18", "IMAGENET1K_V1"), ("resnet50", "IMAGENET1K_V2"),
                                      ("inception_v3", "IMAGENET1K_V1"), ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1")])
def test_torchvision_info_is_the_weights_enum(arch, tag):
    member = torchvision.models.get_model_weights(arch)[tag]
    transform = member.transforms()
    info = weights_info(arch, f"imagenet:{tag}")
    assert info.source == f"{type(member).__name__}.{tag}"
    assert info.mean == tuple(transform.mean) and info.std == tuple(transform.std)
    assert info.input_size == transform.crop_size[0] and info.resize_size == transform.resize_size[0]
    assert info.interpolation == transform.interpolation.value
    assert info.imagenet_top1 == member.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert info.url == member.url and member.url.endswith(f"-{info.sha256_prefix}.pth")


def test_weights_choices_differ_where_their_metadata_does():
    v1, v2 = weights_info("resnet50", "imagenet"), weights_info("resnet50", "imagenet:IMAGENET1K_V2")
    assert (v1.resize_size, v2.resize_size) == (256, 232)
    assert v2.imagenet_top1 > v1.imagenet_top1 > 70
    assert lossnet.imagenet_top1("resnet50") == v1.imagenet_top1  # the default weights are the studies' V1


def test_random_weights_keep_the_pretrained_preprocessing_but_no_metadata():
    info = weights_info("vit_b_16", "random")
    pretrained = weights_info("vit_b_16")
    assert (info.mean, info.std, info.input_size) == (pretrained.mean, pretrained.std, pretrained.input_size)
    assert info.imagenet_top1 is None and info.url is None and info.sha256_prefix is None
    assert info.source == "random" and "pretrained" in info.norm_source


def test_fixed_input_size_is_read_from_the_model():
    assert weights_info("vit_b_32", "random").fixed_input_size == 224
    assert weights_info("vit_b_32", "random").resize_policy == "resize to 224x224 (bilinear, antialias)"
    assert weights_info("resnet18", "random").fixed_input_size is None
    assert weights_info("resnet18", "random").resize_policy == "none"
    small = ArchSpec(name="tiny_vit_56", source="timm", builder="vit_small_patch14_reg4_dinov2",
                     build_kwargs={"img_size": 56, "depth": 1, "embed_dim": 16, "num_heads": 2})
    info = weights_info(small, "random")
    # timm's pretrained_cfg says 518, the model built with img_size=56 takes 56
    assert info.input_size == 518 and info.fixed_input_size == 56
    assert info.resize_policy == "resize to 56x56 (bicubic, antialias)"


def test_timm_info_is_its_pretrained_cfg():
    import timm

    cfg = timm.get_pretrained_cfg("convnext_tiny")
    info = weights_info("timm:convnext_tiny")  # metadata only: nothing is downloaded
    assert info.mean == tuple(cfg.mean) and info.std == tuple(cfg.std)
    assert info.input_size == cfg.input_size[-1] and info.interpolation == cfg.interpolation
    assert info.imagenet_top1 is None and "timm" in info.top1_source


def test_efficientnet_lite0_info_matches_timm_and_its_file():
    import hashlib

    import timm

    info = weights_info("efficientnet_lite0")
    cfg = timm.get_pretrained_cfg("tf_efficientnet_lite0")  # the same network in timm
    assert info.mean == tuple(cfg.mean) and info.std == tuple(cfg.std)
    assert info.input_size == cfg.input_size[-1] and info.interpolation == cfg.interpolation
    assert info.resize_size == round(cfg.input_size[-1] / cfg.crop_pct)
    with open(info.file, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest().startswith(info.sha256_prefix)
    assert lossnet.imagenet_top1("efficientnet_lite0") == info.imagenet_top1 == 75.1


def test_loss_network_applies_and_exposes_its_weights_info(photos):
    net = LossNetwork("efficientnet_lite0", ["bn1"], weights="random")
    assert net.weights_info == weights_info("efficientnet_lite0", "random")
    assert net.spec.mean == (0.5, 0.5, 0.5)
    torch.testing.assert_close(net.prepare(photos), (photos - 0.5) / 0.5)


def test_info_is_derived_once_per_spec_and_weights(monkeypatch):
    import importlib

    module = importlib.import_module("lossnet.networks.weights_info")
    weights_info("alexnet", "random")
    monkeypatch.setitem(module.PRETRAINED_INFO, "torchvision", lambda *a: pytest.fail("derived again"))
    assert weights_info("alexnet", "random").source == "random"


def test_info_is_frozen_and_serialisable():
    info = weights_info("resnet18")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.mean = (0, 0, 0)
    d = info.as_dict()
    assert d["mean"] == [0.485, 0.456, 0.406] and d["sha256_prefix"] == "f37072fd"
    assert isinstance(info, WeightsInfo)


# --- a checkpoint carries its own normalisation ----------------------------------------------


@pytest.fixture(scope="module")
def resnet18_state():
    return lossnet.load_model("resnet18", weights="random", seed=5).state_dict()


def test_checkpoint_normalisation_is_honoured_with_auto(resnet18_state, tmp_path, photos):
    mean, std = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    path = tmp_path / "own.pth"
    torch.save({"state_dict": resnet18_state, "lossnet": {"mean": mean, "std": std}}, path)
    net = LossNetwork("resnet18", ["conv1"], weights=path)
    assert net.weights_info.mean == tuple(mean) and "lossnet" in net.weights_info.norm_source
    assert net.weights_info.sha256 and net.weights_info.file == str(path)
    expected = (photos - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(photos)["conv1"], net.body.conv1(expected))
    # an explicit input_norm still wins over the file's
    assert LossNetwork("resnet18", ["conv1"], weights=path, input_norm="none").prepare(photos).equal(photos)
    # a plain state dict falls back to the architecture's pretrained preprocessing
    torch.save(resnet18_state, tmp_path / "plain.pth")
    assert weights_info("resnet18", tmp_path / "plain.pth").mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("entry,match", [
    ({"mean": [0.5, 0.5, 0.5]}, "only mean"),
    ({"mean": [0.5, 0.5], "std": [0.5, 0.5, 0.5]}, "mean must be 3 finite numbers"),
    ({"mean": [0.5] * 3, "std": [0.5, 0.0, 0.5]}, "std must be 3 finite numbers > 0"),
    ({"mean": [0.5] * 3, "std": [0.5] * 3, "size": 64}, "unknown keys"),
    ("imagenet", "must be a dict"),
])
def test_malformed_checkpoint_normalisation_is_an_error(resnet18_state, tmp_path, entry, match):
    torch.save({"state_dict": resnet18_state, "lossnet": entry}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=match):
        lossnet.load_model("resnet18", weights=tmp_path / "bad.pth")


@pytest.mark.parametrize("norm,match", [((0.5,), "pair is \\(mean, std\\)"), (((0.5, 0.5), 0.5), "3 \\(one per"),
                                        ((0.5, -1.0), "std must be > 0"), ("imagnet", "Did you mean 'imagenet'")])
def test_bad_input_norm_is_a_clear_error(norm, match):
    with pytest.raises(LossnetError, match=match):
        LossNetwork("alexnet", ["features.1"], weights="random", input_norm=norm)


def test_scalar_mean_and_std_apply_to_every_channel(photos):
    net = LossNetwork("alexnet", ["features.1"], weights="random", input_norm=(0.5, 0.25))
    torch.testing.assert_close(net.prepare(photos), (photos - 0.5) / 0.25)
