"""Training ImageNet-64 classifiers and scoring their Perceptual Score along training (Kumar et al. 2022).

``train_classifier(arch, config, data, options)`` trains one network of
:mod:`lossnet.networks.classifiers` from scratch with the Appendix M recipe of its family,
evaluates it at checkpoints that are dense early and sparse late (PS peaks in the first
epochs), and writes to the run folder:

- ``config.json``, ``checkpoint.pt`` (the resumable state: model, optimiser, EMA, RNG, data
  position; atomic) and ``metrics.json`` (written at the end);
- ``ckpt/step-NNNNNNN.pt``: the weights at each evaluation step, each a loss network
  (``lossnet.PerceptualLoss(arch, layers="kumar", weights=path)`` loads it strictly);
- ``evals/step-NNNNNNN.json``: top-1/top-5 on the validation set, PS with the local
  (``spatial``), ``mean_pool`` and ``style`` functions, layer-wise PS, distortion sensitivity,
  optionally activation entropy and spatial-frequency sensitivity; written atomically as each
  evaluation finishes, so a killed run keeps them and never recomputes them.

Killed at any moment (even ``kill -9``), the same command resumes from the last checkpoint;
on the CPU the resumed run ends bit-identical to an uninterrupted one. The data order and
the augmentation of every image are functions of the seed (:func:`lossnet.tasks.trainer.epoch_keys`
and one integer seed per image), evaluation never draws from the global RNG.

Several processes (``torchrun --nproc_per_node N -m lossnet train classifier ...``) train ONE run
data-parallel with the same global batch; see :func:`train_classifier`.

Configs (``--config``; every field can be overridden with ``--set key=value``):

- ``kumar-resnet``: batch 1024, SGD momentum 0.9, lr 0.1, weight decay 1e-4, step decay
  (x0.1 at 30, 60, 80 of 90 epochs), no label smoothing, 112,590 steps, BN momentum 0.9.
- ``kumar-efficientnet``: batch 2048, RMSProp (decay 0.9, momentum 0.9, eps 1e-3), lr 0.128,
  5-epoch warmup then x0.97 every 2.4 epochs, weight decay 1e-5, label smoothing 0.1,
  218,949 steps, BN momentum 0.9, EMA (Polyak) 0.9999.
- ``kumar-vit-b8``: batch 4096, Adam (0.9, 0.999) with decoupled weight decay 0.3, lr 3e-3,
  10,000 warmup steps then cosine, 93,834 steps, dropout 0.1, label smoothing 0.1.
- ``kumar-vit-l4``: as ViT-B/8 with lr 1e-4 and weight decay 0.01.
- ``paper``: the one of the above that matches the architecture's family.
- ``mini``: the ResNet recipe shrunk to minutes on a laptop CPU (built-in photo patches).

Example:
    >>> cfg = ClassifierConfig.for_arch("paper", "kumar_vit_l4")
    >>> cfg.lr, cfg.weight_decay, cfg.schedule
    (0.0001, 0.01, 'cosine')
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imagenet64 import (
    ClassificationItems,
    ImageArrays,
    Normalizer,
    augment_batch,
    class_subset,
    collate_batch,
    load_imagenet64,
    restrict_classes,
)
from ..errors import LossnetError
from ..networks import classifiers as nets
from ..utils.devices import select_device
from ..utils.jsonio import atomic_torch_save, read_json, write_json
from .classifier_eval import (
    accuracy,
    best_by,
    frequency_sensitivity,
    perceptual_score,
    perceptual_sets,
)
from .classifier_schedules import (
    STEP_BOUNDARIES,
    check_schedule,
    evaluation_steps,
    learning_rate,
    make_optimizer,
    parameter_groups,
)
from .config import TrainConfig, TrainingError
from .data_parallel import DataParallel, FollowerRunDir, data_parallel_device, start_data_parallel
from .run import RunOptions
from .rundir import RunDir
from .trainer import (
    Precision,
    Trainer,
    rng_state,
    seed_everything,
    set_rng_state,
)

IMAGENET_TRAIN = 1_281_167  # images in the ImageNet-1k train split (ImageNet 64x64 has the same)
EVAL_DIR = "evals"
CKPT_DIR = "ckpt"
DATA_PREFIX = "imagenet64:"
# TrainConfig fields that mean nothing here: setting one is an error, not silently ignored.
UNUSED_FIELDS = ("epochs", "max_steps", "patience")


def _epochs(n: float, batch: int) -> int:
    return max(1, round(n * IMAGENET_TRAIN / batch))


@dataclass
class ClassifierConfig(TrainConfig):
    """Hyperparameters of one classifier run (see the module docstring for the presets).

    Attributes:
        train_steps: optimisation steps (the run's length; ``epochs`` is derived from it).
        optimizer: ``sgd``, ``rmsprop``, ``adam`` or ``adamw``; ``momentum`` (SGD, RMSProp),
            ``nesterov``, ``beta1``/``beta2`` (Adam), ``rmsprop_alpha``, ``optimizer_eps``
            (0: the optimiser's default, 1e-3 for RMSProp, 1e-8 for Adam).
        weight_decay: L2 (SGD, RMSProp, Adam) or decoupled (AdamW) decay of the weights;
            ``decay_norm_and_bias`` applies it to biases, norms and ViT embeddings as well.
        schedule: ``constant``, ``step``, ``exponential`` or ``cosine`` with ``warmup_steps``;
            ``step_boundaries`` (fractions of the run) and ``step_factor``; ``exp_rate`` every
            ``exp_every`` steps.
        label_smoothing: of the cross-entropy loss.
        dropout: before the classifier (ViTs: also inside, torchvision's ``dropout``);
            -1 keeps the family default (EfficientNets: Tan & Le's 0.2 .. 0.4).
        bn_momentum: BatchNorm momentum, TensorFlow convention (0.9 = PyTorch's 0.1).
        ema_decay: Polyak averaging of the weights (0: off); evaluation uses the average.
        crop: ``pad`` (random translation, ``crop_padding``), ``resized`` (scale from
            ``crop_min_scale``), ``center`` (``center_fraction``) or ``none``; ``flip``.
        classes: train on a seeded random subset of this many classes (0: all), ``class_seed``; an
            architecture named with ``_c{N}`` on data with more classes trains on such a subset of N.
        eval_points / eval_first / eval_at_init / eval_steps: which steps are evaluated (see
            :func:`~lossnet.tasks.classifier_schedules.evaluation_steps`).
        eval_batch, val_limit: evaluation batch size; at most this many validation images (0: all).
        ps_data: ``builtin`` (synthetic 2AFC), a BAPPS folder, or ``none`` (accuracy only);
            ``ps_n_per_subset`` for builtin.
        ps_distances: the perceptual functions scored from the one pass.
        eval_entropy: also measure activation entropy; ``eval_lowpass``: square sides ``r`` of the
            spatial-frequency analysis (empty: off).
        builtin_train / builtin_val: built-in patches per class; ``data_seed`` their seed.
        channels_last: channels-last memory format on CUDA.
        sync_bn: in a data-parallel run on CUDA, BatchNorm with the statistics of the whole global
            batch (``torch.nn.SyncBatchNorm``); off, each rank normalises with its own share's statistics
            (DDP's default; the running statistics kept are rank 0's). One process: BN always sees the whole batch.
    """

    train_steps: int = 240
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    rmsprop_alpha: float = 0.9
    optimizer_eps: float = 0.0
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = False
    schedule: str = "step"
    warmup_steps: int = 0
    step_boundaries: list = field(default_factory=lambda: list(STEP_BOUNDARIES))
    step_factor: float = 0.1
    exp_rate: float = 0.97
    exp_every: int = 1
    label_smoothing: float = 0.0
    dropout: float = 0.0
    bn_momentum: float = 0.9
    ema_decay: float = 0.0
    crop: str = "pad"
    crop_padding: int = 4
    crop_min_scale: float = 0.08
    center_fraction: float = 1.0
    flip: bool = True
    classes: int = 0
    class_seed: int = 0
    eval_points: int = 10
    eval_first: int = 0
    eval_at_init: bool = True
    eval_steps: list = field(default_factory=list)
    eval_batch: int = 256
    val_limit: int = 0
    ps_data: str = "builtin"
    ps_n_per_subset: int = 100
    ps_distances: list = field(default_factory=lambda: ["spatial", "mean_pool", "style"])
    eval_entropy: bool = False
    eval_lowpass: list = field(default_factory=list)
    builtin_train: int = 160
    builtin_val: int = 40
    data_seed: int = 0
    channels_last: bool = True
    sync_bn: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mini": dict(batch_size=64, lr=0.1, train_steps=240, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                     schedule="step", label_smoothing=0.0, bn_momentum=0.9, eval_points=6, eval_first=10,
                     ps_n_per_subset=50, checkpoint_every=40, eval_batch=280),
        "kumar-resnet": dict(batch_size=1024, lr=0.1, train_steps=112_590, optimizer="sgd", momentum=0.9,
                             weight_decay=1e-4, label_smoothing=0.0, schedule="step", bn_momentum=0.9,
                             eval_points=20, checkpoint_every=1000, ps_n_per_subset=500),
        "kumar-efficientnet": dict(batch_size=2048, lr=0.128, train_steps=218_949, optimizer="rmsprop",
                                   momentum=0.9, rmsprop_alpha=0.9, optimizer_eps=1e-3, weight_decay=1e-5,
                                   label_smoothing=0.1, schedule="exponential", warmup_steps=_epochs(5, 2048),
                                   exp_rate=0.97, exp_every=_epochs(2.4, 2048), bn_momentum=0.9, ema_decay=0.9999,
                                   dropout=-1.0, eval_points=20, checkpoint_every=1000, ps_n_per_subset=500),
        "kumar-vit-b8": dict(batch_size=4096, lr=3e-3, train_steps=93_834, optimizer="adamw", beta1=0.9,
                             beta2=0.999, weight_decay=0.3, schedule="cosine", warmup_steps=10_000, dropout=0.1,
                             label_smoothing=0.1, eval_points=20, checkpoint_every=1000, ps_n_per_subset=500),
        "kumar-vit-l4": dict(batch_size=4096, lr=1e-4, train_steps=93_834, optimizer="adamw", beta1=0.9,
                             beta2=0.999, weight_decay=0.01, schedule="cosine", warmup_steps=10_000, dropout=0.1,
                             label_smoothing=0.1, eval_points=20, checkpoint_every=1000, ps_n_per_subset=500),
    }
    CONFIGS: ClassVar[tuple[str, ...]] = ("mini", "paper", "kumar-resnet", "kumar-efficientnet", "kumar-vit-b8",
                                          "kumar-vit-l4")

    @classmethod
    def for_arch(cls, name: str, arch: str, **overrides: Any) -> "ClassifierConfig":
        """The preset ``name`` (``paper``: the recipe of ``arch``'s family), with overrides."""
        if name == "paper":
            name = paper_config(arch)
        if name not in cls.PRESETS:
            raise LossnetError(f"unknown classifier config {name!r}: use one of {', '.join(cls.CONFIGS)}.")
        return cls.preset(name, **overrides)

    def check(self) -> "ClassifierConfig":
        """Clear errors for settings that cannot work."""
        check_schedule(self.schedule, self.train_steps, self.warmup_steps, self.step_boundaries, self.step_factor,
                       self.exp_rate, self.exp_every)
        if self.batch_size < 1:
            raise LossnetError(f"batch_size must be at least 1, got {self.batch_size}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise LossnetError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.weight_decay < 0:
            raise LossnetError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if not (self.dropout == -1.0 or 0.0 <= self.dropout < 1.0):
            raise LossnetError(f"dropout must be in [0, 1) (or -1: the family default), got {self.dropout}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise LossnetError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}.")
        if not self.ps_distances:
            raise LossnetError("ps_distances is empty: give at least one of spatial, mean_pool, style.")
        return self


def paper_config(arch: str) -> str:
    """The Appendix M recipe of ``arch``'s family.

    Example:
        >>> paper_config("kumar_resnet50"), paper_config("kumar_vit_b4")
        ('kumar-resnet', 'kumar-vit-b8')
    """
    parsed = nets.parse_name(arch)
    if parsed.family == nets.FAMILY_RESNET:
        return "kumar-resnet"
    if parsed.family == nets.FAMILY_EFFICIENTNET:
        return "kumar-efficientnet"
    kw = parsed.build_kwargs  # the ViT-L recipe for ViT-L and the sweeps around it (width 1024 or 24 blocks)
    return "kumar-vit-l4" if kw["hidden"] >= 1024 or kw["depth"] >= 24 else "kumar-vit-b8"


# --------------------------------------------------------------------------------------------
# Data


DataArg = "str | tuple[ImageArrays, ImageArrays]"


def load_classification_data(data: DataArg, cfg: ClassifierConfig, progress: bool = False
                             ) -> tuple[ImageArrays, ImageArrays, str]:
    """``(train, val, description)`` for ``"builtin"``, ``"imagenet64:DIR"`` or a ``(train, val)`` pair of
    :class:`~lossnet.data.imagenet64.ImageArrays` (a class subset when ``cfg.classes``)."""
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(d, ImageArrays) for d in data):
            raise LossnetError("data as a tuple must be (train, val) ImageArrays.")
        train, val = data
        if train.num_classes != val.num_classes:
            raise LossnetError(f"train has {train.num_classes} classes, val {val.num_classes}: they must agree.")
        what = f"{train.name or 'arrays'} ({train.num_classes} classes, {len(train)} train / {len(val)} val)"
    elif data == "builtin":
        from ..data.patches64 import builtin_patches

        sets = builtin_patches(n_train=cfg.builtin_train, n_val=cfg.builtin_val, seed=cfg.data_seed)
        train, val = sets["train"], sets["val"]
        what = f"built-in photo patches ({train.num_classes} classes, {len(train)} train / {len(val)} val)"
    elif data.startswith(DATA_PREFIX):
        root = Path(data[len(DATA_PREFIX):]).expanduser()
        train = load_imagenet64(root, "train", progress=progress)
        val = load_imagenet64(root, "val", progress=progress)
        what = f"ImageNet 64x64 at {root} ({len(train)} train / {len(val)} val)"
    else:
        raise LossnetError(f"unknown classifier data {data!r}: use 'builtin' or 'imagenet64:DIR' (a folder with "
                           "the official npz files, an ImageNet class-folder tree, or converted arrays).")
    if cfg.classes:
        if cfg.classes > train.num_classes:
            raise LossnetError(f"classes={cfg.classes} but the data has only {train.num_classes} classes.")
        subset = class_subset(cfg.classes, cfg.class_seed, train.num_classes)
        train, val = restrict_classes(train, subset), restrict_classes(val, subset)
        what += f", subset of {cfg.classes} classes (seed {cfg.class_seed})"
    if len(val) == 0:
        raise LossnetError(f"{what}: the validation split is empty.")
    return train, val, what


# --------------------------------------------------------------------------------------------
# The trainer


class ClassifierTrainer(Trainer):
    """:class:`~lossnet.tasks.trainer.Trainer` with the study's optimiser, learning-rate schedule,
    EMA, evaluation steps and data parallelism. Checkpoints, their schedule and the RNG handling
    are the Trainer's; this class sets the learning rate of every update, updates the EMA after
    it, fetches a batch at a time, and evaluates the weights of each evaluation step before the
    next update (the final weights after :meth:`fit`).

    The losses are read in blocks as in every Trainer (also before each evaluation), averaged
    over the ranks.

    With ``dp.world_size > 1`` the model runs wrapped in ``DistributedDataParallel``
    (``train_model``); ``model`` stays the plain module that checkpoints, the EMA and the
    evaluations see. Every rank takes its share of each global batch; rank 0 alone evaluates and
    writes, and a checkpoint holds the RNG states of all ranks.
    """

    def __init__(self, *args: Any, lr_of: Any, ema: nn.Module | None, evaluate: Any, eval_at: set[int],
                 dp: DataParallel | None = None, train_model: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr_of = lr_of
        self.ema = ema
        self.evaluate = evaluate
        self.eval_at = eval_at
        self.dp = dp or DataParallel()
        self.train_model = train_model if train_model is not None else self.model
        if self.dp.enabled and not self.drop_last:
            raise LossnetError(f"the training set has {len(self.dataset)} items, fewer than one global batch of "
                               f"{self.cfg.batch_size}: a data-parallel run needs full batches; lower batch_size.")
        self.dp.local_batch(self.cfg.batch_size)
        self.progress = self.progress and self.dp.is_main
        self._lr: float | None = None  # the learning rate set in the optimiser (set again only when it changes)

    def _loader(self, keys):
        g = torch.Generator().manual_seed(self.seed * 31 + self.epoch)
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.dp.shard(keys, self.cfg.batch_size, self.drop_last),
            num_workers=self.cfg.num_workers, generator=g, pin_memory=self.device.type == "cuda",
            collate_fn=collate_batch, persistent_workers=False)

    def _train_step(self, batch: Any) -> torch.Tensor:
        if self.step in self.eval_at:
            self.read_losses()
            if self.dp.is_main:
                self.evaluate(self.step)
            self.model.train()
        lr = self.lr_of(self.step)
        if lr != self._lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._lr = lr
        loss = super()._train_step(batch)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def _mean_over_processes(self, losses: torch.Tensor) -> torch.Tensor:
        return self.dp.mean(losses)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["ema"] = {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()} if self.ema else None
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._lr = None
        if self.ema is not None:
            if not state.get("ema"):
                raise TrainingError(f"the checkpoint in {self.run_dir.path} has no EMA weights but the config asks "
                                    "for ema_decay > 0: pass --restart.")
            self.ema.load_state_dict(state["ema"])
        if self.dp.enabled:
            ranks = state.get("rng_ranks") or []
            if len(ranks) != self.dp.world_size:
                raise TrainingError(f"the checkpoint in {self.run_dir.path} was written by {len(ranks) or 1} "
                                    f"process(es), now {self.dp.world_size}: resume with the same number of "
                                    "processes, or pass --restart.")
            set_rng_state(ranks[self.dp.rank])

    def save(self) -> None:
        self.read_losses()
        rngs = self.dp.gather(rng_state()) if self.dp.enabled else None
        if not self.dp.is_main:
            return
        state = self.state_dict()
        if rngs is not None:
            state["rng_ranks"] = rngs
        self.run_dir.save_checkpoint(state)


def _ema_model(model: nn.Module, decay: float) -> nn.Module:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing (computed in float32 under autocast)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def make_step_fn(cfg: ClassifierConfig, mean, std, channels_last: bool):
    """``step_fn(model, batch) -> loss``: augment the uint8 batch on its device, normalise, classify."""
    norm = Normalizer(mean, std)
    scale = (cfg.crop_min_scale, 1.0)

    def step_fn(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        images = augment_batch(batch["images"], batch["seeds"], crop=cfg.crop, flip=cfg.flip,
                               padding=cfg.crop_padding, scale=scale, center_fraction=cfg.center_fraction)
        x = norm(images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return classification_loss(model(x), batch["labels"], cfg.label_smoothing)

    return step_fn


def _step_name(step: int) -> str:
    return f"step-{step:07d}"


class Evaluator:
    """Evaluates (and snapshots) the weights of one step; results land in ``evals/`` atomically."""

    def __init__(self, trainer_ref: dict, arch: str, cfg: ClassifierConfig, val: ImageArrays, run_path: Path,
                 device: torch.device, precision: Precision, channels_last: bool, progress: bool) -> None:
        self.ref, self.arch, self.cfg, self.val = trainer_ref, arch, cfg, val
        self.eval_dir, self.ckpt_dir = run_path / EVAL_DIR, run_path / CKPT_DIR
        self.device, self.precision, self.channels_last, self.progress = device, precision, channels_last, progress
        self._sets = None
        spec = nets.arch_spec(arch)
        self.mean, self.std = spec.mean, spec.std

    def path(self, step: int) -> Path:
        return self.eval_dir / f"{_step_name(step)}.json"

    def sets(self):
        if self._sets is None:
            self._sets = perceptual_sets(self.cfg.ps_data, self.cfg.ps_n_per_subset, seed=0)
        return self._sets

    def __call__(self, step: int) -> dict[str, Any]:
        if self.path(step).is_file():
            return read_json(self.path(step))
        trainer = self.ref["trainer"]
        model = trainer.eval_model()
        state = rng_state()  # evaluation must never move the training RNG streams (torch, CUDA, numpy, python)
        try:
            row = self._evaluate(model, step, trainer)
        finally:
            set_rng_state(state)
        write_json(self.path(step), row)
        return row

    def _evaluate(self, model: nn.Module, step: int, trainer: Trainer) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self.ckpt_dir / f"{_step_name(step)}.pt"
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, ckpt)
        autocast = self.precision.autocast if self.precision.enabled else None
        acc = accuracy(model, self.val, self.mean, self.std, self.device, self.cfg.eval_batch, self.cfg.val_limit,
                       autocast, channels_last=self.channels_last)
        ps = {} if self.cfg.ps_data == "none" else perceptual_score(
            self.arch, ckpt, self.sets(), self.cfg.ps_distances, self.device, entropy=self.cfg.eval_entropy)
        row: dict[str, Any] = {
            "step": step, "epoch": step / max(1, trainer.steps_per_epoch),
            "lr": trainer.optimizer.param_groups[0]["lr"] if step else None,  # of the update that made these weights
            "top1": acc["top1"], "top5": acc["top5"], "n_val": acc["n"], "checkpoint": str(ckpt),
            "train_loss": trainer.last_loss if step else None, **ps,
        }
        if self.cfg.eval_lowpass:
            row["frequency"] = frequency_sensitivity(model, self.val, self.cfg.eval_lowpass, self.mean, self.std,
                                                     self.device, self.cfg.eval_batch, self.cfg.val_limit,
                                                     acc["top1"], autocast)
        row["seconds"] = time.perf_counter() - t0
        return row


def train_classifier(arch: str, config: str | ClassifierConfig = "mini", data: DataArg = "builtin",
                     options: RunOptions | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``arch`` on ``data`` with ``config`` (a preset name or a :class:`ClassifierConfig`),
    evaluating along training; returns the metrics JSON (also in ``<out>/metrics.json``).

    Data parallel: launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``),
    the run is ONE run over ``WORLD_SIZE`` processes (NCCL on CUDA, one GPU per process; gloo on
    the CPU), wrapped in ``DistributedDataParallel``. ``batch_size`` stays the GLOBAL batch: every
    rank takes its contiguous share of each global batch (``batch_size`` must divide by
    ``WORLD_SIZE``), so the run follows the single-process one up to the order of float sums.
    BatchNorm: each rank normalises with the statistics of its share (DDP's default; the kept
    running statistics are rank 0's), or of the whole global batch with ``--set sync_bn=true``
    (CUDA only). Dropout draws a stream per rank. Rank 0 alone evaluates and writes (checkpoints,
    evaluations, metrics; atomically); every rank resumes from the same checkpoint, which holds
    the RNG states of all ranks (resume with the same number of processes)::

        torchrun --nproc_per_node 4 -m lossnet train classifier --arch kumar_resnet50
            --data imagenet64:~/data/imagenet64 --config kumar-resnet --out runs/r50   # (one line)

    Example:
        >>> result = train_classifier("kumar_resnet6_w0.25", "mini", "builtin",
        ...                           RunOptions(out_dir="out/r6", device="cpu"))   # doctest: +SKIP
        >>> result["metrics"]["best_ps"], result["evaluations"][-1]["top1"]          # doctest: +SKIP
    """
    opts = options or RunOptions()
    overrides = dict(overrides or {})
    bad = [k for k in overrides if k in UNUSED_FIELDS]
    if bad:
        raise LossnetError(f"classifier training counts steps, not epochs: {', '.join(bad)} cannot be set; use "
                           "--set train_steps=N (and eval_steps / eval_points for when to evaluate).")
    arch = nets.ensure_registered(arch)
    if isinstance(config, str):
        cfg = ClassifierConfig.for_arch(config, arch, **overrides)
        config_name = config
    else:
        cfg, config_name = config.with_overrides(overrides), "custom"
    cfg.check()
    dp = DataParallel.from_env()
    dp.local_batch(cfg.batch_size)
    device = data_parallel_device(dp, select_device(opts.device), opts.device)
    if cfg.sync_bn and dp.enabled and device.type != "cuda":
        raise LossnetError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel): drop --set sync_bn=true "
                           "on the CPU (each rank then normalises with the statistics of its own share).")
    created_group = start_data_parallel(dp, device)
    try:
        return _train(arch, cfg, config_name, data, opts, dp, device)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


def _train(arch: str, cfg: ClassifierConfig, config_name: str, data: DataArg, opts: RunOptions, dp: DataParallel,
           device: torch.device) -> dict[str, Any]:
    precision = Precision(device, opts.amp)
    main: dict[str, Any] = {}  # what rank 0 made first (a conversion of the data, the run folder)

    def load(cfg: ClassifierConfig) -> tuple[ImageArrays, ImageArrays, str]:
        # rank 0 first: the first load of a dataset may convert it into its fast form on disk
        dp.main_first(lambda: main.__setitem__("data", load_classification_data(data, cfg, progress=opts.progress)))
        return main.pop("data") if dp.is_main else load_classification_data(data, cfg, progress=False)

    train, val, what = load(cfg)
    named = _named_classes(arch)
    if named is not None and not cfg.classes and named < train.num_classes:
        # kumar_resnet6_c100 on ImageNet: a seeded subset of 100 classes (class_seed)
        cfg = dataclasses.replace(cfg, classes=named)
        train, val, what = load(cfg)
    trained_arch = _arch_for_classes(arch, train.num_classes)
    # the Trainer counts epochs: enough of them to reach train_steps exactly
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    cfg = dataclasses.replace(cfg, epochs=math.ceil(cfg.train_steps / steps_per_epoch), max_steps=cfg.train_steps)
    run_cfg = {"task": "classifier", "arch": trained_arch, "config_name": config_name, "config": cfg.to_dict(),
               "data": data if isinstance(data, str) else what, "seed": opts.seed, "amp": opts.amp, "device": str(device)}
    if dp.enabled:  # per-rank BatchNorm statistics and dropout streams depend on it
        run_cfg["world_size"] = dp.world_size

    def open_run_dir() -> None:
        run_dir = main["run_dir"] = RunDir(opts.out_dir, run_cfg, restart=opts.restart)
        if opts.restart:
            for sub in (EVAL_DIR, CKPT_DIR):
                for f in (run_dir.path / sub).glob("*"):
                    f.unlink()

    dp.main_first(open_run_dir)
    run_dir = main["run_dir"] if dp.is_main else FollowerRunDir(opts.out_dir, run_cfg)
    seed_everything(opts.seed)
    model = nets.build_classifier(trained_arch, seed=opts.seed, dropout=None if cfg.dropout == -1.0 else cfg.dropout,
                                  bn_momentum=cfg.bn_momentum).to(device)
    if cfg.sync_bn and dp.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    channels_last = bool(cfg.channels_last and device.type == "cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg.optimizer, parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias),
                               cfg.lr, cfg.momentum, cfg.nesterov, (cfg.beta1, cfg.beta2), cfg.optimizer_eps or None,
                               cfg.rmsprop_alpha)
    ema = _ema_model(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    train_model = model
    if dp.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if dp.rank > 0:  # a dropout stream of its own (rank 0 keeps the single-process one)
            torch.manual_seed((opts.seed * 1_000_003 + dp.rank) % 2**63)

    def lr_of(step: int) -> float:
        return learning_rate(step, cfg.lr, cfg.train_steps, cfg.schedule, cfg.warmup_steps, cfg.step_boundaries,
                             cfg.step_factor, cfg.exp_rate, cfg.exp_every)

    eval_at = evaluation_steps(cfg.train_steps, cfg.eval_points, cfg.eval_first, cfg.eval_at_init, cfg.eval_steps)
    ref: dict[str, Any] = {}
    spec = nets.arch_spec(trained_arch)
    evaluator = Evaluator(ref, trained_arch, cfg, val, run_dir.path, device, precision, channels_last, opts.progress)
    trainer = ClassifierTrainer(
        model, ClassificationItems(train), make_step_fn(cfg, spec.mean, spec.std, channels_last), cfg, run_dir,
        seed=opts.seed, device=device, precision=precision, progress=opts.progress, desc=f"train {trained_arch}",
        optimizer=optimizer, lr_of=lr_of, ema=ema, evaluate=evaluator, eval_at=set(eval_at), dp=dp,
        train_model=train_model)
    ref["trainer"] = trainer
    summary = trainer.fit()

    def finish() -> dict[str, Any]:
        # the final step (and any step a finished run had not evaluated yet: only the last can be missing)
        evaluator(trainer.step)
        rows = [read_json(evaluator.path(s)) for s in eval_at if evaluator.path(s).is_file()]
        result = _summarize(rows, cfg, summary, trained_arch, arch, what, device, precision, run_dir)
        run_dir.write_metrics(result)
        return result

    return dp.main_first(finish)


def _named_classes(arch: str) -> int | None:
    """The class count a name gives explicitly (``_c{N}``), else None."""
    parsed = nets.parse_name(arch)
    return parsed.build_kwargs["num_classes"] if re.search(r"_c\d+$", parsed.name) else None


def _arch_for_classes(arch: str, n_classes: int) -> str:
    """``arch`` with the data's class count (an explicit ``_c{N}`` must match it)."""
    parsed = nets.parse_name(arch)
    given = parsed.build_kwargs["num_classes"]
    if given == n_classes:
        return parsed.name
    if _named_classes(arch) is not None:
        raise LossnetError(f"{arch} has {given} classes but the data has {n_classes}: drop the _c{given} suffix "
                           f"(the class count is then taken from the data) or use _c{n_classes}.")
    return nets.ensure_registered(nets.with_classes(parsed.name, n_classes))


def _summarize(rows: list[dict], cfg: ClassifierConfig, summary: Mapping[str, Any], arch: str, asked: str,
               data: str, device: torch.device, precision: Precision, run_dir: RunDir) -> dict[str, Any]:
    head = cfg.ps_distances[0]
    final = rows[-1] if rows else {}
    best = best_by(rows, lambda r: r.get("ps", {}).get(head))
    best_top1 = best_by(rows, lambda r: r.get("top1"))
    trained = best_by([r for r in rows if r["step"] > 0], lambda r: r.get("ps", {}).get(head))
    metrics: dict[str, Any] = {
        "top1": final.get("top1"), "top5": final.get("top5"),
        **{f"ps_{d}": final.get("ps", {}).get(d) for d in cfg.ps_distances},
        "ps": final.get("ps", {}).get(head),
        "best_ps": best["ps"][head] if best else None, "best_ps_step": best["step"] if best else None,
        "best_ps_top1": best["top1"] if best else None, "best_ps_checkpoint": best["checkpoint"] if best else None,
        "best_top1": best_top1["top1"] if best_top1 else None,
        # early stopping proper: the best checkpoint of training, the initialisation left out
        "best_trained_ps": trained["ps"][head] if trained else None,
        "best_trained_ps_step": trained["step"] if trained else None,
        "best_trained_ps_top1": trained["top1"] if trained else None,
        "train_steps": summary.get("steps"), "train_seconds": summary.get("train_seconds"),
        "eval_seconds": sum(r.get("seconds", 0.0) for r in rows),
    }
    for d in cfg.ps_distances[1:]:
        b = best_by(rows, lambda r, d=d: r.get("ps", {}).get(d))
        metrics[f"best_ps_{d}"] = b["ps"][d] if b else None
    return {
        "task": "classifier", "arch": arch, "arch_asked": asked, "data": data, "headline_distance": head,
        "metrics": metrics, "evaluations": rows, "synthetic_ps": bool(final.get("synthetic")),
        "train": dict(summary), "device": str(device), "precision": precision.describe(), "config": run_dir.config,
    }


__all__ = ["ClassifierConfig", "ClassifierTrainer", "Evaluator", "classification_loss", "load_classification_data",
           "make_step_fn", "paper_config", "train_classifier"]
