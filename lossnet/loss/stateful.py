"""A stateful metric for evaluation loops: ``update(pred, target)`` / ``compute()`` / ``reset()``.

:class:`PerceptualMetric` wraps any lossnet metric (a :class:`~lossnet.PerceptualLoss` or a
preset name for :func:`lossnet.loss.create_metric`) and keeps a running float64 sum and
count of its per-sample values (optionally the values themselves). Under
``torch.distributed`` :meth:`PerceptualMetric.compute` all-reduces the sum and the count of
every process (the local state is left as it is), so the result is the mean over all
samples of all processes, whatever their split. :func:`as_torchmetric` gives the same metric
as a ``torchmetrics.Metric`` (``pip install 'lossnet[torchmetrics]'``).

Example:
    >>> import lossnet
    >>> metric = PerceptualMetric(lossnet.PerceptualLoss(distance="l2", reduction="none"))
    >>> metric.update(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5))
    >>> metric.update(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8))
    >>> round(float(metric.compute()), 4)        # (0.25 + 0.25 + 1) / 3
    0.5
    >>> metric.count
    3
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import InputError, LossnetError


def _check_metric(metric: object) -> nn.Module | Callable:
    if not callable(metric):
        raise LossnetError(f"PerceptualMetric wraps a lossnet metric (e.g. lossnet.PerceptualLoss, or a preset name), "
                           f"got {type(metric).__name__}.")
    reduction = getattr(metric, "reduction", "none")
    if reduction != "none":
        raise LossnetError(
            f"the wrapped metric reduces the batch (reduction={reduction!r}), but a stateful metric needs one value per "
            "sample: build it with reduction='none' (e.g. lossnet.loss.create_metric(name, reduction='none')), or "
            "pass the preset name to PerceptualMetric.")
    return metric


def resolve_metric(metric: object, factory_kwargs: dict[str, Any]) -> nn.Module | Callable:
    """The metric itself, or ``create_metric(name, reduction="none", **factory_kwargs)`` for a preset name."""
    if isinstance(metric, str):
        if factory_kwargs.get("reduction", "none") != "none":
            raise LossnetError("a stateful metric keeps per-sample values: leave reduction out (it is 'none').")
        from . import create_metric

        return _check_metric(create_metric(metric, **{**factory_kwargs, "reduction": "none"}))
    if factory_kwargs:
        raise LossnetError(f"{sorted(factory_kwargs)} configure a metric built from a preset name; the metric given is "
                           "already built: drop them, or pass the preset name instead.")
    return _check_metric(metric)


def per_sample_values(metric: Callable, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The metric's (B,) per-sample values of a batch, computed without gradients."""
    with torch.no_grad():
        values = metric(pred, target)
    batch = pred.shape[0] if isinstance(pred, torch.Tensor) and pred.dim() > 0 else None
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or (batch is not None and values.shape[0] != batch):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise InputError(f"the metric returned {shape} for a batch of {batch}: a stateful metric needs one value per "
                         "sample, shape (B,) (reduction='none', no spatial map).")
    return values.detach()


def _state_device(device: torch.device) -> torch.device:
    return torch.device("cpu") if device.type == "mps" else device  # MPS has no float64


class PerceptualMetric(nn.Module):
    """Running mean of a lossnet metric over batches, reducible across processes.

    Args:
        metric: a metric with per-sample values (``reduction="none"``), or a preset name,
            then built by ``create_metric(metric, reduction="none", **factory_kwargs)``.
        keep_values: also keep every per-sample value (see :meth:`values`).
        sync: all-reduce across processes in :meth:`compute` when ``torch.distributed`` is
            initialised (default True).
        process_group: the group to reduce over (default: the whole world).

    Calling the object (``forward``) updates the state and returns the mean of that batch.
    """

    def __init__(self, metric: object, *, keep_values: bool = False, sync: bool = True,
                 process_group: Any = None, **factory_kwargs: Any) -> None:
        super().__init__()
        self.metric = resolve_metric(metric, factory_kwargs)
        self.keep_values = keep_values
        self.sync = sync
        self.process_group = process_group
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen so far."""
        self._sum: torch.Tensor | None = None  # float64, on the device of the values
        self._count = 0
        self._values: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the per-sample values of a batch."""
        self._add(per_sample_values(self.metric, pred, target))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Update with the batch and return the batch's own mean (float64)."""
        return self._add(per_sample_values(self.metric, pred, target)).mean()

    def _add(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(device=_state_device(values.device), dtype=torch.float64)
        batch_sum = values.sum()
        self._sum = batch_sum if self._sum is None else self._sum + batch_sum.to(self._sum.device)
        self._count += values.numel()
        if self.keep_values:
            self._values.append(values.cpu())
        return values

    @property
    def count(self) -> int:
        """Samples seen by this process since the last reset."""
        return self._count

    def _world(self) -> int:
        import torch.distributed as dist

        if not (self.sync and dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def _reduce_device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend(self.process_group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def compute(self) -> torch.Tensor:
        """The mean over every sample seen (of every process), a float64 scalar tensor."""
        total = self._sum if self._sum is not None else torch.zeros((), dtype=torch.float64)
        state = torch.stack([total, torch.tensor(float(self._count), dtype=torch.float64, device=total.device)])
        if self._world() > 1:
            import torch.distributed as dist

            state = state.to(self._reduce_device())
            dist.all_reduce(state, op=dist.ReduceOp.SUM, group=self.process_group)
        total, count = state[0], state[1]
        if float(count) == 0:
            raise LossnetError("the metric has seen no samples: call update(pred, target) before compute().")
        return total / count

    def values(self) -> torch.Tensor:
        """Every per-sample value (float64, CPU), in update order; across processes rank by rank.

        Needs ``keep_values=True``.
        """
        if not self.keep_values:
            raise LossnetError("per-sample values are not kept: create the metric with keep_values=True.")
        local = torch.cat(self._values) if self._values else torch.zeros(0, dtype=torch.float64)
        if self._world() == 1:
            return local
        import torch.distributed as dist

        gathered: list[Any] = [None] * self._world()
        dist.all_gather_object(gathered, local, group=self.process_group)
        return torch.cat(gathered)

    def extra_repr(self) -> str:
        return f"count={self._count}, keep_values={self.keep_values}, sync={self.sync}"


def _torchmetrics():
    try:
        import torchmetrics
    except ImportError as exc:
        raise LossnetError("as_torchmetric needs torchmetrics: pip install 'lossnet[torchmetrics]'.") from exc
    return torchmetrics


_TORCHMETRIC_CLASS: type | None = None


def torchmetric_class() -> type:
    """The ``torchmetrics.Metric`` subclass behind :func:`as_torchmetric` (built on first use)."""
    global _TORCHMETRIC_CLASS
    if _TORCHMETRIC_CLASS is not None:
        return _TORCHMETRIC_CLASS
    tm = _torchmetrics()

    class PerceptualTorchMetric(tm.Metric):
        """A lossnet metric as a ``torchmetrics.Metric``: the mean of its per-sample values.

        States ``total`` (float64) and ``count`` reduce by sum across processes.
        """

        is_differentiable = False
        higher_is_better = False
        full_state_update = False

        def __init__(self, metric: Callable, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.metric = metric
            self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

        def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
            values = per_sample_values(self.metric, pred, target).to(self.total.device, torch.float64)
            self.total += values.sum()
            self.count += values.numel()

        def compute(self) -> torch.Tensor:
            if float(self.count) == 0:
                raise LossnetError("the metric has seen no samples: call update(pred, target) before compute().")
            return self.total / self.count

    _TORCHMETRIC_CLASS = PerceptualTorchMetric
    return PerceptualTorchMetric


def as_torchmetric(metric: object, *, metric_kwargs: dict[str, Any] | None = None, **factory_kwargs: Any):
    """``metric`` (a metric with ``reduction="none"`` or a preset name) as a ``torchmetrics.Metric``.

    ``metric_kwargs`` go to ``torchmetrics.Metric`` (e.g. ``{"dist_sync_on_step": True}``).

    Example:
        >>> import lossnet
        >>> tm = as_torchmetric(lossnet.PerceptualLoss(distance="l2", reduction="none"))
        >>> tm.update(torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8))
        >>> float(tm.compute())
        1.0
    """
    return torchmetric_class()(resolve_metric(metric, factory_kwargs), **(metric_kwargs or {}))
