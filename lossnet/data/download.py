"""The table of downloadable datasets, and downloading them through :mod:`lossnet.utils.download`.

Nothing here runs at import time and nothing is downloaded unless asked for.

Example:
    >>> from lossnet.data import download_dataset, manual_instructions
    >>> root = download_dataset("bapps", "~/data/bapps", parts=["twoafc_val"])  # doctest: +SKIP
    >>> print(manual_instructions("tid2013"))  # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from ..errors import DataError, unknown_name
from ..utils.download import download_file, extract_archive, human_size

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------
# the dataset table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivePart:
    """One downloadable file of a dataset.

    ``extract_to`` is the folder (relative to the dataset root) the archive is unpacked into;
    ``provides`` is the folder (relative to the root) that exists once it is in place.
    ``size``/``sha256`` are exact values when known, else None; ``approx_size`` is for display.
    """

    url: str
    filename: str
    approx_size: Optional[int]
    provides: str
    extract_to: str = ""
    size: Optional[int] = None
    sha256: Optional[str] = None
    extractable: bool = True


@dataclass(frozen=True)
class DatasetInfo:
    """How to obtain one dataset: its parts, its on-disk layout and its manual steps."""

    name: str
    title: str
    parts: Mapping[str, ArchivePart]
    default_parts: Sequence[str]
    layout: str
    notes: str = ""
    homepage: str = ""
    aliases: Sequence[str] = field(default_factory=tuple)
    root: str = ""  # the folder to pass as --data, relative to the download folder


_BAPPS_URL = "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/{}.tar.gz"

DATASETS: dict[str, DatasetInfo] = {
    "bapps": DatasetInfo(
        name="bapps",
        title="BAPPS (Berkeley-Adobe Perceptual Patch Similarity), Zhang et al. 2018",
        homepage="https://github.com/richzhang/PerceptualSimilarity",
        parts={
            "twoafc_val": ArchivePart(
                url=_BAPPS_URL.format("twoafc_val"), filename="twoafc_val.tar.gz",
                approx_size=1_100_000_000, provides="2afc/val", extract_to="2afc",
            ),
            "twoafc_train": ArchivePart(
                url=_BAPPS_URL.format("twoafc_train"), filename="twoafc_train.tar.gz",
                approx_size=5_300_000_000, provides="2afc/train", extract_to="2afc",
            ),
            "jnd": ArchivePart(
                url=_BAPPS_URL.format("jnd"), filename="jnd.tar.gz",
                approx_size=200_000_000, provides="jnd/val", extract_to="",
            ),
        },
        default_parts=("twoafc_val", "jnd"),
        layout="""\
DIR/                          <- pass this folder as --data (or DIR/2afc/val, or one subset folder)
  2afc/
    val/   traditional/ cnn/ superres/ deblur/ color/ frameinterp/
    train/ traditional/ cnn/ mix/
           each <subset>/ holds ref/ p0/ p1/ judge/
             ref/000000.png p0/000000.png p1/000000.png judge/000000.npy ...
             (files pair up by name: ref/X.png, p0/X.png, p1/X.png, judge/X.npy; judge/*.npy hold one value in [0,1]:
              the fraction of people who chose p1 as closer to ref)
  jnd/
    val/   traditional/ cnn/
           each <subset>/ holds p0/ p1/ same/  (same/*.npy: fraction who said "same")""",
        notes=(
            "twoafc_val.tar.gz and twoafc_train.tar.gz unpack into DIR/2afc (they hold val/ and train/); "
            "jnd.tar.gz unpacks into DIR (it holds jnd/). Exact sizes and checksums are not published, so "
            "only the approximate sizes are shown."
        ),
    ),
    "tid2013": DatasetInfo(
        name="tid2013",
        title="TID2013, Ponomarenko et al. 2015",
        homepage="https://www.ponomarenko.info/tid2013.htm",
        parts={
            "tid2013": ArchivePart(
                url="https://www.ponomarenko.info/tid2013/tid2013.rar", filename="tid2013.rar",
                approx_size=908_000_000, provides="mos_with_names.txt", extract_to="",
                extractable=False,
            ),
        },
        default_parts=("tid2013",),
        layout="""\
DIR/                          <- pass this folder as --data
  mos_with_names.txt          one line per distorted image: "MOS filename", e.g. "5.51429 i01_01_1.bmp"
  reference_images/           I01.BMP ... I25.BMP
  distorted_images/           i01_01_1.bmp ... i25_24_5.bmp (3000 files; image_type_level)
  (names are matched case-insensitively; the reference of i01_01_1.bmp is I01.BMP)""",
        notes=(
            "tid2013.rar is a RAR archive that lossnet cannot unpack: unpack it by hand with "
            "`unrar x tid2013.rar DIR/` (Debian/Ubuntu package `unrar`, or `7z x tid2013.rar -oDIR`) so that "
            "DIR/mos_with_names.txt exists."
        ),
    ),
    "kadid10k": DatasetInfo(
        name="kadid10k",
        title="KADID-10k, Lin et al. 2019",
        homepage="https://database.mmsp-kn.de/kadid-10k-database.html",
        aliases=("kadid", "kadid-10k", "kadid_10k"),
        parts={
            "kadid10k": ArchivePart(
                url="https://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip", filename="kadid10k.zip",
                approx_size=None, provides="kadid10k/dmos.csv", extract_to="",
            ),
        },
        default_parts=("kadid10k",),
        layout="""\
DIR/kadid10k/                 <- pass this folder as --data
  dmos.csv                    header "dist_img,ref_img,dmos,var"; dmos is on a 1-5 scale, higher = better
  images/                     I01.png ... I81.png and I01_01_01.png ... I81_25_05.png
                              (10,125 distorted images: image_type_level)""",
        notes="kadid10k.zip unpacks into DIR/kadid10k/.",
        root="kadid10k",
    ),
}

_ALIASES = {alias: info.name for info in DATASETS.values() for alias in (info.name, *info.aliases)}


def dataset_info(name: str) -> DatasetInfo:
    """The :data:`DATASETS` entry for ``name`` (case-insensitive; aliases like ``kadid-10k`` work)."""
    key = _ALIASES.get(str(name).lower().strip())
    if key is None:
        raise unknown_name("dataset", name, sorted(DATASETS), hint="Add an entry to lossnet.data.DATASETS for others.")
    return DATASETS[key]


def manual_instructions(name: str, to_dir: Optional[PathLike] = None) -> str:
    """The documented way to place a dataset's files by hand: addresses, commands and folder layout.

    Example:
        >>> print(manual_instructions("kadid10k").splitlines()[0])
        How to place KADID-10k, Lin et al. 2019 by hand:
    """
    info = dataset_info(name)
    d = str(to_dir) if to_dir is not None else "DIR"
    lines = [f"How to place {info.title} by hand:"]
    for key, part in info.parts.items():
        size = f"about {human_size(part.approx_size)}" if part.approx_size else "size not published"
        lines.append(f"  - {key}: download {part.url} ({size}) to {d}/{part.filename}")
        if part.extractable:
            target = f"{d}/{part.extract_to}" if part.extract_to else d
            if part.filename.endswith(".zip"):
                lines.append(f"      then: mkdir -p {target} && unzip {d}/{part.filename} -d {target}")
            else:
                lines.append(f"      then: mkdir -p {target} && tar -xzf {d}/{part.filename} -C {target}")
        else:
            lines.append(f"      then unpack it by hand: unrar x {d}/{part.filename} {d}/")
        lines.append(f"      so that {d}/{part.provides} exists.")
    if info.notes:
        lines.append("Notes: " + info.notes)
    lines.append("Expected layout:")
    lines.append(info.layout.replace("DIR", d))
    if info.homepage:
        lines.append(f"Dataset page: {info.homepage}")
    return "\n".join(lines)


def download_dataset(
    name: str,
    to_dir: PathLike,
    parts: Optional[Iterable[str]] = None,
    *,
    progress: bool = True,
    keep_archives: bool = False,
    downloader: Callable[..., Path] = download_file,
) -> Path:
    """Download and unpack a dataset of :data:`DATASETS` into ``to_dir``; return its root.

    ``parts`` picks archives (BAPPS: ``twoafc_val``, ``twoafc_train``, ``jnd``; default
    val + jnd). A part whose folder is in place and whose archive is gone is skipped; a kept
    archive is extracted again unless its extraction marker records its SHA-256 (see
    :func:`extract_archive`); interrupted downloads resume. Archives are deleted once extracted
    unless ``keep_archives``. TID2013 is a RAR archive: it is downloaded, then a
    :class:`DataError` explains how to unpack it with ``unrar``.

    Example:
        >>> root = download_dataset("bapps", "data/bapps", parts=["twoafc_val"])  # doctest: +SKIP
        >>> from lossnet.data import load_2afc
        >>> sets = load_2afc(root, split="val")  # doctest: +SKIP
    """
    info = dataset_info(name)
    to_dir = Path(to_dir).expanduser()
    wanted = list(info.default_parts) if parts is None else list(parts)
    for key in wanted:
        if key not in info.parts:
            raise unknown_name(f"{info.name} part", key, list(info.parts))
    to_dir.mkdir(parents=True, exist_ok=True)
    for key in wanted:
        part = info.parts[key]
        archive = to_dir / part.filename
        target = to_dir / part.extract_to if part.extract_to else to_dir
        provided = to_dir / part.provides
        if provided.exists() and not archive.exists():
            continue  # extracted earlier and the archive removed; a kept archive is checked by its hash below
        hint = "Manual steps:\n" + manual_instructions(info.name, to_dir)
        downloader(part.url, archive, sha256=part.sha256, expected_size=part.size, progress=progress, hint=hint)
        if not part.extractable:
            raise DataError(
                f"downloaded {archive}, but it is a RAR archive that lossnet cannot unpack. Unpack it by hand "
                f"with `unrar x '{archive}' '{to_dir}/'` (or `7z x`), then run the command again so that "
                f"{provided} exists.\n" + manual_instructions(info.name, to_dir)
            )
        extract_archive(archive, target)
        if not provided.exists():
            raise DataError(
                f"extracted {archive} into {target}, but {provided} is not there: the archive layout is not the "
                f"expected one (found: {', '.join(sorted(p.name for p in target.iterdir())[:10])}).\n"
                + manual_instructions(info.name, to_dir)
            )
        if not keep_archives:
            archive.unlink(missing_ok=True)
    return to_dir / info.root if info.root else to_dir
