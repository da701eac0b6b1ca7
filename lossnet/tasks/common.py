"""The training engine shared by the downstream tasks.

- Config dataclasses with ``mini`` (a few minutes on 2 CPU cores) and ``paper`` (the study's
  hyperparameters) presets, and typed overrides (``--set key=value``).
- :class:`LossConfig`: the loss network, extraction point(s), distance, weights and input
  normalisation; a pixel distance (``l2``, ``ssim``) with ``net=None`` is the baseline.
- Device selection (``auto|cpu|cuda|mps``) and mixed precision (:class:`Precision`).
- :class:`RunDir`: an output folder with its config, checkpoints and metrics, all written
  atomically; a run started again with the same command resumes from its last checkpoint,
  and a different config in the same folder is a clear error.
- :class:`Trainer`: the step loop with checkpoints every ``checkpoint_every`` steps and at
  each epoch end, saving model, optimizer, grad scaler, epoch/step, data-order position and
  the RNG states (torch, numpy, python). On CPU a resumed run ends with exactly the same
  weights as an uninterrupted one.

Example:
    >>> cfg = TrainConfig(epochs=1, batch_size=4)
    >>> cfg.with_overrides({"lr": "0.01"}).lr
    0.01
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..distances.functional import PIXEL_DISTANCES, canonical_distance
from ..errors import LossnetError
from ..loss.factory import create_metric
from ..networks.extraction import layer_sets, resolve_layers
from ..utils.devices import select_device
from ..utils.jsonio import atomic_torch_save, clean_json, read_json, write_json
from ..utils.progress import progress_bar

CONFIG_NAMES = ("mini", "paper")
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CONFIG = "config.json"
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


# --------------------------------------------------------------------------------------------
# Devices, precision, determinism


class Precision:
    """Mixed precision: autocast in bf16 (CPU, and CUDA where supported) or fp16 (older CUDA, MPS,
    with a gradient scaler on CUDA). ``amp=False`` runs in float32.

    Example:
        >>> p = Precision(torch.device("cpu"), amp=True)
        >>> p.dtype
        torch.bfloat16
    """

    def __init__(self, device: torch.device, amp: bool | str = False) -> None:
        self.device = device
        if amp in (False, None, "off", "none", "fp32"):
            self.dtype = None
        elif amp in ("bf16", "bfloat16"):
            self.dtype = torch.bfloat16
        elif amp in ("fp16", "float16"):
            if device.type == "cpu":
                raise LossnetError("fp16 autocast is not supported on the CPU: use --amp (bf16) there.")
            self.dtype = torch.float16
        elif amp is True or amp in ("on", "auto"):
            if device.type == "cuda":
                self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            elif device.type == "mps":
                self.dtype = torch.float16
            else:
                self.dtype = torch.bfloat16
        else:
            raise LossnetError(f"unknown amp setting {amp!r}: use true, false, bf16 or fp16.")
        self.scaler = torch.amp.GradScaler("cuda") if (self.dtype == torch.float16 and device.type == "cuda") else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).replace("torch.", "")


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The torch, numpy and python RNG states, in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


# --------------------------------------------------------------------------------------------
# The step loop


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def epoch_keys(n: int, seed: int, epoch: int) -> list[tuple[int, int]]:
    """The data order of an epoch: ``(index, augmentation seed)`` keys, a function of (seed, epoch)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 17) % 2**63)
    order = torch.randperm(n, generator=g).tolist()
    aug = torch.randint(0, 2**31 - 1, (n,), generator=g).tolist()
    return list(zip(order, aug))


def _state_to_cpu(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in state.items()}


StepFn = Callable[[nn.Module, Any], torch.Tensor]


class Trainer:
    """Trains ``model`` on ``dataset`` with Adam, resumably.

    ``step_fn(model, batch) -> loss`` computes the loss of one batch (already on the device,
    under autocast); ``val_fn(model) -> float`` (optional) is called at each epoch end for
    early stopping (the best weights are restored at the end when ``patience > 0``).

    Example:
        >>> trainer = Trainer(model, dataset, step_fn, cfg, run_dir, seed=0)  # doctest: +SKIP
        >>> summary = trainer.fit()  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, dataset: torch.utils.data.Dataset, step_fn: StepFn, config: TrainConfig,
                 run_dir: RunDir, seed: int = 0, device: torch.device | str = "cpu",
                 precision: Precision | None = None, val_fn: Callable[[nn.Module], float] | None = None,
                 progress: bool = True, desc: str = "train",
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.step_fn = step_fn
        self.cfg = config
        self.run_dir = run_dir
        self.seed = seed
        self.precision = precision or Precision(self.device, False)
        self.val_fn = val_fn
        self.progress = progress
        self.desc = desc
        self.optimizer = optimizer or torch.optim.Adam(
            [p for p in self.model.parameters() if p.requires_grad], lr=config.lr)
        n = len(dataset)
        if n == 0:
            raise TrainingError("the training set is empty.")
        self.drop_last = n >= config.batch_size
        self.steps_per_epoch = n // config.batch_size if self.drop_last else 1
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        # Mutable training state (all of it goes into checkpoints).
        self.epoch = 0
        self.position = 0  # batches done in the current epoch
        self.step = 0
        self.epoch_loss_sum = 0.0
        self.epoch_losses: list[float] = []
        self.val_losses: list[float] = []
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.best_val = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.finished = False
        self.seconds = 0.0
        self.resumed_from: int | None = None

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "model": _state_to_cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler else None,
            "epoch": self.epoch, "position": self.position, "step": self.step,
            "data": {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                     "batch_size": self.cfg.batch_size, "n": len(self.dataset)},
            "epoch_loss_sum": self.epoch_loss_sum, "epoch_losses": list(self.epoch_losses),
            "val_losses": list(self.val_losses), "first_loss": self.first_loss, "last_loss": self.last_loss,
            "best_val": self.best_val, "best_state": self.best_state, "bad_epochs": self.bad_epochs,
            "finished": self.finished, "seconds": self.seconds,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        data = state["data"]
        if data["n"] != len(self.dataset) or data["batch_size"] != self.cfg.batch_size:
            raise ConfigMismatchError(
                f"the checkpoint in {self.run_dir.path} was made with {data['n']} training items and batch size "
                f"{data['batch_size']}, now {len(self.dataset)} and {self.cfg.batch_size}: the data changed. "
                "Pass --restart to start over or use another --out folder.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.precision.scaler and state.get("scaler"):
            self.precision.scaler.load_state_dict(state["scaler"])
        for key in ("epoch", "position", "step", "epoch_loss_sum", "first_loss", "last_loss", "best_val",
                    "bad_epochs", "finished", "seconds"):
            setattr(self, key, state[key])
        self.epoch_losses = list(state["epoch_losses"])
        self.val_losses = list(state["val_losses"])
        self.best_state = state["best_state"]
        set_rng_state(state["rng"])
        self.resumed_from = self.step

    def save(self) -> None:
        self.run_dir.save_checkpoint(self.state_dict())

    # -- loop -------------------------------------------------------------------------------
    def _loader(self, keys: list[tuple[int, int]]) -> torch.utils.data.DataLoader:
        # A private generator: creating the loader must not draw from the global RNG (that would
        # shift the model's random draws by where a run was resumed).
        g = torch.Generator().manual_seed(self.seed * 31 + self.epoch)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=keys, drop_last=self.drop_last,
            num_workers=self.cfg.num_workers, generator=g, pin_memory=self.device.type == "cuda",
            persistent_workers=False)

    def _train_step(self, batch: Any) -> float:
        self.model.train()
        batch = to_device(batch, self.device)
        with self.precision.autocast():
            loss = self.step_fn(self.model, batch)
        if not torch.isfinite(loss.detach()).all():
            raise TrainingError(f"the loss became {float(loss)} at step {self.step + 1}: lower the learning rate "
                                "(--set lr=...) or turn off --amp.")
        if self.precision.scaler is not None:
            self.precision.scaler.scale(loss).backward()
            self.precision.scaler.step(self.optimizer)
            self.precision.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _end_epoch(self) -> bool:
        """Book-keeping at an epoch end; returns True when early stopping says stop."""
        self.epoch_losses.append(self.epoch_loss_sum / max(self.position, 1))
        self.epoch_loss_sum = 0.0
        self.position = 0
        self.epoch += 1
        stop = False
        if self.val_fn is not None:
            self.model.eval()
            with torch.no_grad():
                val = float(self.val_fn(self.model))
            self.val_losses.append(val)
            if val < self.best_val:
                self.best_val, self.bad_epochs = val, 0
                if self.cfg.patience:
                    self.best_state = _state_to_cpu(self.model.state_dict())
            else:
                self.bad_epochs += 1
                stop = bool(self.cfg.patience) and self.bad_epochs >= self.cfg.patience
        return stop

    def fit(self) -> dict[str, Any]:
        """Train to the end (resuming from the run folder's checkpoint if there is one)."""
        state = self.run_dir.load_checkpoint()
        if state is not None:
            self.load_state_dict(state)
        if self.finished:
            return self.summary()
        bar = progress_bar(self.total_steps, self.desc, self.progress, unit="step", initial=self.step)
        t0 = time.perf_counter()
        stop = False
        try:
            while not stop and self.epoch < self.cfg.epochs and self.step < self.total_steps:
                keys = epoch_keys(len(self.dataset), self.seed, self.epoch)
                keys = keys[self.position * self.cfg.batch_size:]
                for batch in self._loader(keys):
                    loss = self._train_step(batch)
                    self.step += 1
                    self.position += 1
                    self.epoch_loss_sum += loss
                    self.first_loss = loss if self.first_loss is None else self.first_loss
                    self.last_loss = loss
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", epoch=self.epoch + 1)
                    if self.step >= self.total_steps:
                        break
                    if self.position >= self.steps_per_epoch:
                        break
                    if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                        self.seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self.save()
                if self.position >= self.steps_per_epoch or self.step >= self.total_steps:
                    stop = self._end_epoch() or self.step >= self.total_steps
                    self.seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    if not stop and self.epoch < self.cfg.epochs:
                        self.save()
        finally:
            bar.close()
        if self.cfg.patience and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.finished = True
        self.seconds += time.perf_counter() - t0
        self.save()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.step, "epochs": self.epoch, "steps_per_epoch": self.steps_per_epoch,
            "first_loss": self.first_loss, "last_loss": self.last_loss, "epoch_losses": self.epoch_losses,
            "val_losses": self.val_losses, "best_val_loss": self.best_val if self.val_losses else None,
            "early_stopped": bool(self.cfg.patience) and self.epoch < self.cfg.epochs and self.step < self.total_steps,
            "train_seconds": round(self.seconds, 3), "resumed_from_step": self.resumed_from,
        }


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


__all__ = [
    "CONFIG_NAMES", "ConfigMismatchError", "LossConfig", "Precision", "RunDir", "RunOptions", "TrainConfig",
    "Trainer", "TrainingError", "atomic_torch_save", "epoch_keys", "finish_metrics",
    "parse_overrides", "rng_state", "run_config", "seed_everything", "set_rng_state",
]
