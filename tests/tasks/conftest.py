"""Fixtures of the training-task tests."""
from __future__ import annotations

import pytest
import torch

from lossnet.data.imagenet64 import load_imagenet64, write_npz_fixture
from lossnet.utils.devices import run_threads


@pytest.fixture()
def one_thread():
    """One torch thread: tiny models gain nothing from two, and OpenMP contention on a shared CPU
    makes small convolutions crawl. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with run_threads(1):
        yield


@pytest.fixture()
def train_briefly():
    """``train_briefly(net, step, batch, lr, steps=15) -> (loss before, loss after)``: ``steps`` Adam
    steps of ``net`` on one ``batch``, the loss ``step(net, batch)`` measured without gradients before
    and after (the weights seeded 0 by the caller)."""
    def train(net: torch.nn.Module, step, batch, lr: float, steps: int = 15) -> tuple[float, float]:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        with torch.no_grad():
            before = float(step(net, batch))
        for _ in range(steps):
            loss = step(net, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = float(step(net, batch))
        return before, after

    return train


@pytest.fixture()
def imagenet64_folder(tmp_path):
    """``tmp_path/in64``: a generated ImageNet 64x64 download (npz batches, 4 images a file, 8 for
    validation, labels 1-3, seed 3), already converted for training (both splits)."""
    data = tmp_path / "in64"
    write_npz_fixture(data, n_per_file=4, n_val=8, seed=3, labels=[1, 2, 3])
    load_imagenet64(data, "train", progress=False)  # convert once, before the runs
    load_imagenet64(data, "val", progress=False)
    return data
