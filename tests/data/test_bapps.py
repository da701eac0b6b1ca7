"""BAPPS 2AFC/JND loading in the official layout, its clear errors, and image loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lossnet.data import (
    DataError,
    TwoAFCDataset,
    load_2afc,
    load_image,
    load_jnd,
    write_bapps_fixture,
    write_jnd_fixture,
)

JUDGES = [0.0, 0.2, 0.4, 0.5, 0.6, 1.0]


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    root = tmp_path_factory.mktemp("bapps")
    write_bapps_fixture(root, n=6, split="val", subsets=("cnn", "traditional", "color"), judges=JUDGES)
    write_bapps_fixture(root, n=4, split="train", subsets=("mix", "traditional"), size=80)
    write_jnd_fixture(root, n=5, subsets=("traditional", "cnn"))
    return root


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_load_root_split_and_subset_folders(bapps):
    sets = load_2afc(bapps)  # BAPPS order, not alphabetical or on-disk order
    assert list(sets) == ["traditional", "cnn", "color"]
    assert {k: len(v) for k, v in sets.items()} == {"traditional": 6, "cnn": 6, "color": 6}
    for name, ds in sets.items():
        assert isinstance(ds, TwoAFCDataset) and ds.subset == name and ds.synthetic is False
        assert ds.judges.tolist() == pytest.approx(JUDGES)
    assert list(load_2afc(bapps / "2afc" / "val")) == ["traditional", "cnn", "color"]
    assert list(load_2afc(bapps / "2afc")) == ["traditional", "cnn", "color"]
    one = load_2afc(bapps / "2afc" / "val" / "color")
    assert list(one) == ["color"] and len(one["color"]) == 6
    assert list(load_2afc(bapps, split="train")) == ["traditional", "mix"]
    assert list(load_2afc(bapps, subsets=["color", "cnn"])) == ["color", "cnn"]
    assert list(load_2afc(bapps, subsets="cnn")) == ["cnn"]


def test_item_format_and_values(bapps):
    ds = load_2afc(bapps)["cnn"]
    folder = bapps / "2afc" / "val" / "cnn"
    for i in (0, 3, 5):
        item = ds[i]
        assert set(item) == {"ref", "p0", "p1", "judge", "subset", "index"}
        for k in ("ref", "p0", "p1"):
            t = item[k]
            assert t.shape == (3, 64, 64) and t.dtype == torch.float32
            assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
        ref_png = np.asarray(Image.open(folder / "ref" / f"{i:06d}.png"), dtype=np.float32) / 255
        assert torch.allclose(item["ref"], torch.from_numpy(ref_png).permute(2, 0, 1))
        assert item["judge"].dtype == torch.float32 and item["judge"].dim() == 0
        assert float(item["judge"]) == pytest.approx(JUDGES[i])
        assert float(np.load(folder / "judge" / f"{i:06d}.npy")[0]) == pytest.approx(JUDGES[i])
        assert item["subset"] == "cnn" and item["index"] == i
    assert ds[-1]["index"] == 5
    with pytest.raises(IndexError):
        ds[6]
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["ref"].shape == (4, 3, 64, 64) and batch["judge"].shape == (4,)
    assert batch["subset"] == ["cnn"] * 4


def test_resize_to_64_by_default(bapps):
    ds = load_2afc(bapps, split="train")["mix"]  # stored at 80x80
    path = ds.ref_paths[1]
    assert Image.open(path).size == (80, 80)
    assert ds[1]["ref"].shape == (3, 64, 64)
    assert torch.equal(ds[1]["ref"], load_image(path, size=64))
    native = load_2afc(bapps, split="train", size=None)["mix"]
    assert native[1]["ref"].shape == (3, 80, 80)


def test_dataset_over_a_split_folder(bapps):
    ds = TwoAFCDataset(bapps / "2afc" / "val")
    assert ds.subsets == ["traditional", "cnn", "color"] and len(ds) == 18
    assert [ds[i]["subset"] for i in (0, 6, 17)] == ["traditional", "cnn", "color"]
    assert ds[7]["index"] == 7 and torch.equal(ds[7]["p1"], load_2afc(bapps)["cnn"][1]["p1"])
    assert TwoAFCDataset(bapps / "2afc" / "val", subsets=["color"]).subsets == ["color"]


def test_jnd(bapps):
    sets = load_jnd(bapps)
    assert list(sets) == ["traditional", "cnn"]
    ds = sets["traditional"]
    assert len(ds) == 5
    item = ds[0]
    assert set(item) == {"p0", "p1", "same", "subset", "index"}
    assert item["p0"].shape == (3, 64, 64) and item["same"].dim() == 0
    labels = [float(np.load(p)[0]) for p in sorted((bapps / "jnd/val/traditional/same").iterdir())]
    assert ds.same.tolist() == pytest.approx(labels)
    assert list(load_jnd(bapps / "jnd" / "val" / "cnn")) == ["cnn"]
    assert list(load_jnd(bapps / "jnd")) == ["traditional", "cnn"]


def test_builtin_keyword():
    sets = load_2afc("builtin")
    assert list(sets) == ["same-family", "mixed-family", "structure-vs-appearance"]
    assert all(ds.synthetic for ds in sets.values())
    assert list(load_jnd("builtin")) == ["synthetic"]


# ---------------------------------------------------------------- bad data


def _subset(tmp_path, n=3):
    write_bapps_fixture(tmp_path, n=n, subsets=("traditional",), judges=[0.0, 0.5, 1.0][:n])
    return tmp_path / "2afc" / "val" / "traditional"


def test_missing_root_and_layout(tmp_path):
    with pytest.raises(DataError) as e:
        load_2afc(tmp_path / "nope")
    assert "does not exist" in str(e.value) and "lossnet download bapps --to DIR" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no BAPPS 2afc data"):
        load_2afc(tmp_path / "empty")
    write_bapps_fixture(tmp_path / "r", n=2, split="val", subsets=("cnn",))
    with pytest.raises(DataError, match=r"split folder .*train.* does not exist \(found: val\)"):
        load_2afc(tmp_path / "r", split="train")
    with pytest.raises(DataError, match="subset.*superres.*not found.*available: cnn"):
        load_2afc(tmp_path / "r", subsets=["superres"])
    with pytest.raises(DataError, match="no BAPPS jnd data"):
        load_jnd(tmp_path / "r")


def test_missing_folder(tmp_path):
    folder = _subset(tmp_path)
    for f in (folder / "judge").iterdir():
        f.unlink()
    (folder / "judge").rmdir()
    with pytest.raises(DataError) as e:
        load_2afc(tmp_path)
    msg = str(e.value)
    assert "lacks the folder(s) judge/" in msg and "ref/, p0/, p1/, judge/" in msg and "lossnet download bapps" in msg


def test_unequal_counts(tmp_path):
    folder = _subset(tmp_path)
    (folder / "p1" / "000002.png").unlink()
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    msg = str(e.value)
    assert "unequal file counts" in msg and "ref/: 3" in msg and "p1/: 2" in msg and "judge/: 3" in msg


def test_label_out_of_range_and_not_single(tmp_path):
    folder = _subset(tmp_path)
    bad = folder / "judge" / "000001.npy"
    np.save(bad, np.array([1.5]))
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    assert str(bad) in str(e.value) and "outside [0, 1]" in str(e.value)
    np.save(bad, np.array([np.nan]))
    with pytest.raises(DataError, match="outside"):
        load_2afc(folder)
    np.save(bad, np.array([0.2, 0.4]))
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    assert str(bad) in str(e.value) and "single value" in str(e.value)
    bad.write_bytes(b"not numpy")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_2afc(folder)


def test_unreadable_image_named(tmp_path):
    folder = _subset(tmp_path)
    bad = folder / "p0" / "000001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = load_2afc(folder)["traditional"]
    ds[0]  # the others still load
    with pytest.raises(DataError) as e:
        ds[1]
    assert str(bad) in str(e.value) and "cannot read image" in str(e.value)
    full = folder / "ref" / "000002.png"
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="000002.png"):
        ds[2]


# ---------------------------------------------------------------- load_image


def test_load_image_modes(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    _png(tmp_path / "rgb.png", rgb)
    x = load_image(tmp_path / "rgb.png")
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    gray = rgb[:, :, 0]
    _png(tmp_path / "gray.png", gray)
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (3, 20, 30) and torch.equal(g[0], g[2]) and torch.equal(g[0], torch.from_numpy(gray).float() / 255)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    _png(tmp_path / "rgba.png", rgba)
    assert torch.equal(load_image(tmp_path / "rgba.png"), x)
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "pal.png")
    p = load_image(tmp_path / "pal.png")
    assert p.shape == (3, 20, 30) and len(torch.unique(p.reshape(3, -1), dim=1).T) <= 16
    g16 = (gray.astype(np.uint16) * 257)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert torch.allclose(load_image(tmp_path / "g16.png")[1], g[1], atol=1 / 255)


def test_load_image_resize_matches_torchvision(tmp_path):
    from torchvision import transforms

    rgb = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", rgb)
    pil = Image.open(tmp_path / "a.png").convert("RGB")
    for size in (32, (20, 50), 45):
        tv = transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.ToTensor()])(pil)
        ours = load_image(tmp_path / "a.png", size=size)
        assert ours.shape == tv.shape and torch.equal(ours, tv)
    assert load_image(tmp_path / "a.png", size=32).shape == (3, 32, 49)


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(DataError, match="t.png"):
        load_image(tmp_path / "t.png")
    with pytest.raises(DataError, match="not a file"):
        load_image(tmp_path)
