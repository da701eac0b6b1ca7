"""The study-style report of a sweep: Markdown, HTML, JSON and PNG figures.

For each task of the spec: every network x extraction point (table and heatmap), the best
point per network with its rank, every configuration ranked, ImageNet top-1 (from the
weights' metadata, :func:`lossnet.imagenet_top1`) against the task score with Spearman's
rho; for the similarity task also the per-subset 2AFC table and accuracy against Perceptual
Score with the Pareto frontier; across tasks, each network's rank per task and its mean rank.

Example:
    >>> result = build_report("mini", "out/results.sqlite", "out/report")   # doctest: +SKIP
    >>> result["markdown"], result["html"], result["figures"]                # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import html
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..utils.jsonio import write_json
from . import figures, tables

Block = tuple  # ("h1"|"h2"|"h3"|"p"|"note", text) | ("table", header, rows, highlight) | ("img", path, alt)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower() or "x"


def report_data(spec: Any, db: Any, overrides: Sequence[str] | Mapping[str, Any] | None = None,
                top1: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """Every table of the report as JSON-ready data (no files written).

    ``top1`` overrides the ImageNet top-1 of architectures (default: the weights' metadata).
    """
    from ..sweeps.runner import sweep_status
    from ..sweeps.spec import expand, load_spec
    from ..sweeps.store import ResultsStore

    parsed = load_spec(spec, overrides)
    runs = expand(parsed)
    exists = isinstance(db, ResultsStore) or Path(db).expanduser().exists()
    store = (db if isinstance(db, ResultsStore) else ResultsStore(db)) if exists else None
    records = {r.id: r for r in store.records([r.id for r in runs])} if store is not None else {}
    rows = tables.collect_rows(runs, records)
    status = sweep_status(parsed, store if store is not None else db, runs=runs)
    data: dict[str, Any] = {
        "spec": parsed.name, "description": parsed.description, "db": status["db"],
        "status": {k: status[k] for k in ("total", "finished", "failed", "running", "pending")},
        "failures": [{k: f[k] for k in ("id", "task", "arch", "label", "distance", "seed", "error")}
                     for f in status["failures"]],
        "weights_changed": status["weights_changed"],
        "synthetic": any(bool(r.metrics.get("synthetic")) for r in rows if r.task == "similarity"),
        "tasks": {}, "cross_task": tables.cross_task_ranks(rows) if rows else None,
    }
    for task in tables.tasks_of(rows):
        metric, hib = tables.headline_of(task)
        t: dict[str, Any] = {
            "metric": metric, "higher_is_better": hib,
            "matrix": tables.score_matrix(rows, task),
            "best": tables.best_points(rows, task),
            "ranked": tables.ranked_entries(rows, task),
            "top1": tables.top1_correlation(rows, task, top1),
        }
        if task == "similarity":
            t["subsets"] = tables.subset_table(rows, task)
            pts = t["top1"]["points"]
            t["pareto"] = {"points": pts,
                           "frontier": tables.pareto_frontier([(d["top1"], d["score"]) for d in pts])}
        data["tasks"][task] = t
    return data


def _blocks(data: Mapping[str, Any], fig_dir: Path, out_dir: Path) -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    figs: list[str] = []

    def img(path: Path, alt: str) -> None:
        rel = os.path.relpath(path, out_dir)
        figs.append(str(path))
        blocks.append(("img", rel, alt))

    st = data["status"]
    blocks.append(("h1", f"Sweep report: {data['spec']}"))
    if data.get("description"):
        blocks.append(("p", data["description"]))
    blocks.append(("p", f"Results store {data['db']}: {st['finished']}/{st['total']} runs finished, "
                        f"{st['failed']} failed, {st['running']} running, {st['pending']} pending. "
                        f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Scores of several seeds are "
                        "averaged; rank 1 is best, ties share a rank."))
    if data.get("synthetic"):
        blocks.append(("note", "The similarity scores come from the built-in SYNTHETIC 2AFC set: rule-based "
                               "judgements, not human ones; not comparable to BAPPS numbers."))
    changed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in data.get("weights_changed") or []:
        changed.setdefault((c["weights"], c["sha256"]), []).append(c)
    for (weights, sha), items in changed.items():
        before = ", ".join(sorted({str(c["previous_sha256"])[:12] for c in items}))
        blocks.append(("note", f"The weights file {weights} changed (sha256 {before}... -> {sha[:12]}...): "
                               f"{len(items)} run(s) were made again from the new contents; the tables show "
                               "only runs of the current contents."))
    if not data["tasks"]:
        blocks.append(("p", "No finished runs yet: run `lossnet sweep run` first."))
    cross = data.get("cross_task")
    if cross and len(cross["tasks"]) > 1:
        blocks.append(("h2", "Ranks across tasks"))
        blocks.append(("p", "Each network's best configuration, ranked within every task; sorted by mean rank."))
        header = ["network", *cross["tasks"], "mean rank"]
        rows = [[n, *[cross["ranks"][n].get(t) for t in cross["tasks"]], cross["mean_rank"][n]]
                for n in cross["networks"]]
        blocks.append(("table", header, rows, ()))
    for task, t in data["tasks"].items():
        metric = t["metric"]
        direction = "higher is better" if t["higher_is_better"] else "lower is better"
        blocks.append(("h2", f"Task: {task}"))
        blocks.append(("p", f"Metric: {metric} ({direction})."))
        m = t["matrix"]
        if m["networks"]:
            blocks.append(("h3", "Every network x extraction point"))
            best_cols = {}
            for i, n in enumerate(m["networks"]):
                vals = [(m["cells"][n].get(c), j) for j, c in enumerate(m["columns"]) if m["cells"][n].get(c) is not None]
                if vals:
                    pick = max(vals) if t["higher_is_better"] else min(vals)
                    best_cols[i] = pick[1] + 1
            rows = [[n, *[m["cells"][n].get(c) for c in m["columns"]]] for n in m["networks"]]
            blocks.append(("table", ["network", *m["columns"]], rows, [(i, j) for i, j in best_cols.items()]))
            if any(c.startswith("P") and c[1:].isdigit() for c in m["columns"]):
                legend = "; ".join(f"{n}: " + ", ".join(f"{c} = {p}" for c, p in m["points"][n].items())
                                   for n in m["networks"])
                blocks.append(("p", f"Points: {legend}."))
            img(figures.heatmap(m, f"{task}: {metric}", fig_dir / f"heatmap-{_slug(task)}.png",
                                t["higher_is_better"]), f"{task} heatmap")
        blocks.append(("h3", "Best extraction point per network"))
        rows = [[b["rank"], b["network"], b["point"], b["distance"], b["score"], b["n_seeds"]] for b in t["best"]]
        blocks.append(("table", ["rank", "network", "best point", "distance", metric, "seeds"], rows, ()))
        img(figures.best_bars(t["best"], task, metric, fig_dir / f"best-{_slug(task)}.png"), f"{task} best points")
        blocks.append(("h3", "All configurations ranked"))
        rows = [[r["rank"], r["network"], r["point"], r["distance"], r["score"], r["std"], r["n_seeds"],
                 r["source"]] for r in t["ranked"]]
        blocks.append(("table", ["rank", "network", "point", "distance", metric, "std", "seeds", "source"], rows, ()))
        if t.get("subsets") and t["subsets"]["rows"]:
            s = t["subsets"]
            blocks.append(("h3", "Per-subset 2AFC scores"))
            rows = [[r["network"], r["point"], r["distance"], *[r["scores"].get(k) for k in s["subsets"]], r["mean"]]
                    for r in s["rows"]]
            blocks.append(("table", ["network", "point", "distance", *s["subsets"], "mean"], rows, ()))
        c = t["top1"]
        blocks.append(("h3", "ImageNet top-1 vs task score"))
        if c["n"]:
            rho = "n/a (needs at least 3 networks with distinct values)" if c["rho"] is None else \
                f"{c['rho']:.3f} (p = {c['p']:.3g})"
            blocks.append(("p", f"{c['n']} network{'s' if c['n'] != 1 else ''} with ImageNet weights (best point each). Spearman rho = {rho}."))
            rows = [[d["network"], d["top1"], d["point"], d["score"]] for d in sorted(c["points"], key=lambda d: d["top1"])]
            blocks.append(("table", ["network", "ImageNet top-1", "best point", metric], rows, ()))
            img(figures.top1_scatter(c["points"], c["rho"], c["p"], task, metric,
                                     fig_dir / f"top1-{_slug(task)}.png"), f"{task} top-1 scatter")
        else:
            blocks.append(("p", "No network with ImageNet weights and known top-1 accuracy."))
        if t.get("pareto") and t["pareto"]["points"]:
            pts, front = t["pareto"]["points"], t["pareto"]["frontier"]
            blocks.append(("h3", "Accuracy vs Perceptual Score: Pareto frontier"))
            names = ", ".join(pts[i]["network"] for i in front)
            blocks.append(("p", f"On the frontier (no network is better in both): {names}."))
            img(figures.pareto_plot(pts, front, fig_dir / f"pareto-{_slug(task)}.png", ylabel=metric),
                "Pareto frontier")
    if data["failures"]:
        blocks.append(("h2", "Failed runs"))
        rows = [[f["id"], f["task"], f["arch"] or "pixel", f["label"], f["distance"], f["seed"], f["error"]]
                for f in data["failures"]]
        blocks.append(("table", ["id", "task", "network", "point", "distance", "seed", "error"], rows, ()))
    return blocks, figs


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "note":
            out.append(f"> **Note:** {b[1]}")
        elif kind == "table":
            out.append(tables.markdown_table(b[1], b[2]))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;
margin:0.5em 0}.note{background:#fff6d5;border-left:4px solid #e0b000;padding:0.5em 1em}"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(b[1])}</p>")
        elif kind == "note":
            out.append(f"<p class='note'><b>Note:</b> {html.escape(b[1])}</p>")
        elif kind == "table":
            out.append(tables.html_table(b[1], b[2], highlight=b[3]))
        elif kind == "img":
            out.append(f"<img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def build_report(spec: Any, db: Any, out_dir: str | os.PathLike,
                 overrides: Sequence[str] | Mapping[str, Any] | None = None,
                 top1: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/*.png`` into ``out_dir``.

    Returns ``{"markdown", "html", "json", "figures": [paths], "data": report_data(...)}``.

    Example:
        >>> build_report("mini", "lossnet-out/sweep/results.sqlite", "lossnet-out/sweep/report")  # doctest: +SKIP
    """
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    data = report_data(spec, db, overrides, top1)
    blocks, figs = _blocks(data, fig_dir, out)
    md_path, html_path, json_path = out / "report.md", out / "report.html", out / "report.json"
    md_path.write_text(to_markdown(blocks), encoding="utf-8")
    html_path.write_text(to_html(blocks, f"Sweep report: {data['spec']}"), encoding="utf-8")
    write_json(json_path, data)
    return {"markdown": str(md_path), "html": str(html_path), "json": str(json_path), "figures": figs, "data": data}


__all__ = ["build_report", "report_data", "to_html", "to_markdown"]
