"""A built-in labelled set of real 64x64 patches for the mini classifier study (offline, deterministic).

Classes are the photographs bundled with scikit-image (:mod:`lossnet.data.photos`: the colour
ones and, with ``include_gray``, the grayscale photos and textures expanded to three channels;
14 classes when all load). A patch is a random square window of its photo, side drawn
uniformly between ``min_side`` (32) and ``max_side`` (192) pixels (capped by the region),
resized to 64x64 with PIL's bicubic filter. Train and validation patches never share a pixel:
training windows lie in the left ``train_fraction`` (75 %) of each photo, validation windows in
the rest. So a classifier must recognise a photo's colours and textures in unseen regions,
and its validation accuracy rises from chance (1/14) as it trains.

Everything is a function of ``seed``; the arrays are made once per process and cached.

Example:
    >>> sets = builtin_patches(n_train=4, n_val=2)
    >>> sets["train"].images.shape[1:], sets["train"].num_classes == len(sets["train"].class_names)
    ((3, 64, 64), True)
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ..errors import DataError, LossnetError
from .imagenet64 import ImageArrays
from .photos import photo_array, photo_names

PATCH_SIZE = 64


def _windows(rng: np.random.Generator, height: int, x0: int, x1: int, n: int, min_side: int,
             max_side: int) -> list[tuple[int, int, int]]:
    """``n`` (top, left, side) squares inside columns [x0, x1) of a photo ``height`` rows tall."""
    width = x1 - x0
    top_side = min(max_side, height, width)
    low = min(min_side, top_side)
    out = []
    for _ in range(n):
        side = int(rng.integers(low, top_side + 1))
        top = int(rng.integers(0, height - side + 1))
        left = x0 + int(rng.integers(0, width - side + 1))
        out.append((top, left, side))
    return out


def _render(photo: np.ndarray, windows: list[tuple[int, int, int]], size: int) -> np.ndarray:
    out = np.empty((len(windows), 3, size, size), dtype=np.uint8)
    for i, (top, left, side) in enumerate(windows):
        crop = Image.fromarray(np.ascontiguousarray(photo[top:top + side, left:left + side]), mode="RGB")
        out[i] = np.asarray(crop.resize((size, size), Image.BICUBIC), dtype=np.uint8).transpose(2, 0, 1)
    return out


@functools.lru_cache(maxsize=4)
def _make(n_train: int, n_val: int, seed: int, size: int, include_gray: bool, min_side: int, max_side: int,
          train_fraction: float) -> dict[str, ImageArrays]:
    names = photo_names(include_gray=include_gray)
    if len(names) < 2:
        raise DataError("the built-in patch set needs at least two scikit-image photos; reinstall scikit-image.")
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"train": ([], []), "val": ([], [])}
    for label, name in enumerate(names):
        photo = photo_array(name)
        h, w = photo.shape[:2]
        split_at = int(round(w * train_fraction))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), label, 0x64])))
        for split, (x0, x1, n) in (("train", (0, split_at, n_train)), ("val", (split_at, w, n_val))):
            if n == 0:
                continue
            imgs = _render(photo, _windows(rng, h, x0, x1, n, min_side, max_side), size)
            parts[split][0].append(imgs)
            parts[split][1].append(np.full(n, label, dtype=np.int16))
    out = {}
    for split, (imgs, labels) in parts.items():
        images = np.concatenate(imgs) if imgs else np.zeros((0, 3, size, size), np.uint8)
        lab = np.concatenate(labels) if labels else np.zeros(0, np.int16)
        images.setflags(write=False)
        lab.setflags(write=False)
        out[split] = ImageArrays(images, lab, len(names), f"builtin patches {split}", tuple(names))
    return out


def builtin_patches(n_train: int = 160, n_val: int = 40, seed: int = 0, size: int = PATCH_SIZE,
                    include_gray: bool = True, min_side: int = 32, max_side: int = 192,
                    train_fraction: float = 0.75) -> dict[str, ImageArrays]:
    """``{"train", "val"}`` :class:`~lossnet.data.imagenet64.ImageArrays` of photo patches
    (``n_train`` / ``n_val`` per class; see the module docstring)."""
    if n_train < 1 or n_val < 0:
        raise LossnetError(f"the built-in patch set needs n_train >= 1 and n_val >= 0 per class, got {n_train}, "
                           f"{n_val}.")
    if not 0.1 <= train_fraction <= 0.9:
        raise LossnetError(f"train_fraction must be in [0.1, 0.9], got {train_fraction}.")
    if not 1 <= min_side <= max_side:
        raise LossnetError(f"need 1 <= min_side <= max_side, got {min_side}, {max_side}.")
    return _make(int(n_train), int(n_val), int(seed), int(size), bool(include_gray), int(min_side), int(max_side),
                 float(train_fraction))


__all__ = ["PATCH_SIZE", "builtin_patches"]
