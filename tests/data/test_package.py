"""lossnet.data as a package: every public name importable from it, and its layer rule (it
imports only lossnet's layer 0: errors, inputs, utils)."""
from __future__ import annotations

import ast
from pathlib import Path

import lossnet.data

# The public names of the former lossnet/data/task_data.py (split into autoencoding, superres,
# roads, images and fixtures): they stay importable from lossnet.data.
TASK_DATA_NAMES = [
    "ArrayImages", "AutoencodingData", "ImageFolderCrops", "PhotoCrops", "RoadPairs", "SegmentationData",
    "SuperresData", "builtin_digits", "center_crop_square", "eval_set_images", "generate_roads", "list_images",
    "load_autoencoding_data", "load_builtin_digits", "load_mask", "load_segmentation_data", "load_stl10",
    "load_superres_data", "load_svhn", "massachusetts_layout", "mod_crop", "random_crop_flip", "road_tile",
    "write_massachusetts_fixture", "write_stl10_fixture", "write_superres_fixture", "write_svhn_fixture",
    "AE_DATASETS", "STL10_FILES", "SVHN_FILES", "BUILTIN_SR_EVAL", "EVAL_SET_NAMES", "TRAIN_FOLDER_NAMES",
    "SPLIT_ALIASES", "MASSACHUSETTS_LAYOUTS", "download_torchvision",
]
LAYER_0 = ("errors", "inputs", "utils")


def test_every_public_name_is_importable():
    missing = [n for n in lossnet.data.__all__ + TASK_DATA_NAMES if not hasattr(lossnet.data, n)]
    assert missing == []
    assert len(set(lossnet.data.__all__)) == len(lossnet.data.__all__)


def _lossnet_imports(source: str) -> list[str]:
    """The lossnet modules (dotted, from ``lossnet/data/<file>.py``) a source imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(source)):  # also imports inside functions
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "lossnet"]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = ["lossnet", "data"][: max(0, 3 - node.level)]
                base = ".".join(package + ([node.module] if node.module else []))
            if base.split(".")[0] != "lossnet":
                continue
            found += [f"{base}.{a.name}" for a in node.names] if base in ("lossnet", "") else [base]
    return found


def _above_layer_0(modules: list[str]) -> list[str]:
    return [m for m in modules if len(m.split(".")) > 1 and m.split(".")[1] not in LAYER_0 + ("data",)]


def test_the_layer_check_sees_imports_inside_functions():
    planted = "def f():\n    from ..networks import load_model\n    from .. import loss\n    import lossnet.scoring\n"
    assert _above_layer_0(_lossnet_imports(planted)) == ["lossnet.networks", "lossnet.loss", "lossnet.scoring"]
    assert _above_layer_0(_lossnet_imports("from ..errors import DataError\nfrom .images import load_image\n")) == []


def test_data_imports_only_layer_0():
    folder = Path(lossnet.data.__file__).parent
    above = {p.name: _above_layer_0(_lossnet_imports(p.read_text())) for p in sorted(folder.glob("*.py"))}
    assert {k: v for k, v in above.items() if v} == {}
