"""A run's output folder: its config, checkpoints and metrics, all written atomically; a run
started again with the same command resumes from its last checkpoint, and a different config
in the same folder is a clear error.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..utils.jsonio import atomic_torch_save, clean_json, read_json, write_json
from .config import NON_RESULT_KEYS, ConfigMismatchError, TrainingError

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CONFIG = "config.json"


# --------------------------------------------------------------------------------------------
# Atomic files and run folders


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new)):
            if k in NON_RESULT_KEYS:
                continue
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


class RunDir:
    """An output folder: ``config.json``, ``checkpoint.pt``, ``metrics.json``, ``model.pt``.

    The config is compared with the one already there when the folder holds a checkpoint or
    metrics: a difference raises :class:`ConfigMismatchError` naming the fields (``restart=True``
    discards the old run instead).
    """

    def __init__(self, path: str | os.PathLike, run_config: Mapping[str, Any], restart: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = clean_json(run_config)
        for stale in self.path.glob(".*.tmp-*"):  # leftovers of a kill during a write
            with contextlib.suppress(OSError):
                stale.unlink()
        has_state = self.checkpoint_path.exists() or self.metrics_path.exists()
        if restart:
            for p in (self.checkpoint_path, self.metrics_path, self.path / "model.pt"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        elif has_state and (self.path / CONFIG).exists():
            old = read_json(self.path / CONFIG, fix="pass --restart to discard this run, or use another --out folder")
            diffs = _diff(old, self.config)
            if diffs:
                raise ConfigMismatchError(
                    f"the output folder {self.path} holds a run with another configuration ({'; '.join(diffs)}). "
                    "Use another --out folder, run the same command as before to resume it, or pass --restart "
                    "to discard it.")
        write_json(self.path / CONFIG, self.config)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a foreign or damaged file
            raise TrainingError(f"cannot read the checkpoint {self.checkpoint_path} ({exc}): delete it or pass "
                                "--restart to start over.") from exc

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        atomic_torch_save(dict(state), self.checkpoint_path)

    def read_metrics(self) -> dict[str, Any] | None:
        if not self.metrics_path.exists():
            return None
        return read_json(self.metrics_path, fix="pass --restart to discard this run, or use another --out folder")

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        write_json(self.metrics_path, metrics)
