"""lossnet's DISTS must reproduce the reference `DISTS_pytorch` package, given the same VGG-16
trunk weights: as a value and as a training loss, on real photos."""
import types

import numpy as np
import pytest
import torch
import torchvision

import lossnet
from lossnet.errors import LossnetError, WeightsError
from lossnet.loss.dists import dists, dists_weights_file
from lossnet.loss.factory import describe_metric
from lossnet.networks.dists_vgg import (
    DISTS_CHANNELS,
    DISTS_POINTS,
    L2Pooling,
    dists_vgg16,
    resize_shorter_side,
)

ref_module = pytest.importorskip("DISTS_pytorch.DISTS_pt")

SEED = 7


@pytest.fixture(scope="module")
def trunk_file(tmp_path_factory):
    """A seeded random VGG-16 trunk saved under torchvision's key names, plus classifier keys
    that a full torchvision VGG-16 file carries (they must be ignored)."""
    state = dists_vgg16(weights="random", seed=SEED).state_dict()
    assert all(k.startswith("features.") for k in state)
    path = tmp_path_factory.mktemp("dists") / "vgg16.pth"
    torch.save({**state, "classifier.6.bias": torch.zeros(1000)}, path)
    return path


@pytest.fixture(scope="module")
def reference(trunk_file):
    """DISTS_pytorch.DISTS with its torchvision builder replaced by a VGG-16 holding the same weights."""
    features = {k[len("features."):]: v.clone() for k, v in torch.load(trunk_file, weights_only=True).items()
                if k.startswith("features.")}
    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
    vgg.features[:30].load_state_dict(features, strict=True, assign=True)

    def vgg16(pretrained=True):
        assert pretrained  # the reference asks for ImageNet weights: it gets the seeded ones instead
        return vgg

    original = ref_module.models
    ref_module.models = types.SimpleNamespace(vgg16=vgg16)
    try:
        return ref_module.DISTS().eval()
    finally:
        ref_module.models = original


@pytest.fixture(scope="module")
def ours(trunk_file):
    return dists(weights=trunk_file, reduction="none")


@pytest.fixture(scope="module")
def odd_photos():
    """Two real photos at an odd, non-square size (exercises the L2 pooling's padding)."""
    from skimage import data

    photos = [torch.from_numpy(np.ascontiguousarray(getattr(data, n)())).permute(2, 0, 1).float() / 255
              for n in ("chelsea", "coffee")]
    x = torch.stack([torch.nn.functional.interpolate(p[None], size=(45, 71), mode="bilinear", antialias=True)[0]
                     for p in photos]).clamp(0, 1)
    return x, x.roll(2, dims=-2)


def test_value_parity(ours, reference, photo_pairs, odd_photos):
    for x0, x1 in (photo_pairs, odd_photos):
        with torch.no_grad():
            expected = reference(x0, x1)
            got = ours(x0, x1)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert (got > 1e-3).all()  # real differences, not all-zero values that agree trivially


def test_training_loss_parity(ours, reference, photo_pairs):
    x0, x1 = photo_pairs
    loss_fn = lossnet.PerceptualLoss(network=ours.net, distance="dists", lin=ours.lin)  # reduction="mean"
    mine = x0.clone().requires_grad_(True)
    theirs = x0.clone().requires_grad_(True)
    loss = loss_fn(mine, x1)
    ref_loss = reference(theirs, x1, require_grad=True, batch_average=True)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(mine.grad).all() and mine.grad.abs().max() > 0
    scale = theirs.grad.abs().max()
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-4 * float(scale))


def test_alpha_beta_are_the_packages(ours, reference):
    assert dists_weights_file().name == "weights.pt"
    total = reference.alpha.sum() + reference.beta.sum()
    alphas, betas = [], []
    for point, channels in zip(DISTS_POINTS, DISTS_CHANNELS):
        w = ours.lin[point] / (2 * channels)  # the dists lin weights are 2C * [alpha; beta] / total
        alphas.append(w[:channels])
        betas.append(w[channels:])
    torch.testing.assert_close(torch.cat(alphas), (reference.alpha / total).flatten().detach())
    torch.testing.assert_close(torch.cat(betas), (reference.beta / total).flatten().detach())


def test_l2_pooling_matches_the_reference():
    x = torch.rand(2, 5, 9, 12)
    torch.testing.assert_close(L2Pooling(5)(x), ref_module.L2pooling(channels=5)(x), rtol=0, atol=0)


def test_the_architecture_is_registered(ours, trunk_file):
    net = lossnet.LossNetwork("dists_vgg16", weights=trunk_file)
    assert net.points == list(DISTS_POINTS)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mine, theirs = net(x), ours.net(x)
    for p, f in theirs.items():
        torch.testing.assert_close(mine[p], f, rtol=0, atol=0)
    assert torch.equal(mine["image"], x)  # stage 0 is the raw image


def test_the_preset_is_this_metric(ours, trunk_file):
    assert "dists" in lossnet.loss.list_metrics()
    metric = lossnet.loss.create_metric("dists", weights=trunk_file, reduction="none")
    assert metric.preset == "dists" and metric.distance == "dists"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(metric(x, x.flip(-1)), ours(x, x.flip(-1)), rtol=0, atol=0)
    with pytest.raises(LossnetError, match="fixes distance"):
        lossnet.loss.create_metric("dists", distance="spatial")


def test_resize_rule_matches_the_references_prepare_image():
    from PIL import Image
    from skimage import data

    pil = Image.fromarray(data.chelsea()[:290, :300])  # shorter side 290 > 256
    expected = ref_module.prepare_image(pil, resize=True)
    as_tensor = ref_module.prepare_image(pil)
    got = resize_shorter_side(as_tensor)
    assert got.shape == expected.shape == (1, 3, 256, 264)
    assert (got - expected).abs().mean() < 2e-3  # PIL resizes 8-bit images: rounding differs
    small = as_tensor[..., :256, :]
    assert resize_shorter_side(small) is small  # 256 or less: untouched, as the reference


def test_resize_option_acts_inside_the_metric():
    metric = dists(weights="random", alpha_beta="uniform", resize=True, reduction="none")
    x = torch.rand(1, 3, 260, 258)
    with torch.no_grad():
        stages = metric.net(x)  # what the scoring engine sees too
    assert tuple(stages["image"].shape[-2:]) == (257, 256)  # 256 * 260 / 258, truncated
    torch.testing.assert_close(stages["image"], resize_shorter_side(x), rtol=0, atol=0)
    # the rule is recorded with every result, and its absence too
    assert describe_metric(metric)["resize"].startswith("shorter side > 256 resized to 256")
    assert describe_metric(dists(weights="random", alpha_beta="uniform"))["resize"] == "none"
    with pytest.raises(LossnetError, match="resize must be True .* or False"):
        dists(weights="random", alpha_beta="uniform", resize="none")  # bool("none") would turn the rule ON


def test_clear_errors(tmp_path):
    with pytest.raises(LossnetError, match="DISTS fixes spatial"):
        dists(weights="random", spatial=True)
    with pytest.raises(LossnetError, match="layer_weights"):
        dists(weights="random", layer_weights=[1, 1, 1, 1, 1, 1])
    bad = tmp_path / "alpha_only.pt"
    torch.save({"alpha": torch.ones(1475)}, bad)
    with pytest.raises(WeightsError, match="no beta"):
        dists(weights="random", alpha_beta=bad)
    with pytest.raises(WeightsError, match="alpha has 10 values"):
        dists(weights="random", alpha_beta=(torch.ones(10), torch.ones(10)))
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(WeightsError, match="does not fit"):
        dists(weights=other)
