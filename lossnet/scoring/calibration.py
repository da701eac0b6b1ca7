"""Learned calibration: LPIPS-style non-negative per-channel linear weights for ANY loss network.

The LPIPS protocol (Zhang et al. 2018; REFERENCE.md section 2) on BAPPS 2AFC train:

- the trunk (any :class:`lossnet.LossNetwork` and layer set) is frozen; each batch of
  triplets goes through it ONCE as ``[ref, p0, p1]``;
- per point, the distance is ``sum_c lin_c * t_c`` with ``t_c`` the channel's spatial mean of
  the squared difference of channel-normalised features (``spatial``; ``mean_pool``, ``mse``
  and ``l1`` are linear in ``lin`` too), summed over points;
- a small ranking net (1x1 convs 5 -> 32 -> 32 -> 1, LeakyReLU 0.2, sigmoid) maps
  ``(d0, d1, d0 - d1, d0 / (d1 + .1), d1 / (d0 + .1))`` to the probability that p1 is closer;
  loss = BCE against the human judgement ``judge``;
- Adam, lr 1e-4, betas (0.5, 0.999), batch 50; ``epochs`` at the constant rate, then
  ``decay_epochs`` with the rate lowered linearly after each (exactly the LPIPS schedule:
  epoch ``e`` (0-based) uses ``lr * (1 - max(0, e - epochs) / decay_epochs)``); after every
  step the lin weights are clamped to >= 0.

Because the trunk is frozen and nothing is augmented, the per-channel terms ``t`` of each
triplet never change: by default they are computed once and cached in memory (when they fit
in ``cache_bytes``), which makes every further epoch nearly free; the results are the same as
recomputing them. Differences from LPIPS's trainer: the lin layers have no dropout and start
at 1 (the uncalibrated metric) rather than at random values.

Example:
    >>> from lossnet.data import load_2afc
    >>> lin = calibrate("alexnet", load_2afc("builtin"), layers="lpips", weights="random", epochs=1,
    ...                 progress=False)  # doctest: +SKIP
    >>> save_lin(lin, "lin.pt")  # doctest: +SKIP
    >>> metric = lossnet.PerceptualLoss("alexnet", layers="lpips", weights="random", lin="lin.pt")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from ..distances.functional import (
    FEATURE_DISTANCES,
    canonical_distance,
    layer_weight_map,
)
from ..distances.lin import save_lin
from ..errors import LossnetError
from ..inputs import check_images
from ..loss.factory import create_metric
from ..loss.perceptual import PerceptualLoss
from ..networks.extraction import LayersArg
from ..utils.progress import progress_bar
from .datasets import DatasetsArg, as_datasets, read_labels, stack_images
from .engine import DistanceEngine
from .twoafc import twoafc_scores

LINEAR_DISTANCES = ("spatial", "mean_pool", "mse", "l1")


class CalibrationError(LossnetError):
    """Calibration cannot run with these settings."""


class RankingHead(nn.Module):
    """LPIPS's ``Dist2LogitLayer``: ``(d0, d1)`` -> probability that p1 is closer to the reference.

    Example:
        >>> RankingHead()(torch.rand(4), torch.rand(4)).shape
        torch.Size([4])
    """

    def __init__(self, chn_mid: int = 32, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.model = nn.Sequential(
            nn.Conv2d(5, chn_mid, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(chn_mid, chn_mid, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(chn_mid, 1, 1), nn.Sigmoid(),
        )

    def forward(self, d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
        d0, d1 = d0.view(-1, 1, 1, 1), d1.view(-1, 1, 1, 1)
        x = torch.cat((d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)), dim=1)
        return self.model(x).view(-1)


def channel_terms(f0: torch.Tensor, f1: torch.Tensor, distance: str = "spatial") -> torch.Tensor:
    """Per-channel terms ``t`` (B, C) with ``distance(f0, f1, lin) == t @ lin`` (the distance's own
    :attr:`~lossnet.distances.FeatureDistance.terms`).

    Example:
        >>> from lossnet.distances.functional import spatial
        >>> f0, f1, w = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4), torch.rand(8)
        >>> torch.allclose(channel_terms(f0, f1) @ w, spatial(f0, f1, w))
        True
    """
    record = FEATURE_DISTANCES[canonical_distance(distance)]
    if record.terms is None or record.name not in LINEAR_DISTANCES:
        raise CalibrationError(f"distance {distance!r} has no per-channel linear weights; calibrate one of "
                               f"{', '.join(LINEAR_DISTANCES)}.")
    return record.terms(record.prepare(f0), record.prepare(f1))


def _build_metric(metric_or_arch: PerceptualLoss | str, layers: LayersArg, weights: Any, distance: str | None,
                  seed: int) -> PerceptualLoss:
    if isinstance(metric_or_arch, PerceptualLoss):
        metric = metric_or_arch
        if distance is not None and canonical_distance(distance) != metric.distance:
            raise CalibrationError(f"the metric uses distance {metric.distance!r} but distance={distance!r} was "
                                   "asked for: build the metric with that distance.")
    elif isinstance(metric_or_arch, str):
        metric = create_metric(metric_or_arch, layers=layers, distance=distance or "spatial", weights=weights,
                               seed=seed)
    else:
        raise CalibrationError("calibrate needs a lossnet.PerceptualLoss or an architecture name, got "
                               f"{type(metric_or_arch).__name__}.")
    if metric.pixel:
        raise CalibrationError(f"the pixel distance {metric.distance!r} has no channels to weight.")
    if metric.distance not in LINEAR_DISTANCES:
        raise CalibrationError(f"distance {metric.distance!r} has no per-channel linear weights; calibrate one of "
                               f"{', '.join(LINEAR_DISTANCES)}.")
    return metric


def _channels(metric: PerceptualLoss, device: torch.device) -> dict[str, int]:
    size = metric.net.spec.fixed_input_size or 64
    with torch.inference_mode():
        feats = metric.net.extract(torch.zeros(1, 3, size, size, device=device), check=False)
    return {p: f.shape[1] for p, f in feats.items()}


class LinCalibrator:
    """Trains non-negative per-channel weights for a frozen loss network (see the module docstring).

    Use :func:`calibrate` for the whole protocol; this class exposes the steps.

    Example:
        >>> cal = LinCalibrator(PerceptualLoss("alexnet", layers=["features.1"], weights="random"))
        >>> t0, t1 = cal.terms(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
        >>> loss = cal.step(t0, t1, torch.tensor([0.0, 1.0]))
    """

    def __init__(self, metric: PerceptualLoss, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.999),
                 seed: int = 0, init: str = "ones", device: str | torch.device = "cpu", chn_mid: int = 32) -> None:
        self.metric = metric.to(device).eval()
        self.device = torch.device(device)
        self.distance = metric.distance
        self.points = list(metric.net.points)
        self.layer_weights = layer_weight_map(self.points, metric.layer_weights)
        self.engine = DistanceEngine(self.metric)
        channels = _channels(self.metric, self.device)
        start = metric.lin
        gen = torch.Generator().manual_seed(int(seed))
        self.lin = nn.ParameterList()
        for p in self.points:
            c = channels[p]
            if start is not None:
                w = start[p].detach().clone().float()
            elif init == "ones":
                w = torch.ones(c)
            elif init == "random":
                w = torch.rand(c, generator=gen) / c ** 0.5
            else:
                raise CalibrationError(f"init must be 'ones' or 'random', got {init!r}.")
            self.lin.append(nn.Parameter(w.to(self.device)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.head = RankingHead(chn_mid).to(self.device)
        self.base_lr = float(lr)
        self.optimizer = torch.optim.Adam([*self.lin.parameters(), *self.head.parameters()], lr=lr, betas=betas)
        self.loss_fn = nn.BCELoss()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def terms(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel terms of d(ref, p0) and d(ref, p1), all points concatenated: two (B, sum C)."""
        x = check_images(torch.cat([ref, p0, p1]).to(self.device), name="2AFC training batch")
        with torch.inference_mode():
            feats = self.engine.features(x)
            t0, t1 = self.engine.channel_terms(feats, 3, [(0, 1), (0, 2)])
        return t0.clone(), t1.clone()

    def _lin_vector(self) -> torch.Tensor:
        return torch.cat([w * self.layer_weights[p] for p, w in zip(self.points, self.lin)])

    def distances(self, t0: torch.Tensor, t1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The calibrated distances d0, d1 from per-channel terms."""
        v = self._lin_vector()
        return t0 @ v, t1 @ v

    def loss(self, t0: torch.Tensor, t1: torch.Tensor, judge: torch.Tensor) -> torch.Tensor:
        d0, d1 = self.distances(t0, t1)
        return self.loss_fn(self.head(d0, d1), judge.to(d0))

    def step(self, t0: torch.Tensor, t1: torch.Tensor, judge: torch.Tensor) -> float:
        """One Adam step on a batch, then clamp the lin weights to >= 0; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(t0, t1, judge)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for w in self.lin:
                w.clamp_(min=0.0)
        return float(loss.detach())

    def lin_weights(self) -> dict[str, torch.Tensor]:
        """``{point: (C,)}`` non-negative weights (CPU copies)."""
        return {p: w.detach().cpu().clone() for p, w in zip(self.points, self.lin)}


def _collate(items: list) -> list:
    return items


def _batch_tensors(items: Sequence[Mapping], what: str) -> tuple[torch.Tensor, ...]:
    ref, p0, p1 = (stack_images(items, k, what) for k in ("ref", "p0", "p1"))
    judge = read_labels(items, "judge", what, 0.0, 1.0)
    return ref, p0, p1, torch.as_tensor(judge, dtype=torch.float32)


def lpips_lr(lr: float, epoch: int, epochs: int, decay_epochs: int) -> float:
    """The LPIPS learning rate of 0-based ``epoch``: constant, then lowered by lr/decay after each epoch.

    Example:
        >>> [lpips_lr(1.0, e, 2, 2) for e in range(4)]
        [1.0, 1.0, 1.0, 0.5]
    """
    if decay_epochs <= 0:
        return lr
    return lr * (1.0 - max(0, epoch - epochs) / decay_epochs)


def calibrate(
    metric_or_arch: PerceptualLoss | str,
    datasets: DatasetsArg,
    epochs: int = 5,
    decay_epochs: int | None = None,
    layers: LayersArg = None,
    weights: Any = "imagenet",
    distance: str | None = None,
    batch_size: int = 50,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    seed: int = 0,
    init: str = "ones",
    cache: bool | None = None,
    cache_bytes: int = 1 << 30,
    progress: bool = True,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    out: str | os.PathLike | None = None,
    history: list | None = None,
) -> dict[str, torch.Tensor]:
    """Train LPIPS-style lin weights on 2AFC training data; return ``{point: (C,)}`` (all >= 0).

    Args:
        metric_or_arch: a :class:`lossnet.PerceptualLoss` (its network, layers, layer weights
            and distance are used; its lin, if any, is the starting point) or an architecture
            name (then ``layers``, ``weights`` and ``distance`` build one).
        datasets: ``{subset: dataset}`` of 2AFC training triplets, e.g.
            ``lossnet.data.load_2afc(root, split="train")``; all subsets are pooled and shuffled.
        epochs, decay_epochs: constant-rate epochs, then linearly decaying ones (default: as many).
        cache: keep the per-channel terms in memory (default: when they fit in ``cache_bytes``).
        out: also save the weights there with :func:`lossnet.distances.lin.save_lin`.
        history: a list that receives one dict per epoch (``epoch``, ``lr``, ``loss``, ``accuracy``).

    Deterministic for a given ``seed`` (shuffling, ranking-net initialisation).

    Example:
        >>> lin = calibrate("vgg16", load_2afc("data/bapps", split="train"), layers="lpips",
        ...                 out="vgg_lin.pt")  # doctest: +SKIP
    """
    if epochs < 0 or (decay_epochs is not None and decay_epochs < 0) or batch_size < 1:
        raise CalibrationError("epochs and decay_epochs must be >= 0 and batch_size >= 1.")
    decay = epochs if decay_epochs is None else decay_epochs
    metric = _build_metric(metric_or_arch, layers, weights, distance, seed)
    sets = as_datasets(datasets)
    if any(len(ds) == 0 for ds in sets.values()):
        raise CalibrationError(f"empty training subset among {list(sets)}.")
    data = ConcatDataset(list(sets.values())) if len(sets) > 1 else next(iter(sets.values()))
    n = len(data)
    cal = LinCalibrator(metric, lr=lr, betas=betas, seed=seed, init=init, device=device)
    total_c = sum(w.numel() for w in cal.lin)
    if cache is None:
        cache = n * 2 * total_c * 4 <= cache_bytes
    gen = torch.Generator().manual_seed(int(seed))
    what = "2AFC training data"

    cached: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    if cache:
        t0s, t1s, js = [], [], []
        bar = progress_bar(n, "calibrate: features", progress, "triplet")
        try:
            for items in DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                    collate_fn=_collate):
                ref, p0, p1, judge = _batch_tensors(items, what)
                t0, t1 = cal.terms(ref, p0, p1)
                t0s.append(t0)
                t1s.append(t1)
                js.append(judge)
                bar.update(len(items))
        finally:
            bar.close()
        cached = (torch.cat(t0s), torch.cat(t1s), torch.cat(js).to(cal.device))

    total_epochs = epochs + decay
    bar = progress_bar(total_epochs * n, "calibrate", progress, "triplet")
    try:
        for epoch in range(total_epochs):
            lr_e = lpips_lr(lr, epoch, epochs, decay)
            cal.set_lr(lr_e)
            perm = torch.randperm(n, generator=gen)
            losses, agree, count = [], 0.0, 0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                if cached is not None:
                    t0, t1, judge = cached[0][idx], cached[1][idx], cached[2][idx]
                else:
                    items = [data[int(i)] for i in idx]
                    ref, p0, p1, judge = _batch_tensors(items, what)
                    t0, t1 = cal.terms(ref, p0, p1)
                    judge = judge.to(cal.device)
                loss = cal.step(t0, t1, judge)
                losses.append(loss * len(idx))
                with torch.no_grad():
                    d0, d1 = cal.distances(t0, t1)
                agree += float(twoafc_scores(d0.cpu().numpy(), d1.cpu().numpy(), judge.cpu().numpy()).sum())
                count += len(idx)
                bar.update(len(idx))
            if history is not None:
                history.append({"epoch": epoch + 1, "lr": lr_e, "loss": float(sum(losses) / count),
                                "accuracy": 100.0 * agree / count})
    finally:
        bar.close()
    weights_out = cal.lin_weights()
    if out is not None:
        save_lin(weights_out, out)
    return weights_out


__all__ = ["LINEAR_DISTANCES", "CalibrationError", "LinCalibrator", "RankingHead", "calibrate", "channel_terms",
           "lpips_lr", "save_lin"]
