"""The one-pass scoring engine: every extraction point, the combined score and several
distance functions from ONE forward pass, and the one streaming pass over a dataset.

- :class:`DistanceEngine` takes a ``(G * B, 3, H, W)`` batch made of ``G`` groups of ``B``
  images (2AFC: ``[ref, p0, p1]``, JND and MOS: ``[a, b]``), runs the loss network once,
  prepares every image's features once per distance (:class:`lossnet.distances.FeatureDistance`:
  the reference patch is normalised once, not once per comparison), and compares the group
  pairs asked for. The maths is that of :mod:`lossnet.distances.functional`; nothing here
  re-implements a distance.
- :func:`stream_pairs` is the streaming pass behind 2AFC, JND and MOS: batches of items, the
  engine, and per-item floats kept (never images or features), so memory stays flat.

Example:
    >>> import lossnet
    >>> engine = DistanceEngine(lossnet.PerceptualLoss("alexnet", layers=["features.1"], weights="random"),
    ...                         ["spatial", "style"])
    >>> out = engine(torch.rand(6, 3, 64, 64), groups=3, pairs=[(0, 1), (0, 2)])
    >>> out["style"]["combined"].shape
    torch.Size([2, 2])
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..distances.functional import (
    FEATURE_DISTANCES,
    PIXEL_DISTANCES,
    canonical_distance,
)
from ..distances.functional import _layer_weight_map as layer_weight_map
from ..inputs import check_images
from ..loss.perceptual import PerceptualLoss
from ..utils.devices import run_threads, select_device
from ..utils.progress import progress_bar
from .datasets import (
    ScoringError,
    as_datasets,
    describe_dataset,
    is_synthetic,
    iter_batches,
    read_labels,
    same_size_runs,
    stack_images,
)

COMBINED = "combined"
#: Bytes of features (all groups of a block together) the CPU distance code works on at a time.
CPU_BLOCK_BYTES = 512 * 1024
FeatureHook = Callable[[Mapping[str, torch.Tensor], int], None]


class DistanceEngine:
    """Distances between groups of images from one forward pass (see the module docstring).

    For every requested distance the result is ``{key: (len(pairs), B) tensor}`` with one key
    per extraction point and ``"combined"`` (the metric's layer weights; lin weights apply to
    the metric's own distance only).
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
        self.points = [] if metric.pixel else list(metric.net.points)
        self.layer_weights = layer_weight_map(self.points, metric.layer_weights) if self.points else {}
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

    @staticmethod
    def _block(g: torch.Tensor) -> int:
        """Items per block of a point's grouped features ``(G, B, ...)``. On the CPU, blocks of
        about :data:`CPU_BLOCK_BYTES` (all groups together): a distance's few passes over its
        features (normalise, subtract, square, sum) then run on data still in cache instead of
        streaming a whole batch's features from memory each time (vgg16's relu1_2 of 150 images
        at 64 px is 157 MB). Elsewhere (a GPU) one block: few large kernels beat many small ones."""
        if g.device.type != "cpu":
            return max(1, g.shape[1])
        per_item = g.shape[0] * g[0, 0].numel() * g.element_size()
        return max(1, CPU_BLOCK_BYTES // max(1, per_item))

    @staticmethod
    def _groups(t: torch.Tensor, groups: int) -> torch.Tensor:
        return t.reshape(groups, t.shape[0] // groups, *t.shape[1:])

    def __call__(self, images: torch.Tensor, groups: int, pairs: Sequence[tuple[int, int]],
                 feats: Mapping[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        if feats is None:
            feats = self.features(images)
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.distances:
            if name in PIXEL_DISTANCES:
                x = self._groups(images, groups)
                out[name] = {COMBINED: torch.stack([PIXEL_DISTANCES[name](x[a], x[b]) for a, b in pairs])}
                continue
            record = FEATURE_DISTANCES[name]
            per_point: dict[str, torch.Tensor] = {}
            for p in self.points:
                g = self._groups(feats[p], groups)
                lin = self.lin_for(name, p)
                step = self._block(g)
                blocks = []
                # many small blocks: one thread (each op's fork/join would cost more than a second
                # thread gains), which also makes every item's value independent of the batch size
                with run_threads(1) if step < g.shape[1] else contextlib.nullcontext():
                    for s in range(0, g.shape[1], step):  # each image prepared once, in its block
                        prepared = self._groups(record.prepare(g[:, s:s + step].flatten(0, 1)), groups)
                        blocks.append(torch.stack([record.compare(prepared[a], prepared[b], lin) for a, b in pairs]))
                per_point[p] = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
            total = None
            for p in self.points:
                w = self.layer_weights[p]
                term = per_point[p] if w == 1.0 else per_point[p] * w
                total = term if total is None else total + term
            per_point[COMBINED] = total
            out[name] = per_point
        return out

    def channel_terms(self, feats: Mapping[str, torch.Tensor], groups: int, pairs: Sequence[tuple[int, int]],
                      distance: str | None = None) -> list[torch.Tensor]:
        """Per-channel terms of each pair, all points concatenated: ``len(pairs)`` tensors (B, sum C),
        such that the distance with lin weights ``v`` (layer weights folded in) is ``terms @ v``."""
        record = FEATURE_DISTANCES[canonical_distance(distance or self.metric.distance)]
        if record.terms is None:
            raise ScoringError(f"distance {record.name!r} has no per-channel terms (it is not linear in lin weights).")
        rows: list[list[torch.Tensor]] = [[] for _ in pairs]
        for p in self.points:
            g = self._groups(record.prepare(feats[p]), groups)
            for j, (a, b) in enumerate(pairs):
                rows[j].append(record.terms(g[a], g[b]))
        return [torch.cat(r, dim=1) for r in rows]


class ChannelsLast:
    """Within the block, the network's 4-D weights are channels-last; the originals are put back after.

    On the CPU oneDNN convolutions are faster in NHWC; scoring switches to it automatically
    for convolutional networks (``channels_last=None``).
    """

    def __init__(self, metric: PerceptualLoss, device: torch.device, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = device.type == "cpu" and not metric.pixel and any(
                isinstance(m, torch.nn.Conv2d) for m in metric.net.modules())
        self.module = None if metric.pixel or not enabled else metric.net
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> "ChannelsLast":
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


@dataclass
class PairDistances:
    """What one streaming pass keeps: per-item floats only.

    ``distances[j][distance][key]`` is an (N,) array for pair ``j``; ``labels`` (N,);
    ``subset_index[i]`` indexes ``subsets``; ``info``: synthetic flag, dataset descriptions, n.
    """

    engine: DistanceEngine
    subsets: list[str]
    distances: list[dict[str, dict[str, np.ndarray]]]
    labels: np.ndarray
    subset_index: np.ndarray
    info: dict[str, Any]


class _Accumulator:
    """Per-item float64 arrays for every (pair, distance, key), appended batch by batch."""

    def __init__(self, engine: DistanceEngine, n_pairs: int) -> None:
        self.parts = [{d: {k: [] for k in engine.keys(d)} for d in engine.distances} for _ in range(n_pairs)]

    def add(self, out: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        for d, per_key in out.items():
            for k, t in per_key.items():
                rows = t.detach().to("cpu", torch.float64).numpy()
                for j, row in enumerate(rows):
                    self.parts[j][d][k].append(row)

    def arrays(self) -> list[dict[str, dict[str, np.ndarray]]]:
        return [{d: {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in per_key.items()}
                 for d, per_key in pair.items()} for pair in self.parts]


def prepare_metric(metric: PerceptualLoss, device: str | torch.device) -> tuple[PerceptualLoss, torch.device]:
    """The metric on ``device`` in eval mode, and the device object."""
    if not isinstance(metric, PerceptualLoss):
        raise ScoringError(f"metric must be a lossnet.PerceptualLoss (see lossnet.create_metric), got "
                           f"{type(metric).__name__}.")
    device = select_device(device)
    return metric.to(device).eval(), device


def stream_pairs(
    metric: PerceptualLoss,
    datasets: Any,
    image_keys: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    label_key: str,
    what: str,
    batch_size: int = 50,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    channels_last: bool | None = None,
    feature_hook: FeatureHook | None = None,
    label_range: tuple[float, float] | None = None,
    unit: str = "item",
) -> PairDistances:
    """The one streaming pass behind 2AFC, JND and MOS.

    Every batch of items becomes ONE network batch ``[item[k] for k in image_keys]``; the
    engine compares the index ``pairs`` of those groups for every distance; only per-item
    floats and labels (``item[label_key]``, checked to lie in ``label_range``) are kept.
    ``feature_hook(features, n_images)`` sees each batch's features (the analyses measure
    activation entropy from the same pass).
    """
    metric, device = prepare_metric(metric, device)
    sets = as_datasets(datasets)
    engine = DistanceEngine(metric, distances)
    acc = _Accumulator(engine, len(pairs))
    labels: list[np.ndarray] = []
    index: list[np.ndarray] = []
    groups = len(image_keys)
    low, high = label_range if label_range is not None else (None, None)
    total = sum(len(ds) for ds in sets.values())
    info = {"synthetic": any(is_synthetic(ds) for ds in sets.values()),
            "datasets": {k: describe_dataset(ds) for k, ds in sets.items()}, "n": total}
    bar = progress_bar(total, what, progress, unit)
    layout = ChannelsLast(metric, device, channels_last)
    try:
        with layout, torch.inference_mode():
            for k, (name, ds) in enumerate(sets.items()):
                if len(ds) == 0:
                    raise ScoringError(f"{what} subset {name!r} is empty.")
                bar.set_description(f"{what} {name}")
                desc = f"{what} subset {name!r}"
                for batch in iter_batches(ds, batch_size, num_workers):
                    for items in same_size_runs(batch, image_keys, desc):
                        label = read_labels(items, label_key, desc, low, high)
                        images = torch.cat([stack_images(items, key, desc) for key in image_keys])
                        images = check_images(images.to(device, non_blocking=True), name=desc)
                        feats = engine.features(layout.input(images))
                        if feature_hook is not None and feats is not None:
                            feature_hook(feats, images.shape[0])
                        acc.add(engine(images, groups, pairs, feats))
                        del feats, images
                        labels.append(label)
                        index.append(np.full(len(items), k, dtype=np.int64))
                    bar.update(len(batch))
    finally:
        bar.close()
    return PairDistances(engine=engine, subsets=list(sets), distances=acc.arrays(), labels=np.concatenate(labels),
                         subset_index=np.concatenate(index), info=info)


__all__ = ["COMBINED", "ChannelsLast", "DistanceEngine", "PairDistances", "prepare_metric", "stream_pairs"]
