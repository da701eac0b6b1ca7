"""Resumable downloads with size and SHA-256 checks, and safe archive extraction.

The one downloader of lossnet: weights (``lossnet.networks``) and datasets (``lossnet.data``)
both fetch through it. Nothing is downloaded unless asked for.

Example:
    >>> download_file("https://example.org/a.tar.gz", "/tmp/a.tar.gz")  # doctest: +SKIP
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
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional, Union

from ..errors import DownloadError
from .progress import progress_bar

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


def human_size(n: Optional[float]) -> str:
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
            bar = progress_bar(total, dest.name, unit="B", initial=start, leave=True, byte_units=True)
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


def marker_path(archive: Path, dest: Path) -> Path:
    return dest / f".{archive.name}.extracted"


def archive_sha256(archive: PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "empty"; _ = f.write_bytes(b"")
        >>> archive_sha256(f)[:16]
        'e3b0c44298fc1c14'
    """
    return _sha256_of(Path(archive)).hexdigest()


def _marker_text(archive: Path, sha256: str) -> str:
    return f"{archive.name}\n{archive.stat().st_size}\nsha256 {sha256.lower()}\n"


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
    ``dest/.<archive name>.extracted`` records the archive's name, size and SHA-256; a later
    call returns at once only when all three match (an archive replaced by one of the same
    name and size but other contents is extracted again; ``force=True`` always extracts).
    ``.rar`` archives are not supported: unpack them by hand with ``unrar x``.

    Example:
        >>> extract_archive("twoafc_val.tar.gz", "bapps/2afc")  # doctest: +SKIP
        PosixPath('bapps/2afc')
    """
    archive = Path(archive).expanduser()
    dest = Path(dest).expanduser()
    if not archive.is_file():
        raise DownloadError(f"archive not found: {archive}")
    marker = marker_path(archive, dest)
    digest = archive_sha256(archive)
    if not force and marker.is_file() and marker.read_text() == _marker_text(archive, digest):
        return dest
    name = archive.name.lower()
    if name.endswith(".rar"):
        raise DownloadError(
            f"{archive} is a RAR archive, which lossnet cannot unpack. Unpack it by hand, for example "
            f"`unrar x '{archive}' '{dest}/'` (package `unrar`), then run the command again."
        )
    dest.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # a half-done extraction must not look done
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
    marker.write_text(_marker_text(archive, digest))
    return dest
