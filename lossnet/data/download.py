"""Resumable downloads, safe archive extraction, and the table of downloadable datasets.

Nothing here runs at import time and nothing is downloaded unless asked for.

Example:
    >>> from lossnet.data import download_dataset, manual_instructions
    >>> root = download_dataset("bapps", "~/data/bapps", parts=["twoafc_val"])  # doctest: +SKIP
    >>> print(manual_instructions("tid2013"))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import socket
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from lossnet.errors import unknown_name

from .errors import DataError, DownloadError

PathLike = Union[str, os.PathLike]

_CHUNK = 1 << 20
_USER_AGENT = "lossnet-downloader/0.1 (+https://github.com/; python-urllib)"


# --------------------------------------------------------------------------------------
# downloading
# --------------------------------------------------------------------------------------


def _sha256_of(path: Path, hasher: Optional["hashlib._Hash"] = None) -> "hashlib._Hash":
    h = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h


def _human(n: Optional[float]) -> str:
    if n is None:
        return "unknown size"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n} B"  # pragma: no cover


def _by_hand(url: str, dest: Path, hint: str = "") -> str:
    msg = (
        f"To place the file by hand, download {url} with a browser or "
        f"`curl -L -C - -o '{dest}' '{url}'` and save it as {dest}; it is then used as is."
    )
    return msg + (" " + hint if hint else "")


def _content_range_start(value: Optional[str]) -> Optional[int]:
    """First byte of a ``Content-Range: bytes a-b/n`` header, or None."""
    if not value:
        return None
    value = value.strip()
    if not value.startswith("bytes ") or "-" not in value:
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _content_range_total(value: Optional[str]) -> Optional[int]:
    if not value or "/" not in value:
        return None
    tail = value.rsplit("/", 1)[1].strip()
    return int(tail) if tail.isdigit() else None


def _verify(path: Path, url: str, dest: Path, sha256: Optional[str], expected_size: Optional[int], hint: str) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadError(
            f"size check failed for {url}: got {size} bytes, expected {expected_size} bytes "
            f"(file {path}). " + _by_hand(url, dest, hint)
        )
    if sha256 is not None:
        digest = _sha256_of(path).hexdigest()
        if digest.lower() != sha256.lower():
            raise DownloadError(
                f"sha256 check failed for {url}: got {digest}, expected {sha256.lower()} "
                f"(file {path}). " + _by_hand(url, dest, hint)
            )


def download_file(
    url: str,
    dest: PathLike,
    sha256: Optional[str] = None,
    expected_size: Optional[int] = None,
    progress: bool = True,
    *,
    timeout: float = 60.0,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download, and return ``dest``.

    Data is streamed to ``dest + ".part"``; an existing ``.part`` is resumed with an HTTP
    ``Range`` request (when the server ignores ``Range`` the download restarts from zero).
    When complete, the size (``expected_size``) and ``sha256`` are checked when given, and the
    file is renamed to ``dest`` atomically. A file that fails a check is deleted, never left
    as ``dest``. An existing ``dest`` that passes the checks is returned without any request.
    Errors are :class:`DownloadError` naming the URL, the destination and how to place the
    file by hand (``hint`` is appended to that advice).

    Example:
        >>> download_file("https://example.org/x.tar.gz", "/tmp/x.tar.gz")  # doctest: +SKIP
        PosixPath('/tmp/x.tar.gz')
    """
    dest = Path(dest).expanduser()
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        try:
            _verify(dest, url, dest, sha256, expected_size, hint)
            return dest
        except DownloadError:
            dest.unlink()  # a stale or corrupt final file: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)

    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size:
        status_done = True
    else:
        status_done = False

    if not status_done:
        _stream(url, dest, part, offset, expected_size, progress, timeout, hint)

    try:
        _verify(part, url, dest, sha256, expected_size, hint)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _stream(
    url: str,
    dest: Path,
    part: Path,
    offset: int,
    expected_size: Optional[int],
    progress: bool,
    timeout: float,
    hint: str,
) -> None:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener()  # reads proxy settings from the environment now
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:
            total = _content_range_total(e.headers.get("Content-Range") if e.headers else None)
            e.close()
            if total == offset or (total is None and expected_size == offset):
                return  # the .part is already complete
            part.unlink(missing_ok=True)
            return _stream(url, dest, part, 0, expected_size, progress, timeout, hint)
        reason = getattr(e, "reason", "") or ""
        e.close()
        raise DownloadError(
            f"download failed: the server answered HTTP {e.code} {reason} for {url} "
            f"(destination {dest}). " + _by_hand(url, dest, hint)
        ) from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"download failed: cannot reach {url} ({reason}) (destination {dest}). "
            "Check the network connection and any proxy settings. " + _by_hand(url, dest, hint)
        ) from e

    status = getattr(response, "status", 200)
    if status == 206 and _content_range_start(response.headers.get("Content-Range")) != offset:
        response.close()  # a range we did not ask for: start again from zero without Range
        if offset == 0:
            raise DownloadError(
                f"download failed: the server sent a partial answer for {url} that does not start at byte 0 "
                f"(destination {dest}). " + _by_hand(url, dest, hint)
            )
        part.unlink(missing_ok=True)
        return _stream(url, dest, part, 0, expected_size, progress, timeout, hint)
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset > 0 and status == 206 and _content_range_start(response.headers.get("Content-Range")) == offset:
            mode = "ab"
            start = offset
        else:
            mode = "wb"  # the server ignored Range (or this is a fresh download): restart
            start = 0
        total = (start + length) if length is not None else expected_size
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, leave=True, dynamic_ncols=True,
            )
        received = 0
        try:
            with open(part, mode) as f:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (http.client.IncompleteRead, OSError, socket.timeout) as e:
            raise DownloadError(
                f"download of {url} was interrupted after {start + received} bytes ({e}); the partial "
                f"data is kept in {part} and the next attempt resumes from there. "
                + _by_hand(url, dest, hint)
            ) from e
        finally:
            if bar is not None:
                bar.close()
    if length is not None and received < length:
        raise DownloadError(
            f"download of {url} is incomplete: received {start + received} of {start + length} bytes; the "
            f"partial data is kept in {part} and the next attempt resumes from there. " + _by_hand(url, dest, hint)
        )


# --------------------------------------------------------------------------------------
# archives
# --------------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _marker_path(archive: Path, dest: Path) -> Path:
    return dest / f".{archive.name}.extracted"


def _marker_text(archive: Path) -> str:
    st = archive.stat()
    return f"{archive.name}\n{st.st_size}\n"


def _unsafe_name(name: str) -> Optional[str]:
    """Why an archive member name is unsafe, or None."""
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PureWindowsPath(name).is_absolute():
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "'..' path component"
    return None


def _inside(dest: Path, rel: str) -> bool:
    target = os.path.normpath(os.path.join(str(dest), rel))
    base = os.path.normpath(str(dest))
    return target == base or target.startswith(base + os.sep)


def _refuse(archive: Path, member: str, why: str) -> DownloadError:
    return DownloadError(
        f"refusing to extract {archive}: member {member!r} ({why}) would be written outside the "
        "destination folder. The archive is malformed or malicious; nothing was extracted. Download it "
        "again from the official address or unpack it by hand after inspecting it."
    )


def _check_tar(archive: Path, tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        why = _unsafe_name(m.name)
        if why:
            raise _refuse(archive, m.name, why)
        if m.issym():
            link = m.linkname
            if os.path.isabs(link) or PureWindowsPath(link).drive:
                raise _refuse(archive, m.name, f"symlink to absolute path {link!r}")
            rel = posixpath.join(posixpath.dirname(m.name), link)
            if not _inside(dest, rel):
                raise _refuse(archive, m.name, f"symlink to {link!r} outside the destination")
        elif m.islnk():
            link = m.linkname
            if _unsafe_name(link) or not _inside(dest, link):
                raise _refuse(archive, m.name, f"hard link to {link!r} outside the destination")
        elif not (m.isfile() or m.isdir()):
            raise _refuse(archive, m.name, "device, FIFO or other special file")
        if not _inside(dest, m.name):
            raise _refuse(archive, m.name, "path outside the destination")
    return members


def _check_zip(archive: Path, zf: zipfile.ZipFile, dest: Path) -> None:
    for info in zf.infolist():
        why = _unsafe_name(info.filename)
        if why:
            raise _refuse(archive, info.filename, why)
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            link = zf.read(info).decode("utf-8", "replace")
            rel = posixpath.join(posixpath.dirname(info.filename), link)
            if os.path.isabs(link) or not _inside(dest, rel):
                raise _refuse(archive, info.filename, f"symlink to {link!r} outside the destination")
        if not _inside(dest, info.filename):
            raise _refuse(archive, info.filename, "path outside the destination")


def extract_archive(archive: PathLike, dest: PathLike, *, force: bool = False) -> Path:
    """Extract a ``.tar.gz``/``.tgz``/``.tar`` (also ``.tar.bz2``/``.tar.xz``) or ``.zip`` into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links pointing outside ``dest`` and special files are refused with a
    :class:`DownloadError` and nothing is extracted. When done, a marker file
    ``dest/.<archive name>.extracted`` is written; a later call with the same archive returns
    at once (``force=True`` extracts again). ``.rar`` archives are not supported: unpack them
    by hand with ``unrar x``.

    Example:
        >>> extract_archive("twoafc_val.tar.gz", "bapps/2afc")  # doctest: +SKIP
        PosixPath('bapps/2afc')
    """
    archive = Path(archive).expanduser()
    dest = Path(dest).expanduser()
    if not archive.is_file():
        raise DownloadError(f"archive not found: {archive}")
    marker = _marker_path(archive, dest)
    if not force and marker.is_file() and marker.read_text() == _marker_text(archive):
        return dest
    name = archive.name.lower()
    if name.endswith(".rar"):
        raise DownloadError(
            f"{archive} is a RAR archive, which lossnet cannot unpack. Unpack it by hand, for example "
            f"`unrar x '{archive}' '{dest}/'` (package `unrar`), then run the command again."
        )
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if name.endswith(".zip") or (zipfile.is_zipfile(archive) and not tarfile.is_tarfile(archive)):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(archive, zf, dest)
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tar:
                members = _check_tar(archive, tar, dest)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(dest, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(dest, members=members)
        else:
            raise DownloadError(
                f"{archive} is not a tar or zip archive lossnet can read (supported: "
                f"{', '.join(ARCHIVE_SUFFIXES)}). It may be truncated: delete it and download it again."
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(
            f"cannot extract {archive}: the archive is corrupt or truncated ({e}). Delete it and download "
            "it again."
        ) from e
    marker.write_text(_marker_text(archive))
    return dest


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
             (files pair up by sorted name; judge/*.npy hold one value in [0,1]:
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
        size = f"about {_human(part.approx_size)}" if part.approx_size else "size not published"
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
    val + jnd). A part whose folder is already in place and whose archive is not half
    extracted is skipped; interrupted downloads resume. Archives are deleted once extracted
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
        marker = _marker_path(archive, target)
        in_place = provided.exists() and (marker.is_file() or not archive.exists())
        if in_place:
            continue
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
