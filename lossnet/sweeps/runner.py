"""Run a sweep into a results store, and ask how far it got.

:func:`run_sweep` expands the spec, adds the runs the store does not know yet (as pending),
skips finished runs (and failed ones unless ``retry_failed``), and hands the rest to an
executor. Running the same command again after any interruption (Ctrl-C, ``kill -9``, a
crashed node) finishes exactly what is missing.

Example:
    >>> summary = run_sweep("mini", "results.sqlite")                 # doctest: +SKIP
    >>> sweep_status("mini", "results.sqlite")["finished"]            # doctest: +SKIP
    12
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .executors import Executor, Reporter, get_executor
from .spec import RunConfig, SweepSpec, expand, load_spec
from .store import DEFAULT_STALE_AFTER, ResultsStore

SpecArg = "str | os.PathLike | SweepSpec | Mapping[str, Any]"


def default_work_root(db: str | os.PathLike) -> Path:
    """Where runs keep their files (checkpoints): ``<db folder>/<db name>-runs/<run id>/``."""
    db = Path(db)
    return db.parent / f"{db.stem}-runs"


def _open(db: str | os.PathLike | ResultsStore, stale_after: float = DEFAULT_STALE_AFTER) -> ResultsStore:
    return db if isinstance(db, ResultsStore) else ResultsStore(db, stale_after=stale_after)


def _stderr(msg: str) -> None:
    print(f"lossnet sweep: {msg}", file=sys.stderr, flush=True)


def run_sweep(spec: SpecArg, db: str | os.PathLike | ResultsStore, executor: str | Executor = "inprocess",
              workers: int = 1, address: str | None = None, retry_failed: bool = False,
              work_root: str | os.PathLike | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None,
              stale_after: float = DEFAULT_STALE_AFTER, progress: bool = True, limit: int | None = None
              ) -> dict[str, Any]:
    """Run every run of ``spec`` that ``db`` has not finished; return a summary.

    Args:
        spec: a spec file, a ready-made spec name, a TOML dict or a :class:`SweepSpec`.
        db: the SQLite results store (created if absent).
        executor: ``inprocess``, ``processes`` or ``ray`` (or an :class:`Executor`).
        workers: worker processes for ``processes``; runs in flight for ``ray``.
        address: the Ray cluster address for ``ray``.
        retry_failed: run failed runs again.
        work_root: where runs keep files (default ``<db folder>/<db name>-runs``).
        overrides: task settings, ``["similarity.data=/data/bapps"]``.
        stale_after: seconds without a heartbeat before a ``running`` run of another host is
            taken over (runs of dead processes on this host are taken over at once).
        progress: one line per finished run on stderr.
        limit: run at most this many of the missing runs (in spec order).

    Returns:
        ``{"spec", "db", "total", "finished", "failed", "running", "pending", "skipped",
        "ran": {finished, failed, discarded, claimed, seconds, workers}, "seconds", "failures"}``.

    Example:
        >>> run_sweep("mini", "out/results.sqlite", executor="processes", workers=2)  # doctest: +SKIP
    """
    start = time.perf_counter()
    parsed = load_spec(spec, overrides)
    runs = expand(parsed)
    store = _open(db, stale_after)
    store.add_runs(runs, sweep=parsed.name)
    ids = [r.id for r in runs]
    records = {r.id: r for r in store.records(ids)}
    todo: list[RunConfig] = []
    skipped = 0
    for run in runs:
        rec = records.get(run.id)
        if rec is not None and (rec.status == "finished" or (rec.status == "failed" and not retry_failed)):
            skipped += 1
            continue
        todo.append(run)
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    ex = executor if isinstance(executor, Executor) else get_executor(executor, workers=workers, address=address)
    report: Reporter | None = _stderr if progress else None
    if report is not None:
        report(f"{parsed.name}: {len(runs)} runs, {skipped} already done, {len(todo)} to run "
               f"({ex.name}{f', {ex.workers} workers' if ex.name == 'processes' else ''})")
    root = Path(work_root) if work_root is not None else default_work_root(store.path)
    stats = ex.run(store, [r.to_dict() for r in todo], root, retry_failed, parsed.imports, report) if todo else None
    status = sweep_status(parsed, store)
    summary = {
        "spec": parsed.name, "db": str(store.path), **{k: status[k] for k in ("total", "finished", "failed",
                                                                              "running", "pending")},
        "skipped": skipped, "ran": stats.to_dict() if stats else {"finished": 0, "failed": 0, "discarded": 0,
                                                                    "claimed": 0, "seconds": 0.0, "workers": 0},
        "executor": ex.name, "seconds": round(time.perf_counter() - start, 3), "failures": status["failures"],
    }
    if report is not None:
        report(f"{parsed.name}: {summary['finished']}/{summary['total']} finished, {summary['failed']} failed, "
               f"{summary['running']} running elsewhere, {summary['pending']} pending ({summary['seconds']:.1f} s)")
    return summary


def sweep_status(spec: SpecArg, db: str | os.PathLike | ResultsStore,
                 overrides: Sequence[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How far ``spec`` got in ``db``.

    Returns ``{"spec", "db", "total", "finished", "failed", "running", "pending", "by_task":
    {task: {status: n}}, "failures": [{id, task, arch, label, distance, seed, attempts, error,
    traceback}], "running_runs": [{id, worker, host, pid, heartbeat_age}]}``.

    Example:
        >>> sweep_status("mini", "results.sqlite")["pending"]   # doctest: +SKIP
        0
    """
    parsed = spec if isinstance(spec, SweepSpec) and overrides is None else load_spec(spec, overrides)
    runs = expand(parsed)
    if isinstance(db, ResultsStore) or Path(db).expanduser().exists():
        store = _open(db)
        db_path = str(store.path)
        records = {r.id: r for r in store.records([r.id for r in runs])}
    else:  # no store yet: everything is pending (and no file is created)
        db_path, records = str(db), {}
    counts = {"finished": 0, "failed": 0, "running": 0, "pending": 0}
    by_task: dict[str, dict[str, int]] = {}
    failures, running = [], []
    now = time.time()
    for run in runs:
        rec = records.get(run.id)
        status = rec.status if rec is not None else "pending"
        counts[status] += 1
        by_task.setdefault(run.task, {"finished": 0, "failed": 0, "running": 0, "pending": 0})[status] += 1
        if status == "failed":
            failures.append({"id": run.id, "task": run.task, "arch": run.arch, "weights": run.weights,
                             "label": run.label, "distance": run.distance, "seed": run.seed,
                             "attempts": rec.attempts, "error": rec.error, "traceback": rec.traceback})
        elif status == "running":
            running.append({"id": run.id, "task": run.task, "worker": rec.worker, "host": rec.host, "pid": rec.pid,
                            "heartbeat_age": None if rec.heartbeat is None else round(now - rec.heartbeat, 1)})
    return {"spec": parsed.name, "db": db_path, "total": len(runs), **counts, "by_task": by_task,
            "failures": failures, "running_runs": running}


def format_status(status: Mapping[str, Any]) -> str:
    """A readable summary of :func:`sweep_status`."""
    lines = [f"sweep {status['spec']} in {status['db']}: {status['finished']}/{status['total']} finished, "
             f"{status['failed']} failed, {status['running']} running, {status['pending']} pending"]
    for task, c in status.get("by_task", {}).items():
        lines.append(f"  {task:<14} finished {c['finished']:>4}  failed {c['failed']:>3}  running {c['running']:>3}  "
                     f"pending {c['pending']:>4}")
    for f in status.get("failures", []):
        net = f["arch"] or "pixel"
        lines.append(f"  FAILED {f['id']} {f['task']} {net} {f['label']} {f['distance']} seed {f['seed']} "
                     f"(attempts {f['attempts']}): {f['error']}")
    for r in status.get("running_runs", []):
        lines.append(f"  running {r['id']} {r['task']} on {r['worker']} (heartbeat {r['heartbeat_age']} s ago)")
    return "\n".join(lines)


__all__ = ["default_work_root", "format_status", "run_sweep", "sweep_status"]
