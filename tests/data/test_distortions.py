"""Distortion families: determinism, identity at level 0, monotone strength, range and shape."""
from __future__ import annotations

import pytest
import torch

from lossnet.data import DISTORTIONS, builtin_photos, distort
from lossnet.data.distortions import apply_distortion

FAMILIES = list(DISTORTIONS)
# families whose output depends on random draws (noise, direction, sign)
RANDOM = {"gaussian_noise", "salt_pepper", "shift", "ghosting", "contrast", "brightness", "saturation",
          "hue_shift", "color_cast"}
LEVELS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.fixture(scope="module")
def patches():
    photos = builtin_photos()
    crops = [photos["astronaut"][:, 40:104, 180:244], photos["coffee"][:, 100:164, 200:264],
             photos["chelsea"][:, 60:124, 150:214], photos["rocket"][:, 250:298, 300:364]]
    return [c.contiguous() for c in crops]


def test_registry_has_the_traditional_families():
    assert len(DISTORTIONS) >= 8
    for name in ("gaussian_noise", "gaussian_blur", "jpeg", "shift", "contrast", "brightness", "saturation",
                 "hue_shift", "pixelate", "salt_pepper"):
        assert name in DISTORTIONS and callable(DISTORTIONS[name])


@pytest.mark.parametrize("family", FAMILIES)
def test_level_zero_is_identity_and_range_shape(family, patches):
    for img in patches:
        out0 = distort(img, family, 0.0, seed=3)
        assert torch.equal(out0, img) and out0 is not img
        for level in (0.3, 1.0):
            out = distort(img, family, level, seed=3)
            assert out.shape == img.shape and out.dtype == img.dtype
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            assert not torch.equal(out, img)


@pytest.mark.parametrize("family", FAMILIES)
def test_determinism_under_seed(family, patches):
    img = patches[0]
    a = distort(img, family, 0.7, seed=11)
    b = distort(img, family, 0.7, seed=11)
    assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(DISTORTIONS[family](img, 0.7, g1), DISTORTIONS[family](img, 0.7, g2))
    if family in RANDOM:
        outs = {tuple(distort(img, family, 0.7, seed=s).flatten()[:4096:7].tolist()) for s in range(6)}
        assert len(outs) > 1  # the seed does drive the random choices


def test_global_rng_untouched(patches):
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    for family in FAMILIES:
        distort(patches[0], family, 0.5, seed=1)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_strength_grows_with_level(family, patches):
    means = []
    for level in LEVELS:
        d = [torch.linalg.vector_norm(distort(img, family, level, seed=k) - img).item() for k, img in enumerate(patches)]
        means.append(sum(d) / len(d))
    assert means[0] == 0.0
    assert all(b > a for a, b in zip(means, means[1:])), (family, means)


def test_bad_inputs():
    img = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="level"):
        distort(img, "jpeg", 1.5)
    with pytest.raises(ValueError, match="level"):
        distort(img, "jpeg", -0.1)
    with pytest.raises(KeyError, match="gaussian_blur"):
        distort(img, "gausian_blur", 0.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        distort(torch.rand(1, 3, 16, 16), "jpeg", 0.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        apply_distortion(torch.rand(4, 16, 16), "shift", 0.5, torch.Generator())
