"""The iterative U-Net, its loss, the generated roads and the Massachusetts Roads loaders."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossnet.data import (
    generate_roads,
    load_segmentation_data,
    massachusetts_layout,
    write_massachusetts_fixture,
)
from lossnet.errors import DataError
from lossnet.tasks.config import LossConfig
from lossnet.tasks.segmentation import IterativeUNet, evaluate_segmentation, seg_loss, seg_step


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("h, w", [(32, 32), (30, 45)])
def test_iterative_unet_shapes(h, w):
    net = IterativeUNet(width=4, depth=3, iterations=3)
    outs = net(torch.rand(2, 3, h, w))
    assert len(outs) == 3 and all(o.shape == (2, 1, h, w) for o in outs)
    assert net.unet.down[0][0].in_channels == 4  # RGB + the previous prediction
    assert len(net(torch.rand(1, 3, h, w), iterations=1)) == 1


def test_each_iteration_sees_the_previous_prediction():
    torch.manual_seed(0)
    net = IterativeUNet(width=4, depth=2, iterations=2).eval()
    x = torch.rand(1, 3, 16, 16)
    first, second = net(x)
    zeros = torch.zeros(1, 1, 16, 16)
    assert torch.allclose(first, net.unet(torch.cat([x, zeros], 1)))
    assert torch.allclose(second, net.unet(torch.cat([x, torch.sigmoid(first)], 1)))


def test_loss_weights_later_iterations_more():
    mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
    a, b = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    bce = [F.binary_cross_entropy_with_logits(t, mask) for t in (a, b)]
    got = seg_loss([a, b], mask, feature_loss=None, mu=0.0)
    assert got.item() == pytest.approx((1 / 3 * bce[0] + 2 / 3 * bce[1]).item(), rel=1e-6)
    pixel = LossConfig(net=None, distance="l2").build()
    with_mu = seg_loss([a], mask, pixel, mu=0.5)
    expected = bce[0] + 0.5 * (torch.sigmoid(a) - mask).pow(2).mean()
    assert with_mu.item() == pytest.approx(expected.item(), rel=1e-6)


def test_generated_roads_are_deterministic_and_plausible():
    x, m = generate_roads(6, 48, seed=5)
    x2, m2 = generate_roads(6, 48, seed=5)
    assert torch.equal(x, x2) and torch.equal(m, m2)
    assert not torch.equal(m, generate_roads(6, 48, seed=6)[1])
    assert torch.equal(generate_roads(3, 48, seed=5)[1], m[:3])  # tile i depends on (seed, i) only
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    frac = m.mean(dim=(1, 2, 3))
    assert (frac > 0.01).all() and (frac < 0.4).all()
    assert 0 <= x.min() and x.max() <= 1


def test_a_few_steps_lower_the_loss_on_generated_roads(train_briefly):
    data = load_segmentation_data("builtin", crop=32, n_train=8, n_val=0, n_test=1, tile_size=48)
    batch = [torch.stack(t) for t in zip(*[data.train[(i, 3)] for i in range(8)])]
    torch.manual_seed(0)
    net = IterativeUNet(width=8, depth=3, iterations=2)
    step = seg_step(LossConfig("efficientnet_lite0", layers="blocks.0").build(), 0.01, 2)
    before, after = train_briefly(net, step, batch, lr=3e-3)
    assert after < 0.7 * before


def test_training_items_are_crops_with_matching_flips():
    data = load_segmentation_data("builtin", crop=24, n_train=2, n_val=0, n_test=1, tile_size=48)
    img, mask = data.train[(1, 9)]
    assert img.shape == (3, 24, 24) and mask.shape == (1, 24, 24)
    full_img, full_mask = data.train.pair(1)
    # find the crop (and flips) in the full tile: the mask must follow the image exactly
    found = False
    for flip in ([], [-1], [-2], [-1, -2]):
        im, mk = (img.flip(flip), mask.flip(flip)) if flip else (img, mask)
        for top in range(25):
            for left in range(25):
                if torch.equal(full_img[:, top:top + 24, left:left + 24], im):
                    found = torch.equal(full_mask[:, top:top + 24, left:left + 24], mk)
    assert found


@pytest.mark.parametrize("layout, png", [("toronto", False), ("kaggle", False), ("kaggle", True)])
def test_loader_reads_the_official_layouts(tmp_path, layout, png):
    write_massachusetts_fixture(tmp_path, layout=layout, n_train=3, n_val=1, n_test=2, size=40, png=png)
    found, splits = massachusetts_layout(tmp_path)
    assert found.startswith(layout)
    data = load_segmentation_data(tmp_path, crop=32)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)
    img, mask = data.test[0]
    assert img.shape == (3, 40, 40) and mask.shape == (1, 40, 40)
    _, masks = generate_roads(2, 40, seed=2)  # what the writer stored for the test split
    assert torch.equal(mask, masks[0])
    assert data.train[(0, 1)][0].shape == (3, 32, 32)


def test_bad_data_gives_clear_errors(tmp_path):
    with pytest.raises(DataError, match="train/sat"):
        load_segmentation_data(tmp_path)
    write_massachusetts_fixture(tmp_path, "toronto", n_train=2, n_val=0, n_test=0, size=32)
    with pytest.raises(DataError, match="no test images"):
        load_segmentation_data(tmp_path, crop=16)
    write_massachusetts_fixture(tmp_path, "toronto", n_train=2, n_val=0, n_test=1, size=32)
    next((tmp_path / "train" / "map").iterdir()).unlink()
    with pytest.raises(DataError, match="no mask with the same name"):
        load_segmentation_data(tmp_path, crop=16)
    with pytest.raises(DataError, match="larger than"):
        load_segmentation_data("builtin", crop=80, tile_size=64)
    write_massachusetts_fixture(tmp_path / "b", "toronto", n_train=1, n_val=0, n_test=1, size=32)
    data = load_segmentation_data(tmp_path / "b", crop=48)
    with pytest.raises(DataError, match="smaller than the crop"):
        data.train[(0, 0)]


def test_evaluation_scores_a_perfect_and_an_empty_predictor(monkeypatch):
    data = load_segmentation_data("builtin", crop=32, n_train=1, n_val=0, n_test=3, tile_size=48)
    net = IterativeUNet(width=4, depth=2, iterations=1)
    masks = iter([data.test[i][1] for i in range(3)])
    from lossnet.tasks import segmentation as seg

    monkeypatch.setattr(seg, "predict", lambda model, image, iterations=None: next(masks)[None])
    scores, _ = evaluate_segmentation(net, data.test, torch.device("cpu"), threshold=0.3, buffer=2)
    assert scores["completeness"] == scores["correctness"] == scores["quality"] == scores["relaxed_f1"] == 1.0
    monkeypatch.setattr(seg, "predict", lambda model, image, iterations=None: torch.zeros(1, 1, 48, 48))
    scores, _ = evaluate_segmentation(net, data.test, torch.device("cpu"))
    assert scores["completeness"] == 0 and scores["quality"] == 0 and scores["relaxed_quality"] == 0
