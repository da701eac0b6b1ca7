"""Learned lin calibration: LPIPS protocol pieces, non-negativity, loss decrease, save/load, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lossnet
from lossnet.data import load_2afc, write_bapps_fixture
from lossnet.distances.functional import FEATURE_DISTANCES, feature_distance
from lossnet.distances.lin import read_lin_file
from lossnet.scoring.calibration import (
    CalibrationError,
    LinCalibrator,
    RankingHead,
    calibrate,
    channel_terms,
    lpips_lr,
)

POINTS = ["features.1", "features.4"]


@pytest.fixture(scope="module")
def train_sets(tmp_path_factory):
    root = write_bapps_fixture(tmp_path_factory.mktemp("bapps"), n=10, split="train", subsets=("traditional", "cnn"))
    return load_2afc(root, split="train")


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    path = tmp_path_factory.mktemp("trunk") / "alexnet.pth"
    torch.save(lossnet.load_model("alexnet", weights="random", seed=5).state_dict(), path)
    return path


def metric(trunk, **kw):
    return lossnet.PerceptualLoss("alexnet", layers=POINTS, weights=trunk, **kw)


@pytest.mark.parametrize("distance", ["spatial", "mean_pool", "mse", "l1"])
def test_channel_terms_are_linear_in_lin(distance):
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(3, 6, 5, 5, generator=g), torch.randn(3, 6, 5, 5, generator=g)
    w = torch.rand(6, generator=g)
    torch.testing.assert_close(channel_terms(f0, f1, distance) @ w, FEATURE_DISTANCES[distance](f0, f1, w))


def test_ranking_head_is_the_lpips_one():
    head = RankingHead()
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(5, 32, (1, 1)), (32, 32, (1, 1)),
                                                                             (32, 1, (1, 1))]
    assert [m.negative_slope for m in head.modules() if isinstance(m, torch.nn.LeakyReLU)] == [0.2, 0.2]
    assert isinstance(list(head.modules())[-1], torch.nn.Sigmoid)
    p = head(torch.rand(7), torch.rand(7))
    assert p.shape == (7,) and bool(((p > 0) & (p < 1)).all())


def test_lpips_learning_rate_schedule():
    # LPIPS: nepoch at lr, then lr -= lr / nepoch_decay after each later epoch
    assert [lpips_lr(1e-4, e, 3, 2) for e in range(5)] == pytest.approx([1e-4, 1e-4, 1e-4, 1e-4, 5e-5])
    assert [lpips_lr(1.0, e, 1, 4) for e in range(5)] == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.25])


def test_weights_stay_non_negative_and_loss_decreases(train_sets, trunk):
    history: list = []
    lin = calibrate(metric(trunk), train_sets, epochs=3, decay_epochs=1, batch_size=5, lr=0.05, seed=0,
                    progress=False, history=history)
    assert list(lin) == POINTS
    assert all(bool((w >= 0).all()) for w in lin.values())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["lr"] for h in history] == pytest.approx([0.05, 0.05, 0.05, 0.05])
    assert history[-1]["loss"] < history[0]["loss"]


def test_step_clamps_after_every_step(trunk):
    cal = LinCalibrator(metric(trunk), lr=2.0, seed=0)  # Adam's first step moves every weight by about lr
    g = torch.Generator().manual_seed(0)
    x = [torch.rand(4, 3, 64, 64, generator=g) for _ in range(3)]
    t0, t1 = cal.terms(*x)
    assert t0.shape == (4, 64 + 192)
    before = cal.lin_weights()
    cal.step(t0, t1, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    after = cal.lin_weights()
    assert all(bool((w >= 0).all()) for w in after.values())
    assert any(bool((w == 0).any()) for w in after.values())  # pushed below 0, clamped back to 0
    assert any(not torch.equal(before[p], after[p]) for p in POINTS)


def test_save_load_round_trip_gives_the_same_distances(train_sets, trunk, tmp_path):
    out = tmp_path / "lin.pt"
    lin = calibrate(metric(trunk), train_sets, epochs=1, batch_size=5, lr=0.01, progress=False, out=out)
    stored = read_lin_file(out)
    assert list(stored) == POINTS and all(torch.equal(stored[p], lin[p]) for p in POINTS)
    loaded = metric(trunk, lin=out, reduction="none")
    g = torch.Generator().manual_seed(1)
    ref, p0, p1 = (torch.rand(3, 3, 64, 64, generator=g) for _ in range(3))
    with torch.no_grad():
        got0, got1 = loaded(ref, p0), loaded(ref, p1)
        f = loaded.net.extract(torch.cat([ref, p0, p1]))
        fr, f0 = {k: v[:3] for k, v in f.items()}, {k: v[3:6] for k, v in f.items()}
        expected0 = feature_distance(fr, f0, "spatial", lin=lin)
    torch.testing.assert_close(got0, expected0, rtol=1e-5, atol=1e-7)
    cal = LinCalibrator(metric(trunk, lin=lin))  # starts from the loaded weights
    t0, t1 = cal.terms(ref, p0, p1)
    d0, d1 = cal.distances(t0, t1)
    torch.testing.assert_close(d0.detach(), got0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(d1.detach(), got1, rtol=1e-5, atol=1e-7)


def test_deterministic_under_a_seed_and_cache_does_not_change_results(train_sets, trunk):
    kw = dict(epochs=1, decay_epochs=1, batch_size=4, lr=0.02, progress=False)
    a = calibrate(metric(trunk), train_sets, seed=7, **kw)
    b = calibrate(metric(trunk), train_sets, seed=7, **kw)
    c = calibrate(metric(trunk), train_sets, seed=8, **kw)
    d = calibrate(metric(trunk), train_sets, seed=7, cache=False, **kw)
    assert all(torch.equal(a[p], b[p]) for p in POINTS)
    assert any(not torch.equal(a[p], c[p]) for p in POINTS)
    for p in POINTS:
        np.testing.assert_allclose(a[p].numpy(), d[p].numpy(), rtol=1e-4, atol=1e-6)


def test_any_architecture_name_and_bad_settings(train_sets, trunk):
    lin = calibrate("alexnet", train_sets, layers=["features.1"], weights=trunk, epochs=1, decay_epochs=0,
                    progress=False)
    assert list(lin) == ["features.1"] and lin["features.1"].shape == (64,)
    with pytest.raises(CalibrationError, match="style"):
        calibrate(metric(trunk, distance="style"), train_sets, epochs=1, progress=False)
    with pytest.raises(CalibrationError, match="pixel"):
        calibrate(lossnet.PerceptualLoss(distance="l2"), train_sets, epochs=1, progress=False)
