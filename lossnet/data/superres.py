"""Super-resolution data: a folder of training images (MS-COCO ``train2014``), evaluation folders
of HR images (Set5, Set14, BSD100 in the plain, ``HR/`` or ``image_SRF_<s>/*_HR.png`` layouts),
and built-in crops of the scikit-image photos (some for training, others for evaluation).

Training items are indexed by ``(index, seed)`` keys (:mod:`lossnet.data.samples`).

Example:
    >>> d = load_superres_data("builtin", scale=4, crop=64, train_length=8)
    >>> d.train[(0, 1)].shape, sorted(d.eval_sets)
    (torch.Size([3, 64, 64]), ['builtin'])
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch
from PIL import Image

from ..errors import DataError
from .images import (
    IMAGE_EXTENSIONS,
    center_crop_square,
    list_images,
    load_image,
    mod_crop,
    pil_to_tensor,
    resize_pil,
)
from .photos import photo_array, photo_names
from .samples import Key, sample_rng, split_key

PathLike = Union[str, os.PathLike]


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
        i, _ = split_key(key)
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
        i, seed = split_key(key)
        rng = sample_rng(seed * 7919 + i)
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


__all__ = [
    "BUILTIN_SR_EVAL", "EVAL_SET_NAMES", "ImageFolderCrops", "PhotoCrops", "SuperresData", "TRAIN_FOLDER_NAMES",
    "eval_set_images", "load_superres_data",
]
