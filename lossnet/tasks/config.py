"""Training-task configs: dataclasses with ``mini`` (a few minutes on 2 CPU cores) and ``paper``
(the study's hyperparameters) presets, typed overrides (``--set key=value``), and
:class:`LossConfig` (the loss network, extraction point(s), distance, weights and input
normalisation; a pixel distance with ``net=None`` is the baseline).

Example:
    >>> cfg = TrainConfig(epochs=1, batch_size=4)
    >>> cfg.with_overrides({"lr": "0.01"}).lr
    0.01
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Iterable, Mapping

from torch import nn

from ..distances.functional import PIXEL_DISTANCES, canonical_distance
from ..errors import LossnetError
from ..loss.factory import create_metric
from ..networks.extraction import layer_sets, resolve_layers

CONFIG_NAMES = ("mini", "paper")
# Settings that may change between a run and its resumption (they do not change the results).
NON_RESULT_KEYS = ("device", "progress", "num_workers", "checkpoint_every")


class ConfigMismatchError(LossnetError):
    """An output folder holds a run with another configuration."""


class TrainingError(LossnetError):
    """Training diverged or cannot proceed."""



# --------------------------------------------------------------------------------------------
# Configs


def _coerce(name: str, value: Any, current: Any) -> Any:
    """Turn an override (often a string from the command line) into the type of ``current``."""
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a plain word: kept as a string (e.g. a layer name for a field that may be None)
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        if not isinstance(value, (bool, int)):
            raise LossnetError(f"config field {name!r} is a boolean: give true or false, not {value!r}.")
        return bool(value)
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise LossnetError(f"config field {name!r} is an integer: got {value!r}.")
        return value
    if isinstance(current, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise LossnetError(f"config field {name!r} is a number: got {value!r}.")
        return float(value)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise LossnetError(f"config field {name!r} is a list: got {value!r} (write e.g. [32,64]).")
        return [list(v) if isinstance(v, tuple) else v for v in value]
    return value


@dataclass
class TrainConfig:
    """Hyperparameters common to all tasks; tasks subclass it and define ``PRESETS``.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        lr: Adam learning rate.
        max_steps: stop after this many steps in total (0: no cap).
        checkpoint_every: steps between checkpoints (one is also written at each epoch end).
        patience: early stopping after this many epochs without a better validation loss (0: off).
        num_workers: DataLoader worker processes.
    """

    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-3
    max_steps: int = 0
    checkpoint_every: int = 50
    patience: int = 0
    num_workers: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"mini": {}, "paper": {}}

    @classmethod
    def preset(cls, name: str = "mini", **overrides: Any):
        """The ``mini`` or ``paper`` preset, with optional overrides.

        Example:
            >>> TrainConfig.preset("mini", epochs=3).epochs
            3
        """
        if name not in cls.PRESETS:
            raise LossnetError(f"unknown config {name!r}: use one of {', '.join(cls.PRESETS)}.")
        return cls(**cls.PRESETS[name]).with_overrides(overrides)

    def with_overrides(self, overrides: Mapping[str, Any] | None):
        """A copy with some fields changed; strings are parsed to the field's type."""
        if not overrides:
            return dataclasses.replace(self)
        names = [f.name for f in dataclasses.fields(self)]
        changes = {}
        for key, value in overrides.items():
            if key not in names:
                raise LossnetError(f"unknown config field {key!r} for {type(self).__name__}; fields: {', '.join(names)}.")
            changes[key] = _coerce(key, value, getattr(self, key))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_overrides(items: Iterable[str] | None) -> dict[str, str]:
    """Parse ``["epochs=2", "lr=1e-4"]`` into a dict (values parsed later, per field type)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LossnetError(f"--set expects KEY=VALUE, got {item!r} (e.g. --set epochs=2).")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


@dataclass
class LossConfig:
    """The training loss: a loss network at some extraction point(s) with a distance, or a pixel
    baseline (``net=None`` with ``distance="l2"`` or ``"ssim"``).

    The defaults reproduce Pihlgren et al.: MSE at one point, [0, 1] inputs without ImageNet
    normalisation (``input_norm="none"``); ``layers=None`` takes the second of the study's four
    points (an early one, which did best for super-resolution).

    Example:
        >>> import torch
        >>> LossConfig(net=None, distance="l2").build()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).shape
        torch.Size([])
    """

    net: str | None = "vgg16"
    layers: str | list[str] | None = None
    distance: str = "mse"
    weights: str = "imagenet"
    input_norm: str = "none"
    layer_weights: list[float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.net, str) and self.net.lower() in ("none", "pixel", ""):
            self.net = None
        self.distance = canonical_distance(self.distance)
        if isinstance(self.layers, str) and "," in self.layers:
            self.layers = [s.strip() for s in self.layers.split(",") if s.strip()]
        if self.pixel and self.net is not None:
            raise LossnetError(f"distance {self.distance!r} compares pixels: pass --net none (got --net {self.net}), "
                               "or choose a feature distance (mse, l1, spatial, mean_pool, style).")
        if not self.pixel and self.net is None:
            raise LossnetError(f"distance {self.distance!r} needs a loss network: pass --net (e.g. vgg16, "
                               "efficientnet_lite0), or use --distance l2 for the pixel baseline.")

    @property
    def pixel(self) -> bool:
        return self.distance in PIXEL_DISTANCES

    def resolved_layers(self) -> list[str] | None:
        """The extraction points used (None for a pixel loss)."""
        if self.pixel:
            return None
        if self.layers is None:
            sets = layer_sets(self.net)
            points = sets.get("pihlgren") or sets.get("kumar") or sets["all"]
            return [points[1] if len(points) > 1 else points[0]]
        return resolve_layers(self.net, self.layers)

    def build(self) -> nn.Module:
        """The :class:`lossnet.PerceptualLoss` (mean over the batch)."""
        if self.pixel:
            return create_metric(None, distance=self.distance)
        return create_metric(self.net, layers=self.resolved_layers(), distance=self.distance, weights=self.weights,
                             input_norm=self.input_norm, layer_weights=self.layer_weights)

    def describe(self) -> str:
        if self.pixel:
            return f"pixel {self.distance}"
        return f"{self.net}[{','.join(self.resolved_layers())}] {self.distance} ({self.weights}, norm={self.input_norm})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = self.resolved_layers()
        return d
