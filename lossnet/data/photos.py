"""Real photographs bundled with scikit-image, usable without any download.

Only images that ship inside the scikit-image wheel are used (several ``skimage.data``
images are fetched with pooch on first use and are not available offline; they are not
listed here). ``cat`` is left out because it is the same picture as ``chelsea``.

Example:
    >>> from lossnet.data import builtin_photos
    >>> photos = builtin_photos()
    >>> list(photos)[:4]
    ['astronaut', 'chelsea', 'coffee', 'rocket']
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .images import Size, pil_to_tensor, resize_pil

#: Colour photographs, in the order they are returned.
COLOR_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",  # left view of skimage.data.stereo_motorcycle()
)
#: Grayscale photographs and textures (expanded to 3 channels when asked for).
GRAY_PHOTOS: tuple[str, ...] = ("camera", "coins", "moon", "brick", "grass", "gravel")


@lru_cache(maxsize=None)
def _raw(name: str) -> Optional[np.ndarray]:
    """The uint8 array of one bundled image, or None when it cannot be loaded offline."""
    try:
        import skimage.data as skd
    except ImportError as e:  # pragma: no cover - scikit-image is installed in the dev set-up
        raise DataError(
            "the built-in photos need scikit-image: pip install 'lossnet[data]' (or scikit-image)"
        ) from e
    try:
        if name == "motorcycle":
            arr = skd.stereo_motorcycle()[0]
        else:
            arr = getattr(skd, name)()
    except Exception:  # noqa: BLE001 - a pooch fetch without network, a removed image, ...
        return None
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return None
    arr = np.ascontiguousarray(arr[:, :, :3])
    arr.setflags(write=False)
    return arr


def photo_names(include_gray: bool = False) -> list[str]:
    """Names of the bundled photos that load here, in a fixed order."""
    names = list(COLOR_PHOTOS) + (list(GRAY_PHOTOS) if include_gray else [])
    return [n for n in names if _raw(n) is not None]


def builtin_photos(size: Size = None, include_gray: bool = False) -> dict[str, torch.Tensor]:
    """Bundled scikit-image photographs as float32 ``(3, H, W)`` tensors in [0, 1], in a fixed order.

    ``size`` resizes like ``torchvision.transforms.Resize(size)`` (bicubic); grayscale ones are
    left out unless ``include_gray`` (then repeated to 3 channels). Each call returns new tensors.

    Example:
        >>> x = builtin_photos(size=64)["chelsea"]
        >>> tuple(x.shape)
        (3, 64, 96)
    """
    out: dict[str, torch.Tensor] = {}
    for name in photo_names(include_gray):
        img = Image.fromarray(_raw(name), mode="RGB")
        if size is not None:
            img = resize_pil(img, size)
        out[name] = pil_to_tensor(img)
    if not out:
        raise DataError("no scikit-image photo could be loaded; reinstall scikit-image (pip install scikit-image)")
    return out


def photo_array(name: str) -> np.ndarray:
    """The read-only ``(H, W, 3)`` uint8 array of one bundled photo (cached)."""
    arr = _raw(name)
    if arr is None:
        raise DataError(f"the scikit-image photo {name!r} is not available offline here")
    return arr
