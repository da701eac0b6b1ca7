"""The study-style reports the demo links: its own training sweep, and the ``kumar-mini``
classifier study when that spec is installed.

The demo's training runs live in a results store, so :mod:`lossnet.report.study` writes
the same report for them as for any sweep (every network x extraction point, best point per
network, ranks across tasks). The classifier study (about 10 minutes) is not run by default:
``lossnet demo --kumar`` runs it into ``<out>/kumar-mini/``; once its store exists, the
demo report links its report.

Example:
    >>> section = kumar_section("lossnet-out/demo", run=False)   # doctest: +SKIP
    >>> section["status"]                                          # doctest: +SKIP
    'not run'
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..report.study import build_report
from ..sweeps.runner import run_sweep, sweep_status
from ..sweeps.spec import list_specs

KUMAR_SPEC = "kumar-mini"


def study_report(spec: Mapping[str, Any], db: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """The study-style report of ``spec``'s runs in ``db`` (Markdown, HTML, JSON, figures in ``out_dir``)."""
    report = build_report(spec, db, out_dir)
    data = report["data"]
    return {"html": report["html"], "markdown": report["markdown"], "json": report["json"],
            "status": data["status"],
            "best": {task: t["best"] for task, t in data["tasks"].items()},
            "metrics": {task: t["metric"] for task, t in data["tasks"].items()}}


def kumar_section(out_dir: str | os.PathLike, run: bool = False, workers: int = 2,
                  progress: bool = True) -> dict[str, Any]:
    """The classifier-study section: ``status`` is ``"no spec"`` (the ``kumar-mini`` spec is not
    installed), ``"not run"`` (no results store in ``<out_dir>/kumar-mini/`` yet) or the store's
    progress with a link to the study's report."""
    if KUMAR_SPEC not in list_specs():
        return {"status": "no spec", "note": f"this lossnet has no {KUMAR_SPEC} sweep spec."}
    folder = Path(out_dir) / KUMAR_SPEC
    db = folder / "results.sqlite"
    how = f"lossnet demo --kumar (about 10 minutes), or: lossnet sweep run {KUMAR_SPEC} --db {db}"
    if run:
        run_sweep(KUMAR_SPEC, db, executor="processes" if workers > 1 else "inprocess", workers=workers,
                  progress=progress)
    if not db.exists():
        return {"status": "not run", "note": f"The classifier study has not been run here: {how}.", "db": str(db)}
    status = sweep_status(KUMAR_SPEC, db)
    counts = {k: status[k] for k in ("total", "finished", "failed", "pending")}
    section: dict[str, Any] = {"status": "run" if counts["finished"] else "not run", "db": str(db), **counts}
    if not counts["finished"]:
        section["note"] = f"No finished run in {db} yet: {how}."
        return section
    from ..report.classifier_study import build_classifier_report

    report = build_classifier_report(KUMAR_SPEC, db, folder / "report")
    section.update(html=report["html"], networks=[
        {k: n.get(k) for k in ("name", "top1", "ps", "best_ps")} for n in report["data"].get("networks", [])])
    return section


__all__ = ["KUMAR_SPEC", "kumar_section", "study_report"]
