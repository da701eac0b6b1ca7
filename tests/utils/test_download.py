"""lossnet.utils.download: the resumable downloader against a local HTTP server on 127.0.0.1 (no
network), and safe archive extraction with its SHA-256 extraction marker."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lossnet.errors import DownloadError
from lossnet.utils.download import (
    archive_sha256,
    download_file,
    extract_archive,
    marker_path,
)

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Server:
    """A tiny HTTP server with Range support that records what it was asked and what it sent."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.flaky_once: set[str] = set()  # paths that send half their body once, then close
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802
                rng = self.headers.get("Range")
                rec = {"path": self.path, "range": rng, "sent": 0, "status": None}
                server.requests.append(rec)
                if self.path == "/error":
                    rec["status"] = 500
                    self.send_error(500, "Internal Server Error")
                    return
                name, _, flag = self.path.partition("?")
                body = server.files.get(name)
                if body is None:
                    rec["status"] = 404
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and flag == "wrongstart":  # answers 206 from byte 0 whatever was asked
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
                    rec["status"] = 206
                elif rng and flag != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        rec["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    rec["status"] = 206
                else:
                    self.send_response(200)
                    rec["status"] = 200
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if name in server.flaky_once:
                    server.flaky_once.discard(name)
                    chunk = chunk[: len(chunk) // 2]
                    self.close_connection = True
                rec["sent"] = len(chunk)  # before writing: the client may read it all before this thread resumes
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with _Server() as s:
        s.files["/data.bin"] = PAYLOAD
        yield s


def test_full_download_with_sha256(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    out = download_file(server.url + "/data.bin", dest, sha256=sha, expected_size=len(PAYLOAD), progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.requests[-1]["range"] is None and server.requests[-1]["sent"] == len(PAYLOAD)
    # a complete, verified file is not fetched again
    n = len(server.requests)
    download_file(server.url + "/data.bin", dest, sha256=sha, progress=False)
    assert len(server.requests) == n


def test_resume_requests_only_the_remaining_bytes(server, tmp_path):
    dest = tmp_path / "data.bin"
    k = 30_000
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:k])
    download_file(server.url + "/data.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    req = server.requests[-1]
    assert req["range"] == f"bytes={k}-"
    assert req["status"] == 206 and req["sent"] == len(PAYLOAD) - k


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"\xff" * 5000)  # wrong bytes: must not be kept
    download_file(server.url + "/data.bin?norange", dest, expected_size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=5000-" and server.requests[-1]["status"] == 200


def test_mismatched_partial_answer_restarts(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    download_file(server.url + "/data.bin?wrongstart", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD  # not 1000 bytes + the whole file again
    assert [r["range"] for r in server.requests[-2:]] == ["bytes=1000-", None]


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.flaky_once.add("/data.bin")
    with pytest.raises(DownloadError, match="resume"):
        download_file(server.url + "/data.bin", dest, progress=False, timeout=5)
    part = tmp_path / "data.bin.part"
    assert not dest.exists() and part.stat().st_size == len(PAYLOAD) // 2
    download_file(server.url + "/data.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_complete_part_with_416_is_accepted(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download_file(server.url + "/data.bin", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD and server.requests[-1]["status"] == 416


def test_wrong_checksum_raises_and_leaves_no_file(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as e:
        download_file(server.url + "/data.bin", dest, sha256="0" * 64, progress=False)
    msg = str(e.value)
    assert "sha256" in msg and "/data.bin" in msg and str(dest) in msg
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


def test_wrong_size_raises(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="size check failed"):
        download_file(server.url + "/data.bin", dest, expected_size=len(PAYLOAD) + 1, progress=False)
    assert not dest.exists()


@pytest.mark.parametrize("path,code", [("/error", "500"), ("/missing.bin", "404")])
def test_server_error_message(server, tmp_path, path, code):
    dest = tmp_path / "x.bin"
    with pytest.raises(DownloadError) as e:
        download_file(server.url + path, dest, progress=False, hint="EXTRA-HINT")
    msg = str(e.value)
    assert f"HTTP {code}" in msg and server.url + path in msg and str(dest) in msg
    assert "by hand" in msg and "EXTRA-HINT" in msg
    assert not dest.exists()


def test_unreachable_server_message(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, timeout=5)


# ---------------------------------------------------------------- archives


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_tar_gz_and_marker(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"top/x.txt": b"hello", "top/sub/y.txt": b"world"})
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    assert (dest / "top/x.txt").read_bytes() == b"hello"
    assert (dest / "top/sub/y.txt").read_bytes() == b"world"
    assert (dest / ".a.tar.gz.extracted").is_file()
    (dest / "top/x.txt").write_bytes(b"changed")
    extract_archive(archive, dest)  # marker: not redone
    assert (dest / "top/x.txt").read_bytes() == b"changed"
    extract_archive(archive, dest, force=True)
    assert (dest / "top/x.txt").read_bytes() == b"hello"


def test_extract_zip(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("k/dmos.csv", "a,b\n")
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out/k/dmos.csv").read_text() == "a,b\n"


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "/tmp/lossnet-abs-evil.txt"])
def test_tar_path_traversal_refused(tmp_path, bad):
    archive = _tar(tmp_path / "bad.tar.gz", {"fine.txt": b"ok", bad: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(DownloadError) as e:
        extract_archive(archive, dest)
    assert bad in str(e.value) and "refusing" in str(e.value)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/lossnet-abs-evil.txt").exists()
    assert not (dest / "fine.txt").exists()  # nothing extracted at all
    assert not (dest / ".bad.tar.gz.extracted").exists()


@pytest.mark.parametrize("kind,target", [(tarfile.SYMTYPE, "../../outside"), (tarfile.SYMTYPE, "/etc/passwd"),
                                         (tarfile.LNKTYPE, "../outside")])
def test_tar_links_outside_refused(tmp_path, kind, target):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("sub/link")
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    with pytest.raises(DownloadError, match="link"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "sub" / "link").exists()


def test_zip_path_traversal_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "evil")
    with pytest.raises(DownloadError, match=r"\.\./evil"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_rar_and_corrupt_archives(tmp_path):
    rar = tmp_path / "tid2013.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00junk")
    with pytest.raises(DownloadError, match="unrar"):
        extract_archive(rar, tmp_path / "out")
    bad = tmp_path / "trunc.tar.gz"
    bad.write_bytes(_tar(tmp_path / "ok.tar.gz", {"x": b"1" * 5000}).read_bytes()[:40])
    with pytest.raises(DownloadError, match="(corrupt|truncated|not a tar)"):
        extract_archive(bad, tmp_path / "out2")


def test_marker_records_the_archive_sha256(tmp_path):
    archive = _tar(tmp_path / "a.tar", {"x.txt": b"hello"}, mode="w")
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    marker = marker_path(archive, dest)
    assert marker == dest / ".a.tar.extracted"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == archive_sha256(archive)
    size, digest = archive.stat().st_size, archive_sha256(archive)
    assert marker.read_text().splitlines() == ["a.tar", str(size), f"sha256 {digest}"]


def test_same_name_and_size_but_other_contents_is_extracted_again(tmp_path):
    archive = _tar(tmp_path / "a.tar", {"x.txt": b"hello"}, mode="w")
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    assert (dest / "x.txt").read_bytes() == b"hello"
    old_size = archive.stat().st_size
    _tar(archive, {"x.txt": b"HELLO"}, mode="w")  # same name, same size, other bytes
    assert archive.stat().st_size == old_size
    extract_archive(archive, dest)
    assert (dest / "x.txt").read_bytes() == b"HELLO"
    (dest / "x.txt").write_bytes(b"edited")
    extract_archive(archive, dest)  # unchanged archive: the marker matches, nothing is redone
    assert (dest / "x.txt").read_bytes() == b"edited"


def test_a_marker_without_the_hash_is_not_trusted(tmp_path):
    archive = _tar(tmp_path / "a.tar", {"x.txt": b"hello"}, mode="w")
    dest = tmp_path / "out"
    dest.mkdir()
    marker_path(archive, dest).write_text(f"a.tar\n{archive.stat().st_size}\n")  # the old marker format
    extract_archive(archive, dest)
    assert (dest / "x.txt").read_bytes() == b"hello"
