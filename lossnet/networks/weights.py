"""Building backbones and loading their weights, strictly.

``weights`` is ``"imagenet"`` (torchvision's weights API, timm, or the packaged
EfficientNet-Lite0), ``"imagenet:<TAG>"`` for another torchvision weights member (e.g.
``"imagenet:IMAGENET1K_V2"``), ``"random"`` (seeded initialisation), or a path to a
state-dict file. A state dict must fit the architecture exactly: a missing or unexpected
key is an error, never silently random weights. Floating tensors of another precision
(an fp16 or bf16 file) are cast to the model's dtype; integer tensors where the model has
floating ones, and non-finite values, are errors.

Example:
    >>> model = load_model("resnet18", weights="random", seed=0)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import WeightsError
from .build import _timm, build_model
from .checkpoints import (  # noqa: F401  (re-exported: other packages import them from here)
    WeightsArg,
    checkpoint_path,
    download_checkpoint,
    efficientnet_lite0_checkpoint,
    file_sha256,
    read_checkpoint,
    read_state_dict,
    verify_hash_prefix,
)
from .registry import ArchSpec, get_spec
from .weights_info import WeightsInfo, file_info, imagenet_top1, weights_info  # noqa: F401


def load_model(arch: str | ArchSpec, weights: WeightsArg = "imagenet", seed: int = 0) -> nn.Module:
    """The complete classification model of ``arch`` with ``weights``, in eval mode.

    Random weights are drawn under ``seed`` without touching the global RNG, so
    ``weights="random"`` gives the same network every time.
    """
    return load_model_with_info(get_spec(arch), weights, seed)[0]


def load_model_with_info(spec: ArchSpec, weights: WeightsArg = "imagenet",
                         seed: int = 0) -> tuple[nn.Module, WeightsInfo]:
    """The model of ``spec`` with ``weights`` and their :class:`WeightsInfo`, reading a weights
    file once for both."""
    if weights is None:
        weights = "imagenet"
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"unknown weights {weights!r}: use 'imagenet', 'random' or a path to a state-dict file.")
    if weights == "random":
        return _random_model(spec, seed), weights_info(spec, "random")
    if isinstance(weights, str) and weights.startswith("imagenet"):
        info = weights_info(spec, weights)  # an unknown tag fails here, before any download
        # Pretrained weights replace every tensor: build without initialising (on the meta
        # device) and assign the loaded tensors.
        model = _meta_build(spec)
        _LOADERS[spec.source](model, spec, weights.partition(":")[2] or None)
    else:
        path = Path(weights)
        state, meta = read_checkpoint(path)
        info = file_info(spec, path, meta, file_sha256(path))
        model = _meta_build(spec)
        load_state_dict_strict(model, state, spec, source=f"weights file {str(path)!r}")
        check_finite(model, f"weights file {str(path)!r}")
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a buffer not in the file
        state = {k: v for k, v in model.state_dict().items() if not v.is_meta}
        model = _random_model(spec, seed)
        load_state_dict_strict(model, state, spec)
    return model.eval(), info


def _random_model(spec: ArchSpec, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec).eval()


def _meta_build(spec: ArchSpec) -> nn.Module:
    with torch.device("meta"):
        return build_model(spec)


def _build(spec: ArchSpec) -> nn.Module:  # kept for callers of the old private name
    return build_model(spec)


def check_finite(model: nn.Module, source: str) -> None:
    """Refuse weights holding NaN or Inf: every feature would be non-finite."""
    bad = []
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
                bad.append(f"{name} ({int((~torch.isfinite(tensor)).sum())} values)")
    if bad:
        raise WeightsError(
            f"{source} holds NaN or Inf values in {len(bad)} tensors (e.g. {', '.join(bad[:3])}): every output "
            "of the network would be NaN. The checkpoint is corrupt or its training diverged; use an earlier "
            "checkpoint."
        )


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
    wrong_kind = [f"{k}: {v.dtype} vs {expected[k].dtype}" for k, v in state_dict.items()
                  if k in expected and v.is_floating_point() != expected[k].is_floating_point()]
    if wrong_kind and not (missing or unexpected or mis_shaped):
        raise WeightsError(
            f"{source} has {len(wrong_kind)} tensors whose dtype does not fit {spec.name!r} (file vs model, e.g. "
            f"{', '.join(wrong_kind[:4])}): integer weights are not a float checkpoint (quantized, or not "
            "weights at all). Save the float model's weights with torch.save(model.state_dict(), path)."
        )
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
    # Another precision (fp16, bf16, fp64 files) is cast to the model's dtype, so the forward pass works.
    state_dict = {k: (v.to(expected[k].dtype) if k in expected and v.dtype != expected[k].dtype else v)
                  for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=not optional, assign=any(t.is_meta for t in expected.values()))


# ---------------------------------------------------------------------------------------------
# "imagenet" loaders, one per source (data, not if/elif)


def _load_torchvision_imagenet(model: nn.Module, spec: ArchSpec, tag: str | None) -> None:
    from .weights_info import _torchvision_member

    enum, member = _torchvision_member(spec, tag)
    state_dict = download_checkpoint(member.url, what=f"{spec.name} ImageNet weights ({enum.__name__}.{member.name})")
    load_state_dict_strict(model, state_dict, spec, source=f"{enum.__name__}.{member.name}")


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
    verify_hash_prefix(path, what="the EfficientNet-Lite0 package's checkpoint")
    state_dict = convert_efficientnet_lite0(read_state_dict(path), model.state_dict())
    load_state_dict_strict(model, state_dict, spec, source=str(path))


def _no_imagenet(model: nn.Module, spec: ArchSpec, tag: str | None) -> None:
    raise WeightsError(f"{spec.name!r} (source {spec.source!r}) has no ImageNet weights: pass weights='random' or "
                       "the path of a state-dict file.")


_LOADERS = {
    "torchvision": _load_torchvision_imagenet,
    "timm": _load_timm_imagenet,
    "efficientnet_lite0_package": _load_lite0_package,
    "factory": _no_imagenet,
    "module": _no_imagenet,
}
