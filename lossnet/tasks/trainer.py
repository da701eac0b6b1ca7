"""Mixed precision, determinism and the step loop shared by the training tasks.

:class:`Trainer` checkpoints every ``checkpoint_every`` steps and at each epoch end (model,
optimizer, grad scaler, epoch/step, data-order position and the RNG states of torch, numpy
and python); on CPU a resumed run ends with exactly the same weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import LossnetError
from ..utils.progress import progress_bar
from .config import ConfigMismatchError, TrainConfig, TrainingError
from .rundir import RunDir

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

    The step path never waits for the device: losses stay on it and are read in blocks of
    :attr:`LOSS_READ_EVERY` steps, at epoch ends and before every checkpoint.

    ``step_fn(model, batch) -> loss`` computes the loss of one batch (already on the device,
    under autocast); ``val_fn(model) -> float`` (optional) is called at each epoch end for
    early stopping (the best weights are restored at the end when ``patience > 0``).

    Example:
        >>> trainer = Trainer(model, dataset, step_fn, cfg, run_dir, seed=0)  # doctest: +SKIP
        >>> summary = trainer.fit()  # doctest: +SKIP
    """

    LOSS_READ_EVERY = 100

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
        self.train_model = self.model  # what the steps run (a DistributedDataParallel wrapper, say)
        self._losses: list[torch.Tensor] = []  # of the steps since the last read, on the device

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
        self.read_losses()
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

    def _train_step(self, batch: Any) -> torch.Tensor:
        batch = to_device(batch, self.device)
        with self.precision.autocast():
            loss = self.step_fn(self.train_model, batch)
        if self.precision.scaler is not None:
            self.precision.scaler.scale(loss).backward()
            self.precision.scaler.step(self.optimizer)
            self.precision.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _mean_over_processes(self, losses: torch.Tensor) -> torch.Tensor:
        """The losses of a block of steps averaged over data-parallel processes (one process: as they are)."""
        return losses

    def read_losses(self) -> None:
        """Book the losses of the steps since the last read: one device read per block of steps,
        never a wait per step, and the same numbers as a per-step ``float(loss)``. A NaN/inf loss
        is a clear error here, before anything is written (every checkpoint reads first)."""
        if not self._losses:
            return
        first_step = self.step - len(self._losses) + 1
        values = self._mean_over_processes(torch.stack(self._losses).float()).tolist()
        self._losses.clear()
        for i, loss in enumerate(values):
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {first_step + i}: lower the learning rate "
                                    "(--set lr=...) or turn off --amp.")
            self.epoch_loss_sum += loss
            self.first_loss = loss if self.first_loss is None else self.first_loss
            self.last_loss = loss

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
        self.model.train()
        bar = progress_bar(self.total_steps, self.desc, self.progress, unit="step", initial=self.step)
        every = self.cfg.checkpoint_every
        t0 = time.perf_counter()
        stop = False
        try:
            while not stop and self.epoch < self.cfg.epochs and self.step < self.total_steps:
                keys = epoch_keys(len(self.dataset), self.seed, self.epoch)[self.position * self.cfg.batch_size:]
                for batch in self._loader(keys):
                    loss = self._train_step(batch)  # (it may read the losses so far: append after it)
                    self._losses.append(loss)
                    self.step += 1
                    self.position += 1
                    bar.update(1)
                    if len(self._losses) >= self.LOSS_READ_EVERY:
                        self.read_losses()
                        bar.set_postfix(loss=f"{self.last_loss:.4g}", epoch=self.epoch + 1)
                    if self.step >= self.total_steps or self.position >= self.steps_per_epoch:
                        break
                    if every and self.step % every == 0:
                        self.seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self.save()
                if self.position >= self.steps_per_epoch or self.step >= self.total_steps:
                    self.read_losses()
                    stop = self._end_epoch() or self.step >= self.total_steps
                    self.model.train()  # the validation ran in eval mode
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
