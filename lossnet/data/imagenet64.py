"""ImageNet at 64x64 for the classifier study: the official npz files, class-folder trees, class
subsets and a batched uint8 augmentation that runs on the training device.

Sources:

- The official ImageNet 64x64 of Chrabaszcz et al. (2017) (``Imagenet64_train_npz``,
  ``Imagenet64_val_npz``): ``train_data_batch_1.npz`` .. ``train_data_batch_10.npz`` and
  ``val_data.npz``, each holding ``data`` (N x 12288 uint8; a row is the R plane, then G,
  then B, each 64x64 row-major) and ``labels`` (1..1000). :func:`prepare_npz` converts them
  once into ``<root>/lossnet64/{train,val}_{images,labels}.npy`` (images (N, 3, 64, 64)
  uint8, labels int16 0..999): a plain reshape of the rows, nothing is recomputed.
- An ImageNet class-folder tree (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``, as
  torchvision's ``ImageFolder`` reads it): :func:`prepare_folder` resizes every image to
  64x64 once (the whole image, PIL's box filter, as Chrabaszcz et al.) into the same form;
  classes are the sorted train folder names.

:func:`load_imagenet64` memory-maps the converted arrays (converting first when needed),
so a training run reads batches straight from the page cache.

Augmentation (:func:`augment_batch`) works on a whole uint8 batch on the device, its random
choices drawn from one integer seed per image (so a run's data order and augmentation are a
pure function of its seed, which is what makes resumption bit-identical):

- ``"pad"`` (the default, "random crops" of the paper at 64x64): a random 64x64 window of the
  image zero-padded by ``padding`` (4) pixels on every side, i.e. a random translation by up
  to 4 pixels;
- ``"resized"``: Inception-style random-resized crop (area ``scale`` = (0.08, 1), aspect
  ratio (3/4, 4/3)) resized back to 64x64 bilinearly;
- ``"center"``: the central crop that replaces the random one in the study's central-crop
  sweep: the centred square of ``center_fraction`` of the side (1.0: the whole image),
  resized back to 64x64;
- ``"none"``: the image as it is. Flips (``flip=True``): left-right with probability 1/2.

Example:
    >>> x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    >>> y = augment_batch(x, torch.tensor([0, 1]), crop="none", flip=True)
    >>> bool((y[1] == x[1].flip(-1)).all()) or bool((y[1] == x[1]).all())
    True
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, LossnetError
from ..utils.jsonio import read_json, write_json

IMAGE_SIZE = 64
ROW_LENGTH = 3 * IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 1000
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILE = "val_data.npz"
FAST_DIR = "lossnet64"
INFO_FILE = "info.json"
SPLITS = ("train", "val")
CROPS = ("pad", "resized", "center", "none")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm")
DOWNLOAD_HINT = ("Download Imagenet64_train_npz and Imagenet64_val_npz from https://image-net.org/download-images "
                 "(\"Downsampled ImageNet 64x64\") and unpack both into one folder.")


@dataclass
class ImageArrays:
    """A labelled image set: ``images`` (N, 3, H, W) uint8 (a memory map or an array),
    ``labels`` (N,) integers in ``0 .. num_classes - 1``.

    Example:
        >>> a = ImageArrays(np.zeros((4, 3, 8, 8), np.uint8), np.array([0, 1, 1, 0]), 2, "toy")
        >>> len(a), a.class_counts().tolist()
        (4, [2, 2])
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str = ""
    class_names: tuple[str, ...] | None = None
    index: np.ndarray | None = None  # rows of ``images`` that make up the set (class subsets)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.dtype != np.uint8:
            raise DataError(f"{self.name or 'image set'}: images must be (N, 3, H, W) uint8, got "
                            f"{self.images.dtype} {tuple(self.images.shape)}.")
        n_images = len(self.images) if self.index is None else len(self.index)
        if n_images != len(self.labels):
            raise DataError(f"{self.name or 'image set'}: {n_images} images but {len(self.labels)} labels: "
                            "the data and label arrays must have one entry per image (re-create the files).")
        if len(self.labels) and (int(np.min(self.labels)) < 0 or int(np.max(self.labels)) >= self.num_classes):
            raise DataError(f"{self.name or 'image set'}: labels must lie in 0..{self.num_classes - 1}, found "
                            f"{int(np.min(self.labels))}..{int(np.max(self.labels))}.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def class_counts(self) -> np.ndarray:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=self.num_classes)

    def take(self, index: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels at ``index`` (read in increasing order, returned in the order asked)."""
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.index is None else self.index[index]
        order = np.argsort(rows, kind="stable")
        images = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        images[order] = self.images[rows[order]]
        return images, np.asarray(self.labels[index], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The official npz layout


def decode_rows(data: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Channel-planar rows (N, 3 * size * size) -> images (N, 3, size, size) (a view, no copy).

    Example:
        >>> rows = np.arange(2 * 12, dtype=np.uint8).reshape(2, 12)
        >>> decode_rows(rows, size=2)[0, 1].tolist()  # the G plane of image 0
        [[4, 5], [6, 7]]
    """
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3 * size * size:
        raise DataError(f"ImageNet {size}x{size} rows must be (N, {3 * size * size}), got {tuple(data.shape)}: "
                        f"this is not the {size}x{size} npz layout.")
    if data.dtype != np.uint8:
        raise DataError(f"ImageNet {size}x{size} rows must be uint8, got {data.dtype}.")
    return data.reshape(len(data), 3, size, size)


def read_npz(path: str | os.PathLike, size: int = IMAGE_SIZE,
             num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Read one official npz file: images (N, 3, size, size) uint8 and 0-based int16 labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing ImageNet {size}x{size} file {path}. {DOWNLOAD_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz or "labels" not in npz:
                raise DataError(f"{path} has arrays {sorted(npz.files)}, not 'data' and 'labels': not an "
                                f"ImageNet {size}x{size} npz file. {DOWNLOAD_HINT}")
            data, labels = npz["data"], np.asarray(npz["labels"]).reshape(-1)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}): the file is damaged; download it again.") from exc
    images = decode_rows(data, size)
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels: the file is damaged or not an "
                        f"ImageNet {size}x{size} file; download it again.")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise DataError(f"{path}: labels must lie in 1..{num_classes} (the official layout), found "
                        f"{labels.min()}..{labels.max()}.")
    return images, (labels - 1).astype(np.int16)


def npz_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The official files of ``split`` under ``root``; a missing one is an error naming it."""
    if split not in SPLITS:
        raise LossnetError(f"unknown split {split!r}: use 'train' or 'val'.")
    root = Path(root)
    names = TRAIN_FILES if split == "train" else (VAL_FILE,)
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(f"{root} lacks {', '.join(missing)} of the ImageNet 64x64 {split} split (expected "
                        f"{names[0]}{' .. ' + names[-1] if len(names) > 1 else ''}). {DOWNLOAD_HINT}")
    return [root / n for n in names]


def _count_rows(path: Path) -> int:
    """Rows of ``data`` in an npz without decompressing it (reads the array header only)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        with zf.open("data.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
    return int(shape[0])


def _stamp(paths: Sequence[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in paths]


def fast_dir(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted arrays of ``root`` live (``<root>/lossnet64`` unless ``cache_dir``)."""
    return Path(cache_dir) if cache_dir is not None else Path(root) / FAST_DIR


def _write_split(out: Path, split: str, chunks: Iterator[tuple[np.ndarray, np.ndarray]], n: int, size: int,
                 progress: bool, what: str) -> None:
    from ..utils.progress import progress_bar

    images_path, labels_path = out / f"{split}_images.npy", out / f"{split}_labels.npy"
    tmp_images = out / f".{split}_images.npy.tmp-{os.getpid()}"
    images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    labels = np.empty(n, dtype=np.int16)
    pos = 0
    bar = progress_bar(n, what, progress, unit="img")
    try:
        for imgs, labs in chunks:
            if pos + len(imgs) > n:
                raise DataError(f"{what}: more images than counted ({n}); a file changed during conversion.")
            images[pos:pos + len(imgs)] = imgs
            labels[pos:pos + len(imgs)] = labs
            pos += len(imgs)
            bar.update(len(imgs))
    finally:
        bar.close()
    if pos != n:
        raise DataError(f"{what}: {pos} images read, {n} expected; a file changed during conversion.")
    images.flush()
    del images
    os.replace(tmp_images, images_path)
    tmp_labels = out / f".{split}_labels.npy.tmp-{os.getpid()}"
    with open(tmp_labels, "wb") as fh:
        np.save(fh, labels)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_labels, labels_path)


def prepare_npz(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None, splits: Sequence[str] = SPLITS,
                progress: bool = True) -> Path:
    """Convert the official npz files of ``root`` once into memory-mappable ``.npy`` arrays.

    Returns the folder of the arrays. Already converted splits whose source files are
    unchanged (names, sizes, modification times) are kept; each split is written to a
    temporary file and renamed, so an interrupted conversion leaves no partial split.
    """
    root = Path(root).expanduser()
    out = fast_dir(root, cache_dir)
    files = {s: npz_files(root, s) for s in splits}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {out} for the converted arrays ({exc}): pass a writable cache_dir.") from exc
    info_path = out / INFO_FILE
    info = read_json(info_path) if info_path.is_file() else {"layout": "N,3,64,64 uint8; labels int16 0-based",
                                                               "num_classes": NUM_CLASSES, "splits": {}}
    for split, paths in files.items():
        stamp = _stamp(paths)
        done = info["splits"].get(split)
        if done and done.get("source") == stamp and (out / f"{split}_images.npy").is_file():
            continue
        n = sum(_count_rows(p) for p in paths)
        _write_split(out, split, (read_npz(p) for p in paths), n, IMAGE_SIZE, progress, f"ImageNet64 {split}")
        info["splits"][split] = {"n": n, "source": stamp, "from": str(root)}
        write_json(info_path, info)
    return out


def write_npz_fixture(root: str | os.PathLike, n_per_file: int = 4, n_val: int = 4, seed: int = 0,
                      labels: Sequence[int] | None = None, size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Write a tiny ImageNet 64x64 in the official layout (10 train batches and the val file,
    random pixels; labels 1-based, drawn from ``labels`` or 1..1000) and return what was written:
    ``{"train_rows", "train_labels", "val_rows", "val_labels"}`` (rows as in the files).

    Example:
        >>> import tempfile
        >>> written = write_npz_fixture(tempfile.mkdtemp(), n_per_file=2, n_val=3)
        >>> written["train_rows"].shape, written["val_labels"].shape
        ((20, 12288), (3,))
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = np.asarray(labels if labels is not None else np.arange(1, NUM_CLASSES + 1))
    rows, labs = [], []
    for name in TRAIN_FILES:
        data = rng.integers(0, 256, (n_per_file, 3 * size * size), dtype=np.uint8)
        lab = rng.choice(pool, n_per_file)
        np.savez(root / name, data=data, labels=lab.tolist(), mean=data.mean(axis=0))
        rows.append(data)
        labs.append(lab)
    val = rng.integers(0, 256, (n_val, 3 * size * size), dtype=np.uint8)
    val_labels = rng.choice(pool, n_val)
    np.savez(root / VAL_FILE, data=val, labels=val_labels.tolist())
    return {"train_rows": np.concatenate(rows), "train_labels": np.concatenate(labs), "val_rows": val,
            "val_labels": val_labels}


# --------------------------------------------------------------------------------------------
# A class-folder tree


def _resize_file(path: str, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.BOX)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _resize_chunk(args: tuple[list[str], int]) -> np.ndarray:
    paths, size = args
    return np.stack([_resize_file(p, size) for p in paths]) if paths else np.zeros((0, 3, size, size), np.uint8)


def folder_listing(tree: str | os.PathLike, split: str, classes: Sequence[str] | None = None
                   ) -> tuple[list[str], list[str], np.ndarray]:
    """``(classes, files, labels)`` of ``tree/split/<class>/<image>``, sorted (as ``ImageFolder``)."""
    split_dir = Path(tree) / split
    if not split_dir.is_dir():
        raise DataError(f"{tree} has no {split}/ folder: an ImageNet class-folder tree holds train/<wnid>/*.JPEG "
                        "and val/<wnid>/*.JPEG (the val images sorted into class folders).")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{split_dir} has class folders {unknown[:5]} that the train split lacks: both splits must "
                        "use the same class names.")
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for c in found:
        for f in sorted((split_dir / c).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(str(f))
                labels.append(index[c])
    if not files:
        raise DataError(f"{split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return list(classes), files, np.asarray(labels, dtype=np.int16)


def prepare_folder(tree: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                   splits: Sequence[str] = SPLITS, size: int = IMAGE_SIZE, workers: int = 0,
                   chunk: int = 256, progress: bool = True) -> Path:
    """Resize an ImageNet class-folder tree to ``size`` x ``size`` once into ``.npy`` arrays.

    ``workers`` processes resize in parallel (0: in this process). Returns the arrays' folder.
    """
    tree = Path(tree).expanduser()
    out = fast_dir(tree, cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes, _, _ = folder_listing(tree, "train") if "train" in splits else (None, None, None)
    info = {"layout": f"N,3,{size},{size} uint8; labels int16 0-based", "splits": {}, "resize": "PIL box, whole image"}
    info_path = out / INFO_FILE
    if info_path.is_file():
        info = read_json(info_path)
    for split in splits:
        classes, files, labels = folder_listing(tree, split, classes)
        done = info["splits"].get(split)
        if done and done.get("n") == len(files) and (out / f"{split}_images.npy").is_file():
            continue
        jobs = [(files[i:i + chunk], size) for i in range(0, len(files), chunk)]
        if workers > 0:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers)
            results: Iterator[np.ndarray] = pool.map(_resize_chunk, jobs)
        else:
            pool, results = None, map(_resize_chunk, jobs)
        try:
            chunks = ((imgs, labels[i * chunk:i * chunk + len(imgs)]) for i, imgs in enumerate(results))
            _write_split(out, split, chunks, len(files), size, progress, f"resize {split}")
        finally:
            if pool is not None:
                pool.shutdown()
        info["splits"][split] = {"n": len(files), "from": str(tree)}
        info["num_classes"] = len(classes)
        info["classes"] = list(classes)
        write_json(info_path, info)
    return out


# --------------------------------------------------------------------------------------------
# Loading and class subsets


def load_imagenet64(root: str | os.PathLike, split: str = "train", cache_dir: str | os.PathLike | None = None,
                    convert: bool = True, progress: bool = True) -> ImageArrays:
    """The ``split`` of ImageNet 64x64 under ``root`` as memory-mapped :class:`ImageArrays`.

    ``root`` holds the official npz files, a class-folder tree (``train/``, ``val/``), or the
    converted arrays themselves; with ``convert=True`` a missing conversion is made first.
    """
    if split not in SPLITS:
        raise LossnetError(f"unknown split {split!r}: use 'train' or 'val'.")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"ImageNet 64x64 folder {root} does not exist. {DOWNLOAD_HINT}")
    out = root if (root / f"{split}_images.npy").is_file() else fast_dir(root, cache_dir)
    if not (out / f"{split}_images.npy").is_file() or (convert and _stale(root, out, split)):
        if not convert:
            raise DataError(f"{out} has no converted {split} arrays: call prepare_npz/prepare_folder first, or pass "
                            "convert=True.")
        if (root / "train").is_dir() or (root / "val").is_dir():
            prepare_folder(root, cache_dir, splits=(split,) if split == "train" else ("train", split),
                           progress=progress)
        else:
            prepare_npz(root, cache_dir, splits=(split,), progress=progress)
    return _open_arrays(out, split)


def _stale(root: Path, out: Path, split: str) -> bool:
    if out == root or not (out / INFO_FILE).is_file():
        return False
    done = read_json(out / INFO_FILE).get("splits", {}).get(split)
    if not done or "source" not in done:
        return done is None
    names = TRAIN_FILES if split == "train" else (VAL_FILE,)
    paths = [root / n for n in names]
    return all(p.is_file() for p in paths) and done["source"] != _stamp(paths)


def _open_arrays(out: Path, split: str) -> ImageArrays:
    info = read_json(out / INFO_FILE) if (out / INFO_FILE).is_file() else {}
    try:
        images = np.load(out / f"{split}_images.npy", mmap_mode="r")
        labels = np.load(out / f"{split}_labels.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the converted {split} arrays in {out} ({exc}): delete {out} and run again "
                        "to convert afresh.") from exc
    classes = info.get("classes")
    return ImageArrays(images, labels, int(info.get("num_classes", NUM_CLASSES)), f"imagenet64 {split}",
                       tuple(classes) if classes else None)


def class_subset(n_classes: int, seed: int = 0, total: int = NUM_CLASSES) -> np.ndarray:
    """``n_classes`` distinct classes of ``0 .. total-1`` drawn under ``seed``, sorted.

    Example:
        >>> class_subset(5, seed=0, total=20).tolist() == class_subset(5, seed=0, total=20).tolist()
        True
    """
    if not isinstance(n_classes, (int, np.integer)) or not 2 <= n_classes <= total:
        raise LossnetError(f"a class subset needs 2..{total} classes, got {n_classes!r}.")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0xC1A55])))
    return np.sort(rng.choice(total, size=int(n_classes), replace=False)).astype(np.int64)


def restrict_classes(arrays: ImageArrays, classes: Sequence[int] | np.ndarray) -> ImageArrays:
    """The images of ``classes`` only, relabelled ``0 .. len(classes)-1`` in the order of ``classes``.

    The images are not copied: the result keeps the memory map and an index of its rows.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if len(np.unique(classes)) != len(classes):
        raise LossnetError("class subset repeats a class.")
    if len(classes) and (classes.min() < 0 or classes.max() >= arrays.num_classes):
        raise LossnetError(f"class subset must lie in 0..{arrays.num_classes - 1}.")
    lookup = np.full(arrays.num_classes, -1, dtype=np.int64)
    lookup[classes] = np.arange(len(classes))
    labels = lookup[np.asarray(arrays.labels, dtype=np.int64)]
    keep = np.flatnonzero(labels >= 0)
    names = tuple(arrays.class_names[c] for c in classes) if arrays.class_names else None
    rows = keep if arrays.index is None else arrays.index[keep]
    return ImageArrays(arrays.images, labels[keep], len(classes), f"{arrays.name} ({len(classes)} classes)", names,
                       index=rows)


# --------------------------------------------------------------------------------------------
# Batched augmentation on tensors


_MASK31 = (1 << 31) - 1


def _hash(seeds: torch.Tensor, salt: int) -> torch.Tensor:
    """A reproducible integer hash of non-negative int64 seeds into [0, 2^31) (no overflow)."""
    x = (seeds.to(torch.int64) & _MASK31) ^ ((salt * 0x9E3779B1) & _MASK31)
    for mult in (1103515245, 214013, 1664525):
        x = (x * mult + 12345) & _MASK31
        x = x ^ (x >> 13)
    return x


def seed_uniform(seeds: torch.Tensor, salt: int) -> torch.Tensor:
    """Uniform floats in [0, 1) (float64), one per seed, a pure function of (seed, salt)."""
    return _hash(seeds, salt).to(torch.float64) / float(1 << 31)


def augment_batch(images: torch.Tensor, seeds: torch.Tensor, crop: str = "pad", flip: bool = True,
                  padding: int = 4, scale: tuple[float, float] = (0.08, 1.0), center_fraction: float = 1.0,
                  size: int | None = None) -> torch.Tensor:
    """Crop and flip a uint8 batch (B, 3, H, W) on its device; returns uint8 (B, 3, size, size).

    Every random choice of image ``i`` depends only on ``seeds[i]`` (see the module docstring
    for the crop modes).
    """
    if crop not in CROPS:
        raise LossnetError(f"unknown crop {crop!r}: use one of {', '.join(CROPS)}.")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise LossnetError(f"augment_batch expects a uint8 (B, 3, H, W) batch, got {images.dtype} "
                           f"{tuple(images.shape)}.")
    b, c, h, w = images.shape
    size = size or h
    seeds = seeds.to(images.device, torch.int64)
    if crop == "pad":
        if padding < 0:
            raise LossnetError(f"crop padding must be >= 0, got {padding}.")
        out = _shift_crop(images, seeds, padding, size)
    elif crop == "resized":
        out = _resized_crop(images, seeds, scale, size)
    elif crop == "center":
        if not 0.0 < center_fraction <= 1.0:
            raise LossnetError(f"center_fraction must be in (0, 1], got {center_fraction}.")
        out = center_crop(images, center_fraction, size)
    else:
        out = images.clone() if size == h == w else _resize_uint8(images.float(), size)
    if flip:
        flipped = (_hash(seeds, 3) & 1).bool().to(out.device)  # no .nonzero(): it waits for the device
        out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    return out


def crop_offsets(seeds: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (top, left) window offsets in the padded image, each in ``0 .. 2 * padding``."""
    span = 2 * padding + 1
    return _hash(seeds, 1) % span, _hash(seeds, 2) % span


def _shift_crop(images: torch.Tensor, seeds: torch.Tensor, padding: int, size: int) -> torch.Tensor:
    _, _, h, w = images.shape
    if padding == 0 and size == h == w:
        return images.clone()
    padded = F.pad(images, (padding, padding, padding, padding))
    top, left = crop_offsets(seeds, padding)
    top, left = top + (h - size) // 2, left + (w - size) // 2
    # on the CPU one slice copy per image is far cheaper than a per-pixel gather; on an
    # accelerator two gathers avoid a kernel launch per image
    crop = _crop_by_slices if images.device.type == "cpu" else _crop_by_gather
    return crop(padded, top, left, size)


def _crop_by_slices(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.empty((padded.shape[0], padded.shape[1], size, size), dtype=padded.dtype, device=padded.device)
    for i, (t, l) in enumerate(zip(top.tolist(), left.tolist())):
        out[i] = padded[i, :, t:t + size, l:l + size]
    return out


def _crop_by_gather(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    b, c, _, wp = padded.shape
    ar = torch.arange(size, device=padded.device)
    rows = (top.to(padded.device)[:, None] + ar).view(b, 1, size, 1).expand(b, c, size, wp)
    cols = (left.to(padded.device)[:, None] + ar).view(b, 1, 1, size).expand(b, c, size, size)
    return torch.gather(torch.gather(padded, 2, rows), 3, cols)


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def center_crop(images: torch.Tensor, fraction: float, size: int | None = None) -> torch.Tensor:
    """The centred square of ``fraction`` of the side, resized (bilinear, antialiased) to ``size``."""
    _, _, h, w = images.shape
    size = size or h
    side = max(1, int(round(min(h, w) * fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    out = images[:, :, top:top + side, left:left + side]
    return out.clone() if side == size else _resize_uint8(out.float(), size)


def _resized_crop(images: torch.Tensor, seeds: torch.Tensor, scale: tuple[float, float], size: int) -> torch.Tensor:
    lo, hi = scale
    if not 0.0 < lo <= hi <= 1.0:
        raise LossnetError(f"resized-crop scale must satisfy 0 < min <= max <= 1, got {scale}.")
    area = lo + (hi - lo) * seed_uniform(seeds, 4)
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * seed_uniform(seeds, 5)
    ratio = torch.exp(log_r)
    cw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (seed_uniform(seeds, 6) * 2 - 1) * (1 - cw)  # centre in normalised coordinates
    cy = (seed_uniform(seeds, 7) * 2 - 1) * (1 - ch)
    theta = torch.zeros(len(seeds), 2, 3, dtype=torch.float32, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = cw.float(), cx.float()
    theta[:, 1, 1], theta[:, 1, 2] = ch.float(), cy.float()
    grid = F.affine_grid(theta, [len(seeds), images.shape[1], size, size], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class Normalizer:
    """``(x / 255 - mean) / std`` in ``dtype`` for fixed ``mean``/``std``, its two constants made once
    per device (on CUDA making them is a host-to-device copy that waits for the device, so a
    training step must not make them again).

    Example:
        >>> images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
        >>> mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
        >>> by_hand = (images.double() / 255 - mean.double()) / std.double()
        >>> bool(torch.allclose(Normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))(images).double(), by_hand, atol=1e-5))
        True
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32) -> None:
        m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        self.dtype = dtype
        self.scale, self.shift = (1.0 / (255.0 * s)).to(dtype), (m / s).to(dtype)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        consts = self._on.get(images.device)
        if consts is None:
            consts = self._on[images.device] = (self.scale.to(images.device), self.shift.to(images.device))
        out = images.to(self.dtype)
        if out.data_ptr() == images.data_ptr():  # already in dtype: do not change the caller's tensor
            out = out.clone()
        return out.mul_(consts[0]).sub_(consts[1])


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> ``(x / 255 - mean) / std`` in ``dtype`` (once; :class:`Normalizer` for every step)."""
    return Normalizer(mean, std, dtype)(images)


def iterate_batches(arrays: ImageArrays, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential uint8 batches ``(images, labels)`` over the whole set (evaluation order)."""
    for start in range(0, len(arrays), batch_size):
        images, labels = arrays.take(np.arange(start, min(start + batch_size, len(arrays))))
        yield torch.from_numpy(images), torch.from_numpy(labels)


class ClassificationItems(torch.utils.data.Dataset):
    """:class:`ImageArrays` as a dataset of ``(index, augmentation seed)`` keys, fetched a batch at
    a time: ``__getitems__`` returns ``{"images": uint8 (B,3,H,W), "labels", "seeds"}`` (the
    augmentation itself runs later, batched, on the training device).

    Example:
        >>> ds = ClassificationItems(ImageArrays(np.zeros((4, 3, 8, 8), np.uint8), np.array([0, 1, 1, 0]), 2))
        >>> sorted(ds.__getitems__([(0, 7), (3, 9)]))
        ['images', 'labels', 'seeds']
    """

    def __init__(self, arrays: ImageArrays) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.__getitems__([key])

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
        index = np.fromiter((k[0] for k in keys), dtype=np.int64, count=len(keys))
        seeds = torch.tensor([k[1] for k in keys], dtype=torch.int64)
        images, labels = self.arrays.take(index)
        return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels), "seeds": seeds}


def collate_batch(batch: Any) -> Any:
    """The collate function for :class:`ClassificationItems` (the batch is already made)."""
    return batch


__all__ = [
    "CROPS", "ClassificationItems", "IMAGE_SIZE", "ImageArrays", "NUM_CLASSES", "TRAIN_FILES",
    "VAL_FILE", "augment_batch", "center_crop", "class_subset", "collate_batch", "crop_offsets", "decode_rows",
    "Normalizer", "fast_dir", "folder_listing", "iterate_batches", "load_imagenet64", "normalize", "npz_files", "prepare_folder",
    "prepare_npz", "read_npz", "restrict_classes", "seed_uniform", "write_npz_fixture",
]
