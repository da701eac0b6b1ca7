"""Shared, generated, deterministic fixtures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F


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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
