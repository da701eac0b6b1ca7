"""Opinion-score datasets (TID2013, KADID-10k, CSV): rank and linear correlation of a
metric's distance with human scores.

Example:
    >>> mos_correlations(np.array([0.1, 0.5, 0.9]), np.array([5.0, 3.0, 1.0]))["srocc"]
    1.0
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import LossnetError
from ..loss.factory import describe_metric
from ..loss.perceptual import PerceptualLoss
from ..utils.jsonio import clean_json, write_json
from ..utils.tables import fmt
from .datasets import ScoringError, find_attr
from .engine import COMBINED, stream_pairs
from .text import grid, metric_line
from .twoafc import as_metric


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError as exc:
        raise LossnetError("MOS correlations need scipy: pip install 'lossnet[metrics]'.") from exc
    return stats


def mos_correlations(distances: np.ndarray, scores: np.ndarray, higher_is_better: bool = True) -> dict[str, float]:
    """SROCC, KROCC and PLCC between a distance and opinion scores, signed so that good is positive.

    A distance falls as quality rises, so when ``higher_is_better`` (MOS: TID2013, KADID-10k)
    the correlations are those of ``-distance`` with the score; when a higher score means
    worse quality (DMOS-like), those of ``distance`` with the score. Either way a metric that
    agrees with people gets positive values. PLCC is on the raw distances (no logistic fit).
    """
    stats = _scipy_stats()
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if d.shape != s.shape:
        raise ScoringError(f"{d.size} distances but {s.size} scores.")
    x = -d if higher_is_better else d
    if d.size < 2 or np.all(x == x[0]) or np.all(s == s[0]):
        return {"srocc": float("nan"), "krocc": float("nan"), "plcc": float("nan")}
    return {"srocc": float(stats.spearmanr(x, s)[0]), "krocc": float(stats.kendalltau(x, s)[0]),
            "plcc": float(stats.pearsonr(x, s)[0])}


@dataclass
class MOSResult:
    """The outcome of :func:`score_mos`: SROCC, KROCC, PLCC (signed: positive = agrees with people).

    ``layers``: ``{point: {srocc, krocc, plcc}}`` (plus ``"combined"``); ``distances``: the same
    per requested distance function.
    """

    srocc: float
    krocc: float
    plcc: float
    n: int
    dataset: str
    higher_is_better: bool
    layers: dict[str, dict[str, float]]
    distance: str
    distances: dict[str, dict[str, Any]]
    metric: dict[str, Any]
    seconds: float
    name: str | None = None
    sign: str = ""
    protocol: str = ""
    values: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return clean_json({
            "task": "mos", "name": self.name, "dataset": self.dataset, "srocc": self.srocc, "krocc": self.krocc,
            "plcc": self.plcc, "n": self.n, "higher_is_better": self.higher_is_better, "sign": self.sign,
            "layers": self.layers, "distance": self.distance, "distances": self.distances,
            "arch": self.metric.get("arch"), "points": self.metric.get("points"), "weights": self.metric.get("weights"),
            "lin": self.metric.get("lin"), "metric": self.metric, "seconds": self.seconds, "protocol": self.protocol,
        })

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        return write_json(path, self.to_dict(), indent)

    def table(self) -> str:
        """A readable text table."""
        return _table_mos(self)


def score_mos(
    metric: PerceptualLoss | str,
    dataset: Any,
    batch_size: int = 8,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    higher_is_better: bool | None = None,
    name: str | None = None,
    dataset_name: str | None = None,
    channels_last: bool | None = None,
) -> MOSResult:
    """Rank and linear correlation of a metric's distance d(ref, dist) with opinion scores.

    ``dataset`` items are ``{"ref", "dist", "score"}`` (:func:`lossnet.data.load_tid2013`,
    :func:`~lossnet.data.load_kadid10k`, :func:`~lossnet.data.load_mos_csv`). The sign is
    flipped so that a good metric gives POSITIVE correlations: see :func:`mos_correlations`.
    Batches whose images differ in size are split into runs of equal size.

    Example:
        >>> from lossnet.data import load_tid2013
        >>> r = score_mos(lossnet.lpips("alex"), load_tid2013("data/tid2013"))  # doctest: +SKIP
    """
    metric = as_metric(metric)
    if higher_is_better is None:
        higher_is_better = bool(find_attr(dataset, "higher_is_better", True))
    ds_name = str(dataset_name or find_attr(dataset, "name", None) or "mos")
    _scipy_stats()  # fail before the pass, not after it
    start = time.perf_counter()
    passed = stream_pairs(metric, {ds_name: dataset}, ("ref", "dist"), [(0, 1)], "score", "MOS", batch_size,
                          distances, progress, device, num_workers, channels_last, unit="image")
    seconds = time.perf_counter() - start
    dists, scores = passed.distances[0], passed.labels
    per_distance = {}
    for d in passed.engine.distances:
        layers = {key: mos_correlations(values, scores, higher_is_better) for key, values in dists[d].items()}
        per_distance[d] = {**layers[COMBINED], "layers": layers}
    head = per_distance[passed.engine.distances[0]]
    sign = ("correlations of -distance with the score (higher score = better quality)" if higher_is_better
            else "correlations of distance with the score (higher score = worse quality)")
    return MOSResult(
        srocc=head["srocc"], krocc=head["krocc"], plcc=head["plcc"], n=int(scores.size), dataset=ds_name,
        higher_is_better=higher_is_better, layers=head["layers"], distance=passed.engine.distances[0],
        distances=per_distance, metric=describe_metric(metric), seconds=seconds, name=name, sign=sign,
        protocol=passed.info["datasets"].get(ds_name, ""), values={"scores": scores, "distances": dists})


def _table_mos(r: "MOSResult") -> str:
    lines = [f"Opinion-score correlation on {r.dataset} ({r.n} images)", metric_line(r.metric, r.distance, r.name),
             f"sign: {r.sign}; positive = agrees with people"]
    rows = [[d, key, fmt(v["srocc"], 4), fmt(v["krocc"], 4), fmt(v["plcc"], 4)]
            for d, res in r.distances.items() for key, v in res["layers"].items()]
    lines += [""] + grid(["distance", "point", "SROCC", "KROCC", "PLCC"], rows)
    return "\n".join(lines)


__all__ = ["MOSResult", "mos_correlations", "score_mos"]
