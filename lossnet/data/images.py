"""Image loading: any file PIL reads, as a float32 ``(3, H, W)`` tensor in [0, 1]."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

Size = Union[int, Sequence[int], None]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def resized_shape(height: int, width: int, size: Size) -> tuple[int, int]:
    """Output ``(H, W)`` of ``torchvision.transforms.Resize(size)`` for an ``height x width`` image.

    An int matches the smaller edge to ``size`` keeping the aspect ratio (the longer edge is
    truncated, as torchvision does); a pair is ``(H, W)`` exactly.

    Example:
        >>> resized_shape(300, 451, 64)
        (64, 96)
    """
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)):
        s = int(size)
        if s <= 0:
            raise ValueError(f"size must be positive, got {size}")
        short, long = (width, height) if width <= height else (height, width)
        if short == s:
            return height, width
        new_short, new_long = s, int(s * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    size = tuple(int(v) for v in size)
    if len(size) == 1:
        return resized_shape(height, width, size[0])
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be an int or a positive (H, W) pair, got {size}")
    return size[0], size[1]


def resize_pil(img: Image.Image, size: Size) -> Image.Image:
    """Resize a PIL image with bicubic interpolation, ``torchvision.transforms.Resize(size)`` semantics.

    Example:
        >>> from PIL import Image
        >>> resize_pil(Image.new("RGB", (451, 300)), 64).size
        (96, 64)
    """
    h, w = resized_shape(img.height, img.width, size)
    if (h, w) == (img.height, img.width):
        return img
    return img.resize((w, h), Image.BICUBIC)


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (grayscale is repeated, alpha is dropped, palettes expanded).

    16-bit and 32-bit integer grayscale are scaled from the 16-bit range; float images are clipped
    to [0, 1].
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64) / 65535.0
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float32 ``(3, H, W)`` tensor in [0, 1]."""
    arr = np.asarray(pil_to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().float().div_(255.0)


def load_image(path: Union[str, os.PathLike], size: Size = None) -> torch.Tensor:
    """Load an image file as a float32 ``(3, H, W)`` tensor in [0, 1].

    Grayscale, RGBA and palette images become RGB. ``size`` resizes like
    ``torchvision.transforms.Resize(size)`` with bicubic interpolation (an int matches the
    smaller edge; ``(H, W)`` is exact). Raises :class:`DataError` naming the file when it is
    missing, unreadable or corrupt.

    Example:
        >>> x = load_image("2afc/val/cnn/ref/000000.png", size=64)  # doctest: +SKIP
        >>> x.shape, x.dtype  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.float32)
    """
    p = Path(path)
    if not p.is_file():
        if p.exists():
            raise DataError(f"image path {str(p)!r} is not a file")
        raise DataError(f"image file not found: {str(p)!r}")
    try:
        with Image.open(p) as img:
            img.load()
            img = pil_to_rgb(img)
    except UnidentifiedImageError as e:
        raise DataError(f"cannot read image file {str(p)!r}: not an image format PIL knows ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise DataError(f"cannot read image file {str(p)!r}: the file is corrupt or truncated ({e})") from e
    if size is not None:
        img = resize_pil(img, size)
    return pil_to_tensor(img)


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    """True for a visible file whose extension is a known image extension (case-insensitive)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
