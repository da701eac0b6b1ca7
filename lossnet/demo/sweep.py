"""The ``mini`` sweep end to end: runs into ``out_dir/results.sqlite``, report into ``out_dir/report/``.

Example:
    >>> result = run_mini_sweep("lossnet-out/demo/sweep")     # doctest: +SKIP
    >>> print(format_mini_sweep(result))                       # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..report.study import build_report
from ..sweeps.runner import run_sweep
from ..utils.tables import fmt


def run_mini_sweep(out_dir: str | os.PathLike, executor: str = "inprocess", workers: int = 1,
                   progress: bool = True, spec: str = "mini") -> dict[str, Any]:
    """Run the ready-made ``mini`` spec (resuming whatever is already in the store) and report it.

    Returns ``{"summary": run_sweep(...), "report": {markdown, html, json, figures}, "best":
    {task: best point per network}, "seconds"}``.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "results.sqlite"
    summary = run_sweep(spec, db, executor=executor, workers=workers, progress=progress)
    report = build_report(spec, db, out / "report")
    best = {task: t["best"] for task, t in report["data"]["tasks"].items()}
    return {"summary": summary, "report": {k: report[k] for k in ("markdown", "html", "json", "figures")},
            "best": best, "metrics": {task: t["metric"] for task, t in report["data"]["tasks"].items()},
            "synthetic": report["data"]["synthetic"], "seconds": round(time.perf_counter() - start, 1)}


def format_mini_sweep(result: dict[str, Any]) -> str:
    """The best point per network of every task, as text."""
    s = result["summary"]
    lines = [f"mini sweep: {s['finished']}/{s['total']} runs finished, {s['failed']} failed "
             f"({result['seconds']} s); report: {result['report']['html']}"]
    if result.get("synthetic"):
        lines.append("(similarity on the built-in SYNTHETIC 2AFC set: rule-based judgements, not human)")
    for task, best in result["best"].items():
        lines.append(f"  {task} ({result['metrics'][task]}):")
        for b in best:
            lines.append(f"    {b['rank']:>2}. {b['network']:<34} {b['point']:<12} {fmt(b['score'])}")
    return "\n".join(lines)


def demo_step(out_dir: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """A ``lossnet demo`` step: the mini sweep into ``out_dir/sweep/``, its best points printed.

    Matches ``lossnet.demo.DEMO_STEPS`` (``function(out_dir, seed) -> summary``); the
    mini spec fixes its own seeds, so ``seed`` is not used.
    """
    result = run_mini_sweep(Path(out_dir) / "sweep")
    print("\n" + format_mini_sweep(result))
    s = result["summary"]
    return {"db": s["db"], "finished": s["finished"], "total": s["total"], "failed": s["failed"],
            "report": result["report"]["html"], "markdown": result["report"]["markdown"],
            "best": result["best"], "seconds": result["seconds"]}


__all__ = ["demo_step", "format_mini_sweep", "run_mini_sweep"]
