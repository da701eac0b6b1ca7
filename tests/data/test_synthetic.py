"""The built-in synthetic 2AFC/JND sets and the bundled photos."""
from __future__ import annotations

import pytest
import torch

from lossnet.data import (
    TwoAFCDataset,
    builtin_2afc,
    builtin_jnd,
    builtin_photos,
    load_2afc,
    write_bapps_fixture,
)
from lossnet.data.synthetic import LEVEL_GRID, MIN_LEVEL_GAP, STRONG_LEVELS, WEAK_LEVELS

N = 40


@pytest.fixture(scope="module")
def sets():
    return builtin_2afc(n_per_subset=N, seed=0)


def test_photos_bundled_and_deterministic():
    a = builtin_photos()
    assert list(a)[:4] == ["astronaut", "chelsea", "coffee", "rocket"] and "cat" not in a
    for name, x in a.items():
        assert x.dim() == 3 and x.shape[0] == 3 and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert not torch.equal(x[0], x[1]), f"{name} should be a colour photo"
    b = builtin_photos()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    b["astronaut"].zero_()  # callers get their own tensors, not views of a shared cache
    assert a["astronaut"].max() > 0
    c = builtin_photos(size=64, include_gray=True)
    assert c["chelsea"].shape == (3, 64, 96) and len(c) > len(a) and "camera" in c
    assert torch.equal(c["camera"][0], c["camera"][2])  # grayscale expanded to 3 channels


def test_labelled_synthetic_and_item_format(sets):
    assert list(sets) == ["same-family", "mixed-family", "structure-vs-appearance"]
    for name, ds in sets.items():
        assert ds.synthetic is True and len(ds) == N and ds.subset == name
        assert "synthetic" in ds.description.lower() and "not human" in ds.description
        item = ds[0]
        assert set(item) == {"ref", "p0", "p1", "judge", "subset", "index"}
        for k in ("ref", "p0", "p1"):
            assert item[k].shape == (3, 64, 64) and item[k].dtype == torch.float32
            assert 0.0 <= float(item[k].min()) and float(item[k].max()) <= 1.0
        assert item["judge"].dtype == torch.float32 and item["judge"].dim() == 0
        assert item["subset"] == name and item["index"] == 0
        assert item["ref"].std() >= 0.05  # no flat patches
    assert TwoAFCDataset.synthetic is False


def test_deterministic(sets):
    again = builtin_2afc(n_per_subset=N, seed=0)
    other = builtin_2afc(n_per_subset=N, seed=1)
    for name in sets:
        assert torch.equal(sets[name].judges, again[name].judges)
        for i in (0, 7, N - 1):
            a, b = sets[name][i], again[name][i]
            for k in ("ref", "p0", "p1", "judge"):
                assert torch.equal(a[k], b[k])
        assert not torch.equal(sets[name][0]["ref"], other[name][0]["ref"])
    # the first items do not depend on how many are asked for
    small = builtin_2afc(n_per_subset=5, seed=0)
    assert torch.equal(small["mixed-family"][4]["p1"], sets["mixed-family"][4]["p1"])


def test_same_family_rule_and_ties(sets):
    ds = sets["same-family"]
    ties = identical = 0
    for i, s in enumerate(ds.specs):
        assert s.family0 == s.family1 and s.level0 in LEVEL_GRID and s.level1 in LEVEL_GRID
        j = float(ds.judges[i])
        if i % 10 == 9:
            assert s.level0 == s.level1 and j == 0.5
            ties += 1
            item = ds[i]
            if s.seed0 == s.seed1:
                assert torch.equal(item["p0"], item["p1"])  # exact distance ties
                identical += 1
        else:
            assert abs(s.level0 - s.level1) >= MIN_LEVEL_GAP - 1e-9
            assert j == (1.0 if s.level0 > s.level1 else 0.0)  # p0 stronger -> p1 closer -> judge 1
    assert ties == N // 10 and identical >= 1
    assert 0 < float((ds.judges == 1).sum()) < N  # both orders occur


def test_mixed_family_rule(sets):
    ds = sets["mixed-family"]
    for i, s in enumerate(ds.specs):
        assert s.family0 != s.family1
        j = float(ds.judges[i])
        if j == 1.0:
            assert s.level0 in STRONG_LEVELS and s.level1 in WEAK_LEVELS
        else:
            assert j == 0.0 and s.level0 in WEAK_LEVELS and s.level1 in STRONG_LEVELS
    assert 0 < float(ds.judges.sum()) < N


def test_structure_vs_appearance_rule(sets):
    from lossnet.data.synthetic import (
        APPEARANCE_FAMILIES,
        STRUCTURAL_FAMILIES,
        SVA_LEVELS,
    )

    ds = sets["structure-vs-appearance"]
    assert len(ds) == N and ds.synthetic
    for i, s in enumerate(ds.specs):
        assert s.level0 in SVA_LEVELS and s.level1 in SVA_LEVELS
        if float(ds.judges[i]) == 1.0:  # p0 is the structural damage, so p1 is closer
            assert s.family0 in STRUCTURAL_FAMILIES and s.family1 in APPEARANCE_FAMILIES
        else:
            assert float(ds.judges[i]) == 0.0
            assert s.family0 in APPEARANCE_FAMILIES and s.family1 in STRUCTURAL_FAMILIES
    assert 0 < float(ds.judges.sum()) < N
    only_structural = builtin_2afc(n_per_subset=4, families=["gaussian_noise", "jpeg"])
    assert "structure-vs-appearance" not in only_structural


def test_rendered_images_follow_the_rule(sets):
    """The stronger distortion is farther from the reference in pixels on (nearly) every item."""
    ds = sets["same-family"]
    agree = total = 0
    for i in range(N):
        if float(ds.judges[i]) == 0.5:
            continue
        item = ds[i]
        d0 = (item["p0"] - item["ref"]).pow(2).mean()
        d1 = (item["p1"] - item["ref"]).pow(2).mean()
        agree += int(bool(d1 < d0) == (float(item["judge"]) == 1.0))
        total += 1
    assert agree / total >= 0.9


def test_builtin_jnd_rule():
    ds = builtin_jnd(n=12, seed=0)["synthetic"]
    assert ds.synthetic is True and "not human" in ds.description and len(ds) == 12
    for i, s in enumerate(ds.specs):
        item = ds[i]
        assert set(item) == {"p0", "p1", "same", "subset", "index"}
        if i % 3 == 0:
            assert float(item["same"]) == 1.0 and s.level <= 0.02
            if s.level == 0:
                assert torch.equal(item["p0"], item["p1"])
            assert (item["p0"] - item["p1"]).abs().mean() <= 4 / 255
        else:
            assert float(item["same"]) == 0.0 and s.level >= 0.5
            assert not torch.equal(item["p0"], item["p1"])
    again = builtin_jnd(n=12, seed=0)["synthetic"]
    assert torch.equal(again[4]["p1"], ds[4]["p1"])


def test_fixture_writer_round_trip(tmp_path):
    root = write_bapps_fixture(tmp_path, n=10, seed=0, subsets=("traditional",), graded=False)
    disk = load_2afc(root)["traditional"]
    synth = builtin_2afc(n_per_subset=10, seed=0)["same-family"]  # subset 0 uses the same-family rule
    assert torch.equal(disk.judges, synth.judges)
    a, b = disk[3], synth[3]
    for k in ("ref", "p0", "p1"):
        assert (a[k] - b[k]).abs().max() <= 0.5 / 255 + 1e-6  # PNG stores 8-bit values
    graded = load_2afc(write_bapps_fixture(tmp_path / "g", n=10, subsets=("cnn",)))["cnn"].judges
    values = {round(v, 6) for v in graded.tolist()}
    assert values <= {0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0} and 0.5 in values and len(values) > 3


def test_bad_arguments():
    with pytest.raises(ValueError):
        builtin_2afc(n_per_subset=0)
    with pytest.raises(KeyError, match="jpeg"):
        builtin_2afc(n_per_subset=2, families=["jpg"])
    only = builtin_2afc(n_per_subset=4, families=["jpeg", "gaussian_blur"])
    assert {s.family0 for ds in only.values() for s in ds.specs} <= {"jpeg", "gaussian_blur"}
