"""Evaluating a classifier checkpoint: top-1 accuracy, Perceptual Score with the three Kumar
functions and layer-wise PS from one 2AFC pass, and spatial-frequency sensitivity.

Spatial-frequency sensitivity (Kumar et al., Fig. 17): each validation image is low-pass
filtered by keeping a centred ``r x r`` square of its 2-D Fourier spectrum (per channel, in
``fftshift`` order: rows and columns ``c - r // 2 .. c - r // 2 + r - 1`` with ``c = n // 2``
the zero frequency) and zeroing the rest; the filtered image is the real part of the inverse
transform. The normalised accuracy at ``r`` is the accuracy on filtered images divided by the
accuracy on the clean ones.

Example:
    >>> x = torch.rand(1, 3, 8, 8)
    >>> torch.allclose(lowpass_square(x, 8), x, atol=1e-6)   # r = n keeps everything
    True
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..data.imagenet64 import ImageArrays, iterate_batches, normalize
from ..errors import LossnetError


def lowpass_mask(n: int, r: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The boolean (n, n) mask (in ``fftshift`` order) of the centred r x r square."""
    if not 1 <= r <= n:
        raise LossnetError(f"the low-pass square side r must be in 1..{n}, got {r}.")
    start = n // 2 - r // 2
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[start:start + r, start:start + r] = True
    return mask


def lowpass_square(images: torch.Tensor, r: int) -> torch.Tensor:
    """Keep the centred ``r x r`` square of each channel's spectrum (square images (B, C, n, n))."""
    n = images.shape[-1]
    if images.shape[-2] != n:
        raise LossnetError(f"low-pass filtering needs square images, got {tuple(images.shape[-2:])}.")
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.double()), dim=(-2, -1))
    spectrum = spectrum * lowpass_mask(n, r, images.device)
    out = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
    return out.to(images.dtype if images.is_floating_point() else torch.float32)


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageArrays, mean: Sequence[float], std: Sequence[float],
             device: torch.device, batch_size: int = 256, limit: int = 0, autocast: Callable | None = None,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             channels_last: bool = False) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of ``model`` on ``data`` (its first ``limit`` images when > 0).

    ``transform`` maps the [0, 1] float batch before normalisation (e.g. a low-pass filter).
    """
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0
    n = min(len(data), limit) if limit else len(data)
    try:
        for images, labels in iterate_batches(data, batch_size):
            if seen >= n:
                break
            images, labels = images[: n - seen].to(device), labels[: n - seen].to(device)
            if transform is not None:
                x = transform(images.float() / 255.0).clamp(0, 1)
                x = normalize((x * 255.0), mean, std)
            else:
                x = normalize(images, mean, std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast() if autocast is not None else torch.autocast(device.type, enabled=False):
                logits = model(x)
            top = logits.float().topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(dim=1).sum())
            seen += len(labels)
    finally:
        model.train(was_training)
    if seen == 0:
        raise LossnetError(f"{data.name}: no validation images to measure accuracy on.")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "n": seen}


def frequency_sensitivity(model: nn.Module, data: ImageArrays, sizes: Sequence[int], mean: Sequence[float],
                          std: Sequence[float], device: torch.device, batch_size: int = 256, limit: int = 0,
                          clean_top1: float | None = None, autocast: Callable | None = None) -> dict[str, Any]:
    """Normalised accuracy (accuracy on low-passed images / clean accuracy) for every square side ``r``."""
    clean = clean_top1 if clean_top1 is not None else accuracy(model, data, mean, std, device, batch_size, limit,
                                                               autocast)["top1"]
    out = {}
    for r in sizes:
        acc = accuracy(model, data, mean, std, device, batch_size, limit, autocast,
                       transform=lambda x, r=int(r): lowpass_square(x, r))["top1"]
        out[str(int(r))] = {"top1": acc, "normalized": acc / clean if clean > 0 else None}
    return {"clean_top1": clean, "sizes": out}


class MaterializedSet(torch.utils.data.Dataset):
    """A 2AFC subset with its items rendered once (the attributes of the source stay reachable)."""

    def __init__(self, source: Any) -> None:
        self.dataset = source
        self.items = [source[i] for i in range(len(source))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def perceptual_sets(spec: str, n_per_subset: int = 100, seed: int = 0) -> dict[str, Any]:
    """The 2AFC data PS is measured on: ``"builtin"`` (SYNTHETIC rule-based judgements, rendered
    once) or a BAPPS folder (its ``val`` split at 64x64)."""
    from ..data import builtin_2afc, load_2afc

    if spec == "builtin":
        return {k: MaterializedSet(v) for k, v in builtin_2afc(n_per_subset=n_per_subset, seed=seed).items()}
    path = Path(spec).expanduser()
    return load_2afc(path, split="val")


def perceptual_score(arch: str, weights: str | os.PathLike, sets: Mapping[str, Any], distances: Sequence[str],
                     device: torch.device, entropy: bool = False, batch_size: int = 50) -> dict[str, Any]:
    """PS of the checkpoint ``weights`` of ``arch`` at its ``"kumar"`` points, from ONE 2AFC pass:
    the mean PS and per-subset PS of each distance function, layer-wise PS, distortion
    sensitivity and (``entropy``) the mean normalised activation entropy per point.

    The checkpoint is loaded strictly, exactly as a user loads it as a loss network.
    """
    from ..loss.factory import create_metric
    from ..scoring import COMBINED, score_2afc
    from ..scoring.analyses import EntropyMeter, distortion_sensitivity

    metric = create_metric(arch, layers="kumar", distance=distances[0], weights=str(weights), input_norm="auto")
    meter = EntropyMeter() if entropy else None
    result = score_2afc(metric, sets, batch_size=batch_size, distances=list(distances), bootstrap=0, progress=False,
                        device=device, feature_hook=meter)
    t = result.triplets
    out: dict[str, Any] = {
        "ps": {d: res["mean"] for d, res in result.distances.items()},
        "ps_subsets": {d: {s: v["score"] for s, v in res["subsets"].items()} for d, res in result.distances.items()},
        "layerwise": {d: {k: v for k, v in res["layer_means"].items() if k != COMBINED}
                      for d, res in result.distances.items()},
        "sensitivity": {d: distortion_sensitivity(t.d0[d][COMBINED], t.d1[d][COMBINED], t.judges)
                        for d in result.distances},
        "synthetic": result.synthetic,
        "n_triplets": result.n,
    }
    if meter is not None:
        out["entropy"] = meter.result()
    return out


def best_by(rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], float | None]) -> dict | None:
    """The row with the highest ``key`` (the earliest one on ties); None when no row has a value."""
    best, best_value = None, None
    for row in rows:
        value = key(row)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if best_value is None or value > best_value:
            best, best_value = row, value
    return dict(best) if best is not None else None


__all__ = ["MaterializedSet", "accuracy", "best_by", "frequency_sensitivity", "lowpass_mask", "lowpass_square",
           "perceptual_score", "perceptual_sets"]
