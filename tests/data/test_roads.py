"""lossnet.data.roads: Massachusetts Roads images and masks pair by file name, never by position."""
from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from lossnet.data import (
    DataError,
    load_mask,
    load_segmentation_data,
    massachusetts_layout,
    write_massachusetts_fixture,
)


def test_every_image_is_paired_with_the_mask_of_its_name(tmp_path):
    write_massachusetts_fixture(tmp_path, "toronto", n_train=3, n_val=0, n_test=2, size=32, seed=3)
    _, splits = massachusetts_layout(tmp_path)
    for images, masks in splits.values():
        assert [p.stem for p in images] == [p.stem for p in masks]
        assert {p.suffix for p in images} == {".tiff"} and {p.suffix for p in masks} == {".tif"}
    # an image that sorts first but has its own mask: pairing follows the name, not the position
    sat, map_ = tmp_path / "train" / "sat", tmp_path / "train" / "map"
    first_img, first_mask = sorted(sat.iterdir())[0], sorted(map_.iterdir())[0]
    shutil.copyfile(sorted(sat.iterdir())[1], sat / "00000000_15.tiff")
    shutil.copyfile(sorted(map_.iterdir())[1], map_ / "00000000_15.tif")
    data = load_segmentation_data(tmp_path, crop=16)
    images, masks = data.train.images, data.train.masks
    assert [p.name for p in images[:2]] == ["00000000_15.tiff", first_img.name]
    assert [p.name for p in masks[:2]] == ["00000000_15.tif", first_mask.name]
    assert torch.equal(data.train.pair(1)[1], load_mask(first_mask))


def test_a_mask_without_an_image_is_an_error(tmp_path):
    write_massachusetts_fixture(tmp_path, "toronto", n_train=3, n_val=0, n_test=1, size=32)
    map_ = tmp_path / "train" / "map"
    sat = tmp_path / "train" / "sat"
    shutil.copyfile(sorted(map_.iterdir())[0], map_ / "99999999_15.tif")  # a stray mask
    with pytest.raises(DataError) as e:
        load_segmentation_data(tmp_path, crop=16)
    msg = str(e.value)
    assert "1 of 4 names do not pair up across train/sat/, train/map/" in msg
    assert "train/map/99999999_15.tif has no image with the same name" in msg
    # one image renamed: same counts as masks, but two unmatched names
    (map_ / "99999999_15.tif").unlink()
    first = sorted(sat.iterdir())[0]
    first.rename(sat / "renamed_15.tiff")
    with pytest.raises(DataError) as e:
        load_segmentation_data(tmp_path, crop=16)
    assert "2 of 4 names" in str(e.value) and "train/sat/renamed_15.tiff has no mask with the same name" in str(e.value)
    assert f"train/map/{first.stem}.tif has no image with the same name" in str(e.value)


def test_kaggle_layout_pairs_by_name(tmp_path):
    write_massachusetts_fixture(tmp_path, "kaggle", n_train=2, n_val=1, n_test=1, size=32)
    labels = tmp_path / "tiff" / "test_labels"
    next(labels.iterdir()).unlink()
    with pytest.raises(DataError, match="tiff/test/.* has no mask with the same name"):
        load_segmentation_data(tmp_path, crop=16)


def test_two_images_with_one_name_are_refused(tmp_path):
    write_massachusetts_fixture(tmp_path, "toronto", n_train=2, n_val=0, n_test=1, size=32)
    sat = tmp_path / "train" / "sat"
    img = sorted(sat.iterdir())[0]
    Image.open(img).save(img.with_suffix(".png"))
    with pytest.raises(DataError, match=r"train/sat/ holds 1 pair\(s\) of files with the same name"):
        load_segmentation_data(tmp_path, crop=16)
