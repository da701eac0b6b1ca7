"""The demo's pictures: what each training loss produces, side by side, and the loss curves.

Every function takes the finished runs of :func:`lossnet.demo.tasks.collect_runs` (each
rebuilt from its run folder), draws one PNG with matplotlib and returns its path.

Example:
    >>> overlay(torch.zeros(3, 4, 4), torch.ones(1, 4, 4), (1.0, 0.0, 0.0))[:, 0, 0].tolist()
    [0.6000000238418579, 0.0, 0.0]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.autoencoding import load_autoencoding_data
from ..data.roads import load_segmentation_data
from ..data.superres import load_superres_data
from ..tasks import CONFIGS
from ..tasks.metrics import psnr_y, quantize_8bit
from ..tasks.segmentation import predict
from ..tasks.superres import bicubic_upscale, degrade
from .tasks import trained_model

ROAD_COLOUR = (1.0, 0.15, 0.1)
TRUTH_COLOUR = (0.1, 0.9, 0.2)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img: torch.Tensor, title: str | None = None) -> None:
    ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def overlay(image: torch.Tensor, mask: torch.Tensor, colour: Sequence[float], alpha: float = 0.6) -> torch.Tensor:
    """``image`` (3, H, W) with ``mask`` (1, H, W) in {0, 1} painted in ``colour``."""
    c = torch.tensor(colour, dtype=image.dtype).view(3, 1, 1)
    return image * (1 - alpha * mask) + c * alpha * mask


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def _short(loss: str) -> str:
    return loss.replace("efficientnet_lite0", "Lite0")


@torch.no_grad()
def superres_figure(runs: list[dict[str, Any]], path: str | os.PathLike, crop: int = 48) -> Path:
    """Per evaluation photo: the low-res input, bicubic, every loss's output and the ground
    truth (centre crops, pixels enlarged), with each output's PSNR on the whole photo."""
    plt = _pyplot()
    cfg = CONFIGS["superres"](**runs[0]["config"])
    data = load_superres_data("builtin", scale=cfg.scale, crop=cfg.crop, train_length=1, photo_size=cfg.photo_size,
                              eval_size=cfg.eval_size)
    images = data.eval_sets["builtin"]
    names = data.eval_names["builtin"]
    models = [(_short(r["loss"]), trained_model("superres", r)) for r in runs]
    cols = 3 + len(models)
    fig, axes = plt.subplots(len(images), cols, figsize=(1.6 * cols, 1.95 * len(images) + 0.3), squeeze=False)
    titles = ["low-res input", "bicubic", *(label.replace(") ", ")\n") for label, _ in models), "ground truth"]
    for i, hr in enumerate(images):
        hr = hr[None]
        lr = degrade(hr, cfg.scale, cfg.blur_sigma)
        panels = [(names[i], F.interpolate(lr, scale_factor=cfg.scale, mode="nearest"))]
        bic = quantize_8bit(bicubic_upscale(lr, cfg.scale))
        panels.append((f"{float(psnr_y(bic, hr, cfg.scale)):.2f} dB", bic))
        for label, model in models:
            sr = quantize_8bit(model(lr).clamp(0, 1))
            panels.append((f"{float(psnr_y(sr, hr, cfg.scale)):.2f} dB", sr))
        panels.append(("PSNR on the whole photo", hr))
        for j, (ax, (caption, img)) in enumerate(zip(axes[i], panels)):
            _show(ax, _center_crop(img[0], crop), titles[j] if i == 0 else None)
            ax.set_xlabel(caption, fontsize=7)
    fig.tight_layout(pad=0.4)
    return _save(fig, path)


@torch.no_grad()
def autoencoder_figure(runs: list[dict[str, Any]], path: str | os.PathLike, seed: int = 0) -> Path:
    """Test digits (one per class) and their reconstructions by every loss's autoencoder."""
    plt = _pyplot()
    cfg = CONFIGS["autoencoder"](**runs[0]["config"])
    data = load_autoencoding_data("builtin", val_fraction=cfg.val_fraction, seed=seed, pad_to=cfg.pad_to)
    test = data.probe_test
    picks = []
    for c in range(data.num_classes):
        picks.append(next(i for i in range(len(test)) if test.label(i) == c))
    x = torch.stack([test.image(i) for i in picks])
    rows = [("input", x)] + [(_short(r["loss"]), trained_model("autoencoder", r)(x, sample=False)[0]) for r in runs]
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.62 * len(picks) + 0.4, 0.78 * len(rows)), squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], rows):
        strip = torch.cat(list(imgs.clamp(0, 1)), dim=-1)
        _show(ax, strip)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


@torch.no_grad()
def segmentation_figure(runs: list[dict[str, Any]], path: str | os.PathLike, n: int = 3) -> Path:
    """Test tiles with the true roads (green) and every loss's predicted roads (red) painted over."""
    plt = _pyplot()
    cfg = CONFIGS["segmentation"](**runs[0]["config"])
    data = load_segmentation_data("builtin", crop=cfg.crop, n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test,
                                  tile_size=cfg.tile_size, seed=0)
    models = [(_short(r["loss"]), trained_model("segmentation", r)) for r in runs]
    cols = 2 + len(models)
    n = min(n, len(data.test))
    fig, axes = plt.subplots(n, cols, figsize=(1.45 * cols, 1.5 * n), squeeze=False)
    for i in range(n):
        image, mask = data.test[i]
        panels = [("image", image), ("true roads", overlay(image, mask, TRUTH_COLOUR))]
        for label, model in models:
            prob = predict(model, image[None], cfg.iterations)[0]
            panels.append((label, overlay(image, (prob >= cfg.threshold).float(), ROAD_COLOUR)))
        for ax, (title, img) in zip(axes[i], panels):
            _show(ax, img, title if i == 0 else None)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def curves_figure(tasks: Mapping[str, list[dict[str, Any]]], path: str | os.PathLike) -> Path:
    """Per task, each run's loss per epoch (validation loss where the task has one) relative to
    its first epoch: flat at the end means the schedule was long enough."""
    plt = _pyplot()
    names = [t for t, runs in tasks.items() if any(r.get("curve") for r in runs)]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.0), squeeze=False)
    for ax, task in zip(axes[0], names):
        for r in tasks[task]:
            curve = r.get("curve") or []
            if curve and curve[0]:
                ax.plot(range(1, len(curve) + 1), np.asarray(curve) / curve[0], marker=".", label=_short(r["loss"]))
        kind = next((r.get("curve_kind") for r in tasks[task] if r.get("curve")), "loss")
        ax.set_title(f"{task}: {kind}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("relative to epoch 1")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


#: task -> the function drawing its outputs.
TASK_FIGURES = {"superres": superres_figure, "autoencoder": autoencoder_figure, "segmentation": segmentation_figure}

__all__ = ["TASK_FIGURES", "autoencoder_figure", "curves_figure", "overlay", "segmentation_figure", "superres_figure"]
