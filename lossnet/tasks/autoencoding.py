"""Autoencoding with a perceptual loss, evaluated by MLP probes on the latent codes.

The convolutional VAE of Pihlgren et al. (after Ha & Schmidhuber's World Models VAE): four
stride-2 4x4 convolutions 3-32-64-128-256 with BatchNorm and ReLU, a 64-d latent code, a
decoder that maps the code to 1024 units (a 1x1 map) and up through four stride-2 transposed
convolutions (1024-128-64-32-3) to the input size, sigmoid output. KL weight 0 by default: the
loss is the perceptual loss between the reconstruction and the input. Evaluation: MLP probes
with hidden sizes ``[], [32], [64], [32,32], [64,32], [64,64], [128,128]`` trained on the frozen
latent means of the labelled train split; accuracy on the test split.

Example:
    >>> vae = ConvVAE(image_size=32)
    >>> recon, mu, logvar = vae(torch.rand(2, 3, 32, 32))
    >>> tuple(recon.shape), tuple(mu.shape)
    ((2, 3, 32, 32), (2, 64))
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.autoencoding import ArrayImages, AutoencodingData, load_autoencoding_data
from ..errors import LossnetError
from .config import LossConfig, TrainConfig
from .run import RunOptions, finish_metrics, resolve_run, run_config
from .rundir import RunDir
from .trainer import Precision, Trainer, seed_everything

PROBE_HIDDEN: tuple[tuple[int, ...], ...] = ((), (32,), (64,), (32, 32), (64, 32), (64, 64), (128, 128))


def decoder_kernels(size: int, reference: Sequence[int] = (5, 5, 6, 6)) -> tuple[int, ...]:
    """Kernel sizes of four stride-2 transposed convolutions taking a 1x1 map to ``size`` x ``size``.

    Closest to World Models' (5, 5, 6, 6), which gives 64.

    Example:
        >>> decoder_kernels(64)
        (5, 5, 6, 6)
    """
    best, best_cost = None, None
    for k2, k3, k4 in itertools.product(range(3, 10), repeat=3):
        s3, r3 = divmod(size - k4, 2)
        if r3 or s3 + 1 < 2:
            continue
        s3 += 1
        s2, r2 = divmod(s3 - k3, 2)
        if r2 or s2 + 1 < 2:
            continue
        s2 += 1
        s1, r1 = divmod(s2 - k2, 2)
        if r1 or s1 + 1 < 2:
            continue
        k1 = s1 + 1
        ks = (k1, k2, k3, k4)
        cost = sum((a - b) ** 2 for a, b in zip(ks, reference))
        if best_cost is None or cost < best_cost:
            best, best_cost = ks, cost
    if best is None:
        raise LossnetError(f"no decoder reaches {size}x{size} images: use a size that is a multiple of 16.")
    return best


class ConvVAE(nn.Module):
    """The study's convolutional VAE. ``forward`` returns (reconstruction, mu, logvar).

    ``image_size`` must be a multiple of 16 (digits 32, SVHN padded 64, STL-10 96). In training
    mode z is sampled (``sample=False``: z = mu, a plain autoencoder); in eval mode z = mu.
    """

    def __init__(self, image_size: int = 64, z_dim: int = 64, channels: Sequence[int] = (32, 64, 128, 256),
                 dense: int = 1024, decoder_channels: Sequence[int] = (128, 64, 32), sample: bool = True) -> None:
        super().__init__()
        if image_size % 16:
            raise LossnetError(f"the VAE needs an image size that is a multiple of 16, got {image_size}.")
        layers, prev = [], 3
        for c in channels:
            layers += [nn.Conv2d(prev, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            prev = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = prev * (image_size // 2 ** len(channels)) ** 2
        self.fc_mu = nn.Linear(flat, z_dim)
        self.fc_logvar = nn.Linear(flat, z_dim)
        self.fc_dec = nn.Linear(z_dim, dense)
        ks = decoder_kernels(image_size)
        dec, prev = [], dense
        for c, k in zip(list(decoder_channels) + [3], ks):
            dec += [nn.ConvTranspose2d(prev, c, k, stride=2), nn.ReLU()]
            prev = c
        dec[-1] = nn.Sigmoid()
        self.decoder = nn.Sequential(*dec)
        self.image_size, self.z_dim, self.dense, self.sample = image_size, z_dim, dense, sample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(z.shape[0], self.dense, 1, 1))

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        sample = (self.training and self.sample) if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decode(z), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(N(mu, sigma) || N(0, 1)), summed over latent dimensions."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


@dataclass
class AutoencoderConfig(TrainConfig):
    """Autoencoding hyperparameters (``paper``: STL-10/SVHN, 50 epochs, batch 256, Adam 1e-3,
    early stopping on the validation loss).

    Attributes:
        z_dim: latent size. kl_weight: weight of the KL term (0 in the study).
        sample: sample z during training (a VAE); False trains on the means.
        val_fraction: share of the training images held out for early stopping.
        max_train: train the autoencoder on at most this many images (0: all of them).
        pad_to: SVHN images (32x32) are zero-padded to this size.
        probe_hidden: hidden sizes of the MLP probes. probe_epochs/probe_lr/probe_batch: their training.
        eval_batch: batch size when encoding for the probes.
    """

    z_dim: int = 64
    kl_weight: float = 0.0
    sample: bool = True
    val_fraction: float = 0.05
    max_train: int = 0
    pad_to: int = 64
    probe_hidden: list = field(default_factory=lambda: [list(h) for h in PROBE_HIDDEN])
    probe_epochs: int = 30
    probe_lr: float = 1e-3
    probe_batch: int = 256
    eval_batch: int = 256

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # 768 digits, 10 epochs, three probes (~40 s of one CPU core): probes reach ~0.95 against 0.10 for the
        # majority class, and the validation loss has flattened out.
        "mini": dict(epochs=10, batch_size=32, lr=2e-3, max_train=768, checkpoint_every=24, patience=0,
                     val_fraction=0.05, probe_hidden=[[], [64], [128, 128]], probe_epochs=30, probe_batch=128),
        "paper": dict(epochs=50, batch_size=256, lr=1e-3, checkpoint_every=200, patience=5, val_fraction=0.05,
                      probe_epochs=100, probe_batch=256),
    }


def vae_step(loss_fn: nn.Module, kl_weight: float):
    """The training loss of one batch: perceptual(recon, x) + kl_weight * KL."""

    def step(model: ConvVAE, x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = model(x)
        loss = loss_fn(recon, x)
        if kl_weight:
            loss = loss + kl_weight * kl_divergence(mu.float(), logvar.float())
        return loss

    return step


@torch.no_grad()
def encode_dataset(model: ConvVAE, images: ArrayImages, device: torch.device, batch: int = 256
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latent means (N, z) of a dataset, and its labels."""
    model.eval()
    codes, labels = [], []
    for x, y in images.batches(batch):
        codes.append(model.encode(x.to(device))[0].float().cpu())
        if y is not None:
            labels.append(y)
    return torch.cat(codes), (torch.cat(labels) if labels else None)


@torch.no_grad()
def mean_loss(model: ConvVAE, images: ArrayImages, loss_fn: nn.Module, device: torch.device, batch: int = 256,
              kl_weight: float = 0.0) -> float:
    """Mean loss of deterministic reconstructions (z = mu) over a dataset (validation)."""
    model.eval()
    total, n = 0.0, 0
    for x, _ in images.batches(batch):
        x = x.to(device)
        recon, mu, logvar = model(x, sample=False)
        loss = loss_fn(recon, x)
        if kl_weight:
            loss = loss + kl_weight * kl_divergence(mu, logvar)
        total += float(loss) * len(x)
        n += len(x)
    return total / max(n, 1)


class MLPProbe(nn.Module):
    """An MLP classifier on latent codes; ``hidden=()`` is a linear probe."""

    def __init__(self, in_dim: int, hidden: Sequence[int], classes: int) -> None:
        super().__init__()
        layers, prev = [], in_dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def train_probe(train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor,
                test_labels: torch.Tensor, hidden: Sequence[int], classes: int = 10, epochs: int = 30,
                lr: float = 1e-3, batch: int = 256, seed: int = 0) -> float:
    """Train an MLP probe on standardised codes (train statistics); return test accuracy.

    Deterministic under ``seed``; the global RNG is left untouched.

    Example:
        >>> z, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
        >>> 0.0 <= train_probe(z, y, z, y, [16], classes=2, epochs=2) <= 1.0
        True
    """
    mean, std = train_codes.mean(0), train_codes.std(0).clamp_min(1e-6)
    xtr, xte = (train_codes - mean) / std, (test_codes - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = MLPProbe(xtr.shape[1], hidden, classes)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(xtr)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            loss = F.cross_entropy(probe(xtr[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = probe(xte).argmax(1)
    return float((pred == test_labels).float().mean())


def probe_name(hidden: Sequence[int]) -> str:
    """``[]`` -> ``"linear"``, ``[64, 32]`` -> ``"64-32"``."""
    return "linear" if not hidden else "-".join(str(h) for h in hidden)


def train_autoencoder(config: AutoencoderConfig | str = "mini", loss: LossConfig | None = None,
                      data: str = "builtin", dataset: str = "auto", download: bool = False,
                      options: RunOptions | None = None, **overrides: Any) -> dict[str, Any]:
    """Train the VAE with ``loss`` on ``data``, then the probes; return (and write) the metrics.

    Metrics: ``accuracy`` (best probe), ``probe_accuracy`` per probe, ``linear_accuracy``,
    ``test_loss`` (the training loss on the test images) and ``pixel_mse``.

    Example:
        >>> m = train_autoencoder("mini", LossConfig(net=None, distance="l2"),
        ...                       options=RunOptions(out_dir="/tmp/ae", progress=False))  # doctest: +SKIP
        >>> m["metrics"]["accuracy"]  # doctest: +SKIP
    """
    cfg, loss_cfg, opts, device, precision = resolve_run(AutoencoderConfig, config, overrides, loss, options)
    ae_data = load_autoencoding_data(data, dataset=dataset, val_fraction=cfg.val_fraction, seed=opts.seed,
                                     pad_to=cfg.pad_to, download=download)
    if cfg.max_train and cfg.max_train < len(ae_data.train):
        ae_data.train = ae_data.train.subset(np.arange(cfg.max_train))
    run_dir = RunDir(opts.out_dir, run_config("autoencoder", cfg, loss_cfg, ae_data.source, opts,
                                              {"dataset": ae_data.name}), restart=opts.restart)
    seed_everything(opts.seed)
    model = ConvVAE(ae_data.image_size, cfg.z_dim, sample=cfg.sample)
    loss_fn = loss_cfg.build().to(device)
    val = ae_data.val
    val_fn = (lambda m: mean_loss(m, val, loss_fn, device, cfg.eval_batch, cfg.kl_weight)) if val is not None else None
    trainer = Trainer(model, ae_data.train, vae_step(loss_fn, cfg.kl_weight), cfg, run_dir, seed=opts.seed,
                      device=device, precision=precision, val_fn=val_fn, progress=opts.progress,
                      desc=f"autoencoder {loss_cfg.describe()}")
    summary = trainer.fit()
    return evaluate_autoencoder(model, ae_data, loss_fn, cfg, device, opts.seed, run_dir, summary, precision)


def evaluate_autoencoder(model: ConvVAE, data: AutoencodingData, loss_fn: nn.Module, cfg: AutoencoderConfig,
                         device: torch.device, seed: int, run_dir: RunDir, summary: dict[str, Any],
                         precision: Precision) -> dict[str, Any]:
    """Probe accuracies on frozen codes, test losses; writes ``metrics.json``."""
    t0 = time.perf_counter()
    model.eval()
    ztr, ytr = encode_dataset(model, data.probe_train, device, cfg.eval_batch)
    zte, yte = encode_dataset(model, data.probe_test, device, cfg.eval_batch)
    accs = {}
    for k, hidden in enumerate(cfg.probe_hidden):
        accs[probe_name(hidden)] = train_probe(ztr, ytr, zte, yte, hidden, data.num_classes, cfg.probe_epochs,
                                               cfg.probe_lr, cfg.probe_batch, seed=seed * 100 + k)
    test_loss = mean_loss(model, data.probe_test, loss_fn, device, cfg.eval_batch)
    with torch.no_grad():
        se, n = 0.0, 0
        for x, _ in data.probe_test.batches(cfg.eval_batch):
            x = x.to(device)
            se += float((model(x, sample=False)[0].float() - x).pow(2).mean(dim=(1, 2, 3)).sum())
            n += len(x)
    metrics = {
        "accuracy": max(accs.values()) if accs else None,
        "linear_accuracy": accs.get("linear"),
        "probe_accuracy": accs,
        "test_loss": test_loss,
        "pixel_mse": se / max(n, 1),
    }
    details = {"dataset": data.name, "n_train": len(data.train), "n_probe_train": len(data.probe_train),
               "n_test": len(data.probe_test), "eval_seconds": round(time.perf_counter() - t0, 3)}
    return finish_metrics(run_dir, "autoencoder", metrics, summary, device, precision, details)


__all__ = ["AutoencoderConfig", "ConvVAE", "MLPProbe", "PROBE_HIDDEN", "decoder_kernels", "encode_dataset",
           "kl_divergence", "train_autoencoder", "train_probe"]
