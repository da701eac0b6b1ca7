"""``PerceptualLoss``: a loss network plus a distance, as a training loss and as a metric.

Example:
    >>> loss_fn = PerceptualLoss("vgg16", layers="pihlgren", distance="mse", weights="random")
    >>> x, y = torch.rand(2, 3, 64, 64, requires_grad=True), torch.rand(2, 3, 64, 64)
    >>> loss_fn(x, y).backward()
"""
from __future__ import annotations

import os
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from ..distances.functional import PIXEL_DISTANCES, canonical_distance, feature_distance
from ..distances.lin import resolve_lin
from ..errors import LossnetError, unknown_name
from ..inputs import InputRange, check_pair
from ..networks.extraction import LayersArg, LossNetwork
from ..networks.weights import WeightsArg

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
DEFAULT_ARCH = "vgg16"


class PerceptualLoss(nn.Module):
    """Distance between two image batches under a frozen loss network (or a pixel baseline).

    Args:
        arch: architecture name (default ``"vgg16"``); must be None for the pixel distances.
        layers: extraction points or a layer-set name (see :func:`lossnet.extraction_points`).
        distance: ``"spatial"`` (LPIPS), ``"mean_pool"``, ``"style"``, ``"mse"``, ``"l1"``, or
            the pixel baselines ``"l2"`` and ``"ssim"`` (1 - SSIM).
        weights: ``"imagenet"``, ``"random"`` or a path to a state-dict file.
        lin: None, or non-negative per-channel weights: a path, ``{point: (C,)}``, or
            ``"lpips"`` (only through :func:`lossnet.lpips`).
        reduction: ``"mean"`` or ``"sum"`` over the batch, or ``"none"`` for per-sample values.
        input_norm: how [0,1] images are normalised for the network (``"auto"``: what its
            weights expect; ``"none"``: raw [0,1] as in Pihlgren et al.'s training tasks).
        layer_weights: a weight per extraction point (default: plain sum).
        input_range: ``"0,1"`` (default) or ``"-1,1"``.
        spatial: return the (B, 1, H, W) distance map instead (LPIPS ``spatial=True``).
        expand_grayscale: accept 1-channel images by repeating the channel.

    Example:
        >>> metric = PerceptualLoss("alexnet", layers="lpips", weights="random", reduction="none")
        >>> metric(torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        arch: str | None = None,
        layers: LayersArg = None,
        distance: str = "spatial",
        weights: WeightsArg = "imagenet",
        lin: object = None,
        reduction: Reduction = "mean",
        input_norm: str | tuple = "auto",
        layer_weights: Mapping[str, float] | Sequence[float] | None = None,
        input_range: InputRange = "0,1",
        spatial: bool = False,
        expand_grayscale: bool = False,
        seed: int = 0,
        network: LossNetwork | None = None,
        _lpips_net: str | None = None,
        _lpips_version: str = "0.1",
    ) -> None:
        super().__init__()
        self.distance = canonical_distance(distance)
        if reduction not in REDUCTIONS:
            raise unknown_name("reduction", str(reduction), REDUCTIONS)
        self.reduction = reduction
        self.input_range = input_range
        self.spatial = spatial
        self.expand_grayscale = expand_grayscale
        self.layer_weights = layer_weights
        self.pixel = self.distance in PIXEL_DISTANCES
        if self.pixel:
            if arch is not None or network is not None or lin is not None:
                raise LossnetError(
                    f"distance {self.distance!r} compares pixels and uses no network: drop arch/network/lin, "
                    "or choose a feature distance (spatial, mean_pool, style, mse, l1)."
                )
            if spatial:
                raise LossnetError(f"spatial maps exist for feature distances only, not {self.distance!r}.")
            self.net = None
            self.lin_points: list[str] = []
            return
        self.net = network if network is not None else LossNetwork(
            arch or DEFAULT_ARCH, layers, weights=weights, input_norm=input_norm, seed=seed)
        lin_weights = None
        if lin is not None:
            lin_weights = resolve_lin(lin, self.net.points, self._channels(), _lpips_net, _lpips_version)
        self.lin_points = list(lin_weights) if lin_weights else []
        for i, p in enumerate(self.lin_points):
            self.register_buffer(f"lin_{i}", lin_weights[p])

    def _channels(self) -> dict[str, int]:
        probe = torch.zeros(1, 3, 64, 64)
        if self.net.spec.fixed_input_size:
            probe = torch.zeros(1, 3, self.net.spec.fixed_input_size, self.net.spec.fixed_input_size)
        with torch.no_grad():
            return {p: f.shape[1] for p, f in self.net.extract(probe, check=False).items()}

    @property
    def lin(self) -> dict[str, torch.Tensor] | None:
        """The per-channel linear weights ``{point: (C,)}``, or None."""
        if not self.lin_points:
            return None
        return {p: getattr(self, f"lin_{i}") for i, p in enumerate(self.lin_points)}

    @property
    def points(self) -> list[str]:
        return [] if self.net is None else list(self.net.points)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of a checked [0, 1] batch at every extraction point."""
        return self.net.extract(x, check=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x0, x1 = check_pair(input, target, self.input_range, self.expand_grayscale)
        if self.pixel:
            return self._reduce(PIXEL_DISTANCES[self.distance](x0, x1))
        f0, f1 = self._feature_pair(x0, x1)
        map_size = tuple(x0.shape[-2:]) if self.spatial else None
        d = feature_distance(f0, f1, self.distance, lin=self.lin, layer_weights=self.layer_weights,
                             map_size=map_size)
        return self._reduce(d)

    def _feature_pair(self, x0: torch.Tensor, x1: torch.Tensor):
        needs_grad = torch.is_grad_enabled() and (x0.requires_grad or x1.requires_grad)
        if not needs_grad:  # one batched pass is fastest when nothing is differentiated
            feats = self.features(torch.cat([x0, x1]))
            n = x0.shape[0]
            return {p: f[:n] for p, f in feats.items()}, {p: f[n:] for p, f in feats.items()}
        # Separate passes: the side that needs no gradient builds no graph and no backward work.
        f0 = self.features(x0) if x0.requires_grad else self._features_no_grad(x0)
        f1 = self.features(x1) if x1.requires_grad else self._features_no_grad(x1)
        return f0, f1

    def _features_no_grad(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.features(x)

    def distance_per_layer(self, input: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample distance at each extraction point separately, ``{point: (B,)}``."""
        x0, x1 = check_pair(input, target, self.input_range, self.expand_grayscale)
        if self.pixel:
            raise LossnetError("pixel distances have no layers.")
        f0, f1 = self._feature_pair(x0, x1)
        return feature_distance(f0, f1, self.distance, lin=self.lin, per_layer=True)

    def _reduce(self, d: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return d.mean()
        if self.reduction == "sum":
            return d.sum()
        return d

    def extra_repr(self) -> str:
        return f"distance={self.distance!r}, reduction={self.reduction!r}, lin={'yes' if self.lin_points else 'no'}"


_LPIPS_ARCH = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def lpips(
    net: str = "alex",
    version: str = "0.1",
    weights: WeightsArg = "imagenet",
    lin: object = "lpips",
    reduction: Reduction = "mean",
    spatial: bool = False,
    input_range: InputRange = "0,1",
) -> PerceptualLoss:
    """Exactly the LPIPS metric (Zhang et al. 2018), with inputs in [0, 1].

    ``lin="lpips"`` takes the learned weights shipped in the ``lpips`` package; ``lin=None`` is
    LPIPS's ``lpips=False`` baseline; a path loads a lin file. ``version="0.0"`` reproduces
    the original release, which skipped the input scaling.

    Example:
        >>> metric = lpips("alex", weights="random", reduction="none")
        >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
    """
    if net not in _LPIPS_ARCH:
        raise unknown_name("LPIPS net", net, list(_LPIPS_ARCH))
    if version not in ("0.0", "0.1"):
        raise unknown_name("LPIPS version", version, ["0.0", "0.1"])
    if isinstance(lin, os.PathLike):
        lin = str(lin)
    return PerceptualLoss(
        _LPIPS_ARCH[net], layers="lpips", distance="spatial", weights=weights, lin=lin, reduction=reduction,
        input_norm="lpips" if version == "0.1" else "lpips_v0.0", input_range=input_range, spatial=spatial,
        _lpips_net=net, _lpips_version=version,
    )
