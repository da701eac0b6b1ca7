"""Shared, generated, deterministic fixtures."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossnet

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    """Tests never reach a hub: only loopback connections (local test servers) are allowed."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
        raise OSError(f"tests may not open network connections (to {address!r})")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


def _photo(name: str, size: int) -> torch.Tensor:
    from skimage import data

    image = getattr(data, name)()
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
    return F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Four real photos from scikit-image, (4, 3, 64, 64) in [0, 1]."""
    return torch.stack([_photo(n, 64) for n in ("astronaut", "chelsea", "coffee", "rocket")])


@pytest.fixture(scope="session")
def photo_pairs(photos) -> tuple[torch.Tensor, torch.Tensor]:
    """Real photos and noisy / shifted versions of them."""
    g = torch.Generator().manual_seed(0)
    noisy = (photos + 0.08 * torch.randn(photos.shape, generator=g)).clamp(0, 1)
    return photos, torch.cat([noisy[:2], photos[2:].roll(3, dims=-1)])


@pytest.fixture(scope="session")
def trunk(tmp_path_factory):
    """A state-dict file of alexnet with seeded random weights (seed 4): a weights FILE, as users pass one."""
    path = tmp_path_factory.mktemp("trunk") / "alexnet.pth"
    torch.save(lossnet.load_model("alexnet", weights="random", seed=4).state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
