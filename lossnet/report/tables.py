"""Study-style tables from sweep results (pure computation, no plotting).

From the finished runs of a spec: per task, every network x extraction point (the
``score_matrix``), the best point per network with its rank (``best_points``), all
(network, point) configurations ranked (``ranked_entries``), ranks across tasks
(``cross_task_ranks``), ImageNet top-1 against task score with Spearman's rho
(``top1_correlation``), the Pareto frontier of accuracy and Perceptual Score
(``pareto_frontier``) and per-subset BAPPS tables (``subset_table``). Scores of several
seeds are averaged. Ranks: 1 is best; ties share the best rank ("competition" ranking).

Example:
    >>> pareto_frontier([(1.0, 1.0), (2.0, 0.5), (0.5, 0.5)])
    [0, 1]
    >>> competition_ranks([3.0, 1.0, 3.0])
    [1, 3, 1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..utils.tables import fmt, html_table, markdown_table

PIXEL = "pixel"


@dataclass
class ResultRow:
    """One score: a finished run (or one layer of a combined similarity run)."""

    task: str
    distance: str
    network: str
    arch: str | None
    weights: str | None
    point: str
    slot: int
    seed: int
    score: float | None
    metrics: dict = field(default_factory=dict)
    run_id: str = ""
    source: str = "run"  # "run" or "layer-wise"

    @property
    def is_pixel(self) -> bool:
        return self.arch is None


@dataclass
class Entry:
    """A (network, point) configuration of one task, its score averaged over seeds."""

    key: str          # the row name in tables: network, or "network · distance", or "pixel l2"
    network: str
    arch: str | None
    weights: str | None
    distance: str
    point: str
    slot: int
    score: float
    n_seeds: int
    std: float | None
    rows: list[ResultRow] = field(default_factory=list, repr=False)


# ----------------------------------------------------------------------------------------------
# Collecting rows


def headline_of(task: str) -> tuple[str, bool]:
    """The metric a task is ranked by and whether higher is better (from the task registry)."""
    try:
        from ..sweeps.tasks import get_task

        t = get_task(task)
        return t.headline, t.higher_is_better
    except Exception:  # noqa: BLE001 - unknown tasks in an old store
        return "score", True


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def collect_rows(runs: Sequence[Any], records: Mapping[str, Any]) -> list[ResultRow]:
    """:class:`ResultRow`\\ s of the finished runs (``RunConfig``\\ s joined to store records by id).

    A similarity run of several points also gives one ``layer-wise`` row per point (its
    ``layer_means``) unless a run of that point alone exists.
    """
    rows: list[ResultRow] = []
    direct: set[tuple] = set()
    for run in runs:
        rec = records.get(run.id)
        if rec is None or rec.status != "finished" or rec.metrics is None:
            continue
        headline, _ = headline_of(run.task)
        label = run.label or ("+".join(run.points) if run.points else PIXEL)
        rows.append(ResultRow(run.task, run.distance, run.network_label, run.arch, run.weights, label, run.slot,
                              run.seed, _float(rec.metrics.get(headline)), dict(rec.metrics), run.id))
        direct.add((run.task, run.distance, run.network_label, label, run.seed))
    extra = []
    for row in rows:
        layer_means = row.metrics.get("layer_means") or {}
        points = [p for p in layer_means if p != "combined"]
        if row.task != "similarity" or len(points) < 2:
            continue
        for i, p in enumerate(points):
            if (row.task, row.distance, row.network, p, row.seed) in direct:
                continue
            subsets = {s: {"score": v} for s, v in (row.metrics.get("layers", {}).get(p) or {}).items()}
            extra.append(ResultRow(row.task, row.distance, row.network, row.arch, row.weights, p, i + 1, row.seed,
                                   _float(layer_means[p]), {"mean": layer_means[p], "subsets": subsets}, row.run_id,
                                   "layer-wise"))
            direct.add((row.task, row.distance, row.network, p, row.seed))
    return rows + extra


def tasks_of(rows: Iterable[ResultRow]) -> list[str]:
    return list(dict.fromkeys(r.task for r in rows))


def entries(rows: Iterable[ResultRow], task: str) -> list[Entry]:
    """The task's (network, point, distance) configurations, seeds averaged, in first-seen order."""
    rows = [r for r in rows if r.task == task and r.score is not None]
    feature_distances = {r.distance for r in rows if not r.is_pixel}
    groups: dict[tuple, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault((r.network, r.distance, r.point), []).append(r)
    out = []
    for (network, distance, point), rs in groups.items():
        if rs[0].is_pixel:
            key = f"{PIXEL} {distance}"
        else:
            key = network if len(feature_distances) <= 1 else f"{network} · {distance}"
        scores = [r.score for r in rs]
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) if len(scores) > 1 else None
        out.append(Entry(key, network, rs[0].arch, rs[0].weights, distance, point, rs[0].slot, mean, len(scores),
                         std, rs))
    return out


# ----------------------------------------------------------------------------------------------
# Ranks, best points, matrices


def competition_ranks(scores: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Rank 1 = best; equal scores share the best rank of their group (1, 1, 3).

    Example:
        >>> competition_ranks([0.2, 0.9, 0.5])
        [3, 1, 2]
    """
    signed = [(-s if higher_is_better else s) for s in scores]
    return [1 + sum(1 for o in signed if o < v) for v in signed]


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


def best_points(rows: Iterable[ResultRow], task: str) -> list[dict[str, Any]]:
    """Per table row (network; pixel baselines included): the best point, its score and the
    rank of that score among the rows, best first."""
    _, hib = headline_of(task)
    best: dict[str, Entry] = {}
    for e in entries(rows, task):
        if e.key not in best or _better(e.score, best[e.key].score, hib):
            best[e.key] = e
    items = list(best.values())
    ranks = competition_ranks([e.score for e in items], hib)
    out = [{"network": e.key, "arch": e.arch, "weights": e.weights, "distance": e.distance, "point": e.point,
            "score": e.score, "rank": r, "n_seeds": e.n_seeds} for e, r in zip(items, ranks)]
    return sorted(out, key=lambda d: (d["rank"], d["network"]))


def ranked_entries(rows: Iterable[ResultRow], task: str) -> list[dict[str, Any]]:
    """Every (network, point) configuration of ``task`` with its rank, best first."""
    _, hib = headline_of(task)
    items = entries(rows, task)
    ranks = competition_ranks([e.score for e in items], hib)
    out = [{"network": e.key, "point": e.point, "distance": e.distance, "score": e.score, "std": e.std,
            "n_seeds": e.n_seeds, "rank": r, "source": e.rows[0].source} for e, r in zip(items, ranks)]
    return sorted(out, key=lambda d: (d["rank"], d["network"], d["point"]))


def score_matrix(rows: Iterable[ResultRow], task: str) -> dict[str, Any]:
    """Network x extraction point scores of ``task`` (pixel baselines left out).

    Columns are the point names when every network has the same points, else slots
    ``P1..Pn`` (shallow to deep, as the spec lists them) with each network's names in
    ``points``; a ``combined`` column holds multi-point runs.

    Returns ``{"networks", "columns", "cells": {network: {column: score}}, "points":
    {network: {column: point}}}``.
    """
    items = [e for e in entries(rows, task) if e.arch is not None]
    per_net: dict[str, list[Entry]] = {}
    for e in items:
        per_net.setdefault(e.key, []).append(e)
    singles = {k: sorted([e for e in v if e.slot > 0], key=lambda e: e.slot) for k, v in per_net.items()}
    name_lists = {tuple(e.point for e in v) for v in singles.values() if v}
    by_name = len(name_lists) == 1
    columns: list[str] = []
    cells: dict[str, dict[str, float]] = {}
    points: dict[str, dict[str, str]] = {}
    for key, es in per_net.items():
        cells[key], points[key] = {}, {}
        for e in es:
            if e.slot > 0:
                col = e.point if by_name else f"P{e.slot}"
            else:
                col = "combined" if e.point == "combined" else e.point
            cells[key][col] = e.score
            points[key][col] = e.point
            if col not in columns:
                columns.append(col)
    slot_cols = [c for c in columns if c not in ("combined",) and not ("+" in c)]
    if not by_name:
        slot_cols = sorted([c for c in slot_cols if c.startswith("P") and c[1:].isdigit()], key=lambda c: int(c[1:])) \
            + [c for c in slot_cols if not (c.startswith("P") and c[1:].isdigit())]
    other = [c for c in columns if c not in slot_cols]
    return {"networks": list(per_net), "columns": slot_cols + other, "cells": cells, "points": points}


def cross_task_ranks(rows: Sequence[ResultRow]) -> dict[str, Any]:
    """Rank of each network's best configuration in every task, and the mean rank.

    Returns ``{"tasks", "networks", "ranks": {network: {task: rank}}, "mean_rank": {network: r}}``.
    """
    tasks = tasks_of(rows)
    ranks: dict[str, dict[str, int]] = {}
    for task in tasks:
        _, hib = headline_of(task)
        best: dict[str, float] = {}
        for e in entries(rows, task):
            name = f"{PIXEL} {e.distance}" if e.arch is None else e.network
            if name not in best or _better(e.score, best[name], hib):
                best[name] = e.score
        names = list(best)
        for name, r in zip(names, competition_ranks([best[n] for n in names], hib)):
            ranks.setdefault(name, {})[task] = r
    mean_rank = {n: sum(v.values()) / len(v) for n, v in ranks.items()}
    networks = sorted(ranks, key=lambda n: (mean_rank[n], n))
    return {"tasks": tasks, "networks": networks, "ranks": ranks, "mean_rank": mean_rank}


# ----------------------------------------------------------------------------------------------
# ImageNet top-1, Spearman, Pareto


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """Spearman's rho and its p-value (scipy); None when fewer than 3 points or a constant input."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    rho, p = float(res.statistic if hasattr(res, "statistic") else res[0]), float(res.pvalue if hasattr(res, "pvalue") else res[1])
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None)


def _top1(arch: str) -> float | None:
    try:
        from ..networks.weights import imagenet_top1

        v = imagenet_top1(arch)
    except Exception:  # noqa: BLE001 - unknown or metadata-less architectures
        return None
    return _float(v)


def top1_points(rows: Iterable[ResultRow], task: str, top1: Mapping[str, float | None] | None = None
                ) -> list[dict[str, Any]]:
    """Networks with ImageNet weights: ``{network, arch, top1, score, point}`` (best point of each)."""
    _, hib = headline_of(task)
    best: dict[str, Entry] = {}
    for e in entries(rows, task):
        if e.arch is None or e.weights != "imagenet":
            continue
        if e.arch not in best or _better(e.score, best[e.arch].score, hib):
            best[e.arch] = e
    out = []
    for arch, e in best.items():
        acc = top1.get(arch) if top1 is not None else _top1(arch)
        if acc is not None:
            out.append({"network": e.network, "arch": arch, "top1": float(acc), "score": e.score, "point": e.point})
    return out


def top1_correlation(rows: Iterable[ResultRow], task: str, top1: Mapping[str, float | None] | None = None
                     ) -> dict[str, Any]:
    """ImageNet top-1 against the task's best score per network, with Spearman's rho (scipy)."""
    pts = top1_points(rows, task, top1)
    rho, p = spearman([d["top1"] for d in pts], [d["score"] for d in pts])
    return {"task": task, "n": len(pts), "rho": rho, "p": p, "points": pts}


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (maximising both coordinates), by x.

    A point is dominated when another is at least as good in both and better in one.

    Example:
        >>> pareto_frontier([(70, 60), (75, 58), (72, 61), (60, 50)])
        [2, 1]
    """
    idx = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: (points[i][0], -points[i][1]))


# ----------------------------------------------------------------------------------------------
# BAPPS subsets


def subset_table(rows: Iterable[ResultRow], task: str = "similarity") -> dict[str, Any]:
    """Per-subset 2AFC scores: ``{"subsets", "rows": [{network, point, distance, scores: {subset: s}, mean}]}``
    (seeds averaged; best mean first)."""
    items = entries(rows, task)
    subsets: list[str] = []
    out = []
    for e in items:
        sums: dict[str, list[float]] = {}
        for r in e.rows:
            for name, d in (r.metrics.get("subsets") or {}).items():
                v = _float(d.get("score") if isinstance(d, Mapping) else d)
                if v is not None:
                    sums.setdefault(name, []).append(v)
                    if name not in subsets:
                        subsets.append(name)
        if sums:
            out.append({"network": e.key, "point": e.point, "distance": e.distance,
                        "scores": {k: sum(v) / len(v) for k, v in sums.items()}, "mean": e.score})
    out.sort(key=lambda d: -d["mean"])
    return {"subsets": subsets, "rows": out}


__all__ = ["Entry", "ResultRow", "best_points", "collect_rows", "competition_ranks", "cross_task_ranks", "entries",
           "fmt", "headline_of", "html_table", "markdown_table", "pareto_frontier", "ranked_entries", "score_matrix",
           "spearman", "subset_table", "tasks_of", "top1_correlation", "top1_points"]
