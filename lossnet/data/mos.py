"""Full-reference quality datasets with opinion scores: TID2013, KADID-10k and any CSV.

Each dataset says which way its score points with ``higher_is_better``: True means a higher
score is a better-quality (less distorted) image, so a good distance metric correlates
*negatively* with it and scoring code should flip the sign of distances (or of the score).

* TID2013 ``mos_with_names.txt``: MOS, higher is better -> ``higher_is_better = True``.
* KADID-10k ``dmos.csv`` column ``dmos``: despite its name, a mean opinion score on a 1-5
  scale where 5 is "imperceptible" -> ``higher_is_better = True``.
* A CSV: you say (default True).

Every listed image must exist, each distorted image is listed once (a repeated line would
count twice in the correlations), and scores are finite numbers on the dataset's scale.

Example:
    >>> from lossnet.data import load_tid2013
    >>> ds = load_tid2013("data/tid2013")  # doctest: +SKIP
    >>> item = ds[0]; item["name"], item["score"], ds.higher_is_better  # doctest: +SKIP
    ('i01_01_1.bmp', 5.51429, True)
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .images import Size, describe_loading, load_image, resolve_interpolation

PathLike = Union[str, os.PathLike]

#: Largest score magnitude accepted from any file: opinion scores are small numbers, and squares of
#: larger ones overflow the correlation statistics; such a value is a unit or parsing error.
MAX_ABS_SCORE = 1e12
#: The published score scales: (low, high) of the scale each dataset's scores lie on.
SCORE_SCALES = {"tid2013": (0.0, 9.0), "kadid10k": (1.0, 5.0)}


class MOSDataset(Dataset):
    """(reference, distorted, score) triples; images are loaded lazily at ``size`` (None keeps it).

    Items are dicts ``{"ref", "dist": float32 (3, H, W) in [0, 1], "score": float, "name": str,
    "index": int}``. ``scores`` holds all scores (numpy float64, finite, at most
    :data:`MAX_ABS_SCORE` in magnitude); ``higher_is_better`` gives the sign of the score (see
    the module docstring). ``size`` resizes like ``torchvision.transforms.Resize`` with
    ``interpolation`` (default bicubic); ``protocol`` says how images are loaded.

    Example:
        >>> ds = MOSDataset(["r.png"], ["d.png"], [3.5], ["d.png"])  # doctest: +SKIP
    """

    synthetic = False

    def __init__(
        self,
        ref_paths: Sequence[PathLike],
        dist_paths: Sequence[PathLike],
        scores: Sequence[float],
        names: Optional[Sequence[str]] = None,
        size: Size = None,
        higher_is_better: bool = True,
        dataset_name: str = "mos",
        description: str = "",
        interpolation: Optional[str] = None,
    ):
        if not (len(ref_paths) == len(dist_paths) == len(scores)):
            raise DataError(
                f"{dataset_name}: {len(ref_paths)} references, {len(dist_paths)} distorted images and "
                f"{len(scores)} scores; they must pair up one to one"
            )
        if len(scores) == 0:
            raise DataError(f"{dataset_name}: the dataset is empty")
        self.ref_paths = [Path(p) for p in ref_paths]
        self.dist_paths = [Path(p) for p in dist_paths]
        self.scores = np.asarray(scores, dtype=np.float64)
        self.names = list(names) if names is not None else [p.name for p in self.dist_paths]
        bad = [i for i, v in enumerate(self.scores) if not (math.isfinite(v) and abs(v) <= MAX_ABS_SCORE)]
        if bad:
            shown = ", ".join(f"{self.names[i]} ({float(self.scores[i])!r})" for i in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(
                f"{dataset_name}: {len(bad)} score(s) are not finite numbers of magnitude at most {MAX_ABS_SCORE:g}: "
                f"{shown}{more}. Opinion scores are small numbers; fix or remove those entries."
            )
        self.size = size
        self.interpolation = resolve_interpolation(size, interpolation, "bicubic")
        self.protocol = describe_loading(size, self.interpolation)
        self.higher_is_better = bool(higher_is_better)
        self.name = dataset_name
        self.description = description or dataset_name

    def __len__(self) -> int:
        return len(self.dist_paths)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return {
            "ref": load_image(self.ref_paths[index], self.size, self.interpolation),
            "dist": load_image(self.dist_paths[index], self.size, self.interpolation),
            "score": float(self.scores[index]),
            "name": self.names[index],
            "index": index,
        }

    def __repr__(self) -> str:
        return (
            f"MOSDataset(name={self.name!r}, n={len(self)}, higher_is_better={self.higher_is_better}, "
            f"size={self.size})"
        )


def _find_ci(folder: Path, name: str) -> Optional[Path]:
    """``folder/name`` matched case-insensitively, or None."""
    exact = folder / name
    if exact.exists():
        return exact
    if not folder.is_dir():
        return None
    low = name.lower()
    for p in folder.iterdir():
        if p.name.lower() == low:
            return p
    return None


def _locate_root(root: Path, marker: str, subdirs: Sequence[str], what: str, instructions: str) -> tuple[Path, Path]:
    """(dataset root, marker file); looks in ``root`` then in ``root/<subdir>``."""
    if not root.exists():
        raise DataError(f"{what} folder {str(root)!r} does not exist. {instructions}")
    if root.is_file() and root.name.lower() == marker.lower():
        return root.parent, root
    for cand in [root] + [root / s for s in subdirs]:
        found = _find_ci(cand, marker)
        if found is not None and found.is_file():
            return cand, found
    raise DataError(f"{what}: {marker} not found in {str(root)!r}. {instructions}")


class _NameIndex:
    """Case-insensitive lookup of image files in one folder, by name, else by stem when that is unique."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                self.by_name.setdefault(p.name.lower(), p)
                self.by_stem.setdefault(p.stem.lower(), []).append(p)

    def get(self, name: str) -> Optional[Path]:
        key = name.strip().lower()
        if key in self.by_name:
            return self.by_name[key]
        found = self.by_stem.get(Path(key).stem, [])
        if len(found) > 1:
            raise DataError(
                f"{name!r} is not in {str(self.folder)!r}, and {len(found)} files there have its name with another "
                f"extension ({', '.join(p.name for p in found)}): keep one of them."
            )
        return found[0] if found else None


def _check_unique(what: str, keys: Sequence[object], names: Sequence[str], source: Path) -> None:
    """A :class:`DataError` naming the entries of ``source`` listed more than once (same ``key``)."""
    first: dict[object, int] = {}
    repeats: dict[object, list[int]] = {}
    for i, k in enumerate(keys):
        if k in first:
            repeats.setdefault(k, [first[k]]).append(i)
        else:
            first[k] = i
    if repeats:
        items = list(repeats.values())
        shown = "; ".join(f"{names[ix[0]]} ({len(ix)} times)" for ix in items[:5])
        more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
        raise DataError(
            f"{what}: {str(source)!r} lists {len(items)} image(s) more than once: {shown}{more}. Each must be listed "
            "once (a repeat counts twice in the correlations): remove the repeated lines, or get a fresh copy."
        )


def _check_scale(what: str, scores: Sequence[float], names: Sequence[str], source: Path, name: str) -> None:
    low, high = SCORE_SCALES[name]
    bad = [i for i, v in enumerate(scores) if not low <= v <= high]
    if bad:
        shown = ", ".join(f"{names[i]} ({float(scores[i])!r})" for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"{what}: {len(bad)} score(s) in {str(source)!r} are outside its {low:g}-{high:g} scale: {shown}{more}. "
            "The file is damaged or is not the original; for other scores use lossnet.data.load_mos_csv."
        )


def _missing_error(what: str, missing: list[str], folder: Path, total: int) -> DataError:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return DataError(
        f"{what}: {len(missing)} of {total} image files listed are missing from {str(folder)!r}: {shown}. "
        "The download may be incomplete."
    )


def _sub_ci(root: Path, name: str, what: str, instructions: str) -> Path:
    found = _find_ci(root, name)
    if found is None or not found.is_dir():
        raise DataError(f"{what}: folder {name}/ not found in {str(root)!r}. {instructions}")
    return found


_TID_HOWTO = (
    "Expected DIR/mos_with_names.txt, DIR/reference_images/ and DIR/distorted_images/; see "
    "lossnet.data.manual_instructions('tid2013') or `lossnet download tid2013 --to DIR`."
)
_KADID_HOWTO = (
    "Expected DIR/dmos.csv (columns dist_img, ref_img, dmos, var) and DIR/images/; see "
    "lossnet.data.manual_instructions('kadid10k') or `lossnet download kadid10k --to DIR`."
)


def load_tid2013(root: PathLike, size: Size = None, interpolation: Optional[str] = None) -> MOSDataset:
    """Load TID2013: ``mos_with_names.txt`` ("MOS filename" lines), ``reference_images/``, ``distorted_images/``.

    Names match case-insensitively (``i01_01_1.bmp`` has reference ``I01.BMP``), also across
    extensions (a converted ``i01_01_1.png`` is found). ``higher_is_better`` is True (MOS, on a
    0-9 scale). A distorted image listed twice, or a missing image, is a :class:`DataError`.

    Example:
        >>> ds = load_tid2013("data/tid2013", size=None)  # doctest: +SKIP
        >>> len(ds)  # doctest: +SKIP
        3000
    """
    root, mos_file = _locate_root(Path(root).expanduser(), "mos_with_names.txt", ("tid2013", "TID2013"), "TID2013", _TID_HOWTO)
    ref_dir = _sub_ci(root, "reference_images", "TID2013", _TID_HOWTO)
    dist_dir = _sub_ci(root, "distorted_images", "TID2013", _TID_HOWTO)
    refs, dists = _NameIndex(ref_dir), _NameIndex(dist_dir)
    ref_paths, dist_paths, scores, names = [], [], [], []
    missing_ref, missing_dist = [], []
    text = mos_file.read_text(encoding="utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        tokens = line.split()
        try:
            if len(tokens) != 2:
                raise ValueError
            score = float(tokens[0])
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            raise DataError(
                f"{str(mos_file)!r} line {lineno}: expected 'MOS filename' (for example '5.51429 i01_01_1.bmp'), "
                f"got {line.strip()!r}"
            ) from None
        name = tokens[1]
        ref_id = Path(name).stem.split("_")[0]
        ref = refs.get(ref_id)
        dist = dists.get(name)
        if ref is None:
            missing_ref.append(f"{ref_id.upper()}.BMP (reference of {name})")
        if dist is None:
            missing_dist.append(name)
        ref_paths.append(ref)
        dist_paths.append(dist)
        scores.append(score)
        names.append(name)
    if not scores:
        raise DataError(f"{str(mos_file)!r} lists no images")
    if missing_ref:
        raise _missing_error("TID2013 reference images", missing_ref, ref_dir, len(scores))
    if missing_dist:
        raise _missing_error("TID2013 distorted images", missing_dist, dist_dir, len(scores))
    _check_unique("TID2013", dist_paths, names, mos_file)
    _check_scale("TID2013", scores, names, mos_file, "tid2013")
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=True, dataset_name="tid2013",
        description=f"TID2013 ({len(scores)} distorted images; MOS, higher is better), {root}",
        interpolation=interpolation,
    )


def _read_csv(path: Path, required: Sequence[str], what: str, howto: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise DataError(f"{what}: {str(path)!r} is empty; it needs a header with columns {', '.join(required)}")
            fields = {name.strip().lower(): name for name in reader.fieldnames if name is not None}
            missing = [c for c in required if c not in fields]
            if missing:
                raise DataError(
                    f"{what}: {str(path)!r} lacks column(s) {', '.join(missing)} (found: "
                    f"{', '.join(n.strip() for n in reader.fieldnames if n)}); it needs {', '.join(required)}. {howto}"
                )
            rows = []
            for row in reader:
                if not any((v or "").strip() for k, v in row.items() if k is not None):
                    continue
                rows.append({c: (row.get(fields[c]) or "").strip() for c in fields})
    except OSError as e:
        raise DataError(f"{what}: cannot read {str(path)!r} ({e})") from e
    except csv.Error as e:
        raise DataError(f"{what}: {str(path)!r} is not a valid CSV file ({e})") from e
    if not rows:
        raise DataError(f"{what}: {str(path)!r} has a header but no rows")
    return rows


def _score(value: str, path: Path, rowno: int, column: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v):
        raise DataError(f"{str(path)!r} row {rowno}: column {column!r} must be a number, got {value!r}")
    if abs(v) > MAX_ABS_SCORE:
        raise DataError(
            f"{str(path)!r} row {rowno}: column {column!r} holds {value!r}, beyond +-{MAX_ABS_SCORE:g}; opinion scores "
            "are small numbers (a unit or parsing error?): fix the value or rescale the column."
        )
    return v


def load_kadid10k(root: PathLike, size: Size = None, interpolation: Optional[str] = None) -> MOSDataset:
    """Load KADID-10k: ``dmos.csv`` (dist_img, ref_img, dmos, var) and ``images/``.

    ``dmos`` is used as the score; it is on a 1-5 scale where higher is better quality, so
    ``higher_is_better`` is True. A distorted image listed twice, or a missing image, is a
    :class:`DataError`.

    Example:
        >>> ds = load_kadid10k("data/kadid10k")  # doctest: +SKIP
        >>> len(ds)  # doctest: +SKIP
        10125
    """
    root, csv_file = _locate_root(Path(root).expanduser(), "dmos.csv", ("kadid10k", "KADID10k", "kadid-10k"), "KADID-10k", _KADID_HOWTO)
    img_dir = _sub_ci(root, "images", "KADID-10k", _KADID_HOWTO)
    rows = _read_csv(csv_file, ("dist_img", "ref_img", "dmos"), "KADID-10k", _KADID_HOWTO)
    index = _NameIndex(img_dir)
    ref_paths, dist_paths, scores, names, missing = [], [], [], [], []
    for rowno, row in enumerate(rows, 2):
        ref, dist = index.get(row["ref_img"]), index.get(row["dist_img"])
        if ref is None:
            missing.append(row["ref_img"])
        if dist is None:
            missing.append(row["dist_img"])
        ref_paths.append(ref)
        dist_paths.append(dist)
        scores.append(_score(row["dmos"], csv_file, rowno, "dmos"))
        names.append(row["dist_img"])
    if missing:
        raise _missing_error("KADID-10k", sorted(set(missing)), img_dir, len(rows))
    _check_unique("KADID-10k", dist_paths, names, csv_file)
    _check_scale("KADID-10k", scores, names, csv_file, "kadid10k")
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=True, dataset_name="kadid10k",
        description=f"KADID-10k ({len(scores)} distorted images; dmos 1-5, higher is better), {root}",
        interpolation=interpolation,
    )


def load_mos_csv(
    csv_path: PathLike,
    root: Optional[PathLike] = None,
    size: Size = None,
    higher_is_better: bool = True,
    interpolation: Optional[str] = None,
) -> MOSDataset:
    """Load any (reference, distorted, score) CSV with columns ``ref``, ``dist``, ``score``.

    Relative image paths are taken from ``root`` when given, else from the CSV's folder.
    ``higher_is_better`` says whether a higher score means better quality (default True).
    A (ref, dist) pair listed twice, a missing image or a score beyond
    :data:`MAX_ABS_SCORE` is a :class:`DataError`.

    Example:
        >>> ds = load_mos_csv("scores.csv", higher_is_better=False)  # doctest: +SKIP
    """
    path = Path(csv_path).expanduser()
    howto = "Expected a CSV with a header 'ref,dist,score' and one row per distorted image."
    if not path.is_file():
        raise DataError(f"MOS CSV file {str(path)!r} not found. {howto}")
    base = Path(root).expanduser() if root is not None else path.parent
    rows = _read_csv(path, ("ref", "dist", "score"), "MOS CSV", howto)
    ref_paths, dist_paths, scores, names, missing = [], [], [], [], []
    for rowno, row in enumerate(rows, 2):
        ref, dist = base / row["ref"], base / row["dist"]
        for p, col in ((ref, "ref"), (dist, "dist")):
            if not row[col]:
                raise DataError(f"{str(path)!r} row {rowno}: column {col!r} is empty")
            if not p.is_file():
                missing.append(str(p))
        ref_paths.append(ref)
        dist_paths.append(dist)
        scores.append(_score(row["score"], path, rowno, "score"))
        names.append(row["dist"])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"MOS CSV {str(path)!r}: {len(missing)} image file(s) not found (paths are relative to {str(base)!r}): {shown}"
        )
    _check_unique("MOS CSV", [(r.resolve(), d.resolve()) for r, d in zip(ref_paths, dist_paths)], names, path)
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=higher_is_better, dataset_name=path.stem,
        description=f"MOS CSV {path} ({len(scores)} rows; higher score is {'better' if higher_is_better else 'worse'})",
        interpolation=interpolation,
    )
