"""PNG figures of a sweep report (matplotlib, Agg backend: no display needed).

Example:
    >>> path = heatmap({"networks": ["vgg16"], "columns": ["P1"], "cells": {"vgg16": {"P1": 70.0}}},
    ...                "similarity", "heat.png")   # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def heatmap(matrix: Mapping[str, Any], title: str, path: str | os.PathLike, higher_is_better: bool = True,
            digits: int = 1) -> Path:
    """Network x point heatmap of a :func:`~lossnet.report.tables.score_matrix`, values written in the cells."""
    import numpy as np

    plt = _plt()
    nets, cols = list(matrix["networks"]), list(matrix["columns"])
    data = np.full((max(len(nets), 1), max(len(cols), 1)), np.nan)
    for i, n in enumerate(nets):
        for j, c in enumerate(cols):
            v = matrix["cells"].get(n, {}).get(c)
            if v is not None:
                data[i, j] = v
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * max(len(cols), 1), 1.0 + 0.42 * max(len(nets), 1)))
    cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")
    cmap = cmap.with_extremes(bad="#dddddd") if hasattr(cmap, "with_extremes") else cmap
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(nets)), nets)
    finite = data[np.isfinite(data)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(len(nets)):
        for j in range(len(cols)):
            if math.isfinite(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.{digits}f}", ha="center", va="center", fontsize=8,
                        color="white" if (data[i, j] < mid) == higher_is_better else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def top1_scatter(points: Sequence[Mapping[str, Any]], rho: float | None, p: float | None, task: str, metric: str,
                 path: str | os.PathLike) -> Path:
    """ImageNet top-1 (x) against the task's best score per network (y), with Spearman's rho in the title."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    xs = [d["top1"] for d in points]
    ys = [d["score"] for d in points]
    ax.scatter(xs, ys, color="#1f77b4")
    for d in points:
        ax.annotate(d["network"], (d["top1"], d["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    rho_text = "n/a (fewer than 3 networks)" if rho is None else f"{rho:.2f} (p = {p:.2g})"
    ax.set_title(f"{task}: ImageNet top-1 vs {metric}\nSpearman rho = {rho_text}", fontsize=10)
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto_plot(points: Sequence[Mapping[str, Any]], frontier: Sequence[int], path: str | os.PathLike,
                ylabel: str = "Perceptual Score") -> Path:
    """Accuracy (x) against Perceptual Score (y), the Pareto frontier drawn as a step line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    on = set(frontier)
    for i, d in enumerate(points):
        ax.scatter([d["top1"]], [d["score"]], color="#d62728" if i in on else "#7f7f7f", zorder=3)
        ax.annotate(d["network"], (d["top1"], d["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if frontier:
        fx = [points[i]["top1"] for i in frontier]
        fy = [points[i]["score"] for i in frontier]
        ax.step(fx, fy, where="post", color="#d62728", alpha=0.6, label="Pareto frontier")
        ax.legend(fontsize=8)
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy vs Perceptual Score", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def best_bars(best: Sequence[Mapping[str, Any]], task: str, metric: str, path: str | os.PathLike) -> Path:
    """The best score of every network of a task as horizontal bars (best on top)."""
    plt = _plt()
    items = list(best)[::-1]
    fig, ax = plt.subplots(figsize=(5.6, 0.8 + 0.35 * max(len(items), 1)))
    ax.barh([d["network"] for d in items], [d["score"] for d in items],
            color=["#7f7f7f" if (d.get("arch") is None) else "#1f77b4" for d in items])
    for i, d in enumerate(items):
        ax.text(d["score"], i, f" {d['score']:.2f} ({d['point']})", va="center", fontsize=7)
    lo = min((d["score"] for d in items), default=0.0)
    hi = max((d["score"] for d in items), default=1.0)
    pad = (hi - lo) * 0.35 + 1e-9
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(metric)
    ax.set_title(f"{task}: best extraction point per network", fontsize=10)
    return _save(fig, path)


__all__ = ["best_bars", "heatmap", "pareto_plot", "top1_scatter"]
