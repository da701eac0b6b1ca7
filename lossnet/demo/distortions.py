"""The main job on built-in data: do loss networks rank graded distortions correctly?

Real photos (scikit-image) are distorted at increasing levels by several families; each
metric's distance to the clean photo should grow with the level. The real ImageNet
EfficientNet-Lite0 is scored at every extraction point, beside an untrained copy of itself
and the pixel baselines. Results: a table on screen, ``demo.json`` and ``demo.png``.

Example:
    >>> result = run_distortion_ranking(out_dir="lossnet-out/demo")   # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable

import torch

from ..data.distortions import distort
from ..data.photos import builtin_photos
from ..distances import feature_distance
from ..loss import PerceptualLoss
from ..networks import LossNetwork, layer_sets
from ..utils.jsonio import write_json
from ..utils.tables import text_table

DEMO_FAMILIES = ("gaussian_noise", "gaussian_blur", "jpeg", "pixelate", "contrast", "shift")
# Fine steps of mild distortion: coarse steps are ordered correctly by every metric.
DEMO_LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
DEMO_ARCH = "efficientnet_lite0"


def _distorted_batch(photos: dict[str, torch.Tensor], families, levels, seed: int):
    """Clean photos (P, 3, H, W) and distorted versions (P, F, L, 3, H, W)."""
    names = list(photos)
    clean = torch.stack([photos[n] for n in names])
    distorted = torch.stack([
        torch.stack([torch.stack([distort(photos[n], fam, lvl, seed=seed + i) for lvl in levels])
                     for fam in families])
        for i, n in enumerate(names)])
    return names, clean, distorted


def _center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top:top + size, left:left + size].contiguous()


def rank_accuracy(distances: torch.Tensor) -> float:
    """Fraction of level pairs ordered correctly: d(level i) < d(level j) for i < j.

    ``distances`` has the levels in its last dimension; exact ties count one half.
    """
    n = distances.shape[-1]
    good, total = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        a, b = distances[..., i], distances[..., j]
        good += float((a < b).sum()) + 0.5 * float((a == b).sum())
        total += a.numel()
    return good / total


def _pixel_distances(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     clean: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    p, f, l = distorted.shape[:3]
    reference = clean[:, None, None].expand_as(distorted).reshape(-1, *clean.shape[1:])
    with torch.no_grad():
        return fn(reference, distorted.reshape(-1, *clean.shape[1:])).reshape(p, f, l)


def _network_distances(net: LossNetwork, clean: torch.Tensor, distorted: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point spatial distances; each clean photo goes through the network once."""
    p, f, l = distorted.shape[:3]
    with torch.no_grad():
        ref = net.extract(clean, check=False)
        dist = net.extract(distorted.reshape(-1, *clean.shape[1:]), check=False)
        ref = {k: v.repeat_interleave(f * l, dim=0) for k, v in ref.items()}
        per = feature_distance(ref, dist, "spatial", per_layer=True)
    return {k: v.reshape(p, f, l) for k, v in per.items()}


def run_distortion_ranking(out_dir: str | os.PathLike = "lossnet-out/demo", size: int = 96, seed: int = 0,
                           families=DEMO_FAMILIES, levels=DEMO_LEVELS, arch: str = DEMO_ARCH,
                           weights: str = "imagenet", plot: bool = True) -> dict:
    """Score how well each metric ranks graded distortions; write JSON (+ PNG) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos = {name: _center_crop(img, size) for name, img in builtin_photos(size=size).items()}
    names, clean, distorted = _distorted_batch(photos, families, levels, seed)
    points = layer_sets(arch)["all"]
    rows: list[dict] = []
    curves: dict[str, list[float]] = {}
    for label, w in ((f"{arch} (ImageNet)", weights), (f"{arch} (untrained)", "random")):
        per_point = _network_distances(LossNetwork(arch, points, weights=w), clean, distorted)
        per_point["all points"] = sum(per_point.values())
        for point, d in per_point.items():
            rows.append(_row(label, point, d, families))
            curves[f"{label} {point}"] = d.mean(dim=(0, 1)).tolist()
    for name in ("l2", "ssim"):
        metric = PerceptualLoss(distance=name, reduction="none")
        d = _pixel_distances(metric, clean, distorted)
        rows.append(_row(f"pixel {name}", "-", d, families))
        curves[f"pixel {name}"] = d.mean(dim=(0, 1)).tolist()
    result = {
        "task": "distortion ranking (built-in photos, synthetic distortions: not human judgements)",
        "photos": names, "size": size, "families": list(families), "levels": list(levels), "seed": seed,
        "rows": rows, "mean_distance_by_level": curves,
    }
    write_json(out / "demo.json", result)
    if plot:
        result["figure"] = str(plot_rank_accuracy(rows, out / "demo.png"))
    return result


def _row(metric: str, point: str, d: torch.Tensor, families) -> dict:
    return {
        "metric": metric, "point": point, "rank_accuracy": rank_accuracy(d),
        "by_family": {fam: rank_accuracy(d[:, i]) for i, fam in enumerate(families)},
    }


def format_ranking_table(result: dict) -> str:
    """The distortion-ranking rows as an aligned text table."""
    fams = result["families"]
    head = ["metric", "point", "all", *fams]
    body = [[r["metric"], r["point"], f"{r['rank_accuracy']:.3f}"] + [f"{r['by_family'][f]:.2f}" for f in fams]
            for r in result["rows"]]
    return text_table(head, body)


def plot_rank_accuracy(rows: list[dict], path: Path) -> Path:
    """Bar chart: rank accuracy per extraction point, pretrained vs untrained, pixel baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = [r for r in rows if r["point"] != "-"]
    labels = list(dict.fromkeys(r["metric"] for r in nets))
    points = list(dict.fromkeys(r["point"] for r in nets))
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(points) + 3), 4.2))
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        vals = [next(r["rank_accuracy"] for r in nets if r["metric"] == label and r["point"] == p) for p in points]
        ax.bar([i + k * width for i in range(len(points))], vals, width=width, label=label)
    for r, style in zip([r for r in rows if r["point"] == "-"], ("--", ":")):
        ax.axhline(r["rank_accuracy"], color="black", linestyle=style, linewidth=1, label=r["metric"])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(points))])
    ax.set_xticklabels(points, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(max(0.0, min(r["rank_accuracy"] for r in rows) - 0.05), 1.005)
    ax.set_ylabel("rank accuracy of distortion levels")
    ax.set_title("Do distances grow with distortion level? (built-in photos)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
