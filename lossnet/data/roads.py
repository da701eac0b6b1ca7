"""Road segmentation data: Massachusetts Roads in its Toronto or Kaggle layout, and a generated
road-like set (thick polylines on textured ground) that needs no download.

Images pair with their masks by file name without the extension (``<id>_15.tiff`` with
``<id>_15.tif``); an image without a mask, or a mask without an image, is a :class:`DataError`.
Training items are indexed by ``(index, seed)`` keys (:mod:`lossnet.data.samples`).

Example:
    >>> images, masks = generate_roads(2, size=64, seed=0)
    >>> tuple(images.shape), tuple(masks.shape)
    ((2, 3, 64, 64), (2, 1, 64, 64))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..errors import DataError
from .images import list_images, load_image, pil_to_rgb
from .pairing import pair_by_stem
from .samples import Key, sample_rng, split_key

PathLike = Union[str, os.PathLike]


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
        i, seed = split_key(key)
        image, mask = self.pair(i)
        if image.shape[-2:] != mask.shape[-2:]:
            where = f" ({self.images[i]})" if not isinstance(self.images, torch.Tensor) else ""
            raise DataError(f"image {i}{where} is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape[-2:])}.")
        if not self.augment:
            return image, mask
        return random_crop_flip(image, mask, self.crop, sample_rng(seed * 104729 + i))


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


def _pair_files(images: list[Path], masks: list[Path], image_dir: Path, mask_dir: Path, root: Path
                ) -> tuple[list[Path], list[Path]]:
    """Images and their masks paired by file name without the extension (``x.tiff`` with ``x.tif``)."""
    img_label = f"{image_dir.relative_to(root).as_posix()}/" if image_dir != root else "./"
    mask_label = f"{mask_dir.relative_to(root).as_posix()}/"
    _, paired = pair_by_stem(
        {img_label: images, mask_label: masks}, f"Massachusetts Roads {root}",
        {img_label: "image", mask_label: "mask"},
        fix="Every image needs a map (mask) file with the same name: the download may be incomplete.",
    )
    return paired[img_label], paired[mask_label]


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
                        found[split] = _pair_files(list_images(d / img_sub), list_images(d / mask_sub), d / img_sub,
                                                   d / mask_sub, root)
                        layout = f"toronto ({alias}/{img_sub},{mask_sub})"
                        break
                else:
                    if d.is_dir() and (base / f"{alias}_labels").is_dir():
                        found[split] = _pair_files(list_images(d), list_images(base / f"{alias}_labels"), d,
                                                   base / f"{alias}_labels", root)
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


__all__ = [
    "RoadPairs", "SPLIT_ALIASES", "SegmentationData", "generate_roads", "load_mask", "load_segmentation_data",
    "massachusetts_layout", "random_crop_flip", "road_tile",
]
