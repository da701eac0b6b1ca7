"""``PerceptualLoss``: a loss network plus a distance, as a training loss and as a metric.

Named metrics (LPIPS, the pixel baselines, registered presets) are built by
:func:`lossnet.loss.create_metric`; this module is the metric itself.

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

from ..distances.functional import (
    FEATURE_DISTANCES,
    PIXEL_DISTANCES,
    canonical_distance,
    feature_distance,
    layer_weight_map,
)
from ..distances.lin import resolve_lin
from ..errors import LossnetError, unknown_name
from ..inputs import InputRange, check_pair
from ..networks.extraction import (
    LayersArg,
    LossNetwork,
    ResizeArg,
)
from ..networks.weights import WeightsArg

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
DEFAULT_ARCH = "vgg16"


class PerceptualLoss(nn.Module):
    """Distance between two image batches under a frozen loss network (or a pixel baseline).

    Args:
        arch: architecture name (default ``"vgg16"``), or your own ``nn.Module`` (forwarded to
            :class:`lossnet.LossNetwork` with ``layers`` as its node names); None for the
            pixel distances.
        layers: extraction points or a layer-set name (see :func:`lossnet.extraction_points`).
        distance: ``"spatial"`` (LPIPS), ``"mean_pool"``, ``"style"``, ``"mse"``, ``"l1"``,
            ``"cosine"``, or the pixel baselines ``"l2"`` and ``"ssim"`` (1 - SSIM).
        weights: ``"imagenet"`` (default for names), ``"random"`` or a path to a state-dict file.
        lin: None, or non-negative per-channel weights: a path, ``{point: (C,)}``, a list of
            (C,) tensors, or ``"lpips"`` (through :func:`lossnet.loss.create_metric` presets).
        reduction: ``"mean"`` or ``"sum"`` over the batch, or ``"none"`` for per-sample values.
        input_norm: how [0,1] images are normalised for the network (default ``"auto"``: what
            its weights expect; ``"none"``: raw [0,1] as in Pihlgren et al.'s training tasks).
        layer_weights: a non-negative weight per extraction point (default: plain sum).
        input_range: ``"0,1"`` (default) or ``"-1,1"``.
        spatial: return the (B, 1, H, W) distance map instead (LPIPS ``spatial=True``).
        expand_grayscale: accept 1-channel images by repeating the channel.
        seed: seed of ``weights="random"``.
        network: a ready :class:`lossnet.LossNetwork` (then arch, layers, weights, input_norm,
            tokens and seed are not given).
        tokens: for transformers, ``"cls"`` or ``"patches"``.
        resize: how inputs reach the network's input size, as :class:`lossnet.LossNetwork`'s
            ``resize``: ``"auto"`` (default), ``"none"``, ``"bilinear"``/``"bicubic"``, ``N`` or
            ``(N, interpolation)``; recorded as :attr:`resize_policy`. With ``network=`` it may
            only restate that network's policy; pixel distances never resize (an error).

    A distance that comes out NaN or Inf raises an error naming the extraction point.

    Example:
        >>> metric = PerceptualLoss("alexnet", layers="lpips", weights="random", reduction="none")
        >>> metric(torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        arch: str | nn.Module | None = None,
        layers: LayersArg = None,
        distance: str = "spatial",
        weights: WeightsArg | None = None,
        lin: object = None,
        reduction: Reduction = "mean",
        input_norm: str | tuple | None = None,
        layer_weights: Mapping[str, float] | Sequence[float] | None = None,
        input_range: InputRange = "0,1",
        spatial: bool = False,
        expand_grayscale: bool = False,
        seed: int = 0,
        network: LossNetwork | None = None,
        tokens: str | None = None,
        resize: ResizeArg | None = None,
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
        self.preset: str | None = None  # set by create_metric
        self.lin_source: str | None = None
        if self.pixel:
            given = {"arch": arch, "network": network, "lin": lin, "layers": layers, "weights": weights,
                     "input_norm": input_norm, "layer_weights": layer_weights, "tokens": tokens, "resize": resize}
            extra = [k for k, v in given.items() if v is not None]
            if extra:
                raise LossnetError(
                    f"distance {self.distance!r} compares pixels and uses no network: drop {', '.join(extra)}, "
                        "or choose a feature distance (spatial, mean_pool, style, mse, l1, cosine); pixel distances "
                    "never resize (resize the images beforehand)."
                )
            if spatial:
                raise LossnetError(f"spatial maps exist for feature distances only, not {self.distance!r}.")
            self.net = None
            self.lin_points: list[str] = []
            return
        record = FEATURE_DISTANCES[self.distance]
        if spatial and record.map is None:
            maps = [n for n, d in FEATURE_DISTANCES.items() if d.map is not None]
            raise LossnetError(f"spatial=True needs a distance with a per-location map ({', '.join(maps)}); "
                               f"{self.distance!r} has none.")
        if network is not None:
            given = {"arch": arch, "layers": layers, "weights": weights, "input_norm": input_norm, "tokens": tokens}
            extra = [k for k, v in given.items() if v is not None] + (["seed"] if seed != 0 else [])
            if extra:
                raise LossnetError(f"network= is a ready LossNetwork, which already fixes {', '.join(extra)}: drop "
                                   "them, or build the LossNetwork with them.")
            if not isinstance(network, LossNetwork):
                raise LossnetError(f"network must be a lossnet.LossNetwork, got {type(network).__name__}; pass your "
                                   "own nn.Module as arch= (with layers= naming its nodes).")
            if resize is not None:
                _check_same_resize(network, resize)
            self.net = network
        else:
            self.net = self._build_network(arch, layers, weights, input_norm, tokens, seed, resize)
        layer_weight_map(self.net.points, layer_weights)  # refuses bad weights now, not at the first call
        lin_weights = None
        if lin is not None:
            if not record.accepts_lin:
                raise LossnetError(f"the {self.distance} distance has no per-channel linear weights: use lin=None "
                                   "(lin weights exist for spatial, mean_pool, mse and l1).")
            channels = {p: c * record.lin_per_channel for p, c in self._channels().items()}
            lin_weights = resolve_lin(str(lin) if isinstance(lin, os.PathLike) else lin, self.net.points, channels,
                                      _lpips_net, _lpips_version)
            self.lin_source = (f"lpips v{_lpips_version} ({_lpips_net})" if isinstance(lin, str) and lin == "lpips"
                               else str(lin) if isinstance(lin, (str, os.PathLike)) else "given")
        self.lin_points = list(lin_weights) if lin_weights else []
        for i, p in enumerate(self.lin_points):
            self.register_buffer(f"lin_{i}", lin_weights[p])

    @staticmethod
    def _build_network(arch, layers, weights, input_norm, tokens, seed, resize) -> LossNetwork:
        kwargs = {"input_norm": input_norm, "tokens": tokens, "resize": resize}
        if weights is not None:
            kwargs["weights"] = weights
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if isinstance(arch, LossNetwork):
            raise LossnetError("arch is a ready LossNetwork: pass it as network=... instead.")
        if isinstance(arch, PerceptualLoss):
            raise LossnetError("arch is already a PerceptualLoss: use it directly, or pass its .net as network=.")
        if arch is not None and not isinstance(arch, (str, nn.Module)):
            raise LossnetError(f"arch must be an architecture name or an nn.Module, got {type(arch).__name__}.")
        return LossNetwork(DEFAULT_ARCH if arch is None else arch, layers, seed=seed, **kwargs)

    def _channels(self) -> dict[str, int]:
        spec = getattr(self.net, "spec", None)
        size = getattr(spec, "fixed_input_size", None) or 64
        probe = torch.zeros(1, 3, size, size, device=next(iter(self.net.buffers()), torch.zeros(0)).device)
        with torch.no_grad():
            return {p: f.shape[1] for p, f in self.net.extract(probe, check=False).items()}

    @property
    def lin(self) -> dict[str, torch.Tensor] | None:
        """The per-channel linear weights ``{point: (C,)}``, or None."""
        if not self.lin_points:
            return None
        return {p: getattr(self, f"lin_{i}") for i, p in enumerate(self.lin_points)}

    @property
    def resize_policy(self) -> str:
        """What is done to input sizes, in words (the network's :attr:`lossnet.LossNetwork.resize_policy`;
        ``"none"`` for pixel distances): record it with every number.

        Example:
            >>> PerceptualLoss("vgg16", ["features.3"], weights="random", resize=32).resize_policy
            'resize to 32x32 (bilinear, antialias)'
        """
        return "none" if self.net is None else self.net.resize_policy

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
            if x0.dtype != x1.dtype:
                dtype = torch.promote_types(x0.dtype, x1.dtype)
                x0, x1 = x0.to(dtype), x1.to(dtype)
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
        preset = f"preset={self.preset!r}, " if self.preset else ""
        return f"{preset}distance={self.distance!r}, reduction={self.reduction!r}, lin={'yes' if self.lin_points else 'no'}"


def _check_same_resize(network: LossNetwork, resize: ResizeArg) -> None:
    """A ``resize`` given with a ready network must be that network's own policy."""
    wanted = resize_policy_for(network, resize)
    if wanted != network.resize_policy:
        raise LossnetError(
            f"network= is a ready LossNetwork whose resize policy is {network.resize_policy!r}, but resize={resize!r} "
            f"asks for {wanted!r}: drop resize=, or build the LossNetwork with LossNetwork(..., resize={resize!r}).")


def resize_policy_for(network: LossNetwork, resize: ResizeArg) -> str:
    """The policy (in words) ``resize`` would give ``network``, by the rules of
    ``LossNetwork(resize=...)`` (an invalid value is their error).

    Example:
        >>> net = LossNetwork("vgg16", ["features.3"], weights="random")
        >>> resize_policy_for(net, 64), net.resize_policy
        ('resize to 64x64 (bilinear, antialias)', 'none')
    """
    if resize == network.resize:
        return network.resize_policy
    return network.plan_for(resize).policy
