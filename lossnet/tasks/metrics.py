"""Evaluation metrics of the downstream tasks.

Super-resolution: PSNR and SSIM on the luma (Y) channel of ITU-R BT.601 with a border of
``scale`` pixels shaved, the convention of the super-resolution literature
(Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1], then / 255).

Road segmentation: completeness, correctness and quality (Wiedemann et al. 1998), F1 and
IoU, either pixel-exact (as Pihlgren et al.) or with a buffer tolerance of ``k`` pixels
(Mnih & Hinton 2010 "relaxed" precision and recall): a predicted road pixel is correct if a
true road pixel lies within ``k`` pixels, a true road pixel is found if a predicted one
lies within ``k`` pixels.

Example:
    >>> sr, hr = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    >>> float(psnr_y(sr, hr, shave=4)) > 0
    True
    >>> counts = road_counts(torch.tensor([[0.9, 0.1]]), torch.tensor([[1, 1]]))
    >>> road_scores(counts)["completeness"]
    0.5
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from ..distances.functional import ssim as _ssim
from ..errors import LossnetError

Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB images in [0, 1], in [16/255, 235/255]; (B, 3, H, W) -> (B, 1, H, W).

    Example:
        >>> round(float(rgb_to_y(torch.ones(1, 3, 1, 1))) * 255, 3)
        235.0
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise LossnetError(f"rgb_to_y expects (B, 3, H, W) RGB images, got shape {tuple(x.shape)}.")
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (Y_OFFSET + (x * w).sum(dim=1, keepdim=True)) / 255.0


def _shaved_y(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise LossnetError(
            f"super-resolved and reference images differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}; "
            "crop the reference to a multiple of the scale first.")
    if shave < 0 or 2 * shave >= min(sr.shape[-2:]):
        raise LossnetError(f"cannot shave {shave} pixels from images of size {tuple(sr.shape[-2:])}.")
    y0, y1 = rgb_to_y(sr.double()), rgb_to_y(hr.double())
    if shave:
        y0, y1 = y0[..., shave:-shave, shave:-shave], y1[..., shave:-shave, shave:-shave]
    return y0, y1


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """Per-image PSNR (dB) on Y with ``shave`` border pixels removed, shape (B,).

    Identical images give ``inf``.

    Example:
        >>> psnr_y(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)).item()
        inf
    """
    y0, y1 = _shaved_y(sr, hr, shave)
    mse = (y0 - y1).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(1.0 / mse)).float()


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """Per-image SSIM on Y (Gaussian window 11, sigma 1.5, as scikit-image with
    ``gaussian_weights=True, use_sample_covariance=False``), shave border first, shape (B,)."""
    y0, y1 = _shaved_y(sr, hr, shave)
    return _ssim(y0, y1, data_range=1.0).float()


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round images in [0, 1] to 8-bit levels, as saving them to PNG would."""
    return (x.clamp(0, 1) * 255).round() / 255


# --------------------------------------------------------------------------------------------
# Road segmentation


@dataclass
class RoadCounts:
    """Pixel counts accumulated over images (micro-averaged scores).

    ``tp``/``fp``/``fn``/``tn``: pixel-exact confusion counts. ``matched_pred``: predicted road
    pixels within the buffer of a true road pixel; ``matched_true``: true road pixels within the
    buffer of a predicted one; ``n_pred``/``n_true``: predicted and true road pixels.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    matched_pred: int = 0
    matched_true: int = 0
    n_pred: int = 0
    n_true: int = 0

    def __add__(self, other: "RoadCounts") -> "RoadCounts":
        return RoadCounts(**{k: v + getattr(other, k) for k, v in asdict(self).items()})


def _as_bool_masks(pred: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray,
                   threshold: float) -> tuple[np.ndarray, np.ndarray]:
    p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    t = true.detach().cpu().numpy() if isinstance(true, torch.Tensor) else np.asarray(true)
    if p.shape != t.shape:
        raise LossnetError(f"prediction and label differ in shape: {p.shape} vs {t.shape}.")
    if p.ndim < 2:
        raise LossnetError(f"masks must be at least 2-D (H, W), got shape {p.shape}.")
    pb = p >= threshold if p.dtype != bool else p
    tb = t >= 0.5 if t.dtype != bool else t
    return pb.reshape(-1, *p.shape[-2:]), tb.reshape(-1, *t.shape[-2:])


def _within(mask: np.ndarray, k: float) -> np.ndarray:
    """Pixels whose Euclidean distance to the nearest True pixel of ``mask`` is at most ``k``."""
    if not mask.any():
        return np.zeros_like(mask)
    return ndimage.distance_transform_edt(~mask) <= k


def road_counts(pred: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray,
                threshold: float = 0.3, buffer: float = 0) -> RoadCounts:
    """Counts for road probabilities ``pred`` against binary labels ``true``, shape (..., H, W).

    A pixel is predicted road when ``pred >= threshold`` (0.3, as Pihlgren et al.). ``buffer``
    is the tolerance in pixels for the relaxed counts (distances measured per image).

    Example:
        >>> c = road_counts(torch.tensor([[0, 1, 0]]), torch.tensor([[1, 0, 0]]), buffer=1)
        >>> (c.tp, c.matched_pred, c.matched_true)
        (0, 1, 1)
    """
    pb, tb = _as_bool_masks(pred, true, threshold)
    c = RoadCounts()
    c.tp = int((pb & tb).sum())
    c.fp = int((pb & ~tb).sum())
    c.fn = int((~pb & tb).sum())
    c.tn = int((~pb & ~tb).sum())
    c.n_pred, c.n_true = int(pb.sum()), int(tb.sum())
    for p, t in zip(pb, tb):
        c.matched_pred += int((p & _within(t, buffer)).sum())
        c.matched_true += int((t & _within(p, buffer)).sum())
    return c


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def road_scores(counts: RoadCounts, relaxed: bool = False) -> dict[str, float]:
    """Completeness, correctness, quality, F1 and IoU of accumulated counts.

    Pixel-exact: completeness = TP/(TP+FN), correctness = TP/(TP+FP), quality = IoU of the
    road class = TP/(TP+FP+FN), F1 = 2TP/(2TP+FP+FN); ``miou`` averages the IoU of road and
    background. Relaxed (buffer): completeness = matched_true/n_true, correctness =
    matched_pred/n_pred, quality = comp*corr/(comp + corr - comp*corr) (Wiedemann's quality
    with matched lengths), F1 their harmonic mean, IoU = quality. Undefined ratios are NaN.
    """
    if relaxed:
        comp = _ratio(counts.matched_true, counts.n_true)
        corr = _ratio(counts.matched_pred, counts.n_pred)
        if math.isnan(comp) and math.isnan(corr):
            quality = f1 = math.nan  # no road anywhere, predicted or true
        elif comp == 0 or corr == 0 or math.isnan(comp) or math.isnan(corr):
            quality = f1 = 0.0  # roads on one side only
        else:
            quality = comp * corr / (comp + corr - comp * corr)
            f1 = 2 * comp * corr / (comp + corr)
        return {"completeness": comp, "correctness": corr, "quality": quality, "f1": f1, "iou": quality}
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    iou_bg = _ratio(tn, tn + fp + fn)
    iou = _ratio(tp, tp + fp + fn)
    return {
        "completeness": _ratio(tp, tp + fn),
        "correctness": _ratio(tp, tp + fp),
        "quality": iou,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": iou,
        "miou": (iou + iou_bg) / 2,
    }
