"""Image helpers shared by the datasets: loading any file PIL reads as a float32 ``(3, H, W)``
tensor in [0, 1], resizing with ``torchvision.transforms.Resize`` semantics, listing and cropping.

Example:
    >>> from PIL import Image
    >>> resize_pil(Image.new("RGB", (256, 256)), 64, "bilinear").size
    (64, 64)
    >>> describe_loading(64, "bilinear")
    'PIL RGB, torchvision Resize(64) bilinear antialias, ToTensor'
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..errors import DataError, unknown_name

Size = Union[int, Sequence[int], None]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")

#: Interpolations of ``torchvision.transforms.Resize`` on PIL images, by name.
INTERPOLATIONS: dict[str, InterpolationMode] = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
    "nearest-exact": InterpolationMode.NEAREST_EXACT,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
    "lanczos": InterpolationMode.LANCZOS,
}
#: Interpolations PIL applies without an antialiasing filter when downscaling.
_NOT_ANTIALIASED = ("nearest", "nearest-exact")


def interpolation_mode(name: str) -> InterpolationMode:
    """The torchvision ``InterpolationMode`` called ``name`` (see :data:`INTERPOLATIONS`).

    Example:
        >>> interpolation_mode("bicubic")
        <InterpolationMode.BICUBIC: 'bicubic'>
    """
    mode = INTERPOLATIONS.get(str(name).lower()) if isinstance(name, str) else None
    if mode is None:
        raise unknown_name("interpolation", name, list(INTERPOLATIONS))
    return mode


def resolve_interpolation(size: Size, interpolation: Optional[str], default: str) -> str:
    """The interpolation a dataset uses: ``default`` for None; an explicit one needs a ``size``.

    Example:
        >>> resolve_interpolation(64, None, "bilinear"), resolve_interpolation(64, "Bicubic", "bilinear")
        ('bilinear', 'bicubic')
    """
    if interpolation is None:
        return default
    interpolation_mode(interpolation)
    if size is None:
        raise DataError(
            f"interpolation={interpolation!r} has no effect with size=None (images keep their file size): "
            "pass a size to resize to, or leave interpolation out."
        )
    return str(interpolation).lower()


def describe_loading(size: Size, interpolation: str) -> str:
    """How :func:`load_image` turns a file into a tensor, in words (recorded on datasets as ``protocol``).

    Example:
        >>> describe_loading(None, "bicubic")
        'PIL RGB at the file size, ToTensor'
        >>> describe_loading((32, 48), "nearest")
        'PIL RGB, torchvision Resize((32, 48)) nearest, ToTensor'
    """
    if size is None:
        return "PIL RGB at the file size, ToTensor"
    name = str(interpolation).lower()
    interpolation_mode(name)
    shown = str(int(size)) if isinstance(size, (int, np.integer)) else str(tuple(int(v) for v in size))
    filt = name if name in _NOT_ANTIALIASED else f"{name} antialias"
    return f"PIL RGB, torchvision Resize({shown}) {filt}, ToTensor"


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


def resize_pil(img: Image.Image, size: Size, interpolation: str = "bicubic") -> Image.Image:
    """``torchvision.transforms.Resize(size, interpolation)`` applied to a PIL image (antialiased,
    as torchvision always is on PIL images; an int matches the shorter edge).

    Example:
        >>> from PIL import Image
        >>> resize_pil(Image.new("RGB", (451, 300)), 64).size
        (96, 64)
    """
    mode = interpolation_mode(interpolation)
    if (img.height, img.width) == resized_shape(img.height, img.width, size):  # also checks ``size``
        return img
    tv_size = [int(size)] if isinstance(size, (int, np.integer)) else [int(v) for v in size]  # type: ignore[union-attr]
    return TF.resize(img, tv_size, interpolation=mode, antialias=True)


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


def load_image(path: Union[str, os.PathLike], size: Size = None, interpolation: str = "bicubic") -> torch.Tensor:
    """Load an image file as a float32 ``(3, H, W)`` tensor in [0, 1].

    Grayscale, RGBA and palette images become RGB as ``PIL.Image.convert("RGB")`` makes them
    (16-bit and float grayscale are scaled to 8 bits first instead of clipped). ``size``
    resizes like ``torchvision.transforms.Resize(size, interpolation)`` (an int matches the
    smaller edge; ``(H, W)`` is exact; see :data:`INTERPOLATIONS`); the tensor is then what
    ``ToTensor`` makes. Raises :class:`DataError` naming the file when it is missing,
    unreadable or corrupt.

    Example:
        >>> x = load_image("2afc/val/cnn/ref/000000.png", size=64)  # doctest: +SKIP
        >>> x.shape, x.dtype  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.float32)
    """
    interpolation_mode(interpolation)
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
        img = resize_pil(img, size, interpolation)
    return pil_to_tensor(img)


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    """True for a visible file whose extension is a known image extension (case-insensitive)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def list_images(folder: Union[str, os.PathLike]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (empty when the folder does not exist)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def center_crop_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and take the central square.

    Example:
        >>> center_crop_square(torch.rand(3, 40, 60), 20).shape
        torch.Size([3, 20, 20])
    """
    h, w = x.shape[-2:]
    if min(h, w) != size:
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        x = F.interpolate(x[None], size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)[0]
        x = x.clamp(0, 1)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size]


def mod_crop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so that height and width are multiples of ``scale``.

    Example:
        >>> mod_crop(torch.rand(3, 50, 47), 4).shape
        torch.Size([3, 48, 44])
    """
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]
