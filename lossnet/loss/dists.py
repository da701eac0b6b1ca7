"""Exactly the DISTS metric (Ding et al. 2020): the L2-pooling VGG-16 trunk, the ``dists``
distance and the learned alpha/beta shipped in the ``DISTS_pytorch`` package.

With the same trunk weights, :func:`dists` equals ``DISTS_pytorch.DISTS()(x, y)`` (inputs in
[0, 1]; stage 0 is the raw image, ImageNet mean/std are applied to the VGG stages only) to
1e-5, as a value and as a training loss. ``reduction="mean"`` is the reference's
``batch_average=True``; unlike the reference, gradients flow whenever an input requires
them (no ``require_grad`` flag) and never into the target when it does not.

Input size: the reference's ``prepare_image(img, resize=True)`` resizes images whose shorter
side exceeds 256 so that it is 256. ``resize=True`` applies that rule inside the metric
(bilinear with antialiasing on the float batch; the reference resizes 8-bit PIL images, so
values differ slightly); the default ``resize=False`` compares images at their own size, as
``prepare_image``'s default does. Record which one you used with every number.

Registered as the metric preset ``"dists"`` (``lossnet.loss.create_metric("dists", ...)``,
``--metric dists``).

Example:
    >>> metric = dists(weights="random", alpha_beta="uniform", reduction="none")
    >>> x = torch.rand(2, 3, 32, 32)
    >>> metric(x, x.flip(-1)).shape
    torch.Size([2])
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import torch  # noqa: F401  (used by the doctests)

from ..distances.dists import dists_lin
from ..errors import LossnetError, WeightsError
from ..inputs import InputRange
from ..networks.dists_vgg import DISTS_CHANNELS, DISTS_POINTS, dists_vgg16
from ..networks.extraction import LossNetwork
from ..networks.weights import WeightsArg, read_state_dict
from .perceptual import PerceptualLoss, Reduction
from .presets import MetricPreset, register_metric

DISTS_REFERENCE = ("Ding et al. 2020, Image Quality Assessment: Unifying Structure and Texture Similarity "
                   "(dists-pytorch 0.1)")
ALPHA_BETA_SOURCES = ("DISTS_pytorch", "uniform")


def dists_weights_file() -> Path:
    """The ``weights.pt`` (alpha and beta) shipped in the installed ``DISTS_pytorch`` package."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None or spec.origin is None:
        raise WeightsError(
            "DISTS's learned alpha and beta come from the DISTS_pytorch package, which is not installed: "
            "pip install 'lossnet[dists]' (dists-pytorch==0.1), or pass alpha_beta=<file with 'alpha' and 'beta'>, "
            "alpha_beta=(alpha, beta) or alpha_beta='uniform'.")
    for path in (Path(spec.origin).parent / "weights.pt", Path(sys.prefix) / "weights.pt"):
        if path.exists():
            return path
    raise WeightsError(f"the DISTS_pytorch package at {Path(spec.origin).parent} has no weights.pt: reinstall "
                       "dists-pytorch==0.1.")


def dists_alpha_beta(source: Any = "DISTS_pytorch") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """DISTS's (alpha, beta), each (1, 1475, 1, 1), from ``source``: ``"DISTS_pytorch"`` (the
    package's learned weights), a file holding ``alpha`` and ``beta``, an ``(alpha, beta)`` pair,
    or ``"uniform"`` (None, None: equal weights)."""
    if isinstance(source, str) and source == "uniform":
        return None, None
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise WeightsError(f"alpha_beta as a pair needs (alpha, beta), got {len(source)} items.")
        return torch.as_tensor(source[0]), torch.as_tensor(source[1])
    if isinstance(source, str) and source == "DISTS_pytorch":
        path = dists_weights_file()
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
    else:
        raise WeightsError(f"alpha_beta must be one of {list(ALPHA_BETA_SOURCES)}, a file path or an (alpha, beta) "
                           f"pair, got {type(source).__name__}.")
    state = read_state_dict(path)
    missing = [k for k in ("alpha", "beta") if k not in state]
    if missing:
        raise WeightsError(f"{str(path)!r} has no {' and '.join(missing)} (keys: {sorted(state)[:6]}): a DISTS weights "
                           "file holds 'alpha' and 'beta', as DISTS_pytorch's weights.pt.")
    return state["alpha"], state["beta"]


def dists(
    weights: WeightsArg = "imagenet",
    alpha_beta: Any = "DISTS_pytorch",
    reduction: Reduction = "mean",
    resize: bool = False,
    input_range: InputRange = "0,1",
    expand_grayscale: bool = False,
    seed: int = 0,
    lin: Any = None,
    layer_weights: Any = None,
    spatial: bool = False,
    tokens: str | None = None,
) -> PerceptualLoss:
    """Exactly DISTS, as a :class:`PerceptualLoss` over :mod:`lossnet.networks.dists_vgg` (preset ``"dists"``).

    Args:
        weights: the VGG-16 trunk: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1``, as the
            reference), ``"imagenet:<TAG>"``, ``"random"`` (seeded) or a VGG-16 state-dict file.
        alpha_beta: ``"DISTS_pytorch"`` (the learned weights of the package), a file with
            ``alpha`` and ``beta``, an ``(alpha, beta)`` pair, or ``"uniform"``.
        reduction: ``"mean"`` (the reference's ``batch_average=True``), ``"sum"`` or ``"none"``.
        resize: apply the reference's input rule (shorter side > 256 -> 256) inside.
        input_range, expand_grayscale: as in :class:`PerceptualLoss`.
        seed: seed of ``weights="random"``.
        lin: instead of ``alpha_beta``, the ``dists`` distance's own lin weights
            (``{point: 2C values}`` or a file, e.g. calibrated with lossnet).
        layer_weights, spatial, tokens: not used by DISTS (its stages are weighted by alpha and
            beta, it has no distance map and no tokens): anything but the default is an error.
    """
    fixed = {"layer_weights": (layer_weights, None), "spatial": (spatial, False), "tokens": (tokens, None)}
    given = [k for k, (v, default) in fixed.items() if v != default]
    if given:
        raise LossnetError(f"DISTS fixes {', '.join(given)}: its stages are weighted by alpha and beta, it has no "
                           "spatial map and no tokens. Drop them, or build PerceptualLoss(..., distance='dists').")
    if lin is not None and not (isinstance(alpha_beta, str) and alpha_beta == "DISTS_pytorch"):
        raise LossnetError("give either lin (the dists distance's per-point weights) or alpha_beta, not both.")
    trunk = dists_vgg16(weights=weights, seed=seed, resize=resize)
    network = LossNetwork(trunk, layers=list(DISTS_POINTS), input_norm="none")
    source = None
    if lin is None:
        alpha, beta = dists_alpha_beta(alpha_beta)
        lin = dists_lin(alpha, beta, dict(zip(DISTS_POINTS, DISTS_CHANNELS)))
        source = alpha_beta if isinstance(alpha_beta, str) else str(alpha_beta) if isinstance(
            alpha_beta, os.PathLike) else "given alpha, beta"
    metric = PerceptualLoss(network=network, distance="dists", lin=lin, reduction=reduction,
                            input_range=input_range, expand_grayscale=expand_grayscale)
    if source is not None:
        metric.lin_source = f"DISTS alpha/beta: {source}"
    return metric


register_metric(MetricPreset(
    "dists", "dists_vgg16", DISTS_POINTS, "dists", input_norm="none", builder=dists, extra="dists",
    description="DISTS: L2-pooling VGG-16 (torchvision ImageNet weights), structure + texture terms, "
                "DISTS_pytorch's alpha/beta; inputs at their own size",
    reference=DISTS_REFERENCE), replace=True)  # replace=True: re-importing the module is harmless
