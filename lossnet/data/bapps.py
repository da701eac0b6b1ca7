"""BAPPS 2AFC and JND datasets in the official on-disk layout.

Layout (a BAPPS root holds ``2afc/`` and ``jnd/``)::

    2afc/{train,val}/<subset>/{ref,p0,p1,judge}/   ref/000000.png ... judge/000000.npy
    jnd/val/<subset>/{p0,p1,same}/

Files in the folders of one subset pair up by name without the extension (``ref/000002.png``
with ``p0/000002.png``, ``p1/000002.png`` and ``judge/000002.npy``); a name that is not in
every folder is a :class:`DataError` listing it. ``judge`` is the fraction of people who chose
``p1`` as closer to ``ref`` (1.0: p1 is closer); ``same`` is the fraction who said the JND pair
looked the same. Labels are one-value ``.npy`` files.

Images load as the reference evaluation loads them (``data/dataset/twoafc_dataset.py`` and
``jnd_dataset.py`` of the LPIPS repository): PIL, ``convert("RGB")``,
``torchvision.transforms.Resize(64)`` with its default interpolation (bilinear, antialiased on
PIL images), ``ToTensor``. Another ``size`` or ``interpolation`` is an explicit choice, and every
dataset says which it used in ``protocol``.

Example:
    >>> from lossnet.data import load_2afc
    >>> sets = load_2afc("data/bapps", split="val")  # doctest: +SKIP
    >>> item = sets["traditional"][0]  # doctest: +SKIP
    >>> item["ref"].shape, float(item["judge"])  # doctest: +SKIP
    (torch.Size([3, 64, 64]), 0.8)
    >>> sets["traditional"].protocol  # doctest: +SKIP
    'BAPPS reference: PIL RGB, torchvision Resize(64) bilinear antialias, ToTensor'
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .images import (
    Size,
    describe_loading,
    is_image_file,
    load_image,
    resolve_interpolation,
)
from .pairing import pair_by_stem

PathLike = Union[str, os.PathLike]

#: Subsets in the order BAPPS reports them.
TWOAFC_SUBSETS: dict[str, tuple[str, ...]] = {
    "val": ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
    "train": ("traditional", "cnn", "mix"),
}
JND_SUBSETS: tuple[str, ...] = ("traditional", "cnn")
TWOAFC_FOLDERS = ("ref", "p0", "p1", "judge")
JND_FOLDERS = ("p0", "p1", "same")
_KNOWN_ORDER = ("traditional", "cnn", "mix", "superres", "deblur", "color", "frameinterp")
#: The reference evaluation's loading: ``Resize(64)`` with torchvision's default interpolation.
REFERENCE_SIZE = 64
REFERENCE_INTERPOLATION = "bilinear"
_NOUNS = {"ref/": "ref image", "p0/": "p0 image", "p1/": "p1 image", "judge/": "judge label", "same/": "same label"}

_LAYOUT_2AFC = (
    "expected the official BAPPS layout: <root>/2afc/{train,val}/<subset>/{ref,p0,p1,judge}/ "
    "(pass the root, a split folder such as <root>/2afc/val, or one subset folder). "
    "Get it with `lossnet download bapps --to DIR`, or see lossnet.data.manual_instructions('bapps')."
)
_LAYOUT_JND = (
    "expected the official BAPPS layout: <root>/jnd/val/<subset>/{p0,p1,same}/ "
    "(pass the root, <root>/jnd/val, or one subset folder). "
    "Get it with `lossnet download bapps --to DIR`, or see lossnet.data.manual_instructions('bapps')."
)


def subset_order(names: Iterable[str]) -> list[str]:
    """Sort subset names in BAPPS order (unknown names last, alphabetically).

    Example:
        >>> subset_order(["color", "cnn", "zzz", "traditional"])
        ['traditional', 'cnn', 'color', 'zzz']
    """
    names = list(names)
    return sorted(names, key=lambda n: (_KNOWN_ORDER.index(n) if n in _KNOWN_ORDER else len(_KNOWN_ORDER), n))


def bapps_protocol(size: Size = REFERENCE_SIZE, interpolation: str = REFERENCE_INTERPOLATION) -> str:
    """The loading protocol in words, marked as the BAPPS reference one or not.

    Example:
        >>> bapps_protocol()
        'BAPPS reference: PIL RGB, torchvision Resize(64) bilinear antialias, ToTensor'
        >>> bapps_protocol(64, "bicubic")
        'PIL RGB, torchvision Resize(64) bicubic antialias, ToTensor (not the BAPPS reference: Resize(64) bilinear)'
    """
    how = describe_loading(size, interpolation)
    if size == REFERENCE_SIZE and str(interpolation).lower() == REFERENCE_INTERPOLATION:
        return f"BAPPS reference: {how}"
    return f"{how} (not the BAPPS reference: Resize({REFERENCE_SIZE}) {REFERENCE_INTERPOLATION})"


_LABEL_FIX = (
    "BAPPS labels are one number in [0, 1] per .npy file (the fraction of people who chose p1, or said "
    "'same'); the file is damaged or not from BAPPS: extract the archive again."
)


def read_label(path: PathLike) -> float:
    """Read a one-value numeric ``.npy`` label in [0, 1]; :class:`DataError` naming the file otherwise.

    Strings, booleans, NaN and values outside [0, 1] are refused (a string ``"0.5"`` is not read
    as a number, ``True`` is not read as 1).
    """
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable .npy
        raise DataError(f"cannot read label file {str(p)!r}: not a readable .npy file ({e}). {_LABEL_FIX}") from e
    arr = np.asarray(arr)
    if arr.size != 1:
        raise DataError(
            f"label file {str(p)!r} holds {arr.size} values (shape {arr.shape}); BAPPS labels are a single "
            f"value. {_LABEL_FIX}"
        )
    kinds = {"b": "a bool", "U": "a string", "S": "a byte string", "c": "a complex number", "V": "a record",
             "M": "a date", "m": "a time span"}
    if arr.dtype.kind not in "fiu":
        what = kinds.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise DataError(
            f"label file {str(p)!r} holds {what} ({arr.reshape(-1)[0]!r}), not a number. {_LABEL_FIX}"
        )
    value = float(arr.reshape(-1)[0])
    if np.isnan(value):
        raise DataError(f"label file {str(p)!r} holds NaN, not a number. {_LABEL_FIX}")
    if not (0.0 <= value <= 1.0):
        raise DataError(f"label file {str(p)!r} holds {value}, outside [0, 1]. {_LABEL_FIX}")
    return value


def _list_files(folder: Path, labels: bool) -> list[Path]:
    if labels:
        files = [p for p in folder.iterdir() if p.suffix.lower() == ".npy" and not p.name.startswith(".")]
    else:
        files = [p for p in folder.iterdir() if is_image_file(p)]
    return sorted(files, key=lambda p: p.name)


def _read_folders(root: Path, folders: Sequence[str], layout: str, kind: str
                  ) -> tuple[list[str], dict[str, list[Path]]]:
    """(names, {folder: files}) of one subset, paired by file name without the extension."""
    if not root.is_dir():
        raise DataError(f"{kind} subset folder {str(root)!r} does not exist; {layout}")
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise DataError(
            f"{kind} subset folder {str(root)!r} lacks the folder(s) {', '.join(missing)}/ "
            f"(it needs {', '.join(f + '/' for f in folders)}); {layout}"
        )
    listed = {f + "/": _list_files(root / f, labels=(f in ("judge", "same"))) for f in folders}
    if not listed[folders[0] + "/"]:
        raise DataError(f"{kind} subset {str(root)!r} is empty: no images in {folders[0]}/; {layout}")
    names, paired = pair_by_stem(
        listed, f"{kind} subset {str(root)!r}", _NOUNS,
        fix="Every item needs one file of the same name in each folder. The download may be incomplete or files "
            "were renamed or copied in: extract the archive again.",
    )
    return names, {f: paired[f + "/"] for f in folders}


class _FolderSet(Dataset):
    """Shared machinery of :class:`TwoAFCDataset` and :class:`JNDDataset`."""

    synthetic = False
    _folders: tuple[str, ...] = ()
    _images: tuple[str, ...] = ()
    _label: str = ""
    _kind = ""
    _layout = ""

    def __init__(
        self,
        root: PathLike,
        size: Size = REFERENCE_SIZE,
        subset: Optional[str] = None,
        split: Optional[str] = None,
        subsets: Optional[Iterable[str]] = None,
        interpolation: Optional[str] = None,
    ):
        self.root = Path(root).expanduser()
        self.size = size
        self.interpolation = resolve_interpolation(size, interpolation, REFERENCE_INTERPOLATION)
        self.protocol = bapps_protocol(size, self.interpolation)
        self.split = split
        if self.root.is_dir() and not _is_subset_dir(self.root, self._folders) and _subset_dirs(self.root, self._folders):
            found = {n: self.root / n for n in subset_order(p.name for p in _subset_dirs(self.root, self._folders))}
            dirs = [(n, found[n]) for n in _pick(found, subsets, self.root)]
            self.subset = subset or self.root.name
        else:
            self.subset = subset or self.root.name
            dirs = [(self.subset, self.root)]
        self.subsets = [n for n, _ in dirs]
        self.paths: dict[str, list[Path]] = {f: [] for f in self._folders}
        self.names: list[str] = []
        self.item_subsets: list[str] = []
        for name, folder in dirs:
            stems, files = _read_folders(folder, self._folders, self._layout, self._kind)
            for f in self._folders:
                self.paths[f].extend(files[f])
            self.names.extend(stems)
            self.item_subsets.extend([name] * len(stems))
        self.labels = torch.tensor([read_label(p) for p in self.paths[self._label]], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.item_subsets)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a {self._kind} set of {len(self)} items")
        item: dict = {k: load_image(self.paths[k][index], self.size, self.interpolation) for k in self._images}
        item[self._label] = self.labels[index].clone()
        item["subset"] = self.item_subsets[index]
        item["index"] = index
        return item

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(subset={self.subset!r}, n={len(self)}, size={self.size}, "
            f"interpolation={self.interpolation!r}, root={str(self.root)!r})"
        )


class TwoAFCDataset(_FolderSet):
    """BAPPS 2AFC triplets from one subset folder (``ref/ p0/ p1/ judge/``) or a split folder.

    Given a split folder (such as ``<root>/2afc/val``) the subsets it holds (or ``subsets``)
    are concatenated in BAPPS order and each item names its own subset. Items are dicts
    ``{"ref", "p0", "p1": float32 (3, H, W) in [0, 1], "judge": float32 0-dim tensor
    (fraction choosing p1 as closer), "subset": str, "index": int}``; item ``i`` is the name
    ``self.names[i]`` in every folder. Images are loaded lazily as the reference evaluation
    loads them: ``Resize(size)`` with ``interpolation`` (default 64, bilinear; None keeps the
    file size), recorded in ``self.protocol``; all labels are read and checked at construction
    (``self.judges``).

    Example:
        >>> ds = TwoAFCDataset("bapps/2afc/val/cnn")  # doctest: +SKIP
        >>> len(ds), ds.subset, ds[0]["p0"].shape  # doctest: +SKIP
        (4720, 'cnn', torch.Size([3, 64, 64]))
    """

    _folders = TWOAFC_FOLDERS
    _images = ("ref", "p0", "p1")
    _label = "judge"
    _kind = "2AFC"
    _layout = _LAYOUT_2AFC

    def __init__(self, root: PathLike, size: Size = REFERENCE_SIZE, subset: Optional[str] = None,
                 split: Optional[str] = None, subsets: Optional[Iterable[str]] = None,
                 interpolation: Optional[str] = None):
        super().__init__(root, size, subset, split, subsets, interpolation)
        self.ref_paths, self.p0_paths, self.p1_paths = self.paths["ref"], self.paths["p0"], self.paths["p1"]
        self.judge_paths = self.paths["judge"]
        self.judges = self.labels
        where = f"{split}/" if split else ""
        self.description = f"BAPPS 2AFC {where}{self.subset} (human judgements), {self.root}"


class JNDDataset(_FolderSet):
    """BAPPS JND pairs from one subset folder (``p0/ p1/ same/``) or ``<root>/jnd/val``.

    Items are dicts ``{"p0", "p1": float32 (3, H, W) in [0, 1], "same": float32 0-dim tensor
    (fraction who said "same"), "subset": str, "index": int}``; ``self.same`` holds all labels.
    Loading (``size``, ``interpolation``, ``protocol``) is as for :class:`TwoAFCDataset`.

    Example:
        >>> ds = JNDDataset("bapps/jnd/val/traditional")  # doctest: +SKIP
    """

    _folders = JND_FOLDERS
    _images = ("p0", "p1")
    _label = "same"
    _kind = "JND"
    _layout = _LAYOUT_JND

    def __init__(self, root: PathLike, size: Size = REFERENCE_SIZE, subset: Optional[str] = None,
                 subsets: Optional[Iterable[str]] = None, interpolation: Optional[str] = None):
        super().__init__(root, size, subset, None, subsets, interpolation)
        self.p0_paths, self.p1_paths, self.same_paths = self.paths["p0"], self.paths["p1"], self.paths["same"]
        self.same = self.labels
        self.description = f"BAPPS JND {self.subset} (human judgements), {self.root}"


def _builtin_interpolation(interpolation: Optional[str]) -> None:
    if interpolation is not None:
        raise DataError(
            f"interpolation={interpolation!r} applies to image files; the built-in synthetic set is rendered at "
            "its size directly. Leave interpolation out, or pass a BAPPS folder."
        )


def _is_subset_dir(path: Path, folders: Sequence[str]) -> bool:
    return any((path / f).is_dir() for f in folders)


def _subset_dirs(split_dir: Path, folders: Sequence[str]) -> list[Path]:
    return [p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_subset_dir(p, folders)]


def _pick(available: dict[str, Path], subsets: Optional[Iterable[str]], where: Path) -> list[str]:
    if subsets is None:
        return list(available)
    if isinstance(subsets, str):
        subsets = [s for s in subsets.split(",") if s]
    wanted = list(subsets)
    missing = [s for s in wanted if s not in available]
    if missing:
        raise DataError(
            f"subset(s) {', '.join(missing)} not found in {str(where)!r}; available: "
            f"{', '.join(available) or 'none'}"
        )
    return wanted


def _resolve_split(data: Path, top: str, split: str, folders: Sequence[str], layout: str) -> tuple[Path, bool]:
    """(folder, is_single_subset) for a root / top folder / split folder / subset folder."""
    if not data.exists():
        raise DataError(f"BAPPS folder {str(data)!r} does not exist; {layout}")
    if not data.is_dir():
        raise DataError(f"{str(data)!r} is a file, not a folder; {layout}")
    if _is_subset_dir(data, folders):
        return data, True
    if (data / top).is_dir():
        cand = data / top / split
        if not cand.is_dir():
            have = sorted(p.name for p in (data / top).iterdir() if p.is_dir())
            raise DataError(
                f"split folder {str(cand)!r} does not exist (found: {', '.join(have) or 'nothing'}); {layout}"
            )
        return cand, False
    if data.name == top and (data / split).is_dir():
        return data / split, False
    if _subset_dirs(data, folders):
        return data, False
    raise DataError(f"no BAPPS {top} data found in {str(data)!r}; {layout}")


def load_2afc(
    data: Union[PathLike, str],
    split: str = "val",
    subsets: Optional[Iterable[str]] = None,
    size: Size = REFERENCE_SIZE,
    interpolation: Optional[str] = None,
) -> dict[str, Dataset]:
    """Load BAPPS 2AFC subsets as ``{subset name: dataset}`` in BAPPS order.

    ``data`` is a BAPPS root (holding ``2afc/``), the ``2afc`` folder, a split folder such as
    ``<root>/2afc/val``, one subset folder, or ``"builtin"`` for the synthetic set generated
    from the scikit-image photos (see :func:`lossnet.data.builtin_2afc`; rule-based, not human).
    Files load with the reference protocol (``Resize(64)`` bilinear) unless ``size`` or
    ``interpolation`` (a name of :data:`lossnet.data.INTERPOLATIONS`) say otherwise; each
    dataset records it in ``protocol``.

    Example:
        >>> sets = load_2afc("builtin")
        >>> list(sets)
        ['same-family', 'mixed-family', 'structure-vs-appearance']
    """
    if isinstance(data, str) and data == "builtin":
        from .synthetic import builtin_2afc

        _builtin_interpolation(interpolation)
        sets = builtin_2afc(size=size if size is not None else 64)
        names = _pick(dict.fromkeys(sets), subsets, Path("builtin"))  # type: ignore[arg-type]
        return {n: sets[n] for n in names}
    if split not in ("train", "val"):
        raise DataError(f"BAPPS 2AFC split must be 'train' or 'val', got {split!r}")
    folder, single = _resolve_split(Path(data).expanduser(), "2afc", split, TWOAFC_FOLDERS, _LAYOUT_2AFC)
    if single:
        ds = TwoAFCDataset(folder, size=size, interpolation=interpolation)
        _pick({ds.subset: folder}, subsets, folder)
        return {ds.subset: ds}
    available = {n: folder / n for n in subset_order(p.name for p in _subset_dirs(folder, TWOAFC_FOLDERS))}
    if not available:
        raise DataError(f"split folder {str(folder)!r} holds no subset folders; {_LAYOUT_2AFC}")
    split_name = folder.name if folder.name in ("train", "val") else None
    return {
        n: TwoAFCDataset(available[n], size=size, subset=n, split=split_name, interpolation=interpolation)
        for n in _pick(available, subsets, folder)
    }


def load_jnd(
    data: Union[PathLike, str],
    subsets: Optional[Iterable[str]] = None,
    size: Size = REFERENCE_SIZE,
    interpolation: Optional[str] = None,
) -> dict[str, Dataset]:
    """Load BAPPS JND subsets as ``{subset name: dataset}`` in BAPPS order.

    ``data`` is a BAPPS root (holding ``jnd/``), the ``jnd`` folder, ``<root>/jnd/val``, one
    subset folder, or ``"builtin"`` (synthetic, rule-based: :func:`lossnet.data.builtin_jnd`).

    Example:
        >>> list(load_jnd("builtin"))
        ['synthetic']
    """
    if isinstance(data, str) and data == "builtin":
        from .synthetic import builtin_jnd

        _builtin_interpolation(interpolation)
        sets = builtin_jnd(size=size if size is not None else 64)
        names = _pick(dict.fromkeys(sets), subsets, Path("builtin"))  # type: ignore[arg-type]
        return {n: sets[n] for n in names}
    folder, single = _resolve_split(Path(data).expanduser(), "jnd", "val", JND_FOLDERS, _LAYOUT_JND)
    if single:
        ds = JNDDataset(folder, size=size, interpolation=interpolation)
        _pick({ds.subset: folder}, subsets, folder)
        return {ds.subset: ds}
    available = {n: folder / n for n in subset_order(p.name for p in _subset_dirs(folder, JND_FOLDERS))}
    if not available:
        raise DataError(f"JND folder {str(folder)!r} holds no subset folders; {_LAYOUT_JND}")
    return {
        n: JNDDataset(available[n], size=size, subset=n, interpolation=interpolation)
        for n in _pick(available, subsets, folder)
    }
