"""Kumar et al. (2022) analyses of a loss network as a perceptual metric, from one 2AFC pass.

- Layer-wise PS: the 2AFC score of every extraction point alone (from :func:`score_2afc`).
- Distance functions side by side: ``spatial`` ("local"), ``mean_pool`` and ``style``.
- Distortion sensitivity: on unanimous triplets (judge 0 or 1) the mean distance to the
  farther patch minus the mean distance to the nearer one, ``E d(x, far) - E d(x, near)``
  (judge 1: p1 is nearer, p0 farther; judge 0: the reverse).
- Mean normalised activation entropy per extraction point: each image's feature map
  (H x W x C values) is turned into a distribution by a softmax over all its values; its
  entropy divided by ``log(H*W*C)`` lies in [0, 1]; averaged over every image of the pass
  (references and both distortions).
- Rank correlation: Spearman's rho between the distance margin ``d1 - d0`` and the human
  judgement. ``judge`` is the fraction choosing p1 as closer, so a metric that agrees with
  people gives a NEGATIVE rho for ``d1 - d0``; ``rank_agreement`` reports ``-rho`` (positive =
  agrees). Kumar et al. plot the magnitude.

Example:
    >>> import lossnet
    >>> from lossnet.data import builtin_2afc
    >>> metric = lossnet.PerceptualLoss("alexnet", layers="lpips", weights="random")
    >>> report = analyze_2afc(metric, builtin_2afc(n_per_subset=20), progress=False)
    >>> sorted(report)[:3]
    ['distance_functions', 'distortion_sensitivity', 'entropy']
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import LossnetError
from ..loss.factory import describe_metric
from ..loss.perceptual import PerceptualLoss
from ..utils.jsonio import clean_json
from .datasets import DatasetsArg
from .engine import COMBINED
from .twoafc import TripletDistances, as_metric, score_2afc

KUMAR_DISTANCES = ("spatial", "mean_pool", "style")


def normalized_entropy(features: torch.Tensor) -> torch.Tensor:
    """Per-image entropy of ``softmax`` over all C*H*W values, divided by ``log(C*H*W)``, shape (B,).

    1.0 is a uniform distribution; NaN when a map holds a single value.

    Example:
        >>> normalized_entropy(torch.zeros(2, 4, 3, 3)).tolist()
        [1.0, 1.0]
    """
    if features.dim() == 4 and features.is_contiguous(memory_format=torch.channels_last):
        features = features.permute(0, 2, 3, 1)  # a view: the entropy does not depend on the order of values
    x = features.flatten(1).float()
    n = x.shape[1]
    if n < 2:
        return torch.full((x.shape[0],), float("nan"))
    logp = torch.log_softmax(x, dim=1)
    h = -(logp.exp() * logp).sum(dim=1)
    return h / math.log(n)


class EntropyMeter:
    """Accumulates the mean normalised activation entropy per extraction point, batch by batch.

    Usable as the ``feature_hook`` of :func:`lossnet.scoring.score_2afc`.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, feats: Mapping[str, torch.Tensor], n_images: int) -> None:
        for point, f in feats.items():
            h = normalized_entropy(f)
            self.sums[point] = self.sums.get(point, 0.0) + float(h.double().sum())
            self.counts[point] = self.counts.get(point, 0) + int(h.numel())

    def result(self) -> dict[str, float]:
        """``{point: mean normalised entropy}`` and ``"mean"`` over points."""
        out = {p: self.sums[p] / self.counts[p] for p in self.sums}
        if out:
            out["mean"] = float(np.mean(list(out.values())))
        return out


def distortion_sensitivity(d0: np.ndarray, d1: np.ndarray, judge: np.ndarray) -> dict[str, float]:
    """Kumar et al.'s margin ``E d(x, far) - E d(x, near)`` over unanimous triplets (judge 0 or 1).

    Example:
        >>> distortion_sensitivity(np.array([3., 1.]), np.array([1., 2.]), np.array([1., 0.]))
        {'far': 2.5, 'near': 1.0, 'margin': 1.5, 'n': 2}
    """
    d0, d1, judge = (np.asarray(a, dtype=np.float64) for a in (d0, d1, judge))
    p1_near = judge == 1.0
    p0_near = judge == 0.0
    far = np.concatenate([d0[p1_near], d1[p0_near]])
    near = np.concatenate([d1[p1_near], d0[p0_near]])
    n = int(far.size)
    if n == 0:
        return {"far": float("nan"), "near": float("nan"), "margin": float("nan"), "n": 0}
    f, ne = float(far.mean()), float(near.mean())
    return {"far": f, "near": ne, "margin": f - ne, "n": n}


def rank_correlation(d0: np.ndarray, d1: np.ndarray, judge: np.ndarray) -> float:
    """Spearman's rho between ``d1 - d0`` and the judgement (negative = agrees with people).

    Example:
        >>> rank_correlation(np.array([1., 2., 3.]), np.array([3., 2., 1.]), np.array([0., 0.5, 1.]))
        -1.0
    """
    try:
        from scipy import stats
    except ImportError as exc:
        raise LossnetError("rank correlations need scipy: pip install 'lossnet[metrics]'.") from exc
    margin = np.asarray(d1, dtype=np.float64) - np.asarray(d0, dtype=np.float64)
    judge = np.asarray(judge, dtype=np.float64)
    if margin.size < 2 or np.all(margin == margin[0]) or np.all(judge == judge[0]):
        return float("nan")
    return float(stats.spearmanr(margin, judge)[0])


def _per_subset(triplets: TripletDistances, distance: str, key: str, fn) -> dict[str, Any]:
    d0, d1, j = triplets.d0[distance][key], triplets.d1[distance][key], triplets.judges
    out = {"all": fn(d0, d1, j)}
    for name in triplets.subsets:
        m = triplets.mask(name)
        out[name] = fn(d0[m], d1[m], j[m])
    return out


def analyze_triplets(triplets: TripletDistances) -> dict[str, Any]:
    """Distortion sensitivity and rank correlation of every distance and key of one pass.

    Returns ``{"distortion_sensitivity": {distance: {key: {"all": {...}, subset: {...}}}},
    "rank_correlation": {distance: {key: {"all": rho, subset: rho}}}, "rank_agreement": -rho}``.
    """
    sens: dict[str, dict[str, Any]] = {}
    rank: dict[str, dict[str, Any]] = {}
    agree: dict[str, dict[str, Any]] = {}
    for d, per_key in triplets.d0.items():
        sens[d] = {k: _per_subset(triplets, d, k, distortion_sensitivity) for k in per_key}
        rank[d] = {k: _per_subset(triplets, d, k, rank_correlation) for k in per_key}
        agree[d] = {k: {s: -v for s, v in rho.items()} for k, rho in rank[d].items()}
    return {"distortion_sensitivity": sens, "rank_correlation": rank, "rank_agreement": agree}


def analyze_2afc(
    metric: PerceptualLoss | str,
    datasets: DatasetsArg,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    entropy: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> dict[str, Any]:
    """All Kumar et al. analyses of one metric on 2AFC data, from ONE pass over the data.

    Args:
        distances: distance functions compared side by side (default: the metric's own
            distance followed by the other Kumar functions ``spatial``, ``mean_pool``,
            ``style``; pixel metrics: their own distance).
        entropy: also measure the mean normalised activation entropy per point.

    Returns:
        A JSON-ready dict with ``score`` (the :class:`TwoAFCResult` dict), ``layerwise_ps``
        (``{distance: {point: {subset: PS}}}``), ``distance_functions`` (``{distance: {"mean",
        "subsets"}}``), ``distortion_sensitivity``, ``entropy`` (``{point: value, "mean"}`` or
        None), ``rank_correlation`` and ``rank_agreement`` (see the module docstring), and
        ``metric``.

    Example:
        >>> report = analyze_2afc(lossnet.lpips("alex", weights="random"), load_2afc("builtin"))  # doctest: +SKIP
        >>> report["distortion_sensitivity"]["spatial"]["combined"]["all"]["margin"]  # doctest: +SKIP
    """
    metric = as_metric(metric)
    if distances is None:
        if metric.pixel:
            distances = [metric.distance]
        else:
            # lin weights (if any) apply to the metric's own distance only; the others are unweighted
            distances = [metric.distance] + [d for d in KUMAR_DISTANCES if d != metric.distance]
    meter = EntropyMeter() if entropy and not metric.pixel else None
    result = score_2afc(metric, datasets, batch_size=batch_size, distances=distances, bootstrap=bootstrap,
                        seed=seed, progress=progress, device=device, num_workers=num_workers,
                        feature_hook=meter)
    triplets = result.triplets
    extra = analyze_triplets(triplets)
    report = {
        "score": result.to_dict(),
        "layerwise_ps": {d: {k: {**v, "mean": res["layer_means"][k]} for k, v in res["layers"].items()}
                         for d, res in result.distances.items()},
        "distance_functions": {d: {"mean": res["mean"], "subsets": {s: v["score"] for s, v in res["subsets"].items()}}
                               for d, res in result.distances.items()},
        "distortion_sensitivity": extra["distortion_sensitivity"],
        "entropy": meter.result() if meter is not None else None,
        "rank_correlation": extra["rank_correlation"],
        "rank_agreement": extra["rank_agreement"],
        "metric": describe_metric(metric),
        "synthetic": result.synthetic,
    }
    return clean_json(report)


def format_analysis(report: Mapping[str, Any]) -> str:
    """A readable text summary of :func:`analyze_2afc` (combined distances, pooled over subsets)."""
    lines = ["Kumar et al. analyses" + (" (SYNTHETIC data)" if report.get("synthetic") else "")]
    lines.append(f"{'distance':<10} {'PS':>7} {'far':>9} {'near':>9} {'margin':>9} {'rank agr.':>9}")
    for d, res in report["distance_functions"].items():
        sens = report["distortion_sensitivity"][d][COMBINED]["all"]
        agree = report["rank_agreement"][d][COMBINED]["all"]

        def f(v: Any, p: int = 4) -> str:
            return "-" if v is None else f"{v:.{p}f}"

        lines.append(f"{d:<10} {f(res['mean'], 2):>7} {f(sens['far']):>9} {f(sens['near']):>9} "
                     f"{f(sens['margin']):>9} {f(agree, 3):>9}")
    if report.get("entropy"):
        lines.append("mean normalised activation entropy: " +
                     ", ".join(f"{p} {v:.3f}" for p, v in report["entropy"].items() if v is not None))
    return "\n".join(lines)


__all__ = [
    "EntropyMeter", "KUMAR_DISTANCES", "analyze_2afc", "analyze_triplets", "distortion_sensitivity",
    "format_analysis", "normalized_entropy", "rank_correlation",
]
