"""Perceptual-similarity benchmarks: BAPPS 2AFC and JND, and opinion-score (MOS) datasets.

Every metric is scored in ONE streaming pass per architecture:

- 2AFC: each batch of triplets goes through the loss network once, as one ``3B`` batch
  ``[ref, p0, p1]`` (the reference is never computed twice). From the same features the
  distances ``d0 = d(ref, p0)`` and ``d1 = d(ref, p1)`` are computed for every extraction
  point alone (layer-wise PS) and combined (the metric's layer weights and lin), for every
  requested distance function (``spatial``, ``mean_pool``, ``style``, ... side by side).
- Only per-triplet distances (floats) are kept across batches: no images, no features.
- Pixel baselines (``l2``, ``ssim``) go through the same code.

The 2AFC score of one triplet with human judgement ``judge`` (fraction of people who chose
``p1`` as closer) is ``(d0 < d1)(1 - judge) + (d1 < d0) judge + 0.5 (d0 == d1)``; the
Perceptual Score (PS) is 100 x its mean, per subset; ``mean`` is the mean over subsets.
Confidence intervals are seeded percentile bootstraps over the triplets of each subset.

Example:
    >>> import lossnet
    >>> from lossnet.data import builtin_2afc
    >>> metric = lossnet.PerceptualLoss("alexnet", layers="lpips", weights="random")
    >>> result = score_2afc(metric, builtin_2afc(n_per_subset=20), progress=False)
    >>> 0 <= result.mean <= 100
    True
    >>> print(format_table(result))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..distances.functional import (
    EPS,
    FEATURE_DISTANCES,
    PIXEL_DISTANCES,
    _layer_weight_map,
    canonical_distance,
    gram,
)
from ..errors import LossnetError
from ..inputs import check_images
from ..loss.perceptual import PerceptualLoss

COMBINED = "combined"
SYNTHETIC_NOTE = "SYNTHETIC data: judgements are rule-based, not human; not comparable to BAPPS numbers."
DatasetsArg = Any  # a Dataset, a list of item dicts, or {subset name: dataset}


class ScoringError(LossnetError):
    """A dataset or metric cannot be scored (wrong item format, mixed image sizes, ...)."""


# --------------------------------------------------------------------------------------
# metrics and datasets
# --------------------------------------------------------------------------------------


def as_metric(metric: PerceptualLoss | str, **kwargs: Any) -> PerceptualLoss:
    """A :class:`PerceptualLoss` from a metric, an architecture name or a pixel distance name.

    Example:
        >>> as_metric("l2").pixel
        True
    """
    if isinstance(metric, PerceptualLoss):
        return metric
    if isinstance(metric, str):
        if metric in PIXEL_DISTANCES:
            return PerceptualLoss(distance=metric)
        return PerceptualLoss(metric, **kwargs)
    raise ScoringError(
        f"metric must be a lossnet.PerceptualLoss, an architecture name or 'l2'/'ssim', got {type(metric).__name__}."
    )


def as_datasets(data: DatasetsArg, default_name: str = "data") -> dict[str, Any]:
    """``{subset name: dataset}`` from a dict of datasets, one dataset, or a list of item dicts."""
    if isinstance(data, Mapping):
        if not data:
            raise ScoringError("no datasets given: the dict of subsets is empty.")
        return {str(k): v for k, v in data.items()}
    if isinstance(data, (str, os.PathLike)):
        raise ScoringError(
            f"got the path {str(data)!r}: load it first, e.g. lossnet.data.load_2afc({str(data)!r}), "
            "and pass the datasets."
        )
    name = getattr(data, "subset", None) or getattr(getattr(data, "dataset", None), "subset", None) or default_name
    return {str(name): data}


def is_synthetic(dataset: Any) -> bool:
    """True for the built-in synthetic sets (also through ``torch.utils.data.Subset``)."""
    while dataset is not None:
        if getattr(dataset, "synthetic", False):
            return True
        dataset = getattr(dataset, "dataset", None)
    return False


def _find_attr(dataset: Any, attr: str, default: Any = None) -> Any:
    """An attribute of a dataset, looking through wrappers such as ``Subset`` (``.dataset``)."""
    while dataset is not None:
        if hasattr(dataset, attr):
            return getattr(dataset, attr)
        dataset = getattr(dataset, "dataset", None)
    return default


def _description(dataset: Any) -> str:
    while dataset is not None:
        desc = getattr(dataset, "description", None)
        if desc:
            return str(desc)
        dataset = getattr(dataset, "dataset", None)
    return ""


def _as_list(items: list) -> list:
    return items


def iter_batches(dataset: Any, batch_size: int, num_workers: int = 0) -> Iterator[list[dict]]:
    """Batches of items (lists of dicts) in dataset order; works for Datasets and plain lists."""
    if batch_size < 1:
        raise ScoringError(f"batch_size must be at least 1, got {batch_size}.")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_as_list)
    yield from loader


def _stack(items: Sequence[Mapping], key: str, what: str) -> torch.Tensor:
    try:
        tensors = [torch.as_tensor(item[key]) for item in items]
    except KeyError:
        raise ScoringError(f"{what} items must have the key {key!r}; got keys {sorted(items[0])}.") from None
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ScoringError(f"{what}: images {key!r} of one batch have different shapes {sorted(shapes)}.")
    return torch.stack(tensors).float()


def _same_size_runs(items: Sequence[Mapping], keys: Sequence[str], what: str) -> Iterator[list[Mapping]]:
    """Consecutive runs of items whose images all have one shape (order kept).

    Every image of an item must have the same shape (e.g. ref, p0 and p1); items of
    different sizes (MOS sets of mixed resolutions) go through the network in separate runs.
    """
    run: list[Mapping] = []
    run_shape = None
    for item in items:
        try:
            shapes = [tuple(torch.as_tensor(item[k]).shape) for k in keys]
        except KeyError as exc:
            raise ScoringError(f"{what} items must have the keys {list(keys)}; got keys {sorted(item)}.") from exc
        if len(set(shapes)) != 1:
            detail = ", ".join(f"{k} {sh}" for k, sh in zip(keys, shapes))
            raise ScoringError(f"{what}: item {item.get('index', item.get('name', '?'))} has images of different "
                               f"sizes ({detail}); they must have the same size.")
        if run and shapes[0] != run_shape:
            yield run
            run = []
        run.append(item)
        run_shape = shapes[0]
    if run:
        yield run


def _labels(items: Sequence[Mapping], key: str, what: str) -> np.ndarray:
    try:
        values = np.array([float(torch.as_tensor(item[key]).reshape(-1)[0]) for item in items], dtype=np.float64)
    except KeyError:
        raise ScoringError(f"{what} items must have the key {key!r}; got keys {sorted(items[0])}.") from None
    return values


def _metric_points(metric: PerceptualLoss) -> list[str]:
    return [] if metric.pixel else list(metric.net.points)


def describe_metric(metric: PerceptualLoss) -> dict[str, Any]:
    """Metadata of a metric: arch, points, distance, weights, lin, layer weights."""
    if metric.pixel:
        return {"arch": None, "points": [], "distance": metric.distance, "weights": None, "lin": False,
                "layer_weights": None, "input_norm": None}
    lw = metric.layer_weights
    if lw is not None and not isinstance(lw, Mapping):
        lw = dict(zip(metric.net.points, map(float, lw)))
    return {
        "arch": metric.net.arch, "points": list(metric.net.points), "distance": metric.distance,
        "weights": metric.net.weights, "lin": metric.lin is not None,
        "layer_weights": None if lw is None else {k: float(v) for k, v in lw.items()},
        "input_norm": str(metric.net.input_norm),
    }


# --------------------------------------------------------------------------------------
# distances of several functions, per point and combined, from one feature dict
# --------------------------------------------------------------------------------------


class DistanceEngine:
    """Computes, from one forward pass, the distances between groups of images.

    ``images`` is a ``(G * B, 3, H, W)`` batch made of ``G`` groups of ``B`` images (2AFC:
    ``[ref, p0, p1]``); ``pairs`` lists the group pairs to compare (2AFC: ``[(0, 1), (0, 2)]``).
    For every requested distance the result is ``{key: (len(pairs), B) tensor}`` with one key
    per extraction point and ``"combined"`` (the metric's layer weights; lin weights are
    applied to the metric's own distance only).

    Example:
        >>> engine = DistanceEngine(PerceptualLoss("alexnet", layers=["features.1"], weights="random"),
        ...                         ["spatial", "style"])
        >>> out = engine(torch.rand(6, 3, 64, 64), groups=3, pairs=[(0, 1), (0, 2)])
        >>> out["style"]["combined"].shape
        torch.Size([2, 2])
    """

    def __init__(self, metric: PerceptualLoss, distances: Sequence[str] | None = None) -> None:
        self.metric = metric
        names = [metric.distance] if not distances else [canonical_distance(d) for d in distances]
        if len(set(names)) != len(names):
            raise ScoringError(f"distances {names} repeat a name: give each distance once.")
        if metric.pixel:
            bad = [d for d in names if d not in PIXEL_DISTANCES]
            if bad:
                raise ScoringError(f"the pixel metric {metric.distance!r} has no network, so feature distances "
                                   f"{bad} cannot be computed; use l2/ssim, or a metric with a network.")
        self.distances = names
        self.points = _metric_points(metric)
        self.layer_weights = _layer_weight_map(self.points, metric.layer_weights) if self.points else {}
        self.lin = metric.lin

    def keys(self, distance: str) -> list[str]:
        """The result keys of a distance: every point and ``"combined"`` (pixel: ``"combined"`` only)."""
        return [COMBINED] if distance in PIXEL_DISTANCES else self.points + [COMBINED]

    def lin_for(self, distance: str, point: str) -> torch.Tensor | None:
        if self.lin is None or distance != self.metric.distance:
            return None
        return self.lin[point]

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Features of the (checked) batch, or None when only pixel distances are asked for."""
        if self.metric.pixel or all(d in PIXEL_DISTANCES for d in self.distances):
            return None
        return self.metric.net.extract(images, check=False)

    def __call__(self, images: torch.Tensor, groups: int, pairs: Sequence[tuple[int, int]],
                 feats: Mapping[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        if feats is None:
            feats = self.features(images)
        batch = images.shape[0] // groups
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.distances:
            if name in PIXEL_DISTANCES:
                x = images.view(groups, batch, *images.shape[1:])
                out[name] = {COMBINED: torch.stack([PIXEL_DISTANCES[name](x[a], x[b]) for a, b in pairs])}
                continue
            per_point = {p: self._point_distance(name, p, f, groups, pairs) for p, f in feats.items()}
            total = None
            for p in self.points:
                w = self.layer_weights[p]
                term = per_point[p] if w == 1.0 else per_point[p] * w
                total = term if total is None else total + term
            per_point[COMBINED] = total
            out[name] = per_point
        return out

    def _point_distance(self, name: str, point: str, f: torch.Tensor, groups: int,
                        pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        lin = self.lin_for(name, point)
        if f.dtype in (torch.float16, torch.bfloat16):
            f = f.float()
        g = f.view(groups, f.shape[0] // groups, *f.shape[1:])
        if name in ("spatial", "mean_pool"):
            if name == "mean_pool":
                g = g.mean(dim=(3, 4), keepdim=True)
            flat = g.flatten(0, 1)
            # LPIPS's f / (||f|| + eps), each image normalised once (the reference only once for d0 and d1)
            inv = 1.0 / (torch.linalg.vector_norm(flat, dim=1, keepdim=True) + EPS)
            n = (flat * inv).view(g.shape)
            scale = None if lin is None else lin.to(n.dtype).clamp(min=0).sqrt().view(1, -1, 1, 1)
            rows = []
            for a, b in pairs:
                diff = n[a] - n[b]
                if scale is not None:
                    diff.mul_(scale)  # sum_c lin_c diff_c^2 = ||sqrt(lin) * diff||^2
                rows.append(torch.linalg.vector_norm(diff, dim=1).square_().mean(dim=(1, 2)))
            return torch.stack(rows)
        if name == "style":
            if lin is not None:
                raise ScoringError("the style distance has no per-channel linear weights.")
            grams = gram(g.flatten(0, 1)).view(groups, g.shape[1], g.shape[2], g.shape[2])
            return torch.stack([(grams[a] - grams[b]).pow(2).mean(dim=(1, 2)) for a, b in pairs])
        fn = FEATURE_DISTANCES[name]
        return torch.stack([fn(g[a], g[b], lin) for a, b in pairs])


def _prepare_metric(metric: PerceptualLoss, device: str | torch.device) -> PerceptualLoss:
    metric = metric.to(device)
    metric.eval()
    return metric


def _use_channels_last(metric: PerceptualLoss, device: str | torch.device, channels_last: bool | None) -> bool:
    if metric.pixel or channels_last is False:
        return False
    if channels_last is None:  # auto: on CPU, for networks with 2-D convolutions (oneDNN is faster in NHWC)
        return torch.device(device).type == "cpu" and any(
            isinstance(m, torch.nn.Conv2d) for m in metric.net.modules())
    return True


class _ChannelsLast:
    """Within the block, the network's 4-D weights are channels-last; the originals are put back after."""

    def __init__(self, metric: PerceptualLoss, enabled: bool) -> None:
        self.module = None if metric.pixel or not enabled else metric.net
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> "_ChannelsLast":
        if self.module is not None:
            with torch.no_grad():
                for t in [*self.module.parameters(), *self.module.buffers()]:
                    if t.dim() == 4:
                        self.saved.append((t, t.data))
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
        return self

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.module is None else x.contiguous(memory_format=torch.channels_last)

    def __exit__(self, *exc: object) -> None:
        for t, data in self.saved:
            t.data = data
        self.saved.clear()


def _check_batch(images: torch.Tensor, what: str) -> torch.Tensor:
    return check_images(images, name=what)


def _progress(total: int, desc: str, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False,
                dynamic_ncols=True)


# --------------------------------------------------------------------------------------
# 2AFC
# --------------------------------------------------------------------------------------


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

    Example:
        >>> result.to_json("ps.json")  # doctest: +SKIP
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
        d = {
            "task": "2afc",
            "name": self.name,
            "subsets": self.subsets,
            "mean": self.mean,
            "mean_ci_low": self.mean_ci_low,
            "mean_ci_high": self.mean_ci_high,
            "layers": self.layers,
            "layer_means": self.layer_means,
            "distance": self.distance,
            "distances": self.distances,
            "arch": self.arch,
            "points": self.points,
            "weights": self.metric.get("weights"),
            "lin": self.metric.get("lin"),
            "metric": self.metric,
            "synthetic": self.synthetic,
            "note": SYNTHETIC_NOTE if self.synthetic else None,
            "datasets": self.datasets,
            "n": self.n,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seconds": self.seconds,
            "triplets_per_second": self.n / self.seconds if self.seconds > 0 else None,
        }
        return _clean(d)

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """The JSON text; also written to ``path`` when given."""
        return _write_json(self.to_dict(), path, indent)

    def table(self) -> str:
        return format_table(self)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, (np.floating,)):
        return _clean(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _write_json(d: Mapping, path: str | os.PathLike | None, indent: int) -> str:
    text = json.dumps(d, indent=indent, allow_nan=False)
    if path is not None:
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return text


class _Accumulator:
    """Per-triplet floats for every (distance, key), appended batch by batch."""

    def __init__(self, engine: DistanceEngine, n_pairs: int) -> None:
        self.parts: dict[str, dict[str, list[list[np.ndarray]]]] = {
            d: {k: [[] for _ in range(n_pairs)] for k in engine.keys(d)} for d in engine.distances}

    def add(self, out: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        for d, per_key in out.items():
            for k, t in per_key.items():
                arr = t.detach().to("cpu", torch.float64).numpy()
                for j, row in enumerate(arr):
                    self.parts[d][k][j].append(row.copy())

    def arrays(self, pair: int) -> dict[str, dict[str, np.ndarray]]:
        return {d: {k: (np.concatenate(v[pair]) if v[pair] else np.zeros(0)) for k, v in per_key.items()}
                for d, per_key in self.parts.items()}


FeatureHook = Callable[[Mapping[str, torch.Tensor], int], None]


def run_2afc(
    metric: PerceptualLoss,
    datasets: DatasetsArg,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    feature_hook: FeatureHook | None = None,
    channels_last: bool | None = None,
) -> tuple[TripletDistances, DistanceEngine, dict[str, Any]]:
    """The streaming pass behind :func:`score_2afc`: per-triplet distances, nothing else kept.

    ``feature_hook(features, n_images)`` (optional) sees each batch's features (used by the
    analyses to measure activation entropy from the same pass).
    """
    metric = _prepare_metric(as_metric(metric), device)
    sets = as_datasets(datasets)
    engine = DistanceEngine(metric, distances)
    acc = _Accumulator(engine, 2)
    judges: list[np.ndarray] = []
    subset_index: list[np.ndarray] = []
    total = sum(len(ds) for ds in sets.values())
    info = {"synthetic": any(is_synthetic(ds) for ds in sets.values()),
            "datasets": {k: _description(ds) for k, ds in sets.items()}, "n": total}
    bar = _progress(total, "2AFC", progress, "triplet")
    layout = _ChannelsLast(metric, _use_channels_last(metric, device, channels_last))
    try:
        with layout, torch.inference_mode():
            for k, (name, ds) in enumerate(sets.items()):
                if len(ds) == 0:
                    raise ScoringError(f"2AFC subset {name!r} is empty.")
                bar.set_description(f"2AFC {name}")
                what = f"2AFC subset {name!r}"
                for batch in iter_batches(ds, batch_size, num_workers):
                    for items in _same_size_runs(batch, ("ref", "p0", "p1"), what):
                        ref, p0, p1 = (_stack(items, key, what) for key in ("ref", "p0", "p1"))
                        judge = _labels(items, "judge", what)
                        if np.any(np.isnan(judge)) or np.any((judge < 0) | (judge > 1)):
                            raise ScoringError(f"{what}: judgements must lie in [0, 1], got values in "
                                               f"[{np.nanmin(judge)}, {np.nanmax(judge)}].")
                        images = _check_batch(torch.cat([ref, p0, p1]).to(device, non_blocking=True), what)
                        feats = engine.features(layout.input(images))
                        if feature_hook is not None and feats is not None:
                            feature_hook(feats, images.shape[0])
                        acc.add(engine(images, 3, [(0, 1), (0, 2)], feats))
                        del feats, images, ref, p0, p1
                        judges.append(judge)
                        subset_index.append(np.full(len(items), k, dtype=np.int64))
                    bar.update(len(batch))
    finally:
        bar.close()
    triplets = TripletDistances(
        subsets=list(sets), subset_index=np.concatenate(subset_index), judges=np.concatenate(judges),
        d0=acc.arrays(0), d1=acc.arrays(1))
    return triplets, engine, info


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
    _feature_hook: FeatureHook | None = None,
) -> TwoAFCResult:
    """BAPPS 2AFC Perceptual Score of a metric, per subset and layer, in one streaming pass.

    Args:
        metric: a :class:`lossnet.PerceptualLoss` (or an architecture name, or ``"l2"``/``"ssim"``).
        datasets: ``{subset: dataset}`` (e.g. :func:`lossnet.data.load_2afc`), one dataset, or a
            list of items ``{"ref", "p0", "p1": (3, H, W) in [0, 1], "judge": fraction choosing p1}``.
        batch_size: triplets per forward pass (the network sees ``3 * batch_size`` images).
        distances: distance functions to score side by side from the same features (e.g.
            ``["spatial", "mean_pool", "style"]``); the first is the headline. Default: the
            metric's own distance. Lin weights apply to the metric's own distance only.
        bootstrap: resamples for the 95% percentile CI of each subset (0: none).
        seed: seed of the bootstrap.
        channels_last: run the network in channels-last memory format (default: on CPU for
            convolutional networks, where oneDNN is faster; the weights are restored afterwards).

    Returns:
        A :class:`TwoAFCResult` (scores 0-100).

    Example:
        >>> from lossnet.data import load_2afc
        >>> r = score_2afc(lossnet.lpips("alex", weights="random"), load_2afc("builtin"))  # doctest: +SKIP
        >>> r.subsets["same-family"]["score"], r.layers["features.1"]  # doctest: +SKIP
    """
    metric = as_metric(metric)
    start = time.perf_counter()
    triplets, engine, info = run_2afc(metric, datasets, batch_size, distances, progress, device, num_workers,
                                      _feature_hook, channels_last)
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


# --------------------------------------------------------------------------------------
# JND
# --------------------------------------------------------------------------------------


def jnd_average_precision(distances: np.ndarray, same: np.ndarray) -> float:
    """JND average precision in [0, 1]: pairs ranked by ascending distance, "same" is positive.

    TP = cumsum(same), FP = cumsum(1 - same) over the ranking (``same`` may be a fraction of
    people); precision = TP / (TP + FP), recall = TP / sum(same); AP = area under the
    monotone precision envelope (VOC, all points). Distances are flattened first, and pairs
    with exactly equal distances form one threshold (their order cannot matter). NaN when no
    pair is "same".

    Example:
        >>> jnd_average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 1, 0, 0]))
        1.0
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
        return _clean({
            "task": "jnd", "name": self.name, "subsets": self.subsets, "mean": self.mean, "layers": self.layers,
            "distance": self.distance, "distances": self.distances, "arch": self.metric.get("arch"),
            "points": self.metric.get("points"), "weights": self.metric.get("weights"), "lin": self.metric.get("lin"),
            "metric": self.metric, "synthetic": self.synthetic,
            "note": SYNTHETIC_NOTE if self.synthetic else None, "datasets": self.datasets, "n": self.n,
            "seconds": self.seconds,
        })

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        return _write_json(self.to_dict(), path, indent)

    def table(self) -> str:
        return format_table(self)


def _pair_pass(metric: PerceptualLoss, sets: Mapping[str, Any], keys: tuple[str, str], label: str,
               batch_size: int, distances: Sequence[str] | None, progress: bool, device, num_workers: int,
               what: str, channels_last: bool | None = None
               ) -> tuple[DistanceEngine, dict[str, dict[str, np.ndarray]], np.ndarray, np.ndarray]:
    """One pass over image pairs ``(item[keys[0]], item[keys[1]])``: distances and labels."""
    metric = _prepare_metric(metric, device)
    engine = DistanceEngine(metric, distances)
    acc = _Accumulator(engine, 1)
    labels, index = [], []
    bar = _progress(sum(len(ds) for ds in sets.values()), what, progress, "pair")
    layout = _ChannelsLast(metric, _use_channels_last(metric, device, channels_last))
    try:
        with layout, torch.inference_mode():
            for k, (name, ds) in enumerate(sets.items()):
                if len(ds) == 0:
                    raise ScoringError(f"{what} subset {name!r} is empty.")
                bar.set_description(f"{what} {name}")
                desc = f"{what} {name!r}"
                for batch in iter_batches(ds, batch_size, num_workers):
                    for items in _same_size_runs(batch, keys, desc):
                        a, b = (_stack(items, key, desc) for key in keys)
                        images = _check_batch(torch.cat([a, b]).to(device, non_blocking=True), desc)
                        images = layout.input(images)
                        acc.add(engine(images, 2, [(0, 1)]))
                        del images, a, b
                        labels.append(_labels(items, label, desc))
                        index.append(np.full(len(items), k, dtype=np.int64))
                    bar.update(len(batch))
    finally:
        bar.close()
    return engine, acc.arrays(0), np.concatenate(labels), np.concatenate(index)


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
        >>> r.subsets["synthetic"]["map"]  # doctest: +SKIP
    """
    metric = as_metric(metric)
    sets = as_datasets(datasets)
    start = time.perf_counter()
    engine, dists, same, index = _pair_pass(metric, sets, ("p0", "p1"), "same", batch_size, distances, progress,
                                            device, num_workers, "JND", channels_last)
    seconds = time.perf_counter() - start
    per_distance: dict[str, dict[str, Any]] = {}
    names = list(sets)
    for d in engine.distances:
        layers: dict[str, dict[str, float]] = {k: {} for k in dists[d]}
        subsets = {}
        for k, sub in enumerate(names):
            m = index == k
            for key, values in dists[d].items():
                layers[key][sub] = 100.0 * jnd_average_precision(values[m], same[m])
            subsets[sub] = {"map": layers[COMBINED][sub], "n": int(m.sum())}
        per_distance[d] = {"subsets": subsets, "mean": float(np.mean([v["map"] for v in subsets.values()])),
                           "layers": layers}
    head = per_distance[engine.distances[0]]
    return JNDResult(
        subsets=head["subsets"], mean=head["mean"], layers=head["layers"], distance=engine.distances[0],
        distances=per_distance, metric=describe_metric(metric),
        synthetic=any(is_synthetic(ds) for ds in sets.values()), n=int(same.size), seconds=seconds,
        datasets={k: _description(ds) for k, ds in sets.items()}, name=name,
        pairs={"subsets": names, "subset_index": index, "same": same, "distances": dists})


# --------------------------------------------------------------------------------------
# MOS (TID2013, KADID-10k, CSV)
# --------------------------------------------------------------------------------------


def mos_correlations(distances: np.ndarray, scores: np.ndarray, higher_is_better: bool = True) -> dict[str, float]:
    """SROCC, KROCC and PLCC between a distance and opinion scores, signed so that good is positive.

    A distance falls as quality rises, so when ``higher_is_better`` (MOS: TID2013, KADID-10k)
    the correlations are those of ``-distance`` with the score; when a higher score means
    worse quality (DMOS-like), those of ``distance`` with the score. Either way a metric that
    agrees with people gets positive values. PLCC is on the raw distances (no logistic fit).

    Example:
        >>> mos_correlations(np.array([0.1, 0.5, 0.9]), np.array([5.0, 3.0, 1.0]))["srocc"]
        1.0
    """
    from scipy import stats

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
    values: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "task": "mos", "name": self.name, "dataset": self.dataset, "srocc": self.srocc, "krocc": self.krocc,
            "plcc": self.plcc, "n": self.n, "higher_is_better": self.higher_is_better, "sign": self.sign,
            "layers": self.layers, "distance": self.distance, "distances": self.distances,
            "arch": self.metric.get("arch"), "points": self.metric.get("points"), "weights": self.metric.get("weights"),
            "lin": self.metric.get("lin"), "metric": self.metric, "seconds": self.seconds,
        })

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        return _write_json(self.to_dict(), path, indent)

    def table(self) -> str:
        return format_table(self)


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
    flipped so that a good metric gives POSITIVE correlations: for scores where higher means
    better quality (``dataset.higher_is_better``, default True) the correlation is that of
    ``-d`` with the score; see :func:`mos_correlations`. Batches whose images differ in size
    are split into runs of equal size.

    Example:
        >>> from lossnet.data import load_tid2013
        >>> r = score_mos(lossnet.lpips("alex"), load_tid2013("data/tid2013"))  # doctest: +SKIP
        >>> r.srocc  # doctest: +SKIP
    """
    metric = as_metric(metric)
    if higher_is_better is None:
        higher_is_better = bool(_find_attr(dataset, "higher_is_better", True))
    ds_name = str(dataset_name or _find_attr(dataset, "name", None) or "mos")
    start = time.perf_counter()
    engine, dists, scores, _ = _pair_pass(metric, {ds_name: dataset}, ("ref", "dist"), "score", batch_size,
                                          distances, progress, device, num_workers, "MOS", channels_last)
    seconds = time.perf_counter() - start
    per_distance = {}
    for d in engine.distances:
        layers = {key: mos_correlations(values, scores, higher_is_better) for key, values in dists[d].items()}
        per_distance[d] = {**layers[COMBINED], "layers": layers}
    head = per_distance[engine.distances[0]]
    sign = ("correlations of -distance with the score (higher score = better quality)" if higher_is_better
            else "correlations of distance with the score (higher score = worse quality)")
    return MOSResult(
        srocc=head["srocc"], krocc=head["krocc"], plcc=head["plcc"], n=int(scores.size), dataset=ds_name,
        higher_is_better=higher_is_better, layers=head["layers"], distance=engine.distances[0],
        distances=per_distance, metric=describe_metric(metric), seconds=seconds, name=name, sign=sign,
        values={"scores": scores, "distances": dists})


# --------------------------------------------------------------------------------------
# text tables
# --------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    from ..utils.tables import text_table

    return text_table(header, rows).splitlines()


def _metric_line(metric: Mapping[str, Any], distance: str, name: str | None) -> str:
    if metric.get("arch") is None:
        desc = f"pixel {distance}"
    else:
        desc = (f"{metric['arch']} [{', '.join(metric.get('points', []))}], distance {distance}, "
                f"weights {metric.get('weights')}" + (", lin" if metric.get("lin") else ""))
    return f"metric: {name + ' = ' if name else ''}{desc}"


def format_table(result: TwoAFCResult | JNDResult | MOSResult) -> str:
    """A readable text table of a 2AFC, JND or MOS result.

    Example:
        >>> print(format_table(result))  # doctest: +SKIP
    """
    if isinstance(result, TwoAFCResult):
        return _table_2afc(result)
    if isinstance(result, JNDResult):
        return _table_jnd(result)
    if isinstance(result, MOSResult):
        return _table_mos(result)
    raise ScoringError(f"no table format for {type(result).__name__}.")


def _table_2afc(r: TwoAFCResult) -> str:
    lines = [f"2AFC Perceptual Score (0-100; {r.n} triplets)", _metric_line(r.metric, r.distance, r.name)]
    if r.synthetic:
        lines.append(SYNTHETIC_NOTE)
    rows = [[name, str(v["n"]), _fmt(v["score"]),
             "-" if v["ci_low"] is None else f"[{v['ci_low']:.2f}, {v['ci_high']:.2f}]"]
            for name, v in r.subsets.items()]
    ci = "-" if r.mean_ci_low is None else f"[{r.mean_ci_low:.2f}, {r.mean_ci_high:.2f}]"
    rows.append(["mean", str(r.n), _fmt(r.mean), ci])
    lines += [""] + _grid(["subset", "n", "PS", "95% CI"], rows)
    for d, res in r.distances.items():
        if len(res["layers"]) > 1:
            subs = list(r.subsets)
            lrows = [[k, *(_fmt(v[s]) for s in subs), _fmt(res["layer_means"][k])] for k, v in res["layers"].items()]
            lines += ["", f"Layer-wise PS ({d})"] + _grid(["point", *subs, "mean"], lrows)
    if len(r.distances) > 1:
        subs = list(r.subsets)
        drows = [[d, *(_fmt(res["subsets"][s]["score"]) for s in subs), _fmt(res["mean"])]
                 for d, res in r.distances.items()]
        lines += ["", "Distance functions side by side (combined)"] + _grid(["distance", *subs, "mean"], drows)
    return "\n".join(lines)


def _table_jnd(r: JNDResult) -> str:
    lines = [f"JND mAP (0-100; {r.n} pairs)", _metric_line(r.metric, r.distance, r.name)]
    if r.synthetic:
        lines.append(SYNTHETIC_NOTE)
    rows = [[name, str(v["n"]), _fmt(v["map"])] for name, v in r.subsets.items()]
    rows.append(["mean", str(r.n), _fmt(r.mean)])
    lines += [""] + _grid(["subset", "n", "mAP"], rows)
    for d, res in r.distances.items():
        if len(res["layers"]) > 1:
            subs = list(r.subsets)
            lrows = [[k, *(_fmt(v[s]) for s in subs)] for k, v in res["layers"].items()]
            lines += ["", f"Layer-wise mAP ({d})"] + _grid(["point", *subs], lrows)
    if len(r.distances) > 1:
        drows = [[d, _fmt(res["mean"])] for d, res in r.distances.items()]
        lines += ["", "Distance functions side by side"] + _grid(["distance", "mean mAP"], drows)
    return "\n".join(lines)


def _table_mos(r: MOSResult) -> str:
    lines = [f"Opinion-score correlation on {r.dataset} ({r.n} images)", _metric_line(r.metric, r.distance, r.name),
             f"sign: {r.sign}; positive = agrees with people"]
    rows = []
    for d, res in r.distances.items():
        for key, v in res["layers"].items():
            rows.append([d, key, _fmt(v["srocc"], 4), _fmt(v["krocc"], 4), _fmt(v["plcc"], 4)])
    lines += [""] + _grid(["distance", "point", "SROCC", "KROCC", "PLCC"], rows)
    return "\n".join(lines)


__all__ = [
    "COMBINED", "DistanceEngine", "JNDResult", "MOSResult", "ScoringError", "TripletDistances", "TwoAFCResult",
    "as_datasets", "as_metric", "bootstrap_means", "builtin_table", "describe_metric", "format_table", "is_synthetic",
    "iter_batches", "jnd_average_precision", "mos_correlations", "run_2afc", "score_2afc", "score_jnd",
    "score_mos", "summarize_2afc", "twoafc_scores",
]


def builtin_table(out_dir: str | os.PathLike | None = None, seed: int = 0, n_per_subset: int = 50,
                  progress: bool = False) -> dict[str, Any]:
    """The built-in (SYNTHETIC) 2AFC table for the networks at hand offline: the real ImageNet
    EfficientNet-Lite0, an untrained copy, and the l2 / ssim pixel baselines.

    Prints the table, writes ``builtin_2afc.json`` to ``out_dir`` when given, and returns
    ``{"json": path or None, "rows": {name: {subset: PS, "mean": PS}}}``; usable as a
    ``lossnet demo`` step.

    Example:
        >>> summary = builtin_table("lossnet-out/demo")  # doctest: +SKIP
    """
    from ..data.synthetic import builtin_2afc

    sets = builtin_2afc(n_per_subset=n_per_subset, seed=seed)
    metrics = {
        "efficientnet_lite0 (ImageNet)": lambda: PerceptualLoss("efficientnet_lite0", weights="imagenet"),
        "efficientnet_lite0 (untrained)": lambda: PerceptualLoss("efficientnet_lite0", weights="random", seed=seed),
        "pixel l2": lambda: PerceptualLoss(distance="l2"),
        "pixel ssim": lambda: PerceptualLoss(distance="ssim"),
    }
    rows: dict[str, dict[str, float]] = {}
    results = {}
    for name, make in metrics.items():
        try:
            metric = make()
        except LossnetError as exc:  # e.g. weights not available
            print(f"skipped {name}: {exc}")
            continue
        r = score_2afc(metric, sets, bootstrap=0, progress=progress, name=name)
        rows[name] = {**{s: v["score"] for s, v in r.subsets.items()}, "mean": r.mean}
        results[name] = r.to_dict()
    subsets = list(sets)
    lines = ["Built-in 2AFC (SYNTHETIC, rule-based judgements; PS 0-100, combined distance)"]
    lines += _grid(["metric", *subsets, "mean"], [[n, *(_fmt(v[s]) for s in subsets), _fmt(v["mean"])]
                                                  for n, v in rows.items()])
    print("\n".join(lines))
    path = None
    if out_dir is not None:
        path = os.path.join(os.fspath(out_dir), "builtin_2afc.json")
        _write_json(_clean({"note": SYNTHETIC_NOTE, "rows": rows, "results": results}), path, 2)
    return {"json": path, "rows": rows}
