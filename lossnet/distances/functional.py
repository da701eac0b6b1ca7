"""Perceptual distances between feature maps, and pixel baselines.

Every feature distance takes two (B, C, H, W) maps of one extraction point and returns a
(B,) tensor; :func:`feature_distance` combines the points of two feature dicts. Half
precision features are promoted to float32 so the tiny epsilons stay meaningful.

- ``spatial`` (LPIPS, Kumar et al. "local"): unit-normalise over channels, squared
  difference summed over channels (or weighted by non-negative per-channel ``lin``
  weights), mean over H, W.
- ``mean_pool``: spatial mean of the raw features, unit-normalise over channels, squared
  distance.
- ``style``: features as (B, HW, C), L2-normalised over the spatial axis, Gram matrices
  T^T T, mean squared difference (= ||G0 - G1||_F^2 / C^2).
- ``mse`` / ``l1``: plain mean squared / absolute feature difference (Pihlgren et al.).

Example:
    >>> f0, f1 = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    >>> spatial(f0, f1).shape
    torch.Size([2])
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import LossnetError, unknown_name

EPS = 1e-10
Features = Mapping[str, torch.Tensor]


def _promote(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def normalize_channels(f: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Divide each location's feature vector by its L2 norm (+ eps), as LPIPS does."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def spatial_map(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """The per-location ``spatial`` distance, shape (B, 1, H, W)."""
    f0, f1 = _promote(f0, f1)
    diff = (normalize_channels(f0) - normalize_channels(f1)).pow(2)
    if lin is None:
        return diff.sum(dim=1, keepdim=True)
    return (diff * lin.to(diff.dtype).view(1, -1, 1, 1)).sum(dim=1, keepdim=True)


def spatial(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """LPIPS / Kumar "local" distance of one layer, shape (B,)."""
    return spatial_map(f0, f1, lin).mean(dim=(1, 2, 3))


def mean_pool(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """Kumar et al. mean-pool distance: spatial mean, unit-normalise, squared distance."""
    return spatial(f0.mean(dim=(2, 3), keepdim=True), f1.mean(dim=(2, 3), keepdim=True), lin)


def gram(f: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(B, C, C) Gram matrix of features L2-normalised over the spatial axis (Kumar et al.)."""
    t = f.flatten(2)  # (B, C, HW)
    t = t / (t.pow(2).sum(dim=2, keepdim=True).sqrt() + eps)
    return torch.bmm(t, t.transpose(1, 2))


def style(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """Kumar et al. style distance: mean squared Gram difference, shape (B,)."""
    if lin is not None:
        raise LossnetError("the style distance has no per-channel linear weights: use lin=None.")
    f0, f1 = _promote(f0, f1)
    grams = gram(torch.cat([f0, f1]))  # one batched matmul for both inputs
    g0, g1 = grams.chunk(2)
    return (g0 - g1).pow(2).mean(dim=(1, 2))


def mse(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared feature difference, shape (B,)."""
    f0, f1 = _promote(f0, f1)
    d = (f0 - f1).pow(2)
    return (d * lin.to(d.dtype).view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2)) / d.shape[1] if lin is not None \
        else d.mean(dim=(1, 2, 3))


def l1(f0: torch.Tensor, f1: torch.Tensor, lin: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute feature difference, shape (B,)."""
    f0, f1 = _promote(f0, f1)
    d = (f0 - f1).abs()
    return (d * lin.to(d.dtype).view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2)) / d.shape[1] if lin is not None \
        else d.mean(dim=(1, 2, 3))


def _mse_map(f0, f1, lin=None):
    f0, f1 = _promote(f0, f1)
    d = (f0 - f1).pow(2)
    return d.mean(1, keepdim=True) if lin is None else (d * lin.view(1, -1, 1, 1)).sum(1, keepdim=True) / d.shape[1]


def _l1_map(f0, f1, lin=None):
    f0, f1 = _promote(f0, f1)
    d = (f0 - f1).abs()
    return d.mean(1, keepdim=True) if lin is None else (d * lin.view(1, -1, 1, 1)).sum(1, keepdim=True) / d.shape[1]


FEATURE_DISTANCES: dict[str, Callable[..., torch.Tensor]] = {
    "spatial": spatial, "mean_pool": mean_pool, "style": style, "mse": mse, "l1": l1,
}
# Distances with a per-location map (LPIPS ``spatial=True``).
DISTANCE_MAPS: dict[str, Callable[..., torch.Tensor]] = {"spatial": spatial_map, "mse": _mse_map, "l1": _l1_map}
ALIASES = {"local": "spatial", "lpips": "spatial", "meanpool": "mean_pool", "gram": "style", "l2_features": "mse"}


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """The normalised 1-D Gaussian of scipy's ``gaussian_filter`` (truncate 3.5 at sigma 1.5)."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(x0: torch.Tensor, x1: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per sample (Wang et al. 2004, Gaussian window, no sample covariance), shape (B,).

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=0)``; differentiable.
    """
    x0, x1 = _promote(x0, x1)
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1
    if min(x0.shape[-2:]) < size:
        raise LossnetError(f"SSIM needs images of at least {size}x{size} pixels, got {tuple(x0.shape[-2:])}.")
    channels = x0.shape[1]
    w = gaussian_window(size, sigma, x0.dtype).to(x0.device)
    kernel_h = w.view(1, 1, 1, size).expand(channels, 1, 1, size)
    kernel_v = w.view(1, 1, size, 1).expand(channels, 1, size, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kernel_h, groups=channels), kernel_v, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu0, mu1 = blur(x0), blur(x1)
    s00 = blur(x0 * x0) - mu0 * mu0
    s11 = blur(x1 * x1) - mu1 * mu1
    s01 = blur(x0 * x1) - mu0 * mu1
    s = ((2 * mu0 * mu1 + c1) * (2 * s01 + c2)) / ((mu0 * mu0 + mu1 * mu1 + c1) * (s00 + s11 + c2))
    return s.mean(dim=(1, 2, 3))


def pixel_l2(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel difference per sample, shape (B,)."""
    x0, x1 = _promote(x0, x1)
    return (x0 - x1).pow(2).mean(dim=(1, 2, 3))


def pixel_ssim(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """1 - SSIM per sample, so that larger means farther, shape (B,)."""
    return 1.0 - ssim(x0, x1)


PIXEL_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l2": pixel_l2, "ssim": pixel_ssim,
}


def canonical_distance(name: str) -> str:
    """The canonical name of a distance; unknown names list the valid ones."""
    if not isinstance(name, str):
        raise unknown_name("distance", repr(name), list(FEATURE_DISTANCES) + list(PIXEL_DISTANCES))
    name = ALIASES.get(name, name)
    if name not in FEATURE_DISTANCES and name not in PIXEL_DISTANCES:
        raise unknown_name("distance", name, list(FEATURE_DISTANCES) + list(PIXEL_DISTANCES))
    return name


def _layer_weight_map(points: Sequence[str], layer_weights) -> dict[str, float]:
    if layer_weights is None:
        return {p: 1.0 for p in points}
    if isinstance(layer_weights, Mapping):
        extra = set(layer_weights) - set(points)
        if extra:
            raise LossnetError(f"layer_weights name points that are not extracted: {sorted(extra)}; extracted: {list(points)}.")
        return {p: float(layer_weights.get(p, 0.0)) for p in points}
    weights = list(layer_weights)
    if len(weights) != len(points):
        raise LossnetError(f"{len(weights)} layer_weights for {len(points)} extraction points {list(points)}: give one per point.")
    return dict(zip(points, map(float, weights)))


def feature_distance(
    feats0: Features,
    feats1: Features,
    distance: str = "spatial",
    lin: Mapping[str, torch.Tensor] | None = None,
    layer_weights: Mapping[str, float] | Sequence[float] | None = None,
    per_layer: bool = False,
    map_size: tuple[int, int] | None = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Distance between two feature dicts: the weighted sum over points of per-point distances.

    Args:
        feats0, feats1: ``{point: (B, C, H, W)}`` with the same keys.
        distance: ``spatial``, ``mean_pool``, ``style``, ``mse`` or ``l1``.
        lin: optional non-negative per-channel weights ``{point: (C,)}`` (LPIPS "lin").
        layer_weights: optional weight per point (default 1 each: a plain sum, as LPIPS).
        per_layer: return ``{point: (B,)}`` (unweighted) instead of the combined (B,).
        map_size: return the (B, 1, H, W) distance map upsampled to ``map_size`` (LPIPS
            ``spatial=True``).

    Example:
        >>> f = {"a": torch.rand(2, 4, 8, 8)}
        >>> feature_distance(f, {"a": torch.rand(2, 4, 8, 8)}, "style").shape
        torch.Size([2])
    """
    name = canonical_distance(distance)
    if name in PIXEL_DISTANCES:
        raise LossnetError(f"{name!r} is a pixel distance: call it on images, not on features.")
    if list(feats0) != list(feats1):
        raise LossnetError(f"feature dicts have different points: {list(feats0)} vs {list(feats1)}.")
    points = list(feats0)
    weights = _layer_weight_map(points, layer_weights)
    if lin is not None:
        missing = [p for p in points if p not in lin]
        if missing:
            raise LossnetError(f"lin weights lack points {missing}; they cover {list(lin)}.")
    fn = FEATURE_DISTANCES[name]
    if map_size is not None:
        if name not in DISTANCE_MAPS:
            raise LossnetError(f"distance {name!r} has no spatial map; maps exist for {list(DISTANCE_MAPS)}.")
        total = None
        for p in points:
            m = DISTANCE_MAPS[name](feats0[p], feats1[p], None if lin is None else lin[p])
            m = F.interpolate(m, size=map_size, mode="bilinear", align_corners=False) * weights[p]
            total = m if total is None else total + m
        return total
    per_point = {p: fn(feats0[p], feats1[p], None if lin is None else lin[p]) for p in points}
    if per_layer:
        return per_point
    total = None
    for p in points:
        term = per_point[p] if weights[p] == 1.0 else per_point[p] * weights[p]
        total = term if total is None else total + term
    return total
