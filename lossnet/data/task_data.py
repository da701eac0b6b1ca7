"""Datasets of the downstream tasks (autoencoding, super-resolution, road segmentation).

Real data in its official on-disk layouts, built-in data that needs no download, and
writers of tiny fixtures in each official layout (for tests and demos).

- Autoencoding: STL-10 (``stl10_binary/*.bin``, torchvision's layout) and SVHN
  (``{train,test,extra}_32x32.mat``), read directly from those files; ``download=True`` fetches
  them with ``torchvision.datasets``. Built-in: scikit-learn's digits upscaled to 32x32 RGB.
- Super-resolution: a folder of training images (MS-COCO ``train2014``) and evaluation folders
  of HR images (Set5, Set14, BSD100, in the plain, ``HR/`` or ``image_SRF_<s>/*_HR.png``
  layouts). Built-in: crops of some scikit-image photos for training, others for evaluation.
- Segmentation: Massachusetts Roads in the Toronto layout ``{train,valid,test}/{sat,map}/``
  or the Kaggle layout ``[tiff|png]/{train,val,test}`` + ``{split}_labels``. Built-in: a
  generated road-like set (thick polylines on textured ground), deterministic under a seed.

Datasets used for training are indexed by ``(index, seed)`` keys: the seed drives the
per-sample augmentation, so batches do not depend on worker processes or on resuming.

Example:
    >>> ae = load_autoencoding_data("builtin")
    >>> ae.train[(0, 0)].shape
    torch.Size([3, 32, 32])
    >>> images, masks = generate_roads(2, size=64, seed=0)
    >>> tuple(images.shape), tuple(masks.shape)
    ((2, 3, 64, 64), (2, 1, 64, 64))
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, is_image_file, load_image, pil_to_rgb

PathLike = Union[str, os.PathLike]
Key = Union[int, tuple[int, int]]


def _split_key(key: Key) -> tuple[int, int]:
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), 0


def _sample_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed & 0x7FFF_FFFF_FFFF_FFFF)


# ============================================================================================
# Autoencoding


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
        return self.image(_split_key(key)[0])

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


def builtin_digits(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as float32 (N, 3, size, size) RGB in [0, 1], and labels.

    Example:
        >>> x, y = builtin_digits(32)
        >>> x.shape, int(y[0])
        ((1797, 3, 32, 32), 0)
    """
    images, labels = _digits_raw()
    return _upscale_digits(images, size), labels.copy()


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
    from scipy.io import loadmat

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


# ============================================================================================
# Super-resolution


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def center_crop_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and take the central square."""
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
    """Crop the bottom/right so that height and width are multiples of ``scale``."""
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]


class ImageFolderCrops(torch.utils.data.Dataset):
    """Central ``crop`` x ``crop`` squares of a folder of images (MS-COCO in Johnson et al.).

    Images are read lazily; ``cache=True`` keeps them in memory as uint8 after the first read.
    """

    def __init__(self, files: Sequence[Path], crop: int, cache: bool = False) -> None:
        if not files:
            raise DataError("no training images given.")
        self.files = list(files)
        self.crop = crop
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> torch.Tensor:
        i, _ = _split_key(key)
        if self._cache is not None and i in self._cache:
            return self._cache[i].float() / 255
        x = center_crop_square(load_image(self.files[i]), self.crop)
        if self._cache is not None:
            self._cache[i] = (x * 255).round().to(torch.uint8)
            return self._cache[i].float() / 255
        return x


class PhotoCrops(torch.utils.data.Dataset):
    """Random ``crop`` squares of a few large photos with random flips; ``length`` items an epoch.

    The crop position, photo and flips of an item come from its key's seed.
    """

    def __init__(self, photos: Sequence[torch.Tensor], crop: int, length: int) -> None:
        small = [tuple(p.shape[-2:]) for p in photos if min(p.shape[-2:]) < crop]
        if small:
            raise DataError(f"photos of sizes {small} are smaller than the crop size {crop}.")
        self.photos = list(photos)
        self.crop = crop
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: Key) -> torch.Tensor:
        i, seed = _split_key(key)
        rng = _sample_rng(seed * 7919 + i)
        photo = self.photos[int(rng.integers(len(self.photos)))]
        h, w = photo.shape[-2:]
        top, left = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        x = photo[:, top:top + self.crop, left:left + self.crop]
        if rng.random() < 0.5:
            x = x.flip(-1)
        if rng.random() < 0.5:
            x = x.flip(-2)
        return x.contiguous()


@dataclass
class SuperresData:
    """Training HR crops and named evaluation sets of HR images (mod-cropped to the scale)."""

    train: torch.utils.data.Dataset
    eval_sets: dict[str, list[torch.Tensor]]
    source: str = ""
    eval_names: dict[str, list[str]] = field(default_factory=dict)


#: Photos held out for evaluation on built-in data; the others are cut into training crops.
BUILTIN_SR_EVAL = ("chelsea", "coffee", "astronaut")
EVAL_SET_NAMES = ("Set5", "Set14", "BSD100", "B100", "BSDS100", "Urban100", "Manga109", "DIV2K_valid")
TRAIN_FOLDER_NAMES = ("train2014", "train2017", "train", "images", "HR")


def eval_set_images(folder: PathLike, scale: int) -> tuple[list[Path], str]:
    """The HR images of an evaluation folder, and the layout found.

    Layouts: ``folder/HR/*.png`` (EDSR "benchmark"), ``folder/image_SRF_<scale>/*_HR.png``
    (Huang et al., SelfExSR; any ``image_SRF_*`` folder when that scale is absent), or the
    images directly in ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"evaluation folder {str(folder)!r} does not exist: pass a folder of HR images "
                        "(e.g. Set5, Set14, BSD100).")
    if list_images(folder / "HR"):
        return list_images(folder / "HR"), "HR/"
    srf = [folder / f"image_SRF_{scale}"] + sorted(folder.glob("image_SRF_*"))
    for sub in srf:
        files = [p for p in list_images(sub) if p.stem.upper().endswith("_HR")]
        if files:
            return files, f"{sub.name}/*_HR"
    files = list_images(folder)
    if files:
        return files, "plain"
    raise DataError(f"no HR images in {folder}: expected images directly in it, in {folder}/HR/, or "
                    f"{folder}/image_SRF_{scale}/*_HR.png.")


def _find_eval_dirs(root: Path) -> list[Path]:
    out = []
    for base in (root, root / "benchmark", root / "test", root / "eval"):
        for name in EVAL_SET_NAMES:
            if (base / name).is_dir():
                out.append(base / name)
    return out


def load_superres_data(data: PathLike = "builtin", scale: int = 4, crop: int = 288,
                       eval_dirs: Sequence[PathLike] | None = None, train_length: int = 512,
                       photo_size: int = 256, eval_size: int = 128, max_train: int | None = None,
                       cache: bool | None = None) -> SuperresData:
    """Super-resolution data from ``"builtin"`` or a folder.

    A folder holds the training images directly or in ``train2014/`` (or ``train/``,
    ``images/``); evaluation folders (Set5, Set14, BSD100, ...) are found inside it (or in
    ``benchmark/``) unless ``eval_dirs`` are given. Built-in: random ``crop`` squares of the
    scikit-image photos other than :data:`BUILTIN_SR_EVAL` (resized to ``photo_size`` on the
    short side), evaluated on those three at ``eval_size``.

    Example:
        >>> d = load_superres_data("builtin", scale=4, crop=64, train_length=8)
        >>> d.train[(0, 1)].shape, sorted(d.eval_sets)
        (torch.Size([3, 64, 64]), ['builtin'])
    """
    if crop % scale:
        raise DataError(f"the crop size {crop} must be a multiple of the scale {scale}.")
    if str(data) == "builtin":
        from .images import pil_to_tensor, resize_pil
        from .photos import photo_array, photo_names

        def photo(name: str, size: int) -> torch.Tensor:
            return pil_to_tensor(resize_pil(Image.fromarray(photo_array(name), "RGB"), size))

        names = photo_names()
        held = [n for n in BUILTIN_SR_EVAL if n in names]
        train = [photo(n, photo_size) for n in names if n not in held]
        if not train or not held:
            raise DataError("too few scikit-image photos load here for the built-in super-resolution set.")
        evals = [mod_crop(center_crop_square(photo(n, eval_size), eval_size), scale) for n in held]
        return SuperresData(PhotoCrops(train, crop, train_length), {"builtin": evals},
                            "builtin:skimage-photos", {"builtin": held})
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist: pass --data builtin or a folder of training "
                        "images (e.g. MS-COCO train2014) with --eval folders of HR images.")
    train_dir = root if list_images(root) else next(
        (root / n for n in TRAIN_FOLDER_NAMES if list_images(root / n)), None)
    if train_dir is None:
        raise DataError(f"no training images in {root} (nor in {', '.join(TRAIN_FOLDER_NAMES)} inside it): "
                        f"put the images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) there.")
    files = list_images(train_dir)
    if max_train:
        files = files[:max_train]
    dirs = [Path(d) for d in eval_dirs] if eval_dirs else _find_eval_dirs(root)
    if not dirs:
        raise DataError(f"no evaluation sets found in {root} (looked for {', '.join(EVAL_SET_NAMES[:3])} ...): "
                        "pass --eval DIR for each folder of HR evaluation images.")
    eval_sets, names = {}, {}
    for d in dirs:
        imgs, _ = eval_set_images(d, scale)
        tensors = [mod_crop(load_image(p), scale) for p in imgs]
        for p, t in zip(imgs, tensors):
            if min(t.shape[-2:]) < 4 * scale:
                raise DataError(f"evaluation image {p} is too small ({tuple(t.shape[-2:])}) for x{scale}.")
        eval_sets[d.name], names[d.name] = tensors, [p.name for p in imgs]
    if cache is None:
        cache = len(files) * crop * crop * 3 < 512 * 2**20
    return SuperresData(ImageFolderCrops(files, crop, cache=cache), eval_sets, str(train_dir), names)


# ============================================================================================
# Road segmentation


def _fractal_noise(rng: np.random.Generator, size: int, octaves: Sequence[int]) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    for i, cells in enumerate(octaves):
        grid = torch.from_numpy(rng.random((1, 1, cells, cells), dtype=np.float32))
        up = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()
        total += up / (2 ** i)
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _polyline(rng: np.random.Generator, size: int) -> list[tuple[float, float]]:
    """A road crossing the tile: from one border to another through a few bends."""
    side = int(rng.integers(4))
    t = rng.uniform(0.1, 0.9) * size
    start = [(t, -2), (size + 1, t), (t, size + 1), (-2, t)][side]
    end_side = (side + int(rng.integers(1, 4))) % 4
    u = rng.uniform(0.1, 0.9) * size
    end = [(u, -2), (size + 1, u), (u, size + 1), (-2, u)][end_side]
    n_mid = int(rng.integers(0, 3))
    pts = [start]
    for k in range(1, n_mid + 1):
        f = k / (n_mid + 1)
        jitter = rng.normal(0, size * 0.12, 2)
        pts.append((start[0] + f * (end[0] - start[0]) + jitter[0], start[1] + f * (end[1] - start[1]) + jitter[1]))
    pts.append(end)
    return pts


def road_tile(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One generated aerial-like tile (H, W, 3) float32 in [0, 1] and its road mask (H, W) bool."""
    rng = np.random.default_rng(seed)
    ground = _fractal_noise(rng, size, (3, 6, 12, 24))
    field_a = np.array(rng.choice([[0.30, 0.42, 0.22], [0.42, 0.38, 0.28], [0.25, 0.33, 0.20]]), np.float32)
    field_b = np.array(rng.choice([[0.50, 0.46, 0.33], [0.20, 0.30, 0.16], [0.45, 0.50, 0.30]]), np.float32)
    img = field_a * (1 - ground[..., None]) + field_b * ground[..., None]
    img += rng.normal(0, 0.025, img.shape).astype(np.float32)
    scale = size / 64
    # Buildings: light rectangles that are not roads.
    buildings = Image.new("L", (size, size), 0)
    draw_b = ImageDraw.Draw(buildings)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(0, size, 2)
        w, h = rng.uniform(3, 8, 2) * scale
        draw_b.rectangle([x0, y0, x0 + w, y0 + h], fill=255)
    bmask = np.asarray(buildings, np.float32)[..., None] / 255
    img = img * (1 - bmask) + bmask * np.float32(rng.uniform(0.6, 0.8))
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    for _ in range(int(rng.integers(1, 4))):
        width = max(1, int(round(rng.uniform(1.5, 3.5) * scale)))
        draw.line(_polyline(rng, size), fill=255, width=width, joint="curve")
    mask = np.asarray(mask_img) > 127
    road_colour = np.float32(rng.uniform(0.45, 0.65))
    road = road_colour + rng.normal(0, 0.03, (size, size)).astype(np.float32)
    img = np.where(mask[..., None], road[..., None], img)
    # Trees: dark blobs that hide parts of roads (the label keeps the road: topology matters).
    trees = Image.new("L", (size, size), 0)
    draw_t = ImageDraw.Draw(trees)
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(1.5, 3.5) * scale
        draw_t.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    tmask = np.asarray(trees, np.float32)[..., None] / 255
    img = img * (1 - tmask) + tmask * np.array([0.12, 0.22, 0.10], np.float32)
    return np.clip(img, 0, 1).astype(np.float32), mask


def generate_roads(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated road tiles: images (n, 3, size, size) and masks (n, 1, size, size) in {0, 1}.

    Deterministic under ``seed``; tile ``i`` depends only on ``(seed, i)``.

    Example:
        >>> x, m = generate_roads(3, 64, seed=1)
        >>> bool(((m == 0) | (m == 1)).all()), 0 < float(m.mean()) < 0.5
        (True, True)
    """
    images, masks = [], []
    for i in range(n):
        img, mask = road_tile(size, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        images.append(torch.from_numpy(img).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask.astype(np.float32))[None])
    return torch.stack(images), torch.stack(masks)


def random_crop_flip(image: torch.Tensor, mask: torch.Tensor, crop: int | None, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop and flips of an image and its mask."""
    h, w = image.shape[-2:]
    if crop is not None:
        if min(h, w) < crop:
            raise DataError(f"image of size {h}x{w} is smaller than the crop size {crop}.")
        top, left = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        image, mask = image[:, top:top + crop, left:left + crop], mask[:, top:top + crop, left:left + crop]
    if rng.random() < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    if rng.random() < 0.5:
        image, mask = image.flip(-2), mask.flip(-2)
    return image.contiguous(), mask.contiguous()


class RoadPairs(torch.utils.data.Dataset):
    """(image, mask) pairs from tensors or files, randomly cropped and flipped per key seed.

    With ``augment=False`` items are whole, unchanged images (evaluation).
    """

    def __init__(self, images: torch.Tensor | Sequence[Path], masks: torch.Tensor | Sequence[Path],
                 crop: int | None = None, augment: bool = True) -> None:
        if len(images) != len(masks):
            raise DataError(f"{len(images)} images but {len(masks)} masks.")
        if len(images) == 0:
            raise DataError("a road split has no images.")
        self.images, self.masks = images, masks
        self.crop, self.augment = crop, augment

    def __len__(self) -> int:
        return len(self.images)

    def pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.images, torch.Tensor):
            return self.images[i], self.masks[i]
        return load_image(self.images[i]), load_mask(self.masks[i])

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = _split_key(key)
        image, mask = self.pair(i)
        if image.shape[-2:] != mask.shape[-2:]:
            where = f" ({self.images[i]})" if not isinstance(self.images, torch.Tensor) else ""
            raise DataError(f"image {i}{where} is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape[-2:])}.")
        if not self.augment:
            return image, mask
        return random_crop_flip(image, mask, self.crop, _sample_rng(seed * 104729 + i))


def load_mask(path: PathLike) -> torch.Tensor:
    """A road map file as a float (1, H, W) tensor in {0, 1} (any channel above mid-grey is road)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"mask file not found: {str(p)!r}")
    try:
        with Image.open(p) as img:
            img.load()
            arr = np.asarray(pil_to_rgb(img) if img.mode not in ("L", "1") else img.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read mask file {str(p)!r}: {exc}") from exc
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return torch.from_numpy((arr > 127).astype(np.float32))[None]


@dataclass
class SegmentationData:
    """Road segmentation splits; ``train`` yields random crops, ``val``/``test`` whole images."""

    train: RoadPairs
    val: RoadPairs | None
    test: RoadPairs
    source: str = ""
    layout: str = ""


SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


def _pair_files(images: list[Path], masks: list[Path], where: str) -> tuple[list[Path], list[Path]]:
    by_stem = {m.stem: m for m in masks}
    missing = [p.name for p in images if p.stem not in by_stem]
    if missing:
        raise DataError(f"{len(missing)} images in {where} have no mask with the same name "
                        f"(e.g. {missing[0]}): every image needs a map file with the same stem.")
    return images, [by_stem[p.stem] for p in images]


def massachusetts_layout(root: PathLike) -> tuple[str, dict[str, tuple[list[Path], list[Path]]]]:
    """Find the Massachusetts Roads splits under ``root``: ``(layout, {split: (images, masks)})``.

    Toronto layout: ``{train,valid,test}/{sat,map}/`` (also ``training``/``validation``/
    ``testing``, and ``images``/``labels`` or ``masks`` subfolders). Kaggle layout:
    ``[tiff|png]/{train,val,test}/`` with masks in ``{split}_labels/``.
    """
    root = Path(root)
    bases = [root] + [root / b for b in ("tiff", "png", "mass_roads", "massachusetts-roads-dataset")
                      if (root / b).is_dir()]
    for base in bases:
        found: dict[str, tuple[list[Path], list[Path]]] = {}
        layout = ""
        for split, aliases in SPLIT_ALIASES.items():
            for alias in aliases:
                d = base / alias
                for img_sub, mask_sub in (("sat", "map"), ("images", "labels"), ("images", "masks")):
                    if (d / img_sub).is_dir() and (d / mask_sub).is_dir():
                        found[split] = _pair_files(list_images(d / img_sub), list_images(d / mask_sub), str(d))
                        layout = f"toronto ({alias}/{img_sub},{mask_sub})"
                        break
                else:
                    if d.is_dir() and (base / f"{alias}_labels").is_dir():
                        found[split] = _pair_files(list_images(d), list_images(base / f"{alias}_labels"), str(d))
                        layout = "kaggle ({split}, {split}_labels)"
                if split in found:
                    break
        if found:
            return layout, found
    raise DataError(
        f"no Massachusetts Roads splits in {root}: expected train/sat + train/map (Toronto layout, also "
        "valid/ and test/) or tiff/train + tiff/train_labels (Kaggle layout). Download it from "
        "https://www.cs.toronto.edu/~vmnih/data/ or Kaggle (balraj98/massachusetts-roads-dataset).")


def load_segmentation_data(data: PathLike = "builtin", crop: int | None = 224, n_train: int = 96,
                           n_val: int = 8, n_test: int = 16, tile_size: int = 64, seed: int = 0
                           ) -> SegmentationData:
    """Road segmentation data from ``"builtin"`` (generated tiles) or a Massachusetts Roads folder.

    Built-in splits use disjoint tile seeds derived from ``seed`` (train, val, test).

    Example:
        >>> d = load_segmentation_data("builtin", crop=48, n_train=4, n_val=0, n_test=2)
        >>> [t.shape[-1] for t in d.train[(0, 3)]], len(d.test)
        ([48, 48], 2)
    """
    if str(data) == "builtin":
        if crop is not None and crop > tile_size:
            raise DataError(f"the crop size {crop} is larger than the built-in tiles ({tile_size}).")
        tr = generate_roads(n_train, tile_size, seed=seed * 3 + 1)
        te = generate_roads(n_test, tile_size, seed=seed * 3 + 2)
        va = generate_roads(n_val, tile_size, seed=seed * 3 + 3) if n_val else None
        return SegmentationData(RoadPairs(*tr, crop=crop), RoadPairs(*va, augment=False) if va else None,
                                RoadPairs(*te, augment=False), "builtin:generated-roads", "builtin")
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist: pass --data builtin or the Massachusetts "
                        "Roads folder.")
    layout, splits = massachusetts_layout(root)
    for split in ("train", "test"):
        if split not in splits or not splits[split][0]:
            raise DataError(f"the Massachusetts Roads folder {root} ({layout}) has no {split} images; found "
                            f"splits: {', '.join(s for s in splits if splits[s][0]) or 'none'}.")
    val = RoadPairs(*splits["val"], augment=False) if splits.get("val") and splits["val"][0] else None
    return SegmentationData(RoadPairs(*splits["train"], crop=crop), val, RoadPairs(*splits["test"], augment=False),
                            str(root), layout)


# ============================================================================================
# Fixture writers: tiny datasets in the official layouts


def _digit_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coloured digits on textured ground, uint8 (n, 3, size, size), with their labels."""
    raw, y = _digits_raw()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), n, replace=n > len(y))
    x = _upscale_digits(raw[idx], size)
    tint = rng.uniform(0.3, 1.0, (n, 3, 1, 1)).astype(np.float32)
    ground = rng.uniform(0.0, 0.3, (n, 3, 1, 1)).astype(np.float32)
    imgs = ground + x * tint
    return (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8), y[idx]


def write_stl10_fixture(root: PathLike, n_unlabeled: int = 40, n_train: int = 30, n_test: int = 20,
                        seed: int = 0) -> Path:
    """Write a tiny STL-10 in torchvision's layout (``root/stl10_binary/*.bin``); returns ``root``.

    Images are coloured digits at 96x96, labels 1..10 as in the real files.
    """
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, off in (("unlabeled", n_unlabeled, 0), ("train", n_train, 1), ("test", n_test, 2)):
        imgs, labels = _digit_images(n, 96, seed * 10 + off)
        imgs.transpose(0, 1, 3, 2).tofile(folder / f"{name}_X.bin")  # column-major, like the real files
        if name != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(folder / f"{name}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                       "monkey", "ship", "truck"]) + "\n")
    return Path(root)


def write_svhn_fixture(root: PathLike, n_extra: int = 40, n_train: int = 30, n_test: int = 20, seed: int = 0
                       ) -> Path:
    """Write a tiny SVHN (format 2) in torchvision's layout (``root/{split}_32x32.mat``)."""
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n, off in (("extra", n_extra, 0), ("train", n_train, 1), ("test", n_test, 2)):
        imgs, labels = _digit_images(n, 32, seed * 10 + off)
        y = labels.copy()
        y[y == 0] = 10
        savemat(root / f"{name}_32x32.mat", {"X": imgs.transpose(2, 3, 1, 0), "y": y.reshape(-1, 1).astype(np.uint8)})
    return root


def _save_rgb(x: torch.Tensor, path: Path) -> None:
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr, "RGB").save(path)


def write_superres_fixture(root: PathLike, n_train: int = 6, n_eval: int = 2, size: int = 48, seed: int = 0
                           ) -> Path:
    """Write a tiny super-resolution tree: ``train2014/`` COCO-named JPEGs, and evaluation sets in
    the three common layouts: ``Set5/image_SRF_4/*_HR.png`` (SelfExSR, with ``_LR`` files beside),
    ``Set14/HR/`` (EDSR benchmark, with ``LR_bicubic/X4/``) and ``BSD100/`` (plain)."""
    from .photos import builtin_photos

    root = Path(root)
    photos = list(builtin_photos(size=2 * size).values())
    rng = np.random.default_rng(seed)

    def crop(h: int, w: int) -> torch.Tensor:
        p = photos[int(rng.integers(len(photos)))]
        top, left = int(rng.integers(p.shape[1] - h + 1)), int(rng.integers(p.shape[2] - w + 1))
        return p[:, top:top + h, left:left + w]

    train = root / "train2014"
    train.mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        img = crop(size, size + 8 * (i % 3))
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr, "RGB").save(train / f"COCO_train2014_{i + 1:012d}.jpg", quality=95)
    for k in range(n_eval):
        hr = crop(size + 2, size + 6)  # not a multiple of 4: loaders must mod-crop
        lr = F.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True)[0].clamp(0, 1)
        d5 = root / "Set5" / "image_SRF_4"
        d5.mkdir(parents=True, exist_ok=True)
        _save_rgb(hr, d5 / f"img_{k + 1:03d}_SRF_4_HR.png")
        _save_rgb(lr, d5 / f"img_{k + 1:03d}_SRF_4_LR.png")
        d14 = root / "Set14"
        (d14 / "HR").mkdir(parents=True, exist_ok=True)
        (d14 / "LR_bicubic" / "X4").mkdir(parents=True, exist_ok=True)
        _save_rgb(hr, d14 / "HR" / f"img{k}.png")
        _save_rgb(lr, d14 / "LR_bicubic" / "X4" / f"img{k}x4.png")
        (root / "BSD100").mkdir(parents=True, exist_ok=True)
        _save_rgb(hr, root / "BSD100" / f"{100000 + k}.png")
    return root


MASSACHUSETTS_LAYOUTS = ("toronto", "kaggle")


def write_massachusetts_fixture(root: PathLike, layout: str = "toronto", n_train: int = 4, n_val: int = 1,
                                n_test: int = 2, size: int = 64, seed: int = 0, png: bool = False) -> Path:
    """Write a tiny Massachusetts Roads set from generated tiles in an official layout.

    ``toronto``: ``{train,valid,test}/sat/<id>_15.tiff`` and ``{split}/map/<id>_15.tif``
    (0/255 masks). ``kaggle``: ``tiff/{train,val,test}/`` and ``tiff/{split}_labels/``
    (``png/`` with ``png=True``).
    """
    if layout not in MASSACHUSETTS_LAYOUTS:
        raise DataError(f"unknown Massachusetts layout {layout!r}: use {' or '.join(MASSACHUSETTS_LAYOUTS)}.")
    root = Path(root)
    names = {"train": "train", "val": "valid" if layout == "toronto" else "val", "test": "test"}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        if n == 0:
            continue
        images, masks = generate_roads(n, size, seed=seed * 7 + k)
        if layout == "toronto":
            img_dir, mask_dir = root / names[split] / "sat", root / names[split] / "map"
            ext_img, ext_mask = ".tiff", ".tif"
        else:
            base = root / ("png" if png else "tiff")
            img_dir, mask_dir = base / names[split], base / f"{names[split]}_labels"
            ext_img, ext_mask = (".png", ".png") if png else (".tiff", ".tif")
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{10000000 + 1000 * k + i}_15"
            _save_rgb(images[i], img_dir / f"{stem}{ext_img}")
            Image.fromarray((masks[i, 0].numpy() * 255).astype(np.uint8), "L").save(mask_dir / f"{stem}{ext_mask}")
    return root


__all__ = [
    "ArrayImages", "AutoencodingData", "ImageFolderCrops", "PhotoCrops", "RoadPairs", "SegmentationData",
    "SuperresData", "builtin_digits", "center_crop_square", "eval_set_images", "generate_roads", "list_images",
    "load_autoencoding_data", "load_builtin_digits", "load_mask", "load_segmentation_data", "load_stl10",
    "load_superres_data", "load_svhn", "massachusetts_layout", "mod_crop", "random_crop_flip", "road_tile",
    "write_massachusetts_fixture", "write_stl10_fixture", "write_superres_fixture", "write_svhn_fixture",
]
