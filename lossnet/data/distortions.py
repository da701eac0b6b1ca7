"""Deterministic image distortions of the BAPPS "traditional" families.

Every family is a function ``f(img, level, generator) -> img`` where ``img`` is a float
``(3, H, W)`` tensor in [0, 1], ``level`` in [0, 1] sets the strength (0 returns the image
exactly unchanged; the change grows monotonically with the level) and every random choice
(noise, direction, sign) is drawn from ``generator``, a CPU ``torch.Generator``, so the same
seed gives the same output. For a fixed seed the random choices do not depend on the level,
so a stronger level is the same distortion, only stronger. They live in :data:`DISTORTIONS`.

Example:
    >>> import torch
    >>> from lossnet.data.distortions import distort, DISTORTIONS
    >>> x = torch.rand(3, 64, 64)
    >>> y = distort(x, "gaussian_blur", 0.5, seed=1)
    >>> y.shape == x.shape and torch.equal(distort(x, "jpeg", 0.0), x)
    True
"""
from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lossnet.errors import InputError, unknown_name

Distortion = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

_LUMA = (0.299, 0.587, 0.114)


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def _sign(generator: torch.Generator) -> float:
    return 1.0 if float(_rand(generator, 1)) < 0.5 else -1.0


def _luma(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(0, keepdim=True)


def _translate(img: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Translate by (dx, dy) pixels (sub-pixel: bilinear), edge pixels repeated."""
    _, h, w = img.shape
    theta = torch.tensor(
        [[1.0, 0.0, -2.0 * dx / w], [0.0, 1.0, -2.0 * dy / h]], dtype=torch.float32, device=img.device
    ).unsqueeze(0)
    grid = F.affine_grid(theta, [1, 3, h, w], align_corners=False)
    out = F.grid_sample(img.unsqueeze(0).float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(0).to(img.dtype)


def gaussian_noise(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Additive white Gaussian noise, standard deviation ``0.25 * level``.

    Example:
        >>> gaussian_noise(torch.full((3, 8, 8), .5), 1.0, torch.Generator().manual_seed(0)).std() > 0.1
        tensor(True)
    """
    noise = torch.randn(img.shape, generator=generator).to(img)
    if level == 0:
        return img.clone()
    return (img + 0.25 * level * noise).clamp_(0.0, 1.0)


def salt_pepper(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Impulse noise: a fraction ``0.15 * level`` of the pixels set to black or white.

    The corrupted pixels at a lower level are a subset of those at a higher level (same seed).
    """
    _, h, w = img.shape
    where = _rand(generator, h, w).to(img.device)
    salt = (_rand(generator, h, w) < 0.5).to(img)
    if level == 0:
        return img.clone()
    mask = (where < 0.15 * level).unsqueeze(0)
    return torch.where(mask, salt.unsqueeze(0).expand_as(img), img)


def gaussian_blur(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with standard deviation ``3 * level`` pixels (edges repeated)."""
    if level == 0:
        return img.clone()
    sigma = 3.0 * level
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).to(img.dtype)
    out = F.pad(img.unsqueeze(0), (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return out.squeeze(0).clamp_(0.0, 1.0)


def pixelate(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Down-sampling (area average) then nearest up-sampling; block size ``1 + level * (min(H,W)/8 - 1)``."""
    if level == 0:
        return img.clone()
    _, h, w = img.shape
    block = 1.0 + level * (max(2.0, min(h, w) / 8.0) - 1.0)
    small = (max(1, round(h / block)), max(1, round(w / block)))
    if small == (h, w):
        return img.clone()
    out = F.interpolate(img.unsqueeze(0), size=small, mode="area")
    out = F.interpolate(out, size=(h, w), mode="nearest")
    return out.squeeze(0)


def jpeg(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """JPEG compression with PIL, quality ``round(95 - 90 * level)`` (95 .. 5)."""
    if level == 0:
        return img.clone()
    quality = int(round(95 - 90 * level))
    arr = (img.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode="RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(out.copy()).permute(2, 0, 1).to(device=img.device, dtype=img.dtype) / 255.0


def shift(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Translation by ``0.15 * level * min(H, W)`` pixels in a random direction, edges repeated."""
    angle = float(_rand(generator, 1)) * 2.0 * math.pi
    if level == 0:
        return img.clone()
    _, h, w = img.shape
    d = 0.15 * level * min(h, w)
    return _translate(img, d * math.cos(angle), d * math.sin(angle)).clamp_(0.0, 1.0)


def ghosting(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """A shifted copy blended in: ``(1 - a) x + a shift(x)``, ``a = 0.5 * level``, offset 10% of the size."""
    angle = float(_rand(generator, 1)) * 2.0 * math.pi
    if level == 0:
        return img.clone()
    _, h, w = img.shape
    d = 0.1 * min(h, w)
    ghost = _translate(img, d * math.cos(angle), d * math.sin(angle))
    a = 0.5 * level
    return ((1.0 - a) * img + a * ghost).clamp_(0.0, 1.0)


def contrast(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Contrast scaled about the mean luminance by ``1 +- 0.9 level`` (sign drawn from the generator)."""
    s = _sign(generator)
    if level == 0:
        return img.clone()
    factor = 1.0 + s * 0.9 * level
    mean = _luma(img).mean()
    return (mean + factor * (img - mean)).clamp_(0.0, 1.0)


def brightness(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Lightness shift: ``+-0.4 * level`` added to every channel (sign drawn from the generator)."""
    s = _sign(generator)
    if level == 0:
        return img.clone()
    return (img + s * 0.4 * level).clamp_(0.0, 1.0)


def saturation(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Colour saturation scaled by ``1 +- level`` about the grey value (towards grey, or boosted)."""
    s = _sign(generator)
    if level == 0:
        return img.clone()
    factor = 1.0 + s * level
    grey = _luma(img)
    return (grey + factor * (img - grey)).clamp_(0.0, 1.0)


_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


def hue_shift(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Hue rotation by ``+-90 * level`` degrees (a rotation of the YIQ chroma plane)."""
    s = _sign(generator)
    if level == 0:
        return img.clone()
    a = s * 0.5 * math.pi * level
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
    m = torch.linalg.inv(_RGB2YIQ) @ rot @ _RGB2YIQ
    out = torch.einsum("ij,jhw->ihw", m.to(img), img)
    return out.clamp_(0.0, 1.0)


def color_cast(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Colour shift: a random RGB offset of length ``0.3 * level`` added to every pixel."""
    v = torch.randn(3, generator=generator)
    v = v / v.norm().clamp_min(1e-8)
    if level == 0:
        return img.clone()
    return (img + 0.3 * level * v.to(img).view(3, 1, 1)).clamp_(0.0, 1.0)


def quantize(img: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Colour quantisation to ``round(2 + 254 (1 - level)^3)`` levels per channel."""
    if level == 0:
        return img.clone()
    n = int(round(2 + 254 * (1.0 - level) ** 3))
    return (img * (n - 1)).round_().div_(n - 1).clamp_(0.0, 1.0)


DISTORTIONS: dict[str, Distortion] = {
    "gaussian_noise": gaussian_noise,
    "salt_pepper": salt_pepper,
    "gaussian_blur": gaussian_blur,
    "pixelate": pixelate,
    "jpeg": jpeg,
    "shift": shift,
    "ghosting": ghosting,
    "contrast": contrast,
    "brightness": brightness,
    "saturation": saturation,
    "hue_shift": hue_shift,
    "color_cast": color_cast,
    "quantize": quantize,
}
"""Registry of distortion families: name -> ``f(img, level, generator)``."""


def check_level(level: float) -> float:
    """``level`` as a float, checked to lie in [0, 1]."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InputError(f"distortion level must be a number in [0, 1], got {level!r}") from None
    if not (0.0 <= value <= 1.0):
        raise InputError(f"distortion level must be in [0, 1], got {level!r}")
    return value


def apply_distortion(img: torch.Tensor, family: str, level: float, generator: torch.Generator) -> torch.Tensor:
    """Check the inputs and apply ``DISTORTIONS[family]`` with an explicit generator."""
    if family not in DISTORTIONS:
        raise unknown_name("distortion family", family, list(DISTORTIONS))
    if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3 or not img.is_floating_point():
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise InputError(f"distortions take a float (3, H, W) image in [0, 1], got {shape}")
    return DISTORTIONS[family](img, check_level(level), generator)


def distort(img: torch.Tensor, family: str, level: float, seed: int = 0) -> torch.Tensor:
    """Apply distortion ``family`` at ``level`` with randomness seeded by ``seed``.

    Example:
        >>> y = distort(torch.rand(3, 32, 32), "jpeg", 0.8, seed=0)
        >>> tuple(y.shape)
        (3, 32, 32)
    """
    return apply_distortion(img, family, level, torch.Generator().manual_seed(int(seed)))
