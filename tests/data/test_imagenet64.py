"""ImageNet 64x64: the official npz layout, class-folder trees, class subsets, batched crops and
flips, and the built-in labelled photo patches."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.data import imagenet64 as I
from lossnet.errors import DataError, LossnetError


@pytest.fixture
def npz_root(tmp_path):
    root = tmp_path / "in64"
    written = I.write_npz_fixture(root, n_per_file=3, n_val=5, seed=1)
    return root, written


def test_npz_fixture_decodes_to_exactly_the_images_written(npz_root, tmp_path):
    root, written = npz_root
    train = I.load_imagenet64(root, "train", cache_dir=tmp_path / "fast", progress=False)
    val = I.load_imagenet64(root, "val", cache_dir=tmp_path / "fast", progress=False)
    assert len(train) == 30 and len(val) == 5 and train.num_classes == 1000
    assert isinstance(train.images, np.memmap) and train.images.dtype == np.uint8
    rows = written["train_rows"]
    # pixel (c, y, x) of image i is byte c*4096 + y*64 + x of row i (R plane, G plane, B plane)
    for i, c, y, x in [(0, 0, 0, 0), (7, 1, 5, 63), (29, 2, 63, 1), (12, 2, 17, 40)]:
        assert train.images[i, c, y, x] == rows[i, c * 4096 + y * 64 + x]
    assert np.array_equal(train.images.reshape(30, -1), rows)
    assert np.array_equal(train.labels, written["train_labels"] - 1)  # 0-based
    assert np.array_equal(val.images.reshape(5, -1), written["val_rows"])
    assert np.array_equal(val.labels, written["val_labels"] - 1)


def test_conversion_is_kept_until_a_source_file_changes(npz_root, tmp_path):
    root, _ = npz_root
    fast = tmp_path / "fast"
    I.load_imagenet64(root, "val", cache_dir=fast, progress=False)
    first = (fast / "val_images.npy").stat().st_mtime_ns
    I.load_imagenet64(root, "val", cache_dir=fast, progress=False)
    assert (fast / "val_images.npy").stat().st_mtime_ns == first
    data = np.full((2, I.ROW_LENGTH), 7, np.uint8)
    np.savez(root / I.VAL_FILE, data=data, labels=[1, 2])
    os.utime(root / I.VAL_FILE, (1, 1))
    val = I.load_imagenet64(root, "val", cache_dir=fast, progress=False)
    assert len(val) == 2 and int(val.images.max()) == 7 and val.labels.tolist() == [0, 1]
    # the converted folder itself is a valid root
    assert len(I.load_imagenet64(fast, "val", progress=False)) == 2


def test_missing_batch_file_is_a_clear_error(npz_root, tmp_path):
    root, _ = npz_root
    (root / "train_data_batch_7.npz").unlink()
    with pytest.raises(DataError, match=r"train_data_batch_7\.npz.*Imagenet64_train_npz"):
        I.load_imagenet64(root, "train", cache_dir=tmp_path / "fast", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        I.load_imagenet64(tmp_path / "nowhere", "train")


@pytest.mark.parametrize("data, labels, message", [
    (np.zeros((3, I.ROW_LENGTH), np.uint8), [1, 2], "3 images but 2 labels"),
    (np.zeros((2, I.ROW_LENGTH), np.uint8), [0, 5], r"1\.\.1000"),
    (np.zeros((2, I.ROW_LENGTH), np.uint8), [1, 1001], r"1\.\.1000"),
    (np.zeros((2, 100), np.uint8), [1, 2], "12288"),
    (np.zeros((2, I.ROW_LENGTH), np.float32), [1, 2], "uint8"),
])
def test_malformed_npz_files_are_clear_errors(tmp_path, data, labels, message):
    path = tmp_path / "val_data.npz"
    np.savez(path, data=data, labels=labels)
    with pytest.raises(DataError, match=message):
        I.read_npz(path)


def test_image_arrays_check_counts_and_label_range():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        I.ImageArrays(np.zeros((3, 3, 4, 4), np.uint8), np.array([0, 1]), 2)
    with pytest.raises(DataError, match="0..1"):
        I.ImageArrays(np.zeros((2, 3, 4, 4), np.uint8), np.array([0, 2]), 2)


def test_class_folder_tree_is_resized_once_with_the_box_filter(tmp_path):
    tree = tmp_path / "tree"
    rng = np.random.default_rng(0)
    made = {}
    for split, per_class in (("train", 2), ("val", 1)):
        for wnid in ("n02", "n01"):
            (tree / split / wnid).mkdir(parents=True)
            for k in range(per_class):
                arr = rng.integers(0, 256, (50 + 10 * k, 80, 3), dtype=np.uint8)
                path = tree / split / wnid / f"img{k}.png"
                Image.fromarray(arr).save(path)
                made[str(path)] = arr
    train = I.load_imagenet64(tree, "train", progress=False)
    assert train.num_classes == 2 and train.class_names == ("n01", "n02")
    assert train.labels.tolist() == [0, 0, 1, 1]
    first = tree / "train" / "n01" / "img0.png"
    expected = np.asarray(Image.fromarray(made[str(first)]).resize((64, 64), Image.BOX)).transpose(2, 0, 1)
    assert np.array_equal(train.images[0], expected)
    val = I.load_imagenet64(tree, "val", progress=False)
    assert val.labels.tolist() == [0, 1] and val.images.shape == (2, 3, 64, 64)


def test_class_subsets_are_exact_and_seeded():
    a, b, c = I.class_subset(50, seed=3), I.class_subset(50, seed=3), I.class_subset(50, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    labels = np.repeat(np.arange(10), 3)
    images = np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 2, 2), np.uint8)
    arrays = I.ImageArrays(images, labels, 10)
    sub = I.restrict_classes(arrays, [7, 2, 5])
    assert sub.num_classes == 3 and len(sub) == 9
    assert sub.class_counts().tolist() == [3, 3, 3]
    got, lab = sub.take(np.arange(9))
    # every image kept is one of classes 7, 2, 5, relabelled 0, 1, 2 in that order (first pixel = its index)
    assert {(int(g[0, 0, 0]) // 3, int(l)) for g, l in zip(got, lab)} == {(7, 0), (2, 1), (5, 2)}
    with pytest.raises(LossnetError, match="2..1000"):
        I.class_subset(1)


def test_pad_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    seeds = torch.arange(1000, 1040)
    out = I.augment_batch(x, seeds, crop="pad", padding=4, flip=False)
    top, left = I.crop_offsets(seeds, 4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(40):
        t, l = int(top[i]), int(left[i])
        assert torch.equal(out[i], padded[i, :, t:t + 16, l:l + 16])
    many_top, many_left = I.crop_offsets(torch.arange(5000), 4)
    assert set(many_top.tolist()) == set(range(9)) and set(many_left.tolist()) == set(range(9))


def test_flips_are_left_right_for_about_half_of_the_images():
    x = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8)
    out = I.augment_batch(x, torch.arange(400), crop="none", flip=True)
    flipped = [bool(torch.equal(o, a.flip(-1))) for o, a in zip(out, x)]
    kept = [bool(torch.equal(o, a)) for o, a in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 150 < sum(flipped) < 250
    again = I.augment_batch(x, torch.arange(400), crop="none", flip=True)
    assert torch.equal(out, again)  # a function of the seeds only


def test_center_and_resized_crops():
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    assert torch.equal(I.augment_batch(x, torch.arange(3), crop="center", flip=False), x)
    half = I.augment_batch(x, torch.arange(3), crop="center", center_fraction=0.5, flip=False, size=32)
    assert torch.equal(half, x[:, :, 16:48, 16:48])
    out = I.augment_batch(x, torch.arange(3), crop="resized", flip=False)
    assert out.shape == x.shape and out.dtype == torch.uint8
    full = I.augment_batch(x, torch.arange(3), crop="resized", scale=(1.0, 1.0), flip=False)
    assert full.float().sub(x.float()).abs().mean() < 60  # a near-whole-image crop, not noise
    with pytest.raises(LossnetError, match="unknown crop"):
        I.augment_batch(x, torch.arange(3), crop="random")


def test_items_fetch_a_batch_in_the_order_of_the_keys():
    images = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 4, 4), np.uint8)
    items = I.ClassificationItems(I.ImageArrays(images, np.array([0, 1, 0, 1, 0, 1]), 2))
    batch = items.__getitems__([(5, 11), (0, 12), (3, 13)])
    assert batch["images"][:, 0, 0, 0].tolist() == [5, 0, 3]
    assert batch["labels"].tolist() == [1, 0, 1] and batch["seeds"].tolist() == [11, 12, 13]


def test_builtin_patches_are_labelled_deterministic_and_split_by_region():
    from lossnet.data.patches64 import _make, _windows, builtin_patches

    sets = builtin_patches(n_train=3, n_val=2, seed=5)
    train, val = sets["train"], sets["val"]
    assert train.images.shape[1:] == (3, 64, 64) and train.num_classes == len(train.class_names) >= 8
    assert train.class_counts().tolist() == [3] * train.num_classes
    assert val.class_counts().tolist() == [2] * val.num_classes
    fresh = _make.__wrapped__(3, 2, 5, 64, True, 32, 192, 0.75)  # computed again, not the cached arrays
    assert np.array_equal(fresh["train"].images, train.images) and np.array_equal(fresh["val"].images, val.images)
    other = _make.__wrapped__(3, 2, 6, 64, True, 32, 192, 0.75)
    assert not np.array_equal(other["train"].images, train.images)
    rng = np.random.default_rng(0)
    for top, left, side in _windows(rng, 300, 225, 400, 50, 32, 192):
        assert 225 <= left and left + side <= 400 and top + side <= 300 and 32 <= side <= 175


def test_gather_crop_of_accelerators_equals_the_slice_crop_of_the_cpu():
    padded = torch.randint(0, 256, (12, 3, 28, 28), dtype=torch.uint8)
    top, left = I.crop_offsets(torch.arange(50, 62), 4)
    assert torch.equal(I._crop_by_gather(padded, top, left, 20), I._crop_by_slices(padded, top, left, 20))
