"""lossnet.data.download: the table of downloadable datasets, the manual steps, and
download_dataset with an injected downloader (the HTTP side is tested in tests/utils)."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from lossnet.data import (
    DATASETS,
    DataError,
    download_dataset,
    load_2afc,
    manual_instructions,
    write_bapps_fixture,
)


class _LocalDownloader:
    """Stands in for ``download_file``: copies a local file to the destination and counts calls."""

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self.calls: list[str] = []

    def __call__(self, url, dest, sha256=None, expected_size=None, progress=True, hint=""):
        self.calls.append(url)
        dest = Path(dest)
        if not dest.is_file():  # like download_file: an existing file is used as is
            shutil.copyfile(self.files[url], dest)
        return dest


def _bapps_archive(tmp_path: Path, name: str, judges: list[float]) -> Path:
    src = write_bapps_fixture(tmp_path / name, n=len(judges), subsets=("traditional",), judges=judges)
    archive = tmp_path / f"{name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src / "2afc" / "val", arcname="val")  # twoafc_val.tar.gz holds val/...
    return archive


def test_table_and_manual_instructions():
    bapps = DATASETS["bapps"]
    assert set(bapps.parts) == {"twoafc_val", "twoafc_train", "jnd"}
    assert bapps.parts["twoafc_val"].url == (
        "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/twoafc_val.tar.gz"
    )
    for info in DATASETS.values():  # nothing invented: no exact size or checksum is published
        for part in info.parts.values():
            assert part.sha256 is None and part.size is None
    text = manual_instructions("bapps", "/data/bapps")
    assert "/data/bapps/2afc/val" in text and "judge" in text and "jnd/val" in text
    tid = manual_instructions("tid2013")
    assert "unrar" in tid and "mos_with_names.txt" in tid and "distorted_images" in tid
    assert "dmos.csv" in manual_instructions("KADID-10k")
    with pytest.raises(ValueError, match="unknown dataset"):
        manual_instructions("imagenet")


def test_download_dataset_end_to_end(tmp_path):
    url = DATASETS["bapps"].parts["twoafc_val"].url
    fetch = _LocalDownloader({url: _bapps_archive(tmp_path, "src", [0.0, 0.5, 1.0])})
    root = download_dataset("bapps", tmp_path / "bapps", parts=["twoafc_val"], progress=False, downloader=fetch)
    assert root == tmp_path / "bapps" and fetch.calls == [url]
    assert not (root / "twoafc_val.tar.gz").exists()  # archive removed after extraction
    sets = load_2afc(root)
    assert list(sets) == ["traditional"] and sets["traditional"].judges.tolist() == [0.0, 0.5, 1.0]
    download_dataset("bapps", tmp_path / "bapps", parts=["twoafc_val"], progress=False, downloader=fetch)
    assert fetch.calls == [url]  # in place and the archive gone: nothing fetched


def test_a_kept_archive_replaced_by_another_of_the_same_size_is_extracted_again(tmp_path):
    url = DATASETS["bapps"].parts["twoafc_val"].url
    first, second = _bapps_archive(tmp_path, "a", [0.0, 0.5, 1.0]), _bapps_archive(tmp_path, "b", [1.0, 0.5, 0.0])
    assert first.stat().st_size == second.stat().st_size and first.read_bytes() != second.read_bytes()
    fetch = _LocalDownloader({url: first})
    root = download_dataset("bapps", tmp_path / "bapps", parts=["twoafc_val"], progress=False, downloader=fetch,
                            keep_archives=True)
    assert load_2afc(root)["traditional"].judges.tolist() == [0.0, 0.5, 1.0]
    shutil.copyfile(second, root / "twoafc_val.tar.gz")  # same name, same size, other contents
    download_dataset("bapps", root, parts=["twoafc_val"], progress=False, downloader=fetch, keep_archives=True)
    assert load_2afc(root)["traditional"].judges.tolist() == [1.0, 0.5, 0.0]


def test_download_dataset_rar_explains_unrar(tmp_path):
    url = DATASETS["tid2013"].parts["tid2013"].url
    (tmp_path / "src.rar").write_bytes(b"Rar!\x1a\x07\x00payload")
    fetch = _LocalDownloader({url: tmp_path / "src.rar"})
    with pytest.raises(DataError, match="unrar x"):
        download_dataset("tid2013", tmp_path / "tid", progress=False, downloader=fetch)
    assert (tmp_path / "tid" / "tid2013.rar").is_file()
    with pytest.raises(ValueError, match="unknown bapps part"):
        download_dataset("bapps", tmp_path / "b", parts=["twoafc_test"])
