"""TID2013, KADID-10k and CSV opinion-score datasets on generated fixtures in their layouts."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms

from lossnet.data import (
    MAX_ABS_SCORE,
    REAL_SHAPES,
    DataError,
    MOSDataset,
    load_image,
    load_kadid10k,
    load_mos_csv,
    load_tid2013,
    write_kadid_fixture,
    write_mos_csv_fixture,
    write_tid2013_fixture,
)


def test_tid2013(tmp_path):
    root = write_tid2013_fixture(tmp_path / "tid", n_refs=2, n_types=2, n_levels=2)
    assert sorted(p.name for p in (root / "reference_images").iterdir()) == ["I01.BMP", "I02.BMP"]
    ds = load_tid2013(root)
    assert isinstance(ds, MOSDataset) and len(ds) == 8 and ds.higher_is_better is True
    lines = (root / "mos_with_names.txt").read_text().split("\n")
    mos, name = lines[5].split()
    item = ds[5]
    assert set(item) >= {"ref", "dist", "score", "name"}
    assert item["name"] == name and isinstance(item["score"], float) and item["score"] == pytest.approx(float(mos))
    # the reference of i02_..._.bmp is I02.BMP (case-insensitive match)
    assert name.startswith("i02_") and ds.ref_paths[5].name == "I02.BMP"
    assert torch.equal(item["ref"], load_image(root / "reference_images" / "I02.BMP"))
    assert torch.equal(item["dist"], load_image(root / "distorted_images" / name))
    assert item["dist"].shape == (3, 48, 64) and item["dist"].dtype == torch.float32
    assert ds.scores.tolist() == pytest.approx([float(l.split()[0]) for l in lines if l])
    # optional resize (torchvision Resize semantics), and a parent folder holding tid2013/ also works
    assert load_tid2013(root, size=32)[0]["ref"].shape == (3, 32, 42)
    assert load_tid2013(root, size=(24, 24))[0]["dist"].shape == (3, 24, 24)
    write_tid2013_fixture(tmp_path / "parent" / "tid2013", n_refs=1, n_types=1, n_levels=1)
    assert len(load_tid2013(tmp_path / "parent")) == 1


def test_tid2013_case_and_extension_insensitive(tmp_path):
    root = write_tid2013_fixture(tmp_path, n_refs=1, n_types=1, n_levels=2)
    (root / "reference_images" / "I01.BMP").rename(root / "reference_images" / "i01.bmp")
    dist = root / "distorted_images" / "i01_01_2.bmp"
    Image.open(dist).save(root / "distorted_images" / "I01_01_2.PNG")
    dist.unlink()
    ds = load_tid2013(root)
    assert len(ds) == 2 and ds.dist_paths[1].name == "I01_01_2.PNG" and ds.ref_paths[0].name == "i01.bmp"
    assert ds[1]["dist"].shape == (3, 48, 64)


def test_tid2013_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tid2013(tmp_path / "nope")
    with pytest.raises(DataError, match="mos_with_names.txt not found"):
        load_tid2013(tmp_path)
    root = write_tid2013_fixture(tmp_path / "t", n_refs=2, n_types=1, n_levels=2)
    (root / "distorted_images" / "i02_01_1.bmp").unlink()
    with pytest.raises(DataError) as e:
        load_tid2013(root)
    assert "i02_01_1.bmp" in str(e.value) and "1 of 4" in str(e.value)
    (root / "reference_images" / "I01.BMP").unlink()
    with pytest.raises(DataError, match="I01.BMP"):
        load_tid2013(root)
    root2 = write_tid2013_fixture(tmp_path / "t2", n_refs=1, n_types=1, n_levels=1)
    with open(root2 / "mos_with_names.txt", "a") as f:
        f.write("five i01_01_1.bmp\n")
    with pytest.raises(DataError, match="line 2: expected 'MOS filename'"):
        load_tid2013(root2)
    import shutil

    shutil.rmtree(root2 / "reference_images")
    with pytest.raises(DataError, match="reference_images/ not found"):
        load_tid2013(root2)


def test_kadid10k(tmp_path):
    root = write_kadid_fixture(tmp_path / "kadid10k", n_refs=2, n_types=2, n_levels=3)
    ds = load_kadid10k(root)
    assert len(ds) == 12 and ds.higher_is_better is True and ds.name == "kadid10k"
    rows = (root / "dmos.csv").read_text().strip().split("\n")
    assert rows[0] == "dist_img,ref_img,dmos,var"
    dist, ref, dmos, _ = rows[4].split(",")
    item = ds[3]
    assert item["name"] == dist and item["score"] == pytest.approx(float(dmos))
    assert torch.equal(item["ref"], load_image(root / "images" / ref))
    assert torch.equal(item["dist"], load_image(root / "images" / dist))
    # parent folder holding kadid10k/ is accepted
    assert len(load_kadid10k(tmp_path)) == 12
    # dmos falls with level: higher is better
    assert ds.scores[0] > ds.scores[2]


def test_kadid10k_errors(tmp_path):
    root = write_kadid_fixture(tmp_path / "k", n_refs=1, n_types=1, n_levels=2)
    text = (root / "dmos.csv").read_text()
    (root / "dmos.csv").write_text(text.replace("dmos", "score", 1))
    with pytest.raises(DataError) as e:
        load_kadid10k(root)
    assert "lacks column(s) dmos" in str(e.value) and "found: dist_img, ref_img, score, var" in str(e.value)
    (root / "dmos.csv").write_text(text)
    (root / "images" / "I01_01_02.png").unlink()
    with pytest.raises(DataError, match="I01_01_02.png"):
        load_kadid10k(root)
    (root / "dmos.csv").write_text(text.replace("I01_01_02.png,I01.png,", "I01_01_01.png,I01.png,x", 1))
    with pytest.raises(DataError, match="row 3: column 'dmos' must be a number"):
        load_kadid10k(root)
    (root / "dmos.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_kadid10k(root)


def test_mos_csv(tmp_path):
    csv_path = write_mos_csv_fixture(tmp_path / "m", n_refs=2, n_types=1, n_levels=2)
    ds = load_mos_csv(csv_path, higher_is_better=False)
    assert len(ds) == 4 and ds.higher_is_better is False
    row = csv_path.read_text().strip().split("\n")[2].split(",")
    item = ds[1]
    assert item["name"] == row[1] and item["score"] == pytest.approx(float(row[2]))
    assert torch.equal(item["dist"], load_image(tmp_path / "m" / row[1]))
    # paths relative to an explicit root
    moved = tmp_path / "elsewhere.csv"
    moved.write_text(csv_path.read_text())
    with pytest.raises(DataError, match="not found"):
        load_mos_csv(moved)
    assert len(load_mos_csv(moved, root=tmp_path / "m")) == 4
    # absolute paths work too
    absolute = tmp_path / "abs.csv"
    absolute.write_text(f"ref,dist,score\n{tmp_path / 'm' / row[0]},{tmp_path / 'm' / row[1]},3\n")
    assert load_mos_csv(absolute)[0]["score"] == 3.0


def test_mos_csv_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mos_csv(tmp_path / "none.csv")
    csv_path = write_mos_csv_fixture(tmp_path, n_refs=1, n_types=1, n_levels=1)
    csv_path.write_text("reference,dist,score\nimages/ref0.png,images/ref0_t0_l0.png,1\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) ref \(found: reference, dist, score\)"):
        load_mos_csv(csv_path)
    csv_path.write_text("ref,dist,score\nimages/ref0.png,images/ref0_t0_l0.png,nan\n")
    with pytest.raises(DataError, match="column 'score' must be a number"):
        load_mos_csv(csv_path)
    csv_path.write_text("ref,dist,score\n")
    with pytest.raises(DataError, match="no rows"):
        load_mos_csv(csv_path)
    csv_path.write_text("ref,dist,score\nimages/ref0.png,images/missing.png,1\n")
    with pytest.raises(DataError, match="missing.png"):
        load_mos_csv(csv_path)


# ---------------------------------------------------------------- repeated entries and bad scores


def test_tid2013_repeated_lines_are_an_error(tmp_path):
    root = write_tid2013_fixture(tmp_path, n_refs=2, n_types=1, n_levels=2)
    mos = root / "mos_with_names.txt"
    lines = mos.read_text().splitlines()
    assert len(load_tid2013(root)) == 4
    mos.write_text("\n".join(lines + [lines[1], lines[1], lines[2]]) + "\n")  # as if pasted twice
    with pytest.raises(DataError) as e:
        load_tid2013(root)
    msg = str(e.value)
    name1, name2 = lines[1].split()[1], lines[2].split()[1]
    assert "lists 2 image(s) more than once" in msg and f"{name1} (3 times)" in msg and f"{name2} (2 times)" in msg
    assert str(mos) in msg and "remove the repeated lines" in msg
    # the same file under another case, with another score, is the same image listed twice
    mos.write_text("\n".join(lines + [f"3.0 {name1.upper()}"]) + "\n")
    with pytest.raises(DataError, match="more than once"):
        load_tid2013(root)


def test_kadid10k_and_csv_repeated_rows_are_an_error(tmp_path):
    root = write_kadid_fixture(tmp_path / "k", n_refs=1, n_types=1, n_levels=2)
    rows = (root / "dmos.csv").read_text().splitlines()
    (root / "dmos.csv").write_text("\n".join(rows + [rows[2]]) + "\n")
    with pytest.raises(DataError, match=rf"{rows[2].split(',')[0]} \(2 times\)"):
        load_kadid10k(root)
    csv_path = write_mos_csv_fixture(tmp_path / "m", n_refs=1, n_types=1, n_levels=2)
    rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(rows + [rows[1].rsplit(",", 1)[0] + ",9"]) + "\n")
    with pytest.raises(DataError, match="more than once"):
        load_mos_csv(csv_path)


@pytest.mark.parametrize("score", ["1e308", "-1e300", "9.5", "-0.1"])
def test_tid2013_scores_off_the_scale(tmp_path, score):
    root = write_tid2013_fixture(tmp_path, n_refs=1, n_types=1, n_levels=2)
    mos = root / "mos_with_names.txt"
    lines = mos.read_text().splitlines()
    name = lines[0].split()[1]
    mos.write_text("\n".join([f"{score} {name}"] + lines[1:]) + "\n")
    with pytest.raises(DataError) as e:
        load_tid2013(root)
    assert name in str(e.value) and "0-9 scale" in str(e.value)


def test_kadid10k_scores_off_the_scale(tmp_path):
    root = write_kadid_fixture(tmp_path, n_refs=1, n_types=1, n_levels=2)
    text = (root / "dmos.csv").read_text()
    dist, _, dmos, _ = text.splitlines()[1].split(",")
    (root / "dmos.csv").write_text(text.replace(f",{dmos},", ",5.5,", 1))
    with pytest.raises(DataError, match=rf"outside its 1-5 scale: {dist} \(5.5\)"):
        load_kadid10k(root)
    (root / "dmos.csv").write_text(text.replace(f",{dmos},", ",1e308,", 1))
    with pytest.raises(DataError, match="row 2: column 'dmos' holds '1e308'"):
        load_kadid10k(root)


def test_csv_scores_beyond_the_limit(tmp_path):
    csv_path = write_mos_csv_fixture(tmp_path, n_refs=1, n_types=1, n_levels=2)
    rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(rows[:2] + [rows[2].rsplit(",", 1)[0] + ",1e308"]) + "\n")
    with pytest.raises(DataError, match="row 3: column 'score' holds '1e308'"):
        load_mos_csv(csv_path)
    csv_path.write_text("\n".join(rows[:2] + [rows[2].rsplit(",", 1)[0] + f",{MAX_ABS_SCORE:g}"]) + "\n")
    assert load_mos_csv(csv_path).scores[1] == MAX_ABS_SCORE  # the limit itself is allowed
    with pytest.raises(DataError, match="not finite numbers of magnitude at most"):
        MOSDataset(["r.png"], ["d.png"], [float("inf")])
    with pytest.raises(DataError, match=r"d.png \(1e\+300\)"):
        MOSDataset(["r.png"], ["d.png"], [1e300])


def test_a_name_matching_two_files_by_stem_is_ambiguous(tmp_path):
    root = write_tid2013_fixture(tmp_path, n_refs=1, n_types=1, n_levels=1)
    dist = root / "distorted_images" / "i01_01_1.bmp"
    Image.open(dist).save(root / "distorted_images" / "i01_01_1.png")
    Image.open(dist).save(root / "distorted_images" / "i01_01_1.jpg")
    dist.unlink()
    with pytest.raises(DataError, match=r"2 files there have its name with another extension \(i01_01_1.jpg, i01_01_1.p"):
        load_tid2013(root)


# ---------------------------------------------------------------- loading protocol


def test_real_sized_files_and_the_loading_protocol(tmp_path):
    root = write_tid2013_fixture(tmp_path, n_refs=1, n_types=1, n_levels=1, shape=REAL_SHAPES["tid2013"])
    with Image.open(root / "distorted_images" / "i01_01_1.bmp") as img:
        assert img.format == "BMP" and img.size == (512, 384)
    native = load_tid2013(root)
    assert native.protocol == "PIL RGB at the file size, ToTensor" and native[0]["dist"].shape == (3, 384, 512)
    for interpolation, mode in (("bilinear", transforms.InterpolationMode.BILINEAR),
                                (None, transforms.InterpolationMode.BICUBIC)):
        ds = load_tid2013(root, size=64, interpolation=interpolation)
        expected = transforms.Compose([transforms.Resize(64, interpolation=mode), transforms.ToTensor()])(
            Image.open(ds.dist_paths[0]).convert("RGB"))
        assert torch.equal(ds[0]["dist"], expected) and ds[0]["dist"].shape == (3, 64, 85)
        assert ds.protocol == f"PIL RGB, torchvision Resize(64) {mode.value} antialias, ToTensor"
    with pytest.raises(DataError, match="no effect with size=None"):
        load_kadid10k(write_kadid_fixture(tmp_path / "k", n_refs=1, n_types=1, n_levels=1), interpolation="box")
