"""The shared start and end of every training task: run options, config resolution, the run
record that must match for a resume, and the metrics file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..utils.devices import select_device
from ..utils.jsonio import clean_json
from .config import LossConfig, TrainConfig
from .rundir import RunDir
from .trainer import Precision

# --------------------------------------------------------------------------------------------
# Running a task


@dataclass
class RunOptions:
    """Settings of one run that are not hyperparameters.

    Attributes:
        out_dir: the output folder (resumed when it holds the same run).
        seed: the seed of everything random (weights, data order, augmentation, sampling).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        amp: mixed precision (bf16 on CPU; bf16/fp16 on CUDA).
        progress: show progress bars.
        restart: discard an existing run in ``out_dir``.
    """

    out_dir: str | os.PathLike = "lossnet-out/train"
    seed: int = 0
    device: str = "auto"
    amp: bool | str = False
    progress: bool = True
    restart: bool = False


def resolve_run(config_cls: type, config: "str | TrainConfig", overrides: Mapping[str, Any] | None,
                loss: "LossConfig | None", options: "RunOptions | None"):
    """The shared start of every task: the config (a preset name or an instance, with overrides),
    the loss and run options (defaults when None), the device and the precision.

    Returns ``(cfg, loss_cfg, opts, device, precision)``.
    """
    cfg = config_cls.preset(config) if isinstance(config, str) else config
    cfg = cfg.with_overrides(overrides)
    opts = options or RunOptions()
    device = select_device(opts.device)
    return cfg, loss or LossConfig(), opts, device, Precision(device, opts.amp)


def run_config(task: str, config: TrainConfig, loss: LossConfig, data: str, opts: RunOptions,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of a run that must match for it to be resumed (and that the metrics carry)."""
    cfg = {
        "task": task, "config": config.to_dict(), "loss": loss.to_dict(), "data": data, "seed": opts.seed,
        "amp": opts.amp, "device": str(opts.device),
    }
    if extra:
        cfg.update(extra)
    return cfg


def finish_metrics(run_dir: RunDir, task: str, metrics: Mapping[str, Any], train_summary: Mapping[str, Any],
                   device: torch.device, precision: Precision, details: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Assemble and atomically write ``metrics.json``: headline metrics, details, training, config."""
    out = {
        "task": task,
        "metrics": dict(metrics),
        **(dict(details) if details else {}),
        "train": dict(train_summary),
        "device": str(device),
        "precision": precision.describe(),
        "config": run_dir.config,
    }
    run_dir.write_metrics(out)
    return clean_json(out)


def evaluation_seed(seed: int, salt: int) -> torch.Generator:
    """A private generator for evaluation-time randomness (never the global RNG)."""
    return torch.Generator().manual_seed((seed * 7_777_777 + salt) % 2**63)
