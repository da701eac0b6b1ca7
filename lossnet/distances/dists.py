"""The DISTS distance (Ding et al. 2020) over the feature maps of any loss network.

Per extraction point and channel c, with means, variances and covariance over H, W:

- structure ``S1_c = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)``
- texture ``S2_c = (2 cov_xy + c2) / (var_x + var_y + c2)``, with ``c1 = c2 = 1e-6``.

DISTS with weights alpha, beta >= 0 normalised by their total sum over all points and
channels is ``1 - sum_points sum_c (alpha_c S1_c + beta_c S2_c)``
``= sum_points sum_c (alpha_c (1 - S1_c) + beta_c (1 - S2_c))``: a sum of one term per point,
so DISTS is a per-point :class:`~lossnet.distances.functional.FeatureDistance` (``"dists"``).
Its per-channel terms are ``[1 - S1_c ..., 1 - S2_c ...] / (2C)`` (2C per point: one lin
weight for structure and one for texture per channel), so that without lin weights a point's
value is the channel mean of ``1 - (S1 + S2) / 2``, and the lin weights giving exactly DISTS
are ``2C * [alpha; beta] / (sum alpha + sum beta)`` (:func:`dists_lin`).

Example:
    >>> f0, f1 = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    >>> dists(f0, f1).shape
    torch.Size([2])
    >>> float(dists(f0, f0).abs().max()) < 1e-6   # identical features: distance 0
    True
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ..errors import LossnetError, WeightsError
from .functional import FeatureDistance, _promote, feature_distance, register_distance

C1 = 1e-6
C2 = 1e-6
Features = Mapping[str, Tensor]


def structure_texture(f0: Tensor, f1: Tensor, c1: float = C1, c2: float = C2) -> tuple[Tensor, Tensor]:
    """DISTS's structure ``S1`` and texture ``S2`` similarity per channel, each (B, C).

    Example:
        >>> s1, s2 = structure_texture(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3))
        >>> s1.tolist(), s2.tolist()
        ([[1.0, 1.0]], [[1.0, 1.0]])
    """
    f0, f1 = _promote(f0, f1)
    m0 = f0.mean(dim=(2, 3), keepdim=True)
    m1 = f1.mean(dim=(2, 3), keepdim=True)
    s1 = (2 * m0 * m1 + c1) / (m0 * m0 + m1 * m1 + c1)
    v0 = (f0 - m0).pow(2).mean(dim=(2, 3), keepdim=True)
    v1 = (f1 - m1).pow(2).mean(dim=(2, 3), keepdim=True)
    cov = (f0 * f1).mean(dim=(2, 3), keepdim=True) - m0 * m1
    s2 = (2 * cov + c2) / (v0 + v1 + c2)
    return s1.flatten(1), s2.flatten(1)


def _prepare(f: Tensor) -> Tensor:
    return _promote(f)[0]


def dists_terms(p0: Tensor, p1: Tensor) -> Tensor:
    """The per-channel DISTS terms ``[1 - S1_c ..., 1 - S2_c ...] / (2C)``, shape (B, 2C)."""
    s1, s2 = structure_texture(p0, p1)
    return torch.cat([1 - s1, 1 - s2], dim=1) / (2 * s1.shape[1])


def _compare(p0: Tensor, p1: Tensor, lin: Tensor | None) -> Tensor:
    terms = dists_terms(p0, p1)
    if lin is None:
        return terms.sum(dim=1)
    return terms @ lin.reshape(-1).to(device=terms.device, dtype=terms.dtype)


# Two lin weights per channel: structure, then texture (DISTS's alpha and beta).
DISTS = FeatureDistance("dists", _prepare, _compare, dists_terms, None, True, lin_per_channel=2)
register_distance(DISTS, replace=True)  # replace=True: re-importing the module is harmless


def dists(f0: Tensor, f1: Tensor, lin: Tensor | None = None) -> Tensor:
    """DISTS at one extraction point, shape (B,); ``lin``: 2C weights (see :func:`dists_lin`)."""
    return DISTS(f0, f1, lin)


def dists_lin(alpha: Tensor | None, beta: Tensor | None, channels: Mapping[str, int]) -> dict[str, Tensor]:
    """The per-point lin weights that make the ``dists`` distance exactly DISTS with ``alpha``, ``beta``.

    ``alpha`` and ``beta`` hold ``sum(channels)`` values each, points in order (DISTS's own are
    (1, 1475, 1, 1) for its six VGG-16 stages); they are normalised by ``sum alpha + sum beta``
    as DISTS does. ``alpha = beta = None`` weighs every channel of every point the same.

    Example:
        >>> w = dists_lin(None, None, {"a": 1, "b": 3})   # 4 channels, 8 weights of 1/8 each
        >>> [v.tolist() for v in w.values()]              # times 2C: 0.25 for a, 0.75 for b
        [[0.25, 0.25], [0.75, 0.75, 0.75, 0.75, 0.75, 0.75]]
    """
    total = sum(channels.values())
    if (alpha is None) != (beta is None):
        raise WeightsError("DISTS needs both alpha and beta, or neither (equal weights).")
    if alpha is None:
        alpha = beta = torch.ones(total)
    alpha = torch.as_tensor(alpha).detach().reshape(-1).float()
    beta = torch.as_tensor(beta).detach().reshape(-1).float()
    for name, w in (("alpha", alpha), ("beta", beta)):
        if w.numel() != total:
            raise WeightsError(
                f"DISTS {name} has {w.numel()} values but the extraction points {list(channels)} have {total} "
                f"channels ({' + '.join(map(str, channels.values()))}): use weights made for this loss network.")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise WeightsError(f"DISTS {name} has negative or non-finite values: the weights must be >= 0.")
    w_sum = alpha.sum() + beta.sum()
    if float(w_sum) <= 0:
        raise WeightsError("DISTS alpha and beta are all zero: at least one weight must be positive.")
    alpha, beta = alpha / w_sum, beta / w_sum
    sizes = list(channels.values())
    return {p: torch.cat([a, b]) * (2 * c)
            for (p, c), a, b in zip(channels.items(), alpha.split(sizes), beta.split(sizes))}


def dists_distance(feats0: Features, feats1: Features, alpha: Tensor | None = None,
                   beta: Tensor | None = None) -> Tensor:
    """DISTS between two feature dicts, ``1 - sum (alpha S1 + beta S2)``, shape (B,).

    ``alpha`` and ``beta`` are normalised by their total sum; without them every channel of
    every point weighs the same (DISTS before training).

    Example:
        >>> f0 = {"a": torch.rand(2, 3, 8, 8), "b": torch.rand(2, 5, 4, 4)}
        >>> dists_distance(f0, {k: v.flip(-1) for k, v in f0.items()}).shape
        torch.Size([2])
    """
    if not isinstance(feats0, Mapping) or not feats0:
        raise LossnetError("dists_distance takes feature dicts {point: (B, C, H, W)}, e.g. from lossnet.LossNetwork.")
    lin = dists_lin(alpha, beta, {p: f.shape[1] for p, f in feats0.items()})
    device = next(iter(feats0.values())).device
    return feature_distance(feats0, feats1, DISTS, lin={p: w.to(device) for p, w in lin.items()})
