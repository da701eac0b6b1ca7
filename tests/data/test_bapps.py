"""BAPPS 2AFC/JND loading in the official layout: the reference loading protocol, pairing by
file name, clear errors on bad data, and image loading."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from lossnet.data import (
    REAL_SHAPES,
    DataError,
    JNDDataset,
    TwoAFCDataset,
    load_2afc,
    load_image,
    load_jnd,
    write_bapps_fixture,
    write_jnd_fixture,
)
from lossnet.errors import UnknownNameError

REFERENCE = "BAPPS reference: PIL RGB, torchvision Resize(64) bilinear antialias, ToTensor"

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


def _reference_transform(path, interpolation=None):
    """What the LPIPS repository's twoafc_dataset.py / jnd_dataset.py do, by hand (without their
    final Normalize to [-1, 1]): PIL open, convert("RGB"), Resize(64), ToTensor."""
    resize = transforms.Resize(64) if interpolation is None else transforms.Resize(64, interpolation=interpolation)
    return transforms.Compose([resize, transforms.ToTensor()])(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def real_sized(tmp_path_factory):
    """BAPPS files at the real size (256x256 PNG), and a non-square subset (200x296)."""
    root = tmp_path_factory.mktemp("bapps256")
    assert REAL_SHAPES["bapps"] == (256, 256)
    write_bapps_fixture(root, n=3, subsets=("traditional",), size=REAL_SHAPES["bapps"])
    write_bapps_fixture(root, n=2, subsets=("cnn",), size=(200, 296), seed=1)
    write_jnd_fixture(root, n=2, subsets=("traditional",), size=256)
    return root


def test_real_size_fixture_files(real_sized):
    ref = real_sized / "2afc" / "val" / "traditional" / "ref" / "000000.png"
    with Image.open(ref) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (256, 256)
    with Image.open(real_sized / "2afc" / "val" / "cnn" / "p1" / "000001.png") as img:
        assert img.size == (296, 200)  # PIL sizes are (width, height)
    with Image.open(real_sized / "jnd" / "val" / "traditional" / "p0" / "000000.png") as img:
        assert img.size == (256, 256)


def test_2afc_loads_as_the_reference_evaluation_does(real_sized):
    sets = load_2afc(real_sized)
    for name, shape in (("traditional", (3, 64, 64)), ("cnn", (3, 64, 94))):  # shorter side to 64
        ds = sets[name]
        assert ds.protocol == REFERENCE and ds.interpolation == "bilinear"
        for i in range(len(ds)):
            item = ds[i]
            for key, paths in (("ref", ds.ref_paths), ("p0", ds.p0_paths), ("p1", ds.p1_paths)):
                expected = _reference_transform(paths[i])
                assert item[key].shape == shape and torch.equal(item[key], expected)


def test_jnd_loads_as_the_reference_evaluation_does(real_sized):
    ds = load_jnd(real_sized)["traditional"]
    assert isinstance(ds, JNDDataset) and ds.protocol == REFERENCE
    for i in range(len(ds)):
        assert torch.equal(ds[i]["p0"], _reference_transform(ds.p0_paths[i]))
        assert torch.equal(ds[i]["p1"], _reference_transform(ds.p1_paths[i]))


def test_reference_protocol_on_other_image_modes(real_sized, tmp_path):
    folder = tmp_path / "2afc" / "val" / "traditional"
    shutil.copytree(real_sized / "2afc" / "val" / "traditional", folder)
    rgb = Image.open(folder / "ref" / "000000.png").convert("RGB")
    rgb.convert("L").save(folder / "ref" / "000000.png")
    rgb.convert("P", palette=Image.ADAPTIVE, colors=64).save(folder / "p0" / "000000.png")
    rgba = rgb.copy()
    rgba.putalpha(128)
    rgba.save(folder / "p1" / "000000.png")
    ds = load_2afc(folder)["traditional"]
    for key, paths in (("ref", ds.ref_paths), ("p0", ds.p0_paths), ("p1", ds.p1_paths)):
        assert torch.equal(ds[0][key], _reference_transform(paths[0]))


def test_other_interpolations_are_explicit_and_recorded(real_sized):
    bicubic = load_2afc(real_sized, interpolation="bicubic")["traditional"]
    assert bicubic.protocol == (
        "PIL RGB, torchvision Resize(64) bicubic antialias, ToTensor (not the BAPPS reference: Resize(64) bilinear)"
    )
    path = bicubic.ref_paths[0]
    expected = _reference_transform(path, transforms.InterpolationMode.BICUBIC)
    assert torch.equal(bicubic[0]["ref"], expected)
    assert not torch.equal(expected, _reference_transform(path))  # the choice changes the pixels
    nearest = load_jnd(real_sized, interpolation="nearest")["traditional"]
    nearest_tv = _reference_transform(nearest.p1_paths[0], transforms.InterpolationMode.NEAREST)
    assert torch.equal(nearest[0]["p1"], nearest_tv)
    assert "Resize(64) nearest," in nearest.protocol
    larger = load_2afc(real_sized, size=128)["traditional"]
    assert larger[0]["ref"].shape == (3, 128, 128) and "not the BAPPS reference" in larger.protocol
    native = load_2afc(real_sized, size=None)["cnn"]
    assert native[0]["ref"].shape == (3, 200, 296)
    assert native.protocol.startswith("PIL RGB at the file size, ToTensor (not the BAPPS reference")


def test_bad_interpolation_arguments(real_sized):
    with pytest.raises(UnknownNameError) as e:
        load_2afc(real_sized, interpolation="bicubik")
    assert "Did you mean 'bicubic'" in str(e.value) and "bilinear" in str(e.value)
    with pytest.raises(DataError, match="no effect with size=None"):
        load_jnd(real_sized, size=None, interpolation="bicubic")
    with pytest.raises(DataError, match="built-in synthetic set"):
        load_2afc("builtin", interpolation="bicubic")
    with pytest.raises(DataError, match="built-in synthetic set"):
        load_jnd("builtin", interpolation="bilinear")


def test_builtin_sets_say_how_they_are_made():
    ds = load_2afc("builtin", subsets=["same-family"])["same-family"]
    assert ds.protocol.startswith("synthetic:") and "no files read" in ds.protocol
    assert load_jnd("builtin")["synthetic"].protocol.startswith("synthetic:")


def test_resize_to_64_by_default(bapps):
    ds = load_2afc(bapps, split="train")["mix"]  # stored at 80x80
    path = ds.ref_paths[1]
    assert Image.open(path).size == (80, 80)
    assert ds[1]["ref"].shape == (3, 64, 64)
    assert torch.equal(ds[1]["ref"], load_image(path, size=64, interpolation="bilinear"))
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


def test_unmatched_names_are_listed(tmp_path):
    folder = _subset(tmp_path)
    (folder / "p1" / "000002.png").unlink()
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    msg = str(e.value)
    assert "1 of 3 names do not pair up across ref/, p0/, p1/, judge/" in msg
    assert "ref/000002.png, p0/000002.png, judge/000002.npy have no p1 image with the same name" in msg
    assert "extract the archive again" in msg


def test_issue_9_repro_a_renamed_copy_does_not_shift_the_pairs(tmp_path):
    """Delete p0/000002.png and add p0/000019_copy.png: the counts still match, but sorted
    positions would pair p0/000003.png with ref/000002.png (and so on), silently. Must be an error."""
    write_bapps_fixture(tmp_path, n=20, subsets=("traditional",))
    folder = tmp_path / "2afc" / "val" / "traditional"
    (folder / "p0" / "000002.png").unlink()
    shutil.copyfile(folder / "p0" / "000019.png", folder / "p0" / "000019_copy.png")
    assert len(list((folder / "p0").iterdir())) == len(list((folder / "ref").iterdir())) == 20
    with pytest.raises(DataError) as e:
        load_2afc(tmp_path)
    msg = str(e.value)
    assert "2 of 21 names do not pair up" in msg
    assert "ref/000002.png, p1/000002.png, judge/000002.npy have no p0 image with the same name" in msg
    assert "p0/000019_copy.png has no ref image, p1 image or judge label with the same name" in msg
    with pytest.raises(DataError, match="000019_copy"):
        TwoAFCDataset(folder)


def test_jnd_pairs_by_name(tmp_path):
    write_jnd_fixture(tmp_path, n=4, subsets=("cnn",))
    folder = tmp_path / "jnd" / "val" / "cnn"
    (folder / "same" / "000001.npy").rename(folder / "same" / "000009.npy")  # same count, other name
    with pytest.raises(DataError) as e:
        load_jnd(tmp_path)
    msg = str(e.value)
    assert "2 of 5 names do not pair up across p0/, p1/, same/" in msg
    assert "p0/000001.png, p1/000001.png have no same label" in msg and "same/000009.npy has no p0 image" in msg


def test_items_are_the_same_name_in_every_folder(tmp_path):
    write_bapps_fixture(tmp_path, n=12, subsets=("traditional",))
    ds = load_2afc(tmp_path)["traditional"]
    assert ds.names == [f"{i:06d}" for i in range(12)]
    for i in range(12):
        stems = {p[i].stem for p in (ds.ref_paths, ds.p0_paths, ds.p1_paths, ds.judge_paths)}
        assert stems == {ds.names[i]}


def test_many_unmatched_names_are_counted(tmp_path):
    folder = _subset(tmp_path, n=3)
    for k in range(8):
        shutil.copyfile(folder / "ref" / "000000.png", folder / "ref" / f"extra{k}.png")
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    msg = str(e.value)
    assert "8 of 11 names do not pair up" in msg and "ref/extra0.png" in msg and "ref/extra4.png" in msg
    assert "extra5" not in msg and "and 3 more" in msg


def test_two_files_with_one_name_are_refused(tmp_path):
    folder = _subset(tmp_path)
    Image.open(folder / "p0" / "000001.png").save(folder / "p0" / "000001.jpg")
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    assert "p0/ holds 1 pair(s) of files with the same name" in str(e.value)
    assert "000001.jpg and 000001.png" in str(e.value)


def test_label_out_of_range_and_not_single(tmp_path):
    folder = _subset(tmp_path)
    bad = folder / "judge" / "000001.npy"
    np.save(bad, np.array([1.5]))
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    assert str(bad) in str(e.value) and "outside [0, 1]" in str(e.value)
    np.save(bad, np.array([np.nan]))
    with pytest.raises(DataError, match="holds NaN"):
        load_2afc(folder)
    np.save(bad, np.array([0.2, 0.4]))
    with pytest.raises(DataError) as e:
        load_2afc(folder)
    assert str(bad) in str(e.value) and "single value" in str(e.value)
    bad.write_bytes(b"not numpy")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_2afc(folder)


@pytest.mark.parametrize("value,what", [
    (np.array(["0.5"]), "a string"),
    (np.array([True]), "a bool"),
    (np.array(False), "a bool"),
    (np.array([b"1"]), "a byte string"),
    (np.array([0.5 + 0j]), "a complex number"),
    (np.array([np.nan], dtype=np.float32), "NaN"),
    (np.array([-0.2]), "outside [0, 1]"),
    (np.array([1.0000001]), "outside [0, 1]"),
    (np.array([np.inf]), "outside [0, 1]"),
])
@pytest.mark.parametrize("kind", ["judge", "same"])
def test_label_files_that_are_not_a_fraction_are_named(tmp_path, value, what, kind):
    if kind == "judge":
        folder, load = _subset(tmp_path), load_2afc
    else:
        write_jnd_fixture(tmp_path, n=3, subsets=("traditional",))
        folder, load = tmp_path / "jnd" / "val" / "traditional", load_jnd
    bad = folder / kind / "000001.npy"
    np.save(bad, value)
    with pytest.raises(DataError) as e:
        load(folder)
    assert str(bad) in str(e.value) and what in str(e.value) and "extract the archive again" in str(e.value)


def test_integer_labels_are_numbers(tmp_path):
    folder = _subset(tmp_path)
    np.save(folder / "judge" / "000002.npy", np.array([1], dtype=np.int64))
    assert load_2afc(folder)["traditional"].judges.tolist() == [0.0, 0.5, 1.0]


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
