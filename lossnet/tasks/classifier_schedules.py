"""Learning-rate schedules, optimisers and evaluation steps of the classifier study (Appendix M).

The learning rate of update ``s`` (``s = 0 .. T-1``, ``T = train_steps``) is

    lr(s) = base * warmup(s) * decay(s),   warmup(s) = min(1, (s + 1) / W)   (1 when W = 0)

with ``decay``:

- ``constant``: 1;
- ``step`` (ResNets): ``factor ** k``, ``k`` the number of boundaries ``b`` (fractions of T;
  default 30, 60 and 80 of 90 epochs) with ``s >= round(b * T)``;
- ``exponential`` (EfficientNets, TensorFlow's staircase ``exponential_decay``):
  ``rate ** floor(s / every)``;
- ``cosine`` (ViTs): 1 during the warmup, then ``0.5 * (1 + cos(pi * (s - W) / (T - W)))``.

Example:
    >>> [round(learning_rate(s, 0.1, 10, "step", boundaries=(0.5,)), 4) for s in (0, 4, 5, 9)]
    [0.1, 0.1, 0.01, 0.01]
    >>> learning_rate(0, 1.0, 100, "cosine", warmup_steps=10)
    0.1
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import LossnetError, unknown_name

SCHEDULES = ("constant", "step", "exponential", "cosine")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
# Epoch boundaries of the TensorFlow ResNet recipe (30, 60, 80 of 90 epochs) as fractions of the run.
STEP_BOUNDARIES = (30 / 90, 60 / 90, 80 / 90)


def learning_rate(step: int, base: float, train_steps: int, schedule: str, warmup_steps: int = 0,
                  boundaries: Sequence[float] = STEP_BOUNDARIES, factor: float = 0.1, rate: float = 0.97,
                  every: int = 1) -> float:
    """The learning rate of update ``step`` (0-based); see the module docstring for the formulas."""
    if schedule not in SCHEDULES:
        raise unknown_name("learning-rate schedule", schedule, SCHEDULES)
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant":
        decay = 1.0
    elif schedule == "step":
        decay = factor ** sum(step >= round(b * train_steps) for b in boundaries)
    elif schedule == "exponential":
        decay = rate ** (step // max(1, every))
    else:
        span = max(1, train_steps - warmup_steps)
        progress = min(1.0, max(0, step - warmup_steps) / span)
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base * warm * decay


def check_schedule(schedule: str, train_steps: int, warmup_steps: int, boundaries: Sequence[float],
                   factor: float, rate: float, every: int) -> None:
    """Clear errors for schedules that cannot work."""
    if schedule not in SCHEDULES:
        raise unknown_name("learning-rate schedule", schedule, SCHEDULES)
    if train_steps < 1:
        raise LossnetError(f"train_steps must be at least 1, got {train_steps}.")
    if warmup_steps < 0 or (warmup_steps and warmup_steps >= train_steps):
        raise LossnetError(f"warmup_steps ({warmup_steps}) must be below train_steps ({train_steps}).")
    if schedule == "step" and any(not 0 < b < 1 for b in boundaries):
        raise LossnetError(f"step boundaries are fractions of train_steps in (0, 1), got {list(boundaries)}.")
    if schedule == "step" and not 0 < factor <= 1:
        raise LossnetError(f"step_factor must be in (0, 1], got {factor}.")
    if schedule == "exponential" and (not 0 < rate <= 1 or every < 1):
        raise LossnetError(f"exponential decay needs 0 < exp_rate <= 1 and exp_every >= 1, got {rate}, {every}.")


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict]:
    """Two optimiser groups: weights with ``weight_decay``, and (unless ``decay_norm_and_bias``)
    biases, normalisation parameters and ViT token/position embeddings with none.

    Example:
        >>> groups = parameter_groups(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 1e-4)
        >>> [(g["weight_decay"], len(g["params"])) for g in groups]
        [(0.0001, 1), (0.0, 3)]
    """
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    no_decay_ids = set()
    if not decay_norm_and_bias:
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, norm_types) or name == "bias" or p.ndim <= 1 or name in (
                        "class_token", "pos_embedding"):
                    no_decay_ids.add(id(p))
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if id(p) in no_decay_ids else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(name: str, groups: list[dict], lr: float, momentum: float = 0.9, nesterov: bool = False,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                   rmsprop_alpha: float = 0.9) -> torch.optim.Optimizer:
    """``sgd`` (momentum, L2 weight decay as TensorFlow's regulariser), ``rmsprop`` (TensorFlow's
    EfficientNet settings: decay ``rmsprop_alpha``, momentum, ``eps`` 1e-3), ``adam`` (L2 weight
    decay added to the gradient) or ``adamw`` (decoupled weight decay)."""
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=rmsprop_alpha, momentum=momentum,
                                   eps=1e-3 if eps is None else eps)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, betas=tuple(betas), eps=1e-8 if eps is None else eps)


def evaluation_steps(train_steps: int, points: int, first: int = 0, at_init: bool = True,
                     explicit: Iterable[int] = ()) -> list[int]:
    """Steps whose weights are evaluated: dense early, sparse late.

    ``points`` steps spaced geometrically from ``first`` (default: about 1 % of the run, at
    least 1) to ``train_steps``, the last step always, step 0 (the initialisation) when
    ``at_init``; or exactly the ``explicit`` steps (plus the last).

    Example:
        >>> evaluation_steps(1000, 5, first=10)
        [0, 10, 32, 100, 316, 1000]
    """
    if explicit:
        steps = {int(s) for s in explicit}
        bad = [s for s in steps if not 0 <= s <= train_steps]
        if bad:
            raise LossnetError(f"eval_steps must lie in 0..train_steps ({train_steps}), got {sorted(bad)}.")
        return sorted(steps | {train_steps})
    if points < 1:
        raise LossnetError(f"eval_points must be at least 1, got {points}.")
    first = first or max(1, round(train_steps / 100))
    first = min(first, train_steps)
    grid = np.geomspace(first, train_steps, points) if points > 1 else np.array([train_steps])
    steps = {int(round(s)) for s in grid} | {train_steps}
    if at_init:
        steps.add(0)
    return sorted(steps)


__all__ = ["OPTIMIZERS", "SCHEDULES", "STEP_BOUNDARIES", "check_schedule", "evaluation_steps", "learning_rate",
           "make_optimizer", "parameter_groups"]
