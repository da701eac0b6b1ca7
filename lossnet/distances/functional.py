"""Perceptual distances between feature maps, and pixel baselines.

Each feature distance is a :class:`FeatureDistance` record: ``prepare`` turns one batch of
(B, C, H, W) features into what is compared (unit vectors, a Gram matrix...), ``compare``
turns two prepared batches into a (B,) distance, ``terms`` gives the per-channel terms the
distance is a (lin-weighted) sum of, and ``map`` the per-location distance. A scoring pass
prepares every image once and compares prepared views; calling the record does both.
:func:`feature_distance` combines the points of two feature dicts. Half precision features
are promoted to float32 so the tiny epsilons stay meaningful.

- ``spatial`` (LPIPS, Kumar et al. "local"): unit-normalise over channels, squared
  difference summed over channels (or weighted by non-negative per-channel ``lin``
  weights), mean over H, W.
- ``mean_pool``: spatial mean of the raw features, unit-normalise over channels, squared
  distance.
- ``style``: features as (B, HW, C), L2-normalised over the spatial axis, Gram matrices
  T^T T, mean squared difference (= ||G0 - G1||_F^2 / C^2).
- ``mse`` / ``l1``: plain mean squared / absolute feature difference (Pihlgren et al.).
- ``cosine`` (DreamSim): 1 - cosine similarity of each image's features flattened to one
  vector (for a CLS token of shape (B, D, 1, 1): of the embeddings).

Norms never have an infinite derivative: a feature vector that is exactly zero gives
finite gradients, and values stay exactly LPIPS's ``f / (||f|| + 1e-10)``.

Example:
    >>> f0, f1 = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    >>> spatial(f0, f1).shape
    torch.Size([2])
    >>> d = FEATURE_DISTANCES["spatial"]
    >>> torch.allclose(d.compare(d.prepare(f0), d.prepare(f1), None), spatial(f0, f1))
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import LossnetError, unknown_name

EPS = 1e-10
# A float16 feature vector's norm is floored at 1e-4 in the normalisations: at an all-zero
# vector the gradient of f / (||f|| + eps) is 1 / (floor + eps), and float16 gradients
# overflow past 65504. Wider dtypes need no floor (see _norm).
HALF_NORM_FLOOR = 1e-4
Features = Mapping[str, Tensor]


def _promote(*tensors: Tensor) -> tuple[Tensor, ...]:
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def _norm(f: Tensor, dim: int | tuple[int, ...], floor: float = 0.0) -> Tensor:
    """The L2 norm over ``dim`` (keepdim), with a finite derivative everywhere.

    ``sqrt(sum f^2)`` has an infinite derivative at 0, so an all-zero feature vector (a black
    band through a conv layer, dead ReLUs) would give NaN gradients; ``vector_norm``'s
    derivative there is its subgradient 0, and its value is LPIPS's exactly.
    """
    n = torch.linalg.vector_norm(f, dim=dim, keepdim=True)
    return n.clamp(min=floor) if floor else n


def _floor(dtype: torch.dtype) -> float:
    return HALF_NORM_FLOOR if dtype == torch.float16 else 0.0


def _unit(f: Tensor, dim: int | tuple[int, ...], eps: float, floor: float | None = None) -> Tensor:
    """``f / (||f|| + eps)`` over ``dim``, computed in at least float32."""
    floor = _floor(f.dtype) if floor is None else floor
    (g,) = _promote(f)
    return g / (_norm(g, dim, floor) + eps)


def normalize_channels(f: Tensor, eps: float = EPS) -> Tensor:
    """Divide each location's feature vector by its L2 norm (+ eps), as LPIPS does.

    Example:
        >>> normalize_channels(torch.tensor([[[[3.0]], [[4.0]]]])).flatten().tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    return _unit(f, 1, eps)


def gram(f: Tensor, eps: float = EPS) -> Tensor:
    """(B, C, C) Gram matrix of features L2-normalised over the spatial axis (Kumar et al.).

    Example:
        >>> gram(torch.rand(2, 5, 4, 4)).shape
        torch.Size([2, 5, 5])
    """
    t = _unit(f.flatten(2), 2, eps)  # (B, C, HW), each channel a unit vector over space
    return torch.bmm(t, t.transpose(1, 2))


def _lin_vector(lin: Tensor, like: Tensor) -> Tensor:
    return lin.reshape(-1).to(device=like.device, dtype=like.dtype)


# --- spatial / mean_pool: compare unit vectors per location ---------------------------------


def _mean_pool_prepare(f: Tensor) -> Tensor:
    floor = _floor(f.dtype)
    (f,) = _promote(f)
    return _unit(f.mean(dim=(2, 3), keepdim=True), 1, EPS, floor)


def _unit_terms(p0: Tensor, p1: Tensor) -> Tensor:
    d = p0 - p1
    return (d * d).mean(dim=(2, 3))


def _unit_compare(p0: Tensor, p1: Tensor, lin: Tensor | None) -> Tensor:
    terms = _unit_terms(p0, p1)
    return terms.sum(dim=1) if lin is None else terms @ _lin_vector(lin, terms)


def _unit_map(p0: Tensor, p1: Tensor, lin: Tensor | None) -> Tensor:
    d = p0 - p1
    d = d * d
    if lin is not None:
        d = d * _lin_vector(lin, d).view(1, -1, 1, 1)
    return d.sum(dim=1, keepdim=True)


# --- style: compare Gram matrices ----------------------------------------------------------


def _no_lin(name: str, lin: Tensor | None) -> None:
    if lin is not None:
        raise LossnetError(f"the {name} distance has no per-channel linear weights: use lin=None "
                           "(lin weights exist for spatial, mean_pool, mse and l1).")


def _style_compare(g0: Tensor, g1: Tensor, lin: Tensor | None) -> Tensor:
    _no_lin("style", lin)
    d = g0 - g1
    return (d * d).mean(dim=(1, 2))


# --- mse / l1: compare raw features --------------------------------------------------------


def _identity_prepare(f: Tensor) -> Tensor:
    return _promote(f)[0]


def _pointwise(kind: str) -> tuple[Callable, Callable, Callable]:
    def diff(p0: Tensor, p1: Tensor) -> Tensor:
        d = p0 - p1
        return d * d if kind == "mse" else d.abs()

    def terms(p0: Tensor, p1: Tensor) -> Tensor:
        d = diff(p0, p1)
        return d.mean(dim=(2, 3)) / d.shape[1]

    def compare(p0: Tensor, p1: Tensor, lin: Tensor | None) -> Tensor:
        if lin is None:
            return diff(p0, p1).mean(dim=(1, 2, 3))
        t = terms(p0, p1)
        return t @ _lin_vector(lin, t)

    def distance_map(p0: Tensor, p1: Tensor, lin: Tensor | None) -> Tensor:
        d = diff(p0, p1)
        if lin is None:
            return d.mean(dim=1, keepdim=True)
        return (d * _lin_vector(lin, d).view(1, -1, 1, 1)).sum(dim=1, keepdim=True) / d.shape[1]

    return terms, compare, distance_map


_mse_terms, _mse_compare, _mse_map = _pointwise("mse")
_l1_terms, _l1_compare, _l1_map = _pointwise("l1")


# --- cosine: compare whole-image embeddings ------------------------------------------------


COSINE_NORM_FLOOR = 1e-12  # as torch.nn.functional.normalize: exact cosine for any norm above it


def _cosine_prepare(f: Tensor) -> Tensor:
    return _unit(f.flatten(1), 1, 0.0, max(_floor(f.dtype), COSINE_NORM_FLOOR))


def _cosine_compare(e0: Tensor, e1: Tensor, lin: Tensor | None) -> Tensor:
    _no_lin("cosine", lin)
    return 1.0 - (e0 * e1).sum(dim=1)


# --- the records ---------------------------------------------------------------------------


def _check_features(name: str, f0: object, f1: object, what: str = "features") -> None:
    for label, f in (("f0", f0), ("f1", f1)):
        if not isinstance(f, torch.Tensor):
            raise LossnetError(f"{what} {label} must be a torch.Tensor of shape (B, C, H, W), got {type(f).__name__}.")
        if not f.is_floating_point():
            raise LossnetError(f"{what} {label} have dtype {f.dtype}: floating-point features are expected "
                               f"(use {label}.float()).")
        if f.dim() == 2:
            raise LossnetError(f"{what} {label} are 2-D {tuple(f.shape)}: the {name} distance takes (B, C, H, W) "
                               f"maps; pass a vector per image as (B, C, 1, 1) with {label}[:, :, None, None].")
        if f.dim() != 4:
            raise LossnetError(f"{what} {label} have shape {tuple(f.shape)}: the {name} distance takes 4-D "
                               "(B, C, H, W) maps (token outputs (B, N, D) become maps in lossnet.LossNetwork).")
    if f0.shape != f1.shape:
        axis = next(i for i, (a, b) in enumerate(zip(f0.shape, f1.shape)) if a != b)
        part = ("batch sizes", "channel counts", "heights", "widths")[axis]
        fix = ("no broadcasting: give both the same number of images" if axis == 0 else
               "they come from different layers or networks" if axis == 1 else
               "compare images of one size (resize them first)")
        raise LossnetError(f"{what} have different {part}: {tuple(f0.shape)} vs {tuple(f1.shape)}; {fix}.")
    if f0.device != f1.device:
        raise LossnetError(f"{what} are on {f0.device} and {f1.device}: move both to one device.")


def _check_lin(name: str, lin: object, channels: int, point: str | None = None) -> None:
    where = f" for point {point!r}" if point else ""
    if not isinstance(lin, torch.Tensor):
        raise LossnetError(f"lin weights{where} must be a tensor of shape ({channels},), got {type(lin).__name__}.")
    if lin.numel() != channels:
        raise LossnetError(f"lin weights{where} have {lin.numel()} values but the {name} distance expects {channels} "
                           "for these features: give one non-negative weight per channel (lin weights made for "
                           "another layer or network do not fit).")


def _check_lin_values(lins: Mapping[str, Tensor]) -> None:
    """Negative or non-finite lin weights are refused (one device sync for all points)."""
    if not lins:
        return
    first = next(iter(lins.values()))
    flat = torch.cat([w.detach().reshape(-1).to(device=first.device, dtype=torch.float32) for w in lins.values()])
    if bool(((flat >= 0) & torch.isfinite(flat)).all()):
        return
    bad = [p for p, w in lins.items() if not bool(((w >= 0) & torch.isfinite(w)).all())]
    raise LossnetError(f"lin weights for {bad} have negative or non-finite values: lin weights must be finite and "
                       ">= 0 (LPIPS clamps them after every calibration step).")


@dataclass(frozen=True)
class FeatureDistance:
    """One feature distance, split so a scoring pass can prepare each image once.

    Attributes:
        name: the distance name (a key of :data:`FEATURE_DISTANCES`).
        prepare: per image batch, (B, C, H, W) -> prepared (B, ...); float16/bfloat16 are
            promoted to float32 here. Works on any batch (e.g. G groups of B images at once).
        compare: (prepared0, prepared1, lin (C,) or None) -> (B,).
        terms: (prepared0, prepared1) -> (B, C) per-channel terms with
            ``compare(p0, p1, lin) == (terms(p0, p1) * lin).sum(1)`` and
            ``compare(p0, p1, None) == terms(p0, p1).sum(1)``; None if the distance is not
            such a sum.
        map: (prepared0, prepared1, lin) -> (B, 1, H, W) per-location distance, or None.
        accepts_lin: whether per-channel lin weights are allowed.
        lin_per_channel: lin weights per feature channel (1; DISTS-style distances weigh
            two terms per channel).

    Calling the record checks the features and returns ``compare(prepare(f0), prepare(f1), lin)``.

    Example:
        >>> d = FEATURE_DISTANCES["mse"]
        >>> f0, f1, w = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.rand(3)
        >>> p0, p1 = d.prepare(f0), d.prepare(f1)
        >>> torch.allclose(d.compare(p0, p1, w), (d.terms(p0, p1) * w).sum(1))
        True
    """

    name: str
    prepare: Callable[[Tensor], Tensor]
    compare: Callable[[Tensor, Tensor, Tensor | None], Tensor]
    terms: Callable[[Tensor, Tensor], Tensor] | None
    map: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None
    accepts_lin: bool
    lin_per_channel: int = 1

    def check(self, f0: Tensor, f1: Tensor, lin: Tensor | None = None, point: str | None = None) -> None:
        """Raise a clear error for features or lin weights this distance cannot compare."""
        _check_features(self.name, f0, f1, "features" if point is None else f"features of point {point!r}")
        if lin is not None:
            if not self.accepts_lin:
                _no_lin(self.name, lin)
            _check_lin(self.name, lin, f0.shape[1] * self.lin_per_channel, point)

    def __call__(self, f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
        self.check(f0, f1, lin)
        if lin is not None:
            _check_lin_values({"": lin})
        return self.compare(self.prepare(f0), self.prepare(f1), lin)


SPATIAL = FeatureDistance("spatial", normalize_channels, _unit_compare, _unit_terms, _unit_map, True)
MEAN_POOL = FeatureDistance("mean_pool", _mean_pool_prepare, _unit_compare, _unit_terms, None, True)
STYLE = FeatureDistance("style", gram, _style_compare, None, None, False)
MSE = FeatureDistance("mse", _identity_prepare, _mse_compare, _mse_terms, _mse_map, True)
L1 = FeatureDistance("l1", _identity_prepare, _l1_compare, _l1_terms, _l1_map, True)
COSINE = FeatureDistance("cosine", _cosine_prepare, _cosine_compare, None, None, False)

FEATURE_DISTANCES: dict[str, FeatureDistance] = {
    d.name: d for d in (SPATIAL, MEAN_POOL, STYLE, MSE, L1, COSINE)
}
ALIASES = {"local": "spatial", "lpips": "spatial", "meanpool": "mean_pool", "gram": "style", "l2_features": "mse",
           "cos": "cosine"}


def spatial_map(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """The per-location ``spatial`` distance, shape (B, 1, H, W)."""
    SPATIAL.check(f0, f1, lin)
    return _unit_map(normalize_channels(f0), normalize_channels(f1), lin)


def spatial(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """LPIPS / Kumar "local" distance of one layer, shape (B,)."""
    return SPATIAL(f0, f1, lin)


def mean_pool(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """Kumar et al. mean-pool distance: spatial mean, unit-normalise, squared distance."""
    return MEAN_POOL(f0, f1, lin)


def style(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """Kumar et al. style distance: mean squared Gram difference, shape (B,)."""
    return STYLE(f0, f1, lin)


def mse(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """Mean squared feature difference, shape (B,)."""
    return MSE(f0, f1, lin)


def l1(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """Mean absolute feature difference, shape (B,)."""
    return L1(f0, f1, lin)


def cosine(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """1 - cosine similarity of each image's flattened features (DreamSim), shape (B,).

    Example:
        >>> e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])[:, :, None, None]
        >>> [round(v, 6) for v in cosine(e, torch.tensor([[0.0, 1.0], [2.0, 2.0]])[:, :, None, None]).tolist()]
        [1.0, 0.0]
    """
    return COSINE(f0, f1, lin)


# --- pixel baselines -----------------------------------------------------------------------


def _common_float(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    x0, x1 = _promote(x0, x1)
    dtype = torch.promote_types(x0.dtype, x1.dtype)
    return x0.to(dtype), x1.to(dtype)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> Tensor:
    """The normalised 1-D Gaussian of scipy's ``gaussian_filter`` (truncate 3.5 at sigma 1.5)."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(x0: Tensor, x1: Tensor, data_range: float = 1.0, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per sample (Wang et al. 2004, Gaussian window, no sample covariance), shape (B,).

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=0)``; differentiable. Half
    precision is computed in float32; mixed dtypes in the wider one.
    """
    _check_features("ssim", x0, x1, "images")
    x0, x1 = _common_float(x0, x1)
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1
    if min(x0.shape[-2:]) < size:
        raise LossnetError(f"SSIM needs images of at least {size}x{size} pixels, got {tuple(x0.shape[-2:])}.")
    channels = x0.shape[1]
    w = gaussian_window(size, sigma, x0.dtype).to(x0.device)
    kernel_h = w.view(1, 1, 1, size).expand(channels, 1, 1, size)
    kernel_v = w.view(1, 1, size, 1).expand(channels, 1, size, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kernel_h, groups=channels), kernel_v, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu0, mu1 = blur(x0), blur(x1)
    s00 = blur(x0 * x0) - mu0 * mu0
    s11 = blur(x1 * x1) - mu1 * mu1
    s01 = blur(x0 * x1) - mu0 * mu1
    s = ((2 * mu0 * mu1 + c1) * (2 * s01 + c2)) / ((mu0 * mu0 + mu1 * mu1 + c1) * (s00 + s11 + c2))
    return s.mean(dim=(1, 2, 3))


def pixel_l2(x0: Tensor, x1: Tensor) -> Tensor:
    """Mean squared pixel difference per sample, shape (B,)."""
    _check_features("l2", x0, x1, "images")
    x0, x1 = _common_float(x0, x1)
    return (x0 - x1).pow(2).mean(dim=(1, 2, 3))


def pixel_ssim(x0: Tensor, x1: Tensor) -> Tensor:
    """1 - SSIM per sample, so that larger means farther, shape (B,)."""
    return 1.0 - ssim(x0, x1)


PIXEL_DISTANCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "l2": pixel_l2, "ssim": pixel_ssim,
}


# --- names ---------------------------------------------------------------------------------


def _valid_names() -> list[str]:
    return list(FEATURE_DISTANCES) + list(PIXEL_DISTANCES)


def canonical_distance(name: str) -> str:
    """The canonical name of a distance; unknown names list the valid ones.

    Example:
        >>> canonical_distance("lpips")
        'spatial'
    """
    if isinstance(name, FeatureDistance):
        name = name.name
    if not isinstance(name, str):
        raise unknown_name("distance", repr(name), _valid_names())
    name = ALIASES.get(name, name)
    if name not in FEATURE_DISTANCES and name not in PIXEL_DISTANCES:
        raise unknown_name("distance", name, _valid_names())
    return name


def register_distance(d: FeatureDistance, *, replace: bool = False) -> None:
    """Add a feature distance, usable by name everywhere (``PerceptualLoss(distance=d.name)``).

    A name already used (by a distance, an alias or a pixel baseline) is refused unless
    ``replace=True`` replaces a registered feature distance.

    Example:
        >>> half_mse = FeatureDistance("half_mse", MSE.prepare, lambda a, b, lin: MSE.compare(a, b, lin) / 2,
        ...                            None, None, accepts_lin=False)
        >>> register_distance(half_mse)
        >>> feature_distance({"p": torch.ones(1, 2, 2, 2)}, {"p": torch.zeros(1, 2, 2, 2)}, "half_mse").tolist()
        [0.5]
        >>> del FEATURE_DISTANCES["half_mse"]
    """
    if not isinstance(d, FeatureDistance):
        raise LossnetError(f"register_distance takes a lossnet.distances.FeatureDistance, got {type(d).__name__}.")
    if not isinstance(d.name, str) or not d.name:
        raise LossnetError("a FeatureDistance needs a non-empty string name.")
    if d.name in PIXEL_DISTANCES or d.name in ALIASES:
        raise LossnetError(f"{d.name!r} is a pixel distance or an alias and cannot be replaced: choose another name.")
    if d.name in FEATURE_DISTANCES and not replace:
        raise LossnetError(f"a distance named {d.name!r} is already registered: choose another name, or pass "
                           "replace=True to replace it.")
    if not callable(d.prepare) or not callable(d.compare):
        raise LossnetError(f"distance {d.name!r}: prepare and compare must be callables.")
    FEATURE_DISTANCES[d.name] = d


# --- combining extraction points -----------------------------------------------------------


def _layer_weight_map(points: Sequence[str], layer_weights) -> dict[str, float]:
    """``{point: weight}`` from None (1 each), a mapping (missing points 0) or a sequence.

    Example:
        >>> layer_weight_map(["a", "b"], [2, 0.5])
        {'a': 2.0, 'b': 0.5}
    """
    if layer_weights is None:
        return {p: 1.0 for p in points}
    if isinstance(layer_weights, Mapping):
        extra = set(layer_weights) - set(points)
        if extra:
            raise LossnetError(f"layer_weights name points that are not extracted: {sorted(extra)}; extracted: {list(points)}.")
        weights = {p: layer_weights.get(p, 0.0) for p in points}
    else:
        if isinstance(layer_weights, (str, bytes)) or not hasattr(layer_weights, "__iter__"):
            raise LossnetError(f"layer_weights must be a sequence with one number per point or a {{point: weight}} "
                               f"dict, got {layer_weights!r}.")
        values = list(layer_weights)
        if len(values) != len(points):
            raise LossnetError(f"{len(values)} layer_weights for {len(points)} extraction points {list(points)}: give one per point.")
        weights = dict(zip(points, values))
    out = {}
    for p, w in weights.items():
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise LossnetError(f"layer weight for {p!r} is {w!r}: layer weights must be numbers.") from None
        if not math.isfinite(w) or w < 0:
            raise LossnetError(f"layer weight for {p!r} is {w}: layer weights must be finite and >= 0 "
                               "(a negative weight would reward differences).")
        out[p] = w
    return out


layer_weight_map = _layer_weight_map


def _resolve_record(distance: str | FeatureDistance) -> FeatureDistance:
    if isinstance(distance, FeatureDistance):
        return distance
    name = canonical_distance(distance)
    if name in PIXEL_DISTANCES:
        raise LossnetError(f"{name!r} is a pixel distance: call it on images, not on features.")
    return FEATURE_DISTANCES[name]


def _check_dicts(feats0: object, feats1: object) -> list[str]:
    for label, f in (("feats0", feats0), ("feats1", feats1)):
        if not isinstance(f, Mapping):
            raise LossnetError(f"{label} must be a dict {{point: (B, C, H, W) tensor}} (as lossnet.LossNetwork "
                               f"returns), got {type(f).__name__}.")
    if not feats0 or not feats1:
        raise LossnetError("feature dicts are empty: pass {point: (B, C, H, W) tensor} with at least one point "
                           "(e.g. the output of lossnet.LossNetwork).")
    if list(feats0) != list(feats1):
        raise LossnetError(f"feature dicts have different points: {list(feats0)} vs {list(feats1)}.")
    return list(feats0)


def _raise_non_finite(record: FeatureDistance, per_point: Mapping[str, Tensor], feats0: Features,
                      feats1: Features, lin: Mapping[str, Tensor] | None) -> None:
    for p, d in per_point.items():
        bad = ~torch.isfinite(d.detach())
        if not bool(bad.any()):
            continue
        samples = bad.flatten(1).any(1).nonzero().flatten().tolist() if bad.dim() > 1 else bad.nonzero().flatten().tolist()
        msg = f"the {record.name} distance at point {p!r} is NaN or Inf for samples {samples[:10]}"
        if not (bool(torch.isfinite(feats0[p]).all()) and bool(torch.isfinite(feats1[p]).all())):
            msg += (": the features there are already non-finite. Check that the network's weights are finite "
                    "(a corrupt or NaN weights file), and, for float16 networks, that activations do not overflow "
                    "(compute in float32 or bfloat16).")
        elif lin is not None and not bool(torch.isfinite(lin[p]).all()):
            msg += ": its lin weights are non-finite; reload or recalibrate them."
        else:
            big = max(float(feats0[p].detach().abs().max()), float(feats1[p].detach().abs().max()))
            msg += (f": the features are finite but too large for {_promote(feats0[p])[0].dtype} "
                    f"(max |f| = {big:.3g}); compute in float64 or scale the features.")
        raise LossnetError(msg)
    raise LossnetError(f"the {record.name} distance came out NaN or Inf after combining points (check layer_weights).")


def feature_distance(
    feats0: Features,
    feats1: Features,
    distance: str | FeatureDistance = "spatial",
    lin: Mapping[str, Tensor] | None = None,
    layer_weights: Mapping[str, float] | Sequence[float] | None = None,
    per_layer: bool = False,
    map_size: tuple[int, int] | None = None,
) -> Tensor | dict[str, Tensor]:
    """Distance between two feature dicts: the weighted sum over points of per-point distances.

    Args:
        feats0, feats1: ``{point: (B, C, H, W)}`` with the same keys and shapes.
        distance: ``spatial``, ``mean_pool``, ``style``, ``mse``, ``l1``, ``cosine`` (or any
            registered :class:`FeatureDistance`).
        lin: optional non-negative per-channel weights ``{point: (C,)}`` (LPIPS "lin").
        layer_weights: optional non-negative weight per point (default 1 each: a plain sum,
            as LPIPS).
        per_layer: return ``{point: (B,)}`` (unweighted) instead of the combined (B,).
        map_size: return the (B, 1, H, W) distance map upsampled to ``map_size`` (LPIPS
            ``spatial=True``).

    A result that is NaN or Inf raises an error naming the point and the likely cause.

    Example:
        >>> f = {"a": torch.rand(2, 4, 8, 8)}
        >>> feature_distance(f, {"a": torch.rand(2, 4, 8, 8)}, "style").shape
        torch.Size([2])
    """
    record = _resolve_record(distance)
    points = _check_dicts(feats0, feats1)
    if per_layer and map_size is not None:
        raise LossnetError("per_layer=True and map_size both given: ask for per-point distances or for a map, not both.")
    weights = _layer_weight_map(points, layer_weights)
    if lin is not None:
        if not record.accepts_lin:
            _no_lin(record.name, lin)
        missing = [p for p in points if p not in lin]
        if missing:
            raise LossnetError(f"lin weights lack points {missing}; they cover {list(lin)}.")
    for p in points:
        record.check(feats0[p], feats1[p], None if lin is None else lin[p], point=p)
    if lin is not None:
        _check_lin_values({p: lin[p] for p in points})

    def prepared(p: str) -> tuple[Tensor, Tensor]:
        return record.prepare(feats0[p]), record.prepare(feats1[p])

    if map_size is not None:
        if record.map is None:
            maps = [name for name, d in FEATURE_DISTANCES.items() if d.map is not None]
            raise LossnetError(f"distance {record.name!r} has no spatial map; maps exist for {maps}.")
        per_point = {}
        for p in points:
            m = record.map(*prepared(p), None if lin is None else lin[p])
            per_point[p] = F.interpolate(m, size=map_size, mode="bilinear", align_corners=False)
    else:
        per_point = {p: record.compare(*prepared(p), None if lin is None else lin[p]) for p in points}
    if per_layer:
        result = per_point
        finite = torch.stack([torch.isfinite(v).all() for v in per_point.values()]).all()
    else:
        result = None
        for p in points:
            term = per_point[p] if weights[p] == 1.0 else per_point[p] * weights[p]
            result = term if result is None else result + term
        finite = torch.isfinite(result).all()
    if not bool(finite):
        _raise_non_finite(record, per_point, feats0, feats1, lin)
    return result
