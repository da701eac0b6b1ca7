"""Autoencoding data: STL-10 and SVHN in torchvision's on-disk layouts, and scikit-learn's digits.

STL-10 (``stl10_binary/*.bin``) and SVHN (``{train,test,extra}_32x32.mat``) are read directly
from those files; ``download=True`` fetches them with ``torchvision.datasets``. Built-in:
scikit-learn's digits upscaled to 32x32 RGB (no download). Training items are indexed by
``(index, seed)`` keys (:mod:`lossnet.data.samples`).

Example:
    >>> ae = load_autoencoding_data("builtin")
    >>> ae.train[(0, 0)].shape, ae.num_classes
    (torch.Size([3, 32, 32]), 10)
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .samples import Key, split_key

PathLike = Union[str, os.PathLike]

class ArrayImages(torch.utils.data.Dataset):
    """Images from an (N, 3, H, W) array (uint8 or float in [0, 1], memory-mapped or not).

    ``pad_to`` zero-pads each image centrally to a square of that side (SVHN 32 -> 64).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, pad_to: int | None = None,
                 indices: np.ndarray | None = None) -> None:
        self.images = images
        self.labels = labels
        self.pad_to = pad_to
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def image_size(self) -> int:
        return self.pad_to or int(self.images.shape[-1])

    def image(self, i: int) -> torch.Tensor:
        arr = np.asarray(self.images[self.indices[i]])
        x = torch.from_numpy(arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32))
        if self.pad_to and x.shape[-1] < self.pad_to:
            total_h, total_w = self.pad_to - x.shape[-2], self.pad_to - x.shape[-1]
            x = F.pad(x, (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2))
        return x

    def label(self, i: int) -> int:
        if self.labels is None:
            raise DataError("this image set has no labels.")
        return int(self.labels[self.indices[i]])

    def __getitem__(self, key: Key) -> torch.Tensor:
        return self.image(split_key(key)[0])

    def subset(self, indices: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.images, self.labels, self.pad_to, self.indices[np.asarray(indices)])

    def batches(self, batch_size: int = 256):
        """Yield ``(images, labels or None)`` batches in order."""
        for start in range(0, len(self), batch_size):
            idx = range(start, min(start + batch_size, len(self)))
            x = torch.stack([self.image(i) for i in idx])
            y = torch.tensor([self.label(i) for i in idx]) if self.labels is not None else None
            yield x, y


@dataclass
class AutoencodingData:
    """Images to train the autoencoder on, and labelled splits for the probes."""

    name: str
    train: ArrayImages
    val: ArrayImages | None
    probe_train: ArrayImages
    probe_test: ArrayImages
    num_classes: int
    source: str = ""

    @property
    def image_size(self) -> int:
        return self.train.image_size


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the dev set-up
        raise DataError("the built-in digits need scikit-learn: pip install 'lossnet[data]'.") from exc
    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def _upscale_digits(images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(images)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).contiguous().numpy()


def builtin_digits(size: int = 32, indices: Sequence[int] | np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits (or those at ``indices``) as float32 (N, 3, size, size) RGB in
    [0, 1], and their labels.

    Example:
        >>> x, y = builtin_digits(32)
        >>> x.shape, int(y[0])
        ((1797, 3, 32, 32), 0)
        >>> builtin_digits(16, indices=[5, 0])[1].tolist()
        [5, 0]
    """
    images, labels = _digits_raw()
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        images, labels = images[idx], labels[idx]
    return _upscale_digits(images, size), labels.copy()


def digit_labels() -> np.ndarray:
    """The labels of scikit-learn's 1797 digits, in order (without building the images)."""
    return _digits_raw()[1].copy()


def _val_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _with_val(name: str, train: ArrayImages, probe_train: ArrayImages, probe_test: ArrayImages,
              val_fraction: float, seed: int, source: str) -> AutoencodingData:
    tr, va = _val_split(len(train), val_fraction, seed)
    val = train.subset(va) if len(va) else None
    return AutoencodingData(name, train.subset(tr), val, probe_train, probe_test, 10, source)


def _read_stl10_images(path: Path, count_hint: str) -> np.ndarray:
    size = path.stat().st_size
    per_image = 3 * 96 * 96
    if size == 0 or size % per_image:
        raise DataError(f"{path} has {size} bytes, not a whole number of 96x96 RGB images ({per_image} bytes "
                        f"each): the file is truncated or corrupt. Download STL-10 again ({count_hint}).")
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)
    return raw.transpose(0, 1, 3, 2)  # stored column-major, as torchvision reads them


def _read_stl10_labels(path: Path, n: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n:
        raise DataError(f"{path} has {len(labels)} labels for {n} images: the STL-10 files do not match.")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path} has labels outside 1..10: not an STL-10 label file.")
    return labels


STL10_FILES = ("unlabeled_X.bin", "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
SVHN_FILES = ("extra_32x32.mat", "train_32x32.mat", "test_32x32.mat")


def _stl10_dir(root: Path) -> Path | None:
    for cand in (root / "stl10_binary", root):
        if (cand / "train_X.bin").exists() or (cand / "unlabeled_X.bin").exists():
            return cand
    return None


def _svhn_dir(root: Path) -> Path | None:
    for cand in (root, root / "svhn", root / "SVHN"):
        if any((cand / f).exists() for f in SVHN_FILES):
            return cand
    return None


def _missing(kind: str, folder: Path, missing: Sequence[str], how: str) -> DataError:
    return DataError(f"{kind} files missing in {folder}: {', '.join(missing)}. {how}")


_STL10_HOW = ("Pass --download (lossnet train autoencoder --data DIR --dataset stl10 --download) or place "
              "the files of stl10_binary.tar.gz in DIR/stl10_binary/ (torchvision's layout).")
_SVHN_HOW = ("Pass --download (lossnet train autoencoder --data DIR --dataset svhn --download) or place "
             "train_32x32.mat, test_32x32.mat and extra_32x32.mat in DIR (torchvision's layout).")


def load_stl10(root: PathLike, val_fraction: float = 0.05, seed: int = 0, train_split: str = "unlabeled"
               ) -> AutoencodingData:
    """STL-10 from torchvision's layout ``root/stl10_binary/``: autoencoder on ``unlabeled``
    (96x96, memory-mapped), probes on the labelled ``train`` split, accuracy on ``test``."""
    folder = _stl10_dir(Path(root))
    if folder is None:
        raise _missing("STL-10", Path(root) / "stl10_binary", STL10_FILES, _STL10_HOW)
    needed = {"unlabeled": "unlabeled_X.bin", "train": "train_X.bin"}[train_split]
    missing = [f for f in {needed, *STL10_FILES[1:]} if not (folder / f).exists()]
    if missing:
        raise _missing("STL-10", folder, sorted(missing), _STL10_HOW)
    ae = _read_stl10_images(folder / needed, _STL10_HOW)
    tr = _read_stl10_images(folder / "train_X.bin", _STL10_HOW)
    te = _read_stl10_images(folder / "test_X.bin", _STL10_HOW)
    tr_y = _read_stl10_labels(folder / "train_y.bin", len(tr))
    te_y = _read_stl10_labels(folder / "test_y.bin", len(te))
    return _with_val("stl10", ArrayImages(ae), ArrayImages(tr, tr_y), ArrayImages(te, te_y), val_fraction, seed,
                     str(folder))


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DataError("reading SVHN's .mat files needs scipy: pip install 'lossnet[metrics]' (or scipy).") from exc

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for bad files
        raise DataError(f"cannot read {path} as a MATLAB file ({exc}): download SVHN again. {_SVHN_HOW}") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} lacks the 'X' and 'y' arrays of SVHN's format 2 (cropped digits). {_SVHN_HOW}")
    x, y = mat["X"], mat["y"].astype(np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: 'X' has shape {x.shape}, expected (32, 32, 3, N) with N = {len(y)} labels.")
    y[y == 10] = 0  # SVHN stores the digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(root: PathLike, val_fraction: float = 0.05, seed: int = 0, pad_to: int | None = 64,
              train_split: str = "extra") -> AutoencodingData:
    """SVHN from torchvision's layout (``root/{train,test,extra}_32x32.mat``): autoencoder on
    ``extra`` (32x32 padded to ``pad_to``), probes on ``train``, accuracy on ``test``."""
    folder = _svhn_dir(Path(root))
    if folder is None:
        raise _missing("SVHN", Path(root), SVHN_FILES, _SVHN_HOW)
    names = {f"{train_split}_32x32.mat", "train_32x32.mat", "test_32x32.mat"}
    missing = sorted(f for f in names if not (folder / f).exists())
    if missing:
        raise _missing("SVHN", folder, missing, _SVHN_HOW)
    tr, tr_y = _read_svhn(folder / "train_32x32.mat")
    te, te_y = _read_svhn(folder / "test_32x32.mat")
    ae = tr if train_split == "train" else _read_svhn(folder / f"{train_split}_32x32.mat")[0]
    return _with_val("svhn", ArrayImages(ae, pad_to=pad_to), ArrayImages(tr, tr_y, pad_to=pad_to),
                     ArrayImages(te, te_y, pad_to=pad_to), val_fraction, seed, str(folder))


def load_builtin_digits(val_fraction: float = 0.1, seed: int = 0, size: int = 32) -> AutoencodingData:
    """Built-in autoencoding data: scikit-learn digits at ``size`` px, a fixed stratified 75/25
    train/test split; the autoencoder trains on the train split (minus ``val_fraction``)."""
    x, y = builtin_digits(size)
    rng = np.random.default_rng(12345)  # the split is fixed, whatever the run's seed
    test_idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: int(round((y == c).sum() * 0.25))]
                                       for c in range(10)]))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    train = ArrayImages(x[train_idx], y[train_idx])
    test = ArrayImages(x[test_idx], y[test_idx])
    unlabeled = ArrayImages(x[train_idx])
    return _with_val("digits", unlabeled, train, test, val_fraction, seed, "builtin:sklearn-digits")


AE_DATASETS = ("auto", "stl10", "svhn", "digits")


def download_torchvision(name: str, root: PathLike) -> None:
    """Download STL-10 or SVHN with ``torchvision.datasets`` into ``root`` (needs the network)."""
    import torchvision.datasets as tvd

    try:
        if name == "stl10":
            tvd.STL10(str(root), split="train", download=True)
        elif name == "svhn":
            for split in ("train", "test", "extra"):
                tvd.SVHN(str(root), split=split, download=True)
        else:
            raise DataError(f"cannot download {name!r}: only stl10 and svhn are downloadable here.")
    except (OSError, RuntimeError) as exc:
        how = _STL10_HOW if name == "stl10" else _SVHN_HOW
        raise DataError(f"downloading {name} into {root} failed ({exc}). {how.split('or ', 1)[-1]}") from exc


def load_autoencoding_data(data: PathLike = "builtin", dataset: str = "auto", val_fraction: float = 0.05,
                           seed: int = 0, pad_to: int | None = 64, download: bool = False) -> AutoencodingData:
    """Autoencoding data from ``"builtin"`` (digits) or a folder holding STL-10 or SVHN.

    Example:
        >>> load_autoencoding_data("builtin").num_classes
        10
    """
    if dataset not in AE_DATASETS:
        raise DataError(f"unknown autoencoding dataset {dataset!r}: use one of {', '.join(AE_DATASETS)}.")
    if str(data) == "builtin" and dataset in ("stl10", "svhn"):
        raise DataError(f"--data builtin holds scikit-learn's digits, not {dataset}: pass --data DIR, the folder "
                        f"with {dataset} (add --download to fetch it there).")
    if str(data) == "builtin" or dataset == "digits":
        return load_builtin_digits(val_fraction=val_fraction, seed=seed)
    root = Path(data)
    if download:
        if dataset == "auto":
            raise DataError("--download needs the dataset name: pass --dataset stl10 or --dataset svhn.")
        root.mkdir(parents=True, exist_ok=True)
        download_torchvision(dataset, root)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist: pass --data builtin, or a folder with STL-10 "
                        f"or SVHN in torchvision's layout (add --download --dataset stl10|svhn to fetch one).")
    if dataset == "stl10" or (dataset == "auto" and _stl10_dir(root) is not None):
        return load_stl10(root, val_fraction, seed)
    if dataset == "svhn" or (dataset == "auto" and _svhn_dir(root) is not None):
        return load_svhn(root, val_fraction, seed, pad_to=pad_to)
    raise DataError(f"no STL-10 (stl10_binary/*.bin) or SVHN (*_32x32.mat) files in {root}. {_STL10_HOW} "
                    f"For SVHN: {_SVHN_HOW}")


__all__ = [
    "AE_DATASETS", "ArrayImages", "AutoencodingData", "STL10_FILES", "SVHN_FILES", "builtin_digits",
    "digit_labels", "download_torchvision", "load_autoencoding_data", "load_builtin_digits", "load_stl10", "load_svhn",
]
