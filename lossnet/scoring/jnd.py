"""BAPPS JND: mean average precision of a metric's distance at telling "same" pairs apart.

Example:
    >>> jnd_average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 1, 0, 0]))
    1.0
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..loss.factory import describe_metric
from ..loss.perceptual import PerceptualLoss
from ..utils.jsonio import clean_json, write_json
from ..utils.tables import fmt
from .datasets import DatasetsArg, ScoringError
from .engine import COMBINED, stream_pairs
from .text import grid, metric_line
from .twoafc import SYNTHETIC_NOTE, as_metric


def jnd_average_precision(distances: np.ndarray, same: np.ndarray) -> float:
    """JND average precision in [0, 1]: pairs ranked by ascending distance, "same" is positive.

    TP = cumsum(same), FP = cumsum(1 - same) over the ranking (``same`` may be a fraction of
    people); precision = TP / (TP + FP), recall = TP / sum(same); AP = area under the
    monotone precision envelope (VOC, all points). Distances are flattened first, and pairs
    with exactly equal distances form one threshold (their order cannot matter). NaN when no
    pair is "same".
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(same, dtype=np.float64).reshape(-1)
    if d.shape != s.shape:
        raise ScoringError(f"{d.size} distances but {s.size} labels.")
    if d.size == 0 or s.sum() <= 0:
        return float("nan")
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    tp = np.cumsum(s)
    fp = np.cumsum(1.0 - s)
    last = np.r_[d[1:] != d[:-1], True]  # the end of each group of equal distances
    tp, fp = tp[last], fp[last]
    recall = tp / s.sum()
    precision = tp / np.maximum(tp + fp, 1e-300)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class JNDResult:
    """The outcome of :func:`score_jnd`: mAP on the 0-100 scale.

    ``subsets``: ``{name: {map, n}}``; ``mean`` over subsets; ``layers``: ``{point: {subset: map}}``;
    ``distances``: the same for every requested distance function.
    """

    subsets: dict[str, dict[str, Any]]
    mean: float
    layers: dict[str, dict[str, float]]
    distance: str
    distances: dict[str, dict[str, Any]]
    metric: dict[str, Any]
    synthetic: bool
    n: int
    seconds: float
    datasets: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    pairs: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return clean_json({
            "task": "jnd", "name": self.name, "subsets": self.subsets, "mean": self.mean, "layers": self.layers,
            "distance": self.distance, "distances": self.distances, "arch": self.metric.get("arch"),
            "points": self.metric.get("points"), "weights": self.metric.get("weights"), "lin": self.metric.get("lin"),
            "metric": self.metric, "synthetic": self.synthetic,
            "note": SYNTHETIC_NOTE if self.synthetic else None, "datasets": self.datasets, "n": self.n,
            "seconds": self.seconds,
        })

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        return write_json(path, self.to_dict(), indent)

    def table(self) -> str:
        """A readable text table."""
        return _table_jnd(self)


def score_jnd(
    metric: PerceptualLoss | str,
    datasets: DatasetsArg,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    name: str | None = None,
    channels_last: bool | None = None,
) -> JNDResult:
    """BAPPS JND mAP of a metric (per subset, per point, combined), in one streaming pass.

    ``d = f(p0, p1)``; pairs sorted by ascending distance, "same" judgements are the
    positives; see :func:`jnd_average_precision`. Items: ``{"p0", "p1", "same"}``.

    Example:
        >>> from lossnet.data import load_jnd
        >>> r = score_jnd(lossnet.lpips("alex", weights="random"), load_jnd("builtin"))  # doctest: +SKIP
    """
    metric = as_metric(metric)
    start = time.perf_counter()
    passed = stream_pairs(metric, datasets, ("p0", "p1"), [(0, 1)], "same", "JND", batch_size, distances,
                          progress, device, num_workers, channels_last, label_range=(0.0, 1.0), unit="pair")
    seconds = time.perf_counter() - start
    dists, same, index = passed.distances[0], passed.labels, passed.subset_index
    per_distance: dict[str, dict[str, Any]] = {}
    for d in passed.engine.distances:
        layers: dict[str, dict[str, float]] = {k: {} for k in dists[d]}
        subsets = {}
        for k, sub in enumerate(passed.subsets):
            m = index == k
            for key, values in dists[d].items():
                layers[key][sub] = 100.0 * jnd_average_precision(values[m], same[m])
            subsets[sub] = {"map": layers[COMBINED][sub], "n": int(m.sum())}
        per_distance[d] = {"subsets": subsets, "mean": float(np.mean([v["map"] for v in subsets.values()])),
                           "layers": layers}
    head = per_distance[passed.engine.distances[0]]
    return JNDResult(
        subsets=head["subsets"], mean=head["mean"], layers=head["layers"], distance=passed.engine.distances[0],
        distances=per_distance, metric=describe_metric(metric), synthetic=passed.info["synthetic"],
        n=int(same.size), seconds=seconds, datasets=passed.info["datasets"], name=name,
        pairs={"subsets": passed.subsets, "subset_index": index, "same": same, "distances": dists})


def _table_jnd(r: "JNDResult") -> str:
    lines = [f"JND mAP (0-100; {r.n} pairs)", metric_line(r.metric, r.distance, r.name)]
    if r.synthetic:
        lines.append(SYNTHETIC_NOTE)
    rows = [[name, str(v["n"]), fmt(v["map"])] for name, v in r.subsets.items()]
    rows.append(["mean", str(r.n), fmt(r.mean)])
    lines += [""] + grid(["subset", "n", "mAP"], rows)
    subs = list(r.subsets)
    for d, res in r.distances.items():
        if len(res["layers"]) > 1:
            lrows = [[k, *(fmt(v[s]) for s in subs)] for k, v in res["layers"].items()]
            lines += ["", f"Layer-wise mAP ({d})"] + grid(["point", *subs], lrows)
    if len(r.distances) > 1:
        drows = [[d, fmt(res["mean"])] for d, res in r.distances.items()]
        lines += ["", "Distance functions side by side"] + grid(["distance", "mean mAP"], drows)
    return "\n".join(lines)


__all__ = ["JNDResult", "jnd_average_precision", "score_jnd"]
