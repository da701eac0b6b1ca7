"""Single-image super-resolution with a perceptual loss (Johnson et al. 2016).

The network: a 9x9 convolution, residual blocks (two 3x3 convolutions with BatchNorm), then
``log2(scale)`` blocks of nearest-neighbour x2 upsampling + 3x3 convolution (2 for x4, 3 for
x8), and a final 9x9 convolution; the output ``(tanh + 1) / 2`` lies in [0, 1]. Its input is
the HR image blurred with a Gaussian (sigma 1) and downscaled by ``scale`` with bicubic
interpolation. Evaluation: PSNR and SSIM on Y with ``scale`` border pixels shaved, LPIPS when
its weights are available, and the same for bicubic upscaling as the baseline.

Example:
    >>> net = TransformNet(scale=4, width=16)
    >>> net(torch.rand(1, 3, 16, 16)).shape
    torch.Size([1, 3, 64, 64])
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.superres import SuperresData, load_superres_data
from ..errors import LossnetError, WeightsError
from .config import LossConfig, TrainConfig
from .metrics import psnr_y, quantize_8bit, ssim_y
from .run import RunOptions, finish_metrics, resolve_run, run_config
from .rundir import RunDir
from .trainer import Trainer, seed_everything

LPIPS_NETS = ("alex", "vgg", "squeeze", "none")


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformNet(nn.Module):
    """Johnson et al.'s super-resolution network for x``scale`` (a power of two).

    ``residual=True`` (not in Johnson et al.) predicts a correction of bicubic upscaling,
    starting exactly at bicubic (last convolution zero-initialised): far fewer steps are needed.
    """

    def __init__(self, scale: int = 4, width: int = 64, blocks: int = 4, residual: bool = False) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise LossnetError(f"scale must be a power of two (2, 4, 8), got {scale}.")
        layers: list[nn.Module] = [nn.Conv2d(3, width, 9, padding=4), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [ResidualBlock(width) for _ in range(blocks)]
        for _ in range(int(math.log2(scale))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1),
                       nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 9, padding=4))
        if residual:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)
        self.scale = scale
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return (bicubic_upscale(x, self.scale) + self.body(x)).clamp(0, 1)
        return (torch.tanh(self.body(x)) + 1) / 2


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (kernel radius ceil(3 sigma))."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad == radius else F.pad(x, (radius,) * 4, mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def degrade(hr: torch.Tensor, scale: int, sigma: float = 1.0) -> torch.Tensor:
    """The low-resolution input: Gaussian blur, then bicubic downscaling by ``scale`` (clamped to [0, 1]).

    Example:
        >>> degrade(torch.rand(1, 3, 64, 64), 4).shape
        torch.Size([1, 3, 16, 16])
    """
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise LossnetError(f"HR size {h}x{w} is not a multiple of the scale {scale}: mod-crop it first.")
    lr = F.interpolate(gaussian_blur(hr, sigma), size=(h // scale, w // scale), mode="bicubic",
                       align_corners=False, antialias=True)
    return lr.clamp(0, 1)


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: LR upscaled by ``scale``, clamped to [0, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass
class SuperresConfig(TrainConfig):
    """Super-resolution hyperparameters (``paper``: 288x288 crops, x4, 80 epochs, batch 4, Adam 1e-3).

    Attributes:
        scale: 4 or 8 (2 also works). crop: HR training crop side. blur_sigma: the Gaussian before downscaling.
        width/blocks: channels and residual blocks of the network.
        residual: predict a correction of bicubic upscaling (not in Johnson et al.; used by ``mini``).
        train_length: built-in data: random crops per epoch. photo_size/eval_size: built-in photo sizes.
        max_train: use at most this many training images from a folder (0: all; 10,000 in the study).
        lpips_net: LPIPS metric backbone (alex, vgg, squeeze) or none.
        lpips_weights: auto (ImageNet weights if already on disk, else no LPIPS), imagenet, random or a path.
        quantize: round outputs to 8 bits before the metrics, as saved images would be.
    """

    scale: int = 4
    crop: int = 288
    blur_sigma: float = 1.0
    width: int = 64
    blocks: int = 4
    residual: bool = False
    train_length: int = 512
    photo_size: int = 256
    eval_size: int = 128
    max_train: int = 0
    lpips_net: str = "alex"
    lpips_weights: str = "auto"
    quantize: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # x2 on 128-px photos with a small residual network: the pixel loss gains about 3 dB over
        # bicubic and every loss has flattened out by the last epochs (~35 s of one CPU core).
        "mini": dict(epochs=10, batch_size=8, lr=1e-3, scale=2, crop=32, width=8, blocks=2, residual=True,
                     train_length=800, photo_size=128, eval_size=128, checkpoint_every=100),
        "paper": dict(epochs=80, batch_size=4, lr=1e-3, crop=288, width=64, blocks=4, max_train=10000,
                      photo_size=512, eval_size=256, train_length=2048, checkpoint_every=500, num_workers=4),
    }


def sr_step(loss_fn: nn.Module, scale: int, sigma: float):
    """Loss of one batch of HR crops: the network sees the degraded crops."""

    def step(model: TransformNet, hr: torch.Tensor) -> torch.Tensor:
        # The degradation is data preparation: float32 even under autocast (CPU bicubic has no bf16).
        with torch.no_grad(), torch.autocast(hr.device.type, enabled=False):
            lr = degrade(hr.float(), scale, sigma)
        return loss_fn(model(lr), hr)

    return step


def _lpips_weights_on_disk(net: str) -> bool:
    """Whether torchvision's ImageNet weights of the LPIPS backbone are in the local cache."""
    import torchvision

    enum = {"alex": torchvision.models.AlexNet_Weights, "vgg": torchvision.models.VGG16_Weights,
            "squeeze": torchvision.models.SqueezeNet1_1_Weights}[net]
    url = enum.DEFAULT.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).exists()


def build_lpips(net: str, weights: str) -> tuple[nn.Module | None, dict[str, Any]]:
    """The LPIPS metric for evaluation, and a record of what was used (or why it was skipped).

    ``weights="auto"`` uses the ImageNet backbone only if its file is already on disk (no
    download); ``"random"`` is a random backbone with LPIPS's learned lin weights (a sanity
    check, not LPIPS); ``"imagenet"`` may download.
    """
    info: dict[str, Any] = {"net": net, "weights": weights}
    if net == "none":
        info["note"] = "LPIPS turned off (lpips_net=none)"
        return None, info
    if net not in LPIPS_NETS:
        raise LossnetError(f"unknown LPIPS net {net!r}: use one of {', '.join(LPIPS_NETS)}.")
    from ..loss.factory import lpips

    if weights == "auto":
        if not _lpips_weights_on_disk(net):
            info["note"] = (f"LPIPS skipped: the ImageNet weights of its {net} backbone are not on disk (no "
                            "download during training). Pass --lpips-weights imagenet to fetch them, or a path.")
            return None, info
        weights = "imagenet"
        info["weights"] = "imagenet"
    try:
        metric = lpips(net, weights=weights, reduction="none")
    except WeightsError as exc:
        info["note"] = f"LPIPS skipped: {exc}"
        return None, info
    if weights == "random":
        info["note"] = "random backbone with LPIPS lin weights: NOT comparable with published LPIPS values"
    return metric, info


@torch.no_grad()
def evaluate_superres(model: nn.Module, data: SuperresData, cfg: SuperresConfig, device: torch.device,
                      lpips_metric: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM (Y, shaved) and LPIPS of the model and of bicubic upscaling, per evaluation set.

    Example:
        >>> evaluate_superres(net, data, cfg, torch.device("cpu"))["Set5"]["psnr"]  # doctest: +SKIP
    """
    model.eval()
    out: dict[str, dict[str, float]] = {}
    for name, images in data.eval_sets.items():
        sums: dict[str, float] = {}
        for hr in images:
            hr = hr[None].to(device)
            lr = degrade(hr, cfg.scale, cfg.blur_sigma)
            sr = model(lr).float().clamp(0, 1)
            bic = bicubic_upscale(lr, cfg.scale)
            if cfg.quantize:
                sr, bic = quantize_8bit(sr), quantize_8bit(bic)
            vals = {
                "psnr": psnr_y(sr, hr, cfg.scale), "ssim": ssim_y(sr, hr, cfg.scale),
                "bicubic_psnr": psnr_y(bic, hr, cfg.scale), "bicubic_ssim": ssim_y(bic, hr, cfg.scale),
            }
            if lpips_metric is not None:
                vals["lpips"] = lpips_metric(sr, hr)
                vals["bicubic_lpips"] = lpips_metric(bic, hr)
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
        out[name] = {k: v / len(images) for k, v in sums.items()}
        out[name]["n_images"] = len(images)
    return out


def _pooled(per_set: dict[str, dict[str, float]]) -> dict[str, float]:
    """Image-weighted means over all evaluation sets."""
    total = sum(s["n_images"] for s in per_set.values())
    keys = [k for k in next(iter(per_set.values())) if k != "n_images"]
    return {k: sum(s[k] * s["n_images"] for s in per_set.values()) / total for k in keys}


def train_superres(config: SuperresConfig | str = "mini", loss: LossConfig | None = None, data: str = "builtin",
                   eval_dirs: Sequence[str] | None = None, options: RunOptions | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """Train the x``scale`` network with ``loss``; evaluate; write and return the metrics.

    Metrics (image-weighted over the evaluation sets; ``per_set`` has each set): ``psnr``,
    ``ssim``, ``lpips`` (null when skipped), and ``bicubic_psnr``, ``bicubic_ssim``,
    ``bicubic_lpips`` for the baseline.
    """
    cfg, loss_cfg, opts, device, precision = resolve_run(SuperresConfig, config, overrides, loss, options)
    sr_data = load_superres_data(data, scale=cfg.scale, crop=cfg.crop, eval_dirs=eval_dirs,
                                 train_length=cfg.train_length, photo_size=cfg.photo_size, eval_size=cfg.eval_size,
                                 max_train=cfg.max_train or None)
    run_dir = RunDir(opts.out_dir, run_config("superres", cfg, loss_cfg, sr_data.source, opts,
                                              {"eval_sets": {k: len(v) for k, v in sr_data.eval_sets.items()}}),
                     restart=opts.restart)
    seed_everything(opts.seed)
    model = TransformNet(cfg.scale, cfg.width, cfg.blocks, cfg.residual)
    loss_fn = loss_cfg.build().to(device)
    trainer = Trainer(model, sr_data.train, sr_step(loss_fn, cfg.scale, cfg.blur_sigma), cfg, run_dir,
                      seed=opts.seed, device=device, precision=precision, progress=opts.progress,
                      desc=f"superres x{cfg.scale} {loss_cfg.describe()}")
    summary = trainer.fit()
    t0 = time.perf_counter()
    lpips_metric, lpips_info = build_lpips(cfg.lpips_net, cfg.lpips_weights)
    if lpips_metric is not None:
        lpips_metric = lpips_metric.to(device)
    per_set = evaluate_superres(model, sr_data, cfg, device, lpips_metric)
    pooled = _pooled(per_set)
    metrics = {k: pooled.get(k) for k in ("psnr", "ssim", "lpips", "bicubic_psnr", "bicubic_ssim", "bicubic_lpips")}
    details = {"per_set": per_set, "lpips_info": lpips_info, "eval_images": sr_data.eval_names,
               "eval_seconds": round(time.perf_counter() - t0, 3)}
    return finish_metrics(run_dir, "superres", metrics, summary, device, precision, details)


__all__ = ["SuperresConfig", "TransformNet", "bicubic_upscale", "build_lpips", "degrade", "evaluate_superres",
           "gaussian_blur", "train_superres"]
