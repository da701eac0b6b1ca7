"""Learned non-negative per-channel linear weights ("lin", as in LPIPS).

Files are either LPIPS's own (keys ``lin{k}.model.1.weight`` of shape (1, C, 1, 1), one per
layer in order) or lossnet's (``{point: (C,)}``). Both load strictly: the number of layers
and the channel counts must match the loss network, and weights must be non-negative.

Example:
    >>> lin = lpips_lin_weights("alex")          # from the installed lpips package
    >>> [w.shape[0] for w in lin]
    [64, 192, 384, 256, 256]
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..errors import WeightsError, unknown_name

# The one table of LPIPS nets: LPIPS's short name -> the lossnet architecture of its trunk.
LPIPS_ARCHS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
LPIPS_NETS = tuple(LPIPS_ARCHS)
LPIPS_VERSIONS = ("0.1", "0.0")
_LPIPS_KEY = re.compile(r"^lin(\d+)\.model\.\d+\.weight$")


def lpips_weights_file(net: str, version: str = "0.1") -> Path:
    """Path of the lin weights shipped in the installed ``lpips`` package."""
    if net not in LPIPS_NETS:
        raise unknown_name("LPIPS net", net, LPIPS_NETS)
    if version not in LPIPS_VERSIONS:
        raise unknown_name("LPIPS version", version, LPIPS_VERSIONS)
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise WeightsError(
            "lin='lpips' reads the learned LPIPS weights from the 'lpips' package, which is not installed: "
            "pip install lpips==0.1.4, or pass lin=<path to a lin weights file>."
        )
    path = Path(spec.origin).parent / "weights" / f"v{version}" / f"{net}.pth"
    if not path.exists():
        raise WeightsError(f"the lpips package has no weights file {path}: reinstall lpips==0.1.4.")
    return path


def lpips_lin_weights(net: str, version: str = "0.1") -> list[torch.Tensor]:
    """The LPIPS lin weights of ``net`` as a list of (C,) tensors, shallow to deep."""
    return read_lin_file(lpips_weights_file(net, version))


def read_lin_file(path: str | os.PathLike) -> list[torch.Tensor] | dict[str, torch.Tensor]:
    """Read a lin weights file: a list (LPIPS format, in layer order) or a dict by point name."""
    from ..networks.weights import read_state_dict

    state = read_state_dict(path)
    if state and all(_LPIPS_KEY.match(k) for k in state):
        ordered = sorted(state.items(), key=lambda kv: int(_LPIPS_KEY.match(kv[0]).group(1)))
        return [v.reshape(-1).float() for _, v in ordered]
    return {k: v.reshape(-1).float() for k, v in state.items()}


def resolve_lin(lin: object, points: Sequence[str], channels: Mapping[str, int],
                lpips_net: str | None = None, version: str = "0.1") -> dict[str, torch.Tensor] | None:
    """Turn ``lin`` (None, "lpips", a path, a dict or a list) into ``{point: (C,)}`` and check it.

    ``channels`` gives each point's channel count, so a file made for another network is refused.
    """
    if lin is None:
        return None
    if isinstance(lin, str) and lin == "lpips":
        if lpips_net is None:
            raise WeightsError(
                "lin='lpips' exists only for the LPIPS trunks at their LPIPS layers with the spatial distance "
                "(presets lpips-alex, lpips-vgg, lpips-squeeze); for other networks calibrate your own "
                "(lossnet calibrate) and pass its file."
            )
        lin = lpips_lin_weights(lpips_net, version)
    elif isinstance(lin, (str, os.PathLike)):
        lin = read_lin_file(lin)
    if isinstance(lin, Mapping):
        unexpected = set(lin) - set(points)
        missing = [p for p in points if p not in lin]
        if unexpected or missing:
            raise WeightsError(f"lin weights cover points {sorted(lin)} but the loss network extracts {list(points)}.")
        weights = {p: torch.as_tensor(lin[p]).reshape(-1).float() for p in points}
    elif not isinstance(lin, (list, tuple)):
        raise WeightsError(f"lin must be None, 'lpips', a file path, {{point: (C,) tensor}} or a list of (C,) "
                           f"tensors (one per point), got {type(lin).__name__}.")
    else:
        lin = list(lin)
        if len(lin) != len(points):
            raise WeightsError(f"{len(lin)} lin weight tensors for {len(points)} extraction points {list(points)}.")
        weights = {p: torch.as_tensor(w).reshape(-1).float() for p, w in zip(points, lin)}
    for p, w in weights.items():
        if w.numel() != channels[p]:
            raise WeightsError(f"lin weights for {p!r} have {w.numel()} channels, the point has {channels[p]}.")
        if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise WeightsError(f"lin weights for {p!r} have negative or non-finite values: lin weights must be >= 0.")
    return weights


def save_lin(weights: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save lin weights as ``{point: (C,)}`` (readable by :func:`read_lin_file`)."""
    torch.save({p: w.detach().cpu().reshape(-1) for p, w in weights.items()}, path)
