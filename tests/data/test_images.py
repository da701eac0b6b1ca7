"""lossnet.data.images: loading any image file as ToTensor does, resizing as torchvision's Resize
does (every interpolation), and the shared listing and cropping helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from lossnet.data import (
    INTERPOLATIONS,
    DataError,
    center_crop_square,
    describe_loading,
    list_images,
    load_image,
    mod_crop,
    resize_pil,
)
from lossnet.errors import UnknownNameError


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)

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


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
def test_every_interpolation_is_torchvision_resize(tmp_path, name):
    rgb = np.random.default_rng(2).integers(0, 256, (256, 300, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", rgb)
    pil = Image.open(tmp_path / "a.png").convert("RGB")
    for size in (64, (40, 90)):
        tv = transforms.Compose([transforms.Resize(size, interpolation=INTERPOLATIONS[name]), transforms.ToTensor()])
        assert torch.equal(load_image(tmp_path / "a.png", size=size, interpolation=name), tv(pil))
    assert resize_pil(pil, 64, name).size == (75, 64)


def test_interpolations_differ_and_unknown_ones_are_refused(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", rgb)
    results = {n: load_image(tmp_path / "a.png", 64, n) for n in ("bilinear", "bicubic", "nearest", "box")}
    assert all(not torch.equal(results[a], results[b]) for a in results for b in results if a < b)
    with pytest.raises(UnknownNameError, match="unknown interpolation 'area'.*Valid interpolations: bilinear"):
        load_image(tmp_path / "a.png", 64, "area")
    with pytest.raises(UnknownNameError):
        load_image(tmp_path / "a.png", None, "cubic")  # checked even when nothing is resized


def test_describe_loading():
    assert describe_loading(64, "bilinear") == "PIL RGB, torchvision Resize(64) bilinear antialias, ToTensor"
    assert describe_loading((32, 48), "lanczos") == "PIL RGB, torchvision Resize((32, 48)) lanczos antialias, ToTensor"
    assert describe_loading(64, "nearest") == "PIL RGB, torchvision Resize(64) nearest, ToTensor"
    assert describe_loading(None, "bilinear") == "PIL RGB at the file size, ToTensor"


def test_list_and_crop_helpers(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert list_images(tmp_path / "absent") == []
    x = torch.rand(3, 50, 47)
    assert torch.equal(mod_crop(x, 4), x[:, :48, :44])
    square = center_crop_square(torch.rand(3, 40, 60), 40)  # shorter side already 40: a plain central crop
    assert square.shape == (3, 40, 40)
    y = torch.rand(3, 40, 60)
    assert torch.equal(center_crop_square(y, 40), y[:, :, 10:50])
