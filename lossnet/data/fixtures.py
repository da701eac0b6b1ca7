"""Writers of SMALL generated datasets in the exact official on-disk layouts (for tests and demos).

The content comes from the synthetic generator (real scikit-image photo patches and
distortions, generated road tiles, scikit-learn digits), so the files look like real data; the
labels are rule-based and known. Sizes are small by default; :data:`REAL_SHAPES` holds the
shapes of the real files (BAPPS: 256x256 PNG), which the writers can produce too.

Similarity datasets: BAPPS 2AFC and JND, TID2013, KADID-10k, a MOS CSV. Task datasets: STL-10,
SVHN, a super-resolution tree (COCO-named JPEGs, Set5/Set14/BSD100), Massachusetts Roads.

Example:
    >>> import tempfile
    >>> from lossnet.data import write_bapps_fixture, load_2afc
    >>> root = write_bapps_fixture(tempfile.mkdtemp(), n=4)
    >>> {k: len(v) for k, v in load_2afc(root).items()}
    {'traditional': 4, 'cnn': 4}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DataError
from .autoencoding import builtin_digits, digit_labels
from .distortions import DISTORTIONS, apply_distortion
from .images import pil_to_tensor
from .photos import builtin_photos, photo_array, photo_names
from .roads import generate_roads
from .synthetic import (
    _mixed_family_specs,
    _render_patch,
    _same_family_specs,
    builtin_jnd,
)

PathLike = Union[str, os.PathLike]
Labels = Union[Sequence[float], Mapping[str, Sequence[float]], None]
Shape = Union[int, Sequence[int]]

#: ``(height, width)`` of the files of the real datasets (pass them as ``size``/``shape``).
REAL_SHAPES: dict[str, tuple[int, int]] = {
    "bapps": (256, 256),  # 2AFC and JND patches, PNG
    "tid2013": (384, 512),  # BMP
    "kadid10k": (384, 512),  # PNG
}


def _shape(size: Shape) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (an int or a (height, width) pair), got {size!r}")
    return h, w


def _crop(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (img.shape[-2] - h) // 2, (img.shape[-1] - w) // 2
    return img[..., top:top + h, left:left + w].contiguous()


def _to_pil(img: torch.Tensor) -> Image.Image:
    arr = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def _save_label(path: Path, value: float) -> None:
    np.save(path, np.array([value], dtype=np.float32))


def _grade(rule: float, rng: np.random.Generator, choices_hi: Sequence[float], choices_lo: Sequence[float]) -> float:
    if rule >= 1.0:
        return float(choices_hi[int(rng.integers(len(choices_hi)))])
    if rule <= 0.0:
        return float(choices_lo[int(rng.integers(len(choices_lo)))])
    return float(rule)


def _labels_for(labels: Labels, subset: str, n: int) -> Optional[list[float]]:
    if labels is None:
        return None
    values = labels[subset] if isinstance(labels, Mapping) else labels
    values = [float(v) for v in values]
    if len(values) != n:
        raise ValueError(f"{len(values)} labels given for subset {subset!r} of {n} items")
    return values


def write_bapps_fixture(
    root: PathLike,
    n: int = 6,
    seed: int = 0,
    split: str = "val",
    subsets: Sequence[str] = ("traditional", "cnn"),
    size: Shape = 64,
    judges: Labels = None,
    graded: bool = True,
) -> Path:
    """Write a small BAPPS 2AFC split ``root/2afc/<split>/<subset>/{ref,p0,p1,judge}/`` and return ``root``.

    Subset ``k`` is made with the synthetic same-family rule (even ``k``) or mixed-family rule
    (odd ``k``), seed ``seed + k``; every 10th item is a tie (judge 0.5; on even tens p0 and p1
    are identical files). With ``graded`` the rule's 1.0/0.0 become fractions of five voters
    that agree with it (1.0/0.8/0.6 and 0.0/0.2/0.4). ``judges`` overrides the labels (one
    list for every subset, or ``{subset: list}``). Images are ``size x size`` PNGs, labels
    one-value float32 ``.npy`` files, names ``000000.png``/``000000.npy``. ``size`` is the side
    of the square PNGs or their ``(height, width)``; the real files are 256x256
    (``REAL_SHAPES["bapps"]``).

    Example:
        >>> root = write_bapps_fixture("/tmp/bapps", n=3, judges=[0.0, 0.5, 1.0])  # doctest: +SKIP
    """
    root = Path(root)
    photos = photo_names()
    fams = list(DISTORTIONS)
    h, w = _shape(size)
    side = max(h, w)
    for k, subset in enumerate(subsets):
        make = _same_family_specs if k % 2 == 0 else _mixed_family_specs
        specs = make(n, seed + k, side, fams, photos)
        rng = np.random.default_rng([seed, k, 7])
        override = _labels_for(judges, subset, n)
        folder = root / "2afc" / split / subset
        for sub in ("ref", "p0", "p1", "judge"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(specs):
            ref = _crop(_render_patch(s.patch, side), h, w)
            p0 = apply_distortion(ref, s.family0, s.level0, torch.Generator().manual_seed(s.seed0))
            p1 = apply_distortion(ref, s.family1, s.level1, torch.Generator().manual_seed(s.seed1))
            name = f"{i:06d}"
            _to_pil(ref).save(folder / "ref" / f"{name}.png")
            _to_pil(p0).save(folder / "p0" / f"{name}.png")
            _to_pil(p1).save(folder / "p1" / f"{name}.png")
            judge = override[i] if override is not None else (
                _grade(s.judge, rng, (1.0, 0.8, 0.6), (0.0, 0.2, 0.4)) if graded else s.judge
            )
            _save_label(folder / "judge" / f"{name}.npy", judge)
    return root


def write_jnd_fixture(
    root: PathLike,
    n: int = 6,
    seed: int = 0,
    subsets: Sequence[str] = ("traditional", "cnn"),
    size: Shape = 64,
    same: Labels = None,
    graded: bool = True,
) -> Path:
    """Write a small BAPPS JND set ``root/jnd/val/<subset>/{p0,p1,same}/`` and return ``root``.

    Pairs follow the synthetic JND rule (every third pair is "same"); with ``graded`` the
    labels become fractions of three voters that agree with it (1 or 2/3; 0 or 1/3).
    ``same`` overrides the labels; ``size`` is as for :func:`write_bapps_fixture`.

    Example:
        >>> root = write_jnd_fixture("/tmp/bapps", n=3)  # doctest: +SKIP
    """
    root = Path(root)
    h, w = _shape(size)
    for k, subset in enumerate(subsets):
        ds = builtin_jnd(n=n, seed=seed + k, size=max(h, w))["synthetic"]
        rng = np.random.default_rng([seed, k, 11])
        override = _labels_for(same, subset, n)
        folder = root / "jnd" / "val" / subset
        for sub in ("p0", "p1", "same"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            item = ds[i]
            name = f"{i:06d}"
            _to_pil(_crop(item["p0"], h, w)).save(folder / "p0" / f"{name}.png")
            _to_pil(_crop(item["p1"], h, w)).save(folder / "p1" / f"{name}.png")
            rule = float(item["same"])
            label = override[i] if override is not None else (
                _grade(rule, rng, (1.0, 2 / 3), (0.0, 1 / 3)) if graded else rule
            )
            _save_label(folder / "same" / f"{name}.npy", label)
    return root


def _reference_images(n_refs: int, seed: int, shape: tuple[int, int]) -> list[torch.Tensor]:
    photos = photo_names()
    rng = np.random.default_rng([seed, 99])
    h, w = shape
    out = []
    for k in range(n_refs):
        arr = photo_array(photos[k % len(photos)])
        f = max(1, min(3, arr.shape[0] // h, arr.shape[1] // w))
        top = int(rng.integers(0, max(0, arr.shape[0] - f * h) + 1))
        left = int(rng.integers(0, max(0, arr.shape[1] - f * w) + 1))
        crop = Image.fromarray(np.ascontiguousarray(arr[top : top + f * h, left : left + f * w]), mode="RGB")
        out.append(pil_to_tensor(crop.resize((w, h), Image.BICUBIC)))
    return out


def _distorted_set(n_refs: int, n_types: int, n_levels: int, seed: int, shape: tuple[int, int]):
    """Yield (ref index, type index, level index, ref image, distorted image, level in (0, 1])."""
    fams = list(DISTORTIONS)
    refs = _reference_images(n_refs, seed, shape)
    for r, ref in enumerate(refs):
        for t in range(n_types):
            for lv in range(n_levels):
                level = (lv + 1) / n_levels
                g = torch.Generator().manual_seed(seed * 1000 + r * 100 + t)
                yield r, t, lv, ref, apply_distortion(ref, fams[t % len(fams)], level, g), level


def write_tid2013_fixture(
    root: PathLike,
    n_refs: int = 2,
    n_types: int = 2,
    n_levels: int = 2,
    seed: int = 0,
    shape: tuple[int, int] = (48, 64),
) -> Path:
    """Write a small TID2013 in its layout and return ``root``.

    ``root/mos_with_names.txt`` ("MOS filename" lines), ``root/reference_images/I01.BMP``
    (upper case, as in TID2013) and ``root/distorted_images/i01_01_1.bmp`` (lower case).
    MOS = ``7 - 5 * level + 0.1 * ref index`` (higher is better; levels ``1/n_levels .. 1``).

    Example:
        >>> root = write_tid2013_fixture("/tmp/tid")  # doctest: +SKIP
    """
    root = Path(root)
    (root / "reference_images").mkdir(parents=True, exist_ok=True)
    (root / "distorted_images").mkdir(parents=True, exist_ok=True)
    lines = []
    written = set()
    for r, t, lv, ref, dist, level in _distorted_set(n_refs, n_types, n_levels, seed, shape):
        if r not in written:
            _to_pil(ref).save(root / "reference_images" / f"I{r + 1:02d}.BMP", format="BMP")
            written.add(r)
        name = f"i{r + 1:02d}_{t + 1:02d}_{lv + 1}.bmp"
        _to_pil(dist).save(root / "distorted_images" / name, format="BMP")
        lines.append(f"{7.0 - 5.0 * level + 0.1 * r:.5f} {name}")
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    return root


def write_kadid_fixture(
    root: PathLike,
    n_refs: int = 2,
    n_types: int = 2,
    n_levels: int = 2,
    seed: int = 0,
    shape: tuple[int, int] = (48, 64),
) -> Path:
    """Write a small KADID-10k in its layout and return ``root`` (the folder holding ``dmos.csv``).

    ``root/dmos.csv`` with header ``dist_img,ref_img,dmos,var`` and ``root/images/I01.png``,
    ``root/images/I01_01_01.png`` ... dmos = ``4.8 - 3 * level + 0.05 * ref index`` (1-5,
    higher is better), var = 0.1.

    Example:
        >>> root = write_kadid_fixture("/tmp/kadid")  # doctest: +SKIP
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["dist_img,ref_img,dmos,var"]
    written = set()
    for r, t, lv, ref, dist, level in _distorted_set(n_refs, n_types, n_levels, seed, shape):
        ref_name = f"I{r + 1:02d}.png"
        if r not in written:
            _to_pil(ref).save(root / "images" / ref_name)
            written.add(r)
        name = f"I{r + 1:02d}_{t + 1:02d}_{lv + 1:02d}.png"
        _to_pil(dist).save(root / "images" / name)
        rows.append(f"{name},{ref_name},{4.8 - 3.0 * level + 0.05 * r:.3f},0.100")
    (root / "dmos.csv").write_text("\n".join(rows) + "\n")
    return root


def write_mos_csv_fixture(
    root: PathLike,
    n_refs: int = 2,
    n_types: int = 2,
    n_levels: int = 2,
    seed: int = 0,
    shape: tuple[int, int] = (48, 64),
) -> Path:
    """Write ``root/scores.csv`` (columns ref, dist, score; paths relative to ``root``) with images in
    ``root/images/``; return the CSV path. score = ``10 * level`` (higher is WORSE).

    Example:
        >>> csv_path = write_mos_csv_fixture("/tmp/mos")  # doctest: +SKIP
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["ref,dist,score"]
    written = set()
    for r, t, lv, ref, dist, level in _distorted_set(n_refs, n_types, n_levels, seed, shape):
        ref_name = f"images/ref{r}.png"
        if r not in written:
            _to_pil(ref).save(root / ref_name)
            written.add(r)
        name = f"images/ref{r}_t{t}_l{lv}.png"
        _to_pil(dist).save(root / name)
        rows.append(f"{ref_name},{name},{10.0 * level:.3f}")
    path = root / "scores.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _save_image(x: torch.Tensor, path: Path) -> None:
    _to_pil(x).save(path)


# ---------------------------------------------------------------- task datasets


def digit_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` coloured digits on plain ground, uint8 (n, 3, size, size), with their labels (seeded).

    Example:
        >>> x, y = digit_images(4, 32, seed=0)
        >>> x.shape, x.dtype, len(y)
        ((4, 3, 32, 32), dtype('uint8'), 4)
    """
    rng = np.random.default_rng(seed)
    n_all = len(digit_labels())
    idx = rng.choice(n_all, n, replace=n > n_all)
    x, y = builtin_digits(size, indices=idx)
    tint = rng.uniform(0.3, 1.0, (n, 3, 1, 1)).astype(np.float32)
    ground = rng.uniform(0.0, 0.3, (n, 3, 1, 1)).astype(np.float32)
    imgs = ground + x * tint
    return (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8), y


def write_stl10_fixture(root: PathLike, n_unlabeled: int = 40, n_train: int = 30, n_test: int = 20,
                        seed: int = 0) -> Path:
    """Write a tiny STL-10 in torchvision's layout (``root/stl10_binary/*.bin``); returns ``root``.

    Images are coloured digits at 96x96, labels 1..10 as in the real files.
    """
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, off in (("unlabeled", n_unlabeled, 0), ("train", n_train, 1), ("test", n_test, 2)):
        imgs, labels = digit_images(n, 96, seed * 10 + off)
        imgs.transpose(0, 1, 3, 2).tofile(folder / f"{name}_X.bin")  # column-major, like the real files
        if name != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(folder / f"{name}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                       "monkey", "ship", "truck"]) + "\n")
    return Path(root)


def write_svhn_fixture(root: PathLike, n_extra: int = 40, n_train: int = 30, n_test: int = 20, seed: int = 0
                       ) -> Path:
    """Write a tiny SVHN (format 2) in torchvision's layout (``root/{split}_32x32.mat``)."""
    try:
        from scipy.io import savemat
    except ImportError as exc:
        raise DataError("writing SVHN's .mat files needs scipy: pip install 'lossnet[metrics]' (or scipy).") from exc

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n, off in (("extra", n_extra, 0), ("train", n_train, 1), ("test", n_test, 2)):
        imgs, labels = digit_images(n, 32, seed * 10 + off)
        y = labels.copy()
        y[y == 0] = 10
        savemat(root / f"{name}_32x32.mat", {"X": imgs.transpose(2, 3, 1, 0), "y": y.reshape(-1, 1).astype(np.uint8)})
    return root


def write_superres_fixture(root: PathLike, n_train: int = 6, n_eval: int = 2, size: int = 48, seed: int = 0
                           ) -> Path:
    """Write a tiny super-resolution tree: ``train2014/`` COCO-named JPEGs, and evaluation sets in
    the three common layouts: ``Set5/image_SRF_4/*_HR.png`` (SelfExSR, with ``_LR`` files beside),
    ``Set14/HR/`` (EDSR benchmark, with ``LR_bicubic/X4/``) and ``BSD100/`` (plain)."""
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
        _to_pil(img).save(train / f"COCO_train2014_{i + 1:012d}.jpg", quality=95)
    for k in range(n_eval):
        hr = crop(size + 2, size + 6)  # not a multiple of 4: loaders must mod-crop
        lr = F.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True)[0].clamp(0, 1)
        d5 = root / "Set5" / "image_SRF_4"
        d5.mkdir(parents=True, exist_ok=True)
        _save_image(hr, d5 / f"img_{k + 1:03d}_SRF_4_HR.png")
        _save_image(lr, d5 / f"img_{k + 1:03d}_SRF_4_LR.png")
        d14 = root / "Set14"
        (d14 / "HR").mkdir(parents=True, exist_ok=True)
        (d14 / "LR_bicubic" / "X4").mkdir(parents=True, exist_ok=True)
        _save_image(hr, d14 / "HR" / f"img{k}.png")
        _save_image(lr, d14 / "LR_bicubic" / "X4" / f"img{k}x4.png")
        (root / "BSD100").mkdir(parents=True, exist_ok=True)
        _save_image(hr, root / "BSD100" / f"{100000 + k}.png")
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
            _save_image(images[i], img_dir / f"{stem}{ext_img}")
            Image.fromarray((masks[i, 0].numpy() * 255).astype(np.uint8), "L").save(mask_dir / f"{stem}{ext_mask}")
    return root
