"""Full-reference quality datasets with opinion scores: TID2013, KADID-10k and any CSV.

Each dataset says which way its score points with ``higher_is_better``: True means a higher
score is a better-quality (less distorted) image, so a good distance metric correlates
*negatively* with it and scoring code should flip the sign of distances (or of the score).

* TID2013 ``mos_with_names.txt``: MOS, higher is better -> ``higher_is_better = True``.
* KADID-10k ``dmos.csv`` column ``dmos``: despite its name, a mean opinion score on a 1-5
  scale where 5 is "imperceptible" -> ``higher_is_better = True``.
* A CSV: you say (default True).

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
from .images import Size, load_image

PathLike = Union[str, os.PathLike]


class MOSDataset(Dataset):
    """(reference, distorted, score) triples; images are loaded lazily at ``size`` (None keeps it).

    Items are dicts ``{"ref", "dist": float32 (3, H, W) in [0, 1], "score": float, "name": str,
    "index": int}``. ``scores`` holds all scores (numpy float64); ``higher_is_better`` gives
    the sign of the score (see the module docstring).

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
        self.size = size
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
            "ref": load_image(self.ref_paths[index], self.size),
            "dist": load_image(self.dist_paths[index], self.size),
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
    """Case-insensitive lookup of image files in one folder, by name then by stem."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                self.by_name.setdefault(p.name.lower(), p)
                self.by_stem.setdefault(p.stem.lower(), p)

    def get(self, name: str) -> Optional[Path]:
        key = name.strip().lower()
        return self.by_name.get(key) or self.by_stem.get(Path(key).stem)


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


def load_tid2013(root: PathLike, size: Size = None) -> MOSDataset:
    """Load TID2013: ``mos_with_names.txt`` ("MOS filename" lines), ``reference_images/``, ``distorted_images/``.

    Names match case-insensitively (``i01_01_1.bmp`` has reference ``I01.BMP``), also across
    extensions (a converted ``i01_01_1.png`` is found). ``higher_is_better`` is True (MOS).

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
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=True, dataset_name="tid2013",
        description=f"TID2013 ({len(scores)} distorted images; MOS, higher is better), {root}",
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
    return v


def load_kadid10k(root: PathLike, size: Size = None) -> MOSDataset:
    """Load KADID-10k: ``dmos.csv`` (dist_img, ref_img, dmos, var) and ``images/``.

    ``dmos`` is used as the score; it is on a 1-5 scale where higher is better quality, so
    ``higher_is_better`` is True.

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
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=True, dataset_name="kadid10k",
        description=f"KADID-10k ({len(scores)} distorted images; dmos 1-5, higher is better), {root}",
    )


def load_mos_csv(
    csv_path: PathLike,
    root: Optional[PathLike] = None,
    size: Size = None,
    higher_is_better: bool = True,
) -> MOSDataset:
    """Load any (reference, distorted, score) CSV with columns ``ref``, ``dist``, ``score``.

    Relative image paths are taken from ``root`` when given, else from the CSV's folder.
    ``higher_is_better`` says whether a higher score means better quality (default True).

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
    return MOSDataset(
        ref_paths, dist_paths, scores, names, size=size, higher_is_better=higher_is_better, dataset_name=path.stem,
        description=f"MOS CSV {path} ({len(scores)} rows; higher score is {'better' if higher_is_better else 'worse'})",
    )
