"""BAPPS 2AFC: the Perceptual Score of a metric, per subset and per layer, in one streaming pass.

Each batch of triplets goes through the loss network once, as one ``3B`` batch
``[ref, p0, p1]``; from the same features ``d0 = d(ref, p0)`` and ``d1 = d(ref, p1)`` are
computed for every extraction point alone (layer-wise PS) and combined, for every requested
distance function. The 2AFC score of one triplet with human judgement ``judge`` (fraction of
people who chose ``p1`` as closer) is ``(d0 < d1)(1 - judge) + (d1 < d0) judge + 0.5 (d0 == d1)``;
the Perceptual Score (PS) is 100 x its mean, per subset; ``mean`` is the mean over subsets.
Confidence intervals are seeded percentile bootstraps over the triplets of each subset.

Example:
    >>> import lossnet
    >>> from lossnet.data import builtin_2afc
    >>> metric = lossnet.PerceptualLoss("alexnet", layers="lpips", weights="random")
    >>> result = score_2afc(metric, builtin_2afc(n_per_subset=10), bootstrap=0, progress=False)
    >>> 0 <= result.mean <= 100
    True
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..loss.factory import create_metric, describe_metric
from ..loss.perceptual import PerceptualLoss
from ..utils.jsonio import clean_json, write_json
from ..utils.tables import fmt
from .datasets import DatasetsArg, check_positive_int
from .engine import COMBINED, FeatureHook, stream_pairs
from .text import grid, metric_line

SYNTHETIC_NOTE = "SYNTHETIC data: judgements are rule-based, not human; not comparable to BAPPS numbers."


def twoafc_scores(d0: np.ndarray, d1: np.ndarray, judge: np.ndarray) -> np.ndarray:
    """Per-triplet 2AFC agreement in [0, 1]: ``(d0<d1)(1-judge) + (d1<d0) judge + 0.5 (d0==d1)``.

    Example:
        >>> twoafc_scores(np.array([1., 2., 3.]), np.array([2., 1., 3.]), np.array([0., 0.8, 1.])).tolist()
        [1.0, 0.8, 0.5]
    """
    d0, d1, judge = (np.asarray(a, dtype=np.float64) for a in (d0, d1, judge))
    return (d0 < d1) * (1.0 - judge) + (d1 < d0) * judge + 0.5 * (d0 == d1)


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int | Sequence[int] = 0,
                    max_elements: int = 1_000_000) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``values``; seeded, chunked to bound memory."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = np.empty(n_boot, dtype=np.float64)
    step = max(1, max_elements // max(n, 1))
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        out[start:start + m] = values[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def _subset_seed(seed: int, name: str) -> list[int]:
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


@dataclass
class TripletDistances:
    """Per-triplet distances of one 2AFC pass (floats only).

    ``d0[distance][key]`` and ``d1[distance][key]`` are (N,) arrays, ``key`` an extraction
    point or ``"combined"``; ``subset_index[i]`` indexes ``subsets``; ``judges`` (N,).
    """

    subsets: list[str]
    subset_index: np.ndarray
    judges: np.ndarray
    d0: dict[str, dict[str, np.ndarray]]
    d1: dict[str, dict[str, np.ndarray]]

    def mask(self, subset: str) -> np.ndarray:
        return self.subset_index == self.subsets.index(subset)


@dataclass
class TwoAFCResult:
    """The outcome of :func:`score_2afc` (scores on the 0-100 scale).

    ``subsets``: ``{name: {score, n, ci_low, ci_high}}``; ``mean``: mean PS over subsets (with
    ``mean_ci_low``/``mean_ci_high``); ``layers``: ``{point: {subset: score}}`` (each point
    alone, plus ``"combined"``); ``distances``: the same for every requested distance
    function. ``triplets`` holds the per-triplet distances (not serialised).
    """

    subsets: dict[str, dict[str, Any]]
    mean: float
    mean_ci_low: float | None
    mean_ci_high: float | None
    layers: dict[str, dict[str, float]]
    layer_means: dict[str, float]
    distance: str
    distances: dict[str, dict[str, Any]]
    metric: dict[str, Any]
    synthetic: bool
    n: int
    bootstrap: int
    seed: int
    batch_size: int
    seconds: float
    datasets: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    triplets: TripletDistances | None = field(default=None, repr=False, compare=False)

    @property
    def arch(self) -> str | None:
        return self.metric.get("arch")

    @property
    def points(self) -> list[str]:
        return list(self.metric.get("points", []))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes null)."""
        return clean_json({
            "task": "2afc", "name": self.name, "subsets": self.subsets, "mean": self.mean,
            "mean_ci_low": self.mean_ci_low, "mean_ci_high": self.mean_ci_high, "layers": self.layers,
            "layer_means": self.layer_means, "distance": self.distance, "distances": self.distances,
            "arch": self.arch, "points": self.points, "weights": self.metric.get("weights"),
            "lin": self.metric.get("lin"), "metric": self.metric, "synthetic": self.synthetic,
            "note": SYNTHETIC_NOTE if self.synthetic else None, "datasets": self.datasets, "n": self.n,
            "bootstrap": self.bootstrap, "seed": self.seed, "batch_size": self.batch_size, "seconds": self.seconds,
            "triplets_per_second": self.n / self.seconds if self.seconds > 0 else None,
        })

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """The JSON text; also written (atomically) to ``path`` when given."""
        return write_json(path, self.to_dict(), indent)

    def table(self) -> str:
        """A readable text table."""
        return _table_2afc(self)


def as_metric(metric: PerceptualLoss | str) -> PerceptualLoss:
    """A metric object from a metric, a preset name or an architecture name (through the one factory)."""
    return metric if isinstance(metric, PerceptualLoss) else create_metric(metric)


def run_2afc(
    metric: PerceptualLoss | str,
    datasets: DatasetsArg,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    feature_hook: FeatureHook | None = None,
    channels_last: bool | None = None,
):
    """The streaming pass behind :func:`score_2afc`: ``(TripletDistances, engine, info)``."""
    passed = stream_pairs(as_metric(metric), datasets, ("ref", "p0", "p1"), [(0, 1), (0, 2)], "judge", "2AFC",
                          batch_size, distances, progress, device, num_workers, channels_last, feature_hook,
                          label_range=(0.0, 1.0), unit="triplet")
    triplets = TripletDistances(subsets=passed.subsets, subset_index=passed.subset_index, judges=passed.labels,
                                d0=passed.distances[0], d1=passed.distances[1])
    return triplets, passed.engine, passed.info


def summarize_2afc(triplets: TripletDistances, distance: str, bootstrap: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """PS per subset (with bootstrap CIs for ``combined``), the mean, and layer-wise PS of one distance."""
    keys = list(triplets.d0[distance])
    subsets: dict[str, dict[str, Any]] = {}
    layers: dict[str, dict[str, float]] = {k: {} for k in keys}
    boot = []
    for name in triplets.subsets:
        m = triplets.mask(name)
        judge = triplets.judges[m]
        for key in keys:
            s = twoafc_scores(triplets.d0[distance][key][m], triplets.d1[distance][key][m], judge)
            layers[key][name] = 100.0 * float(s.mean())
            if key == COMBINED:
                entry: dict[str, Any] = {"score": layers[key][name], "n": int(m.sum()), "ci_low": None,
                                         "ci_high": None}
                if bootstrap > 0:
                    means = 100.0 * bootstrap_means(s, bootstrap, _subset_seed(seed, name))
                    entry["ci_low"], entry["ci_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
                    boot.append(means)
                subsets[name] = entry
    mean = float(np.mean([v["score"] for v in subsets.values()]))
    mean_ci = (None, None)
    if boot:
        mean_ci = tuple(float(v) for v in np.percentile(np.mean(boot, axis=0), [2.5, 97.5]))
    layer_means = {k: float(np.mean(list(v.values()))) for k, v in layers.items()}
    return {"subsets": subsets, "mean": mean, "mean_ci_low": mean_ci[0], "mean_ci_high": mean_ci[1],
            "layers": layers, "layer_means": layer_means}


def score_2afc(
    metric: PerceptualLoss | str,
    datasets: DatasetsArg,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    name: str | None = None,
    channels_last: bool | None = None,
    feature_hook: FeatureHook | None = None,
) -> TwoAFCResult:
    """BAPPS 2AFC Perceptual Score of a metric, per subset and layer, in one streaming pass.

    Args:
        metric: a :class:`lossnet.PerceptualLoss` (or a preset / architecture name for
            :func:`lossnet.create_metric`).
        datasets: ``{subset: dataset}`` (e.g. :func:`lossnet.data.load_2afc`), one dataset, or a
            list of items ``{"ref", "p0", "p1": (3, H, W) in [0, 1], "judge": fraction choosing p1}``.
        batch_size: triplets per forward pass (the network sees ``3 * batch_size`` images).
        distances: distance functions to score side by side from the same features (e.g.
            ``["spatial", "mean_pool", "style"]``); the first is the headline. Default: the
            metric's own distance. Lin weights apply to the metric's own distance only.
        bootstrap: resamples for the 95% percentile CI of each subset (0: none).
        seed: seed of the bootstrap.
        num_workers: data-loading worker processes (image decoding overlapped with compute).
        channels_last: run the network in channels-last memory format (default: on CPU for
            convolutional networks, where oneDNN is faster; the weights are restored afterwards).
        feature_hook: ``hook(features, n_images)`` called with each batch's features.

    Example:
        >>> from lossnet.data import load_2afc
        >>> r = score_2afc(lossnet.lpips("alex", weights="random"), load_2afc("builtin"))  # doctest: +SKIP
        >>> r.subsets["same-family"]["score"], r.layers["features.1"]  # doctest: +SKIP
    """
    check_positive_int(bootstrap, "bootstrap", minimum=0)
    metric = as_metric(metric)
    start = time.perf_counter()
    triplets, engine, info = run_2afc(metric, datasets, batch_size, distances, progress, device, num_workers,
                                      feature_hook, channels_last)
    seconds = time.perf_counter() - start
    per_distance = {d: summarize_2afc(triplets, d, bootstrap, seed) for d in engine.distances}
    head = per_distance[engine.distances[0]]
    meta = describe_metric(metric)
    meta["lin_applies_to"] = metric.distance if metric.lin is not None else None
    return TwoAFCResult(
        subsets=head["subsets"], mean=head["mean"], mean_ci_low=head["mean_ci_low"],
        mean_ci_high=head["mean_ci_high"], layers=head["layers"], layer_means=head["layer_means"],
        distance=engine.distances[0], distances=per_distance, metric=meta, synthetic=info["synthetic"],
        n=info["n"], bootstrap=bootstrap, seed=seed, batch_size=batch_size, seconds=seconds,
        datasets=info["datasets"], name=name, triplets=triplets)


def _table_2afc(r: "TwoAFCResult") -> str:
    lines = [f"2AFC Perceptual Score (0-100; {r.n} triplets)", metric_line(r.metric, r.distance, r.name)]
    if r.synthetic:
        lines.append(SYNTHETIC_NOTE)
    protocols = sorted({v for v in r.datasets.values() if v})
    if protocols:
        lines.append("data: " + " | ".join(protocols))
    rows = [[name, str(v["n"]), fmt(v["score"]),
             "-" if v["ci_low"] is None else f"[{v['ci_low']:.2f}, {v['ci_high']:.2f}]"]
            for name, v in r.subsets.items()]
    ci = "-" if r.mean_ci_low is None else f"[{r.mean_ci_low:.2f}, {r.mean_ci_high:.2f}]"
    rows.append(["mean", str(r.n), fmt(r.mean), ci])
    lines += [""] + grid(["subset", "n", "PS", "95% CI"], rows)
    subs = list(r.subsets)
    for d, res in r.distances.items():
        if len(res["layers"]) > 1:
            lrows = [[k, *(fmt(v[s]) for s in subs), fmt(res["layer_means"][k])] for k, v in res["layers"].items()]
            lines += ["", f"Layer-wise PS ({d})"] + grid(["point", *subs, "mean"], lrows)
    if len(r.distances) > 1:
        drows = [[d, *(fmt(res["subsets"][s]["score"]) for s in subs), fmt(res["mean"])]
                 for d, res in r.distances.items()]
        lines += ["", "Distance functions side by side (combined)"] + grid(["distance", *subs, "mean"], drows)
    return "\n".join(lines)


__all__ = ["SYNTHETIC_NOTE", "TripletDistances", "TwoAFCResult", "as_metric", "bootstrap_means", "run_2afc",
           "score_2afc", "summarize_2afc", "twoafc_scores"]
