"""The demo's perceptual-metric step: the loss networks at hand on the built-in (SYNTHETIC) 2AFC set.

EfficientNet-Lite0 with its real ImageNet weights and an untrained copy of it are scored at
every extraction point (one pass per network: every point's Perceptual Score comes from the
same features) and with all points combined, beside the pixel baselines ``l2`` and ``ssim``.
Each score has a bootstrap 95% interval (triplets resampled within each subset). The
``structure-vs-appearance`` subset is where pixel metrics and perceptual ones disagree.

Example:
    >>> result = run_builtin_2afc(n_per_subset=6, bootstrap=20, weights="random", plot=False)
    >>> [row["metric"] for row in result["rows"] if row["point"] == "all points"]
    ['efficientnet_lite0 (random)', 'efficientnet_lite0 (untrained)']
    >>> 0 <= result["rows"][0]["ci_low"] <= result["rows"][0]["mean"] <= result["rows"][0]["ci_high"] <= 100
    True
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..data.synthetic import builtin_2afc
from ..loss.factory import create_metric
from ..networks.extraction import layer_sets
from ..scoring.twoafc import (
    SYNTHETIC_NOTE,
    TripletDistances,
    bootstrap_means,
    score_2afc,
    twoafc_scores,
)
from ..utils.jsonio import write_json
from ..utils.tables import fmt, text_table

COMBINED_LABEL = "all points"


class RenderedOnce(Dataset):
    """A synthetic subset rendered once and kept in memory: the demo scores four metrics on the
    same triplets, and rendering them (warps, blurs, noise) costs a fifth of a network pass.
    Its subset name, judgements and protocol are read through ``.dataset``, as for ``Subset``.

    Example:
        >>> import torch
        >>> subset = builtin_2afc(n_per_subset=3)["mixed-family"]
        >>> kept = RenderedOnce(subset)
        >>> bool(torch.equal(kept[1]["p0"], subset[1]["p0"])), len(kept)
        (True, 3)
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.items = [dataset[i] for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def point_scores(triplets: TripletDistances, distance: str, key: str, bootstrap: int, seed: int
                 ) -> dict[str, Any]:
    """PS (0-100) of one extraction point (or ``"combined"``): per subset and the mean over
    subsets, each with a bootstrap 95% percentile interval (``bootstrap=0``: no intervals)."""
    subsets: dict[str, dict[str, Any]] = {}
    boots = []
    for name in triplets.subsets:
        m = triplets.mask(name)
        s = twoafc_scores(triplets.d0[distance][key][m], triplets.d1[distance][key][m], triplets.judges[m])
        entry: dict[str, Any] = {"score": 100.0 * float(s.mean()), "n": int(m.sum()), "ci_low": None, "ci_high": None}
        if bootstrap:
            means = 100.0 * bootstrap_means(s, bootstrap, [int(seed), zlib.crc32(f"{key}/{name}".encode())])
            entry["ci_low"], entry["ci_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
            boots.append(means)
        subsets[name] = entry
    out = {"mean": float(np.mean([v["score"] for v in subsets.values()])), "ci_low": None, "ci_high": None,
           "subsets": subsets}
    if boots:
        out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(np.mean(boots, axis=0), [2.5, 97.5]))
    return out


def run_builtin_2afc(out_dir: str | os.PathLike | None = None, n_per_subset: int = 100, bootstrap: int = 1000,
                     seed: int = 0, arch: str = "efficientnet_lite0", weights: str = "imagenet",
                     progress: bool = False, plot: bool = True) -> dict[str, Any]:
    """Score the networks at hand on the built-in 2AFC set; write ``builtin_2afc.json`` (and
    ``figures/builtin_2afc.png``) to ``out_dir`` when given.

    Returns ``{"rows": [{metric, point, mean, ci_low, ci_high, subsets}], "subsets", "n", ...}``;
    rows of a network come in extraction-point order, then ``"all points"`` (the metric with
    every point combined); pixel rows have point ``"-"``. ``weights`` is the trained network's
    weights (``"imagenet"``; tests pass ``"random"``).
    """
    sets = {name: RenderedOnce(subset) for name, subset in builtin_2afc(n_per_subset=n_per_subset, seed=seed).items()}
    points = layer_sets(arch)["all"]
    label = "ImageNet" if weights == "imagenet" else weights
    metrics = [
        (f"{arch} ({label})", create_metric(arch, layers=points, weights=weights, seed=seed)),
        (f"{arch} (untrained)", create_metric(arch, layers=points, weights="random", seed=seed + 1)),
        ("pixel l2", create_metric(None, distance="l2")),
        ("pixel ssim", create_metric(None, distance="ssim")),
    ]
    rows: list[dict[str, Any]] = []
    for name, metric in metrics:
        r = score_2afc(metric, sets, bootstrap=0, seed=seed, progress=progress, name=f"2AFC {name}")
        t = r.triplets
        keys = [k for k in t.d0[r.distance] if k != "combined"] + ["combined"]
        for key in keys:
            point = COMBINED_LABEL if key == "combined" and metric.net is not None else (
                "-" if key == "combined" else key)
            rows.append({"metric": name, "point": point, **point_scores(t, r.distance, key, bootstrap, seed)})
    result: dict[str, Any] = {
        "what": "2AFC Perceptual Score (0-100) on the built-in SYNTHETIC set: rule-based judgements, not human",
        "note": SYNTHETIC_NOTE, "subsets": list(sets), "n": sum(len(s) for s in sets.values()),
        "n_per_subset": n_per_subset, "bootstrap": bootstrap, "seed": seed, "weights": weights, "distance": "spatial",
        "rows": rows,
    }
    if out_dir is not None:
        out = Path(out_dir)
        if plot:
            result["figure"] = str(plot_2afc(result, out / "figures" / "builtin_2afc.png"))
        result["json"] = str(out / "builtin_2afc.json")
        write_json(out / "builtin_2afc.json", result)
    return result


def best_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per metric, the row with the highest mean PS (for networks: the best extraction point or
    all points combined), sorted best first."""
    best: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        if row["metric"] not in best or row["mean"] > best[row["metric"]]["mean"]:
            best[row["metric"]] = row
    return sorted(best.values(), key=lambda r: -r["mean"])


def format_2afc(result: dict[str, Any]) -> str:
    """The 2AFC rows as a text table (PS and its 95% interval, per subset)."""
    subsets = result["subsets"]
    body = [[r["metric"], r["point"], fmt(r["mean"], 1), f"{fmt(r['ci_low'], 1)}-{fmt(r['ci_high'], 1)}",
             *(fmt(r["subsets"][s]["score"], 1) for s in subsets)] for r in result["rows"]]
    return text_table(["metric", "point", "PS", "95% CI", *subsets], body)


def plot_2afc(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """PS per extraction point with 95% intervals (trained and untrained network), the pixel
    baselines as bands; one panel for the mean over subsets, one for structure-vs-appearance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    nets = list(dict.fromkeys(r["metric"] for r in rows if r["point"] != "-"))
    pixels = [r for r in rows if r["point"] == "-"]
    points = list(dict.fromkeys(r["point"] for r in rows if r["point"] != "-"))
    panels = [("mean over subsets", None)]
    if "structure-vs-appearance" in result["subsets"]:
        panels.append(("structure-vs-appearance", "structure-vs-appearance"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.0), squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]

    def value(r: dict, subset: str | None) -> tuple[float, float | None, float | None]:
        if subset is None:
            return r["mean"], r["ci_low"], r["ci_high"]
        s = r["subsets"][subset]
        return s["score"], s["ci_low"], s["ci_high"]

    for ax, (title, subset) in zip(axes[0], panels):
        for k, net in enumerate(nets):
            xs, ys, lo, hi = [], [], [], []
            for i, p in enumerate(points):
                r = next((r for r in rows if r["metric"] == net and r["point"] == p), None)
                if r is None:
                    continue
                v, a, b = value(r, subset)
                xs.append(i + (k - (len(nets) - 1) / 2) * 0.15)
                ys.append(v)
                lo.append(v - a if a is not None else 0.0)
                hi.append(b - v if b is not None else 0.0)
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, markersize=4, color=colours[k % 4], label=net)
        for r, style in zip(pixels, ("--", ":")):
            v, a, b = value(r, subset)
            ax.axhline(v, color="black", linestyle=style, linewidth=1, label=f"{r['metric']} ({v:.1f})")
            if a is not None and b is not None:
                ax.axhspan(a, b, color="grey", alpha=0.15)
        ax.set_xticks(range(len(points)))
        ax.set_xticklabels(points, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("2AFC Perceptual Score (95% CI)")
        ax.set_title(f"Built-in 2AFC (synthetic): {title}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["COMBINED_LABEL", "RenderedOnce", "best_rows", "format_2afc", "plot_2afc", "point_scores", "run_builtin_2afc"]
