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
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import LossnetError
from .executors import Executor, SweepProgress, describe_plan, get_executor, plan_units
from .spec import RunConfig, SweepSpec, canonical_json, expand, load_spec
from .store import DEFAULT_STALE_AFTER, ResultsStore

SpecArg = "str | os.PathLike | SweepSpec | Mapping[str, Any]"


def default_work_root(db: str | os.PathLike) -> Path:
    """Where runs keep their files (checkpoints): ``<db folder>/<db name>-runs/<run id>/``."""
    db = Path(db)
    return db.parent / f"{db.stem}-runs"


def _open(db: str | os.PathLike | ResultsStore, stale_after: float = DEFAULT_STALE_AFTER) -> ResultsStore:
    return db if isinstance(db, ResultsStore) else ResultsStore(db, stale_after=stale_after)


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise LossnetError(f"--limit must be a whole number of runs, 0 or more, got {limit!r} (leave it out to run "
                           "every missing run).")
    return int(limit)


def run_sweep(spec: SpecArg, db: str | os.PathLike | ResultsStore, executor: str | Executor = "inprocess",
              workers: int | None = None, address: str | None = None, retry_failed: bool = False,
              work_root: str | os.PathLike | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None,
              stale_after: float = DEFAULT_STALE_AFTER, progress: bool = True, limit: int | None = None,
              share: bool = True) -> dict[str, Any]:
    """Run every run of ``spec`` that ``db`` has not finished; return a summary.

    Args:
        spec: a spec file, a ready-made spec name, a TOML dict or a :class:`SweepSpec`.
        db: the SQLite results store (created if absent).
        executor: ``inprocess``, ``processes`` or ``ray`` (or an :class:`Executor`).
        workers: worker processes for ``processes`` (default 2); runs in flight for ``ray``
            (default: what the cluster's CPUs fit, x2); must be left out for ``inprocess``.
        address: the Ray cluster address for ``ray``.
        retry_failed: run failed runs again.
        work_root: where runs keep files (default ``<db folder>/<db name>-runs``).
        overrides: task settings, ``["similarity.data=/data/bapps"]``.
        stale_after: seconds without a heartbeat before a ``running`` run of another host is
            taken over (runs of dead processes on this host are taken over at once).
        progress: a progress bar (on a terminal) and one line per finished run on stderr.
        limit: run at most this many of the missing runs (in spec order).
        share: runs that see the same features (similarity runs of one network, weights, data,
            input size and device that differ in points and distance) are scored from ONE pass,
            each still recorded on its own; False runs every run alone.

    Returns:
        ``{"spec", "db", "total", "finished", "failed", "running", "pending", "skipped",
        "ran": {finished, failed, discarded, claimed, passes, seconds, workers}, "plan": {runs,
        passes}, "seconds", "failures", "weights_changed"}`` (``weights_changed``: see
        :func:`weights_changes`; ``plan``: the missing runs and the passes they were planned in).

    Example:
        >>> run_sweep("mini", "out/results.sqlite", executor="processes", workers=2)  # doctest: +SKIP
    """
    start = time.perf_counter()
    limit = _check_limit(limit)
    if not isinstance(share, bool):
        raise LossnetError(f"share must be True or False, got {share!r} (False: every run its own pass).")
    parsed = load_spec(spec, overrides)
    runs = expand(parsed)
    ex = executor if isinstance(executor, Executor) else get_executor(executor, workers=workers, address=address)
    if isinstance(executor, Executor) and (workers is not None or address is not None):
        raise LossnetError("workers and address configure an executor by name; pass them to the Executor object "
                           "instead (e.g. ProcessExecutor(workers=4)).")
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
        todo = todo[:limit]
    todo_dicts = [r.to_dict() for r in todo]
    units = plan_units(todo_dicts, share)
    changed = weights_changes(runs, store)
    bar = SweepProgress(len(todo), f"sweep {parsed.name}") if progress else None
    try:
        if bar is not None:
            bar.note(f"{parsed.name}: {len(runs)} runs, {skipped} already done, {sum(len(u) for u in units)} to run ({describe_plan(units)})"
                     f"{'' if share else ' (sharing off: every run its own pass)'} "
                     f"({ex.name}{f', {ex.workers} workers' if ex.name == 'processes' else ''})")
            for line in _weights_change_lines(changed):
                bar.note(line)
        root = Path(work_root) if work_root is not None else default_work_root(store.path)
        stats = ex.run(store, todo_dicts, root, retry_failed, parsed.imports, bar, share=share) if todo else None
    finally:
        if bar is not None:
            bar.close()
    status = _status(parsed.name, runs, store, str(store.path))
    summary = {
        "spec": parsed.name, "db": str(store.path), **{k: status[k] for k in ("total", "finished", "failed",
                                                                              "running", "pending")},
        "skipped": skipped, "ran": stats.to_dict() if stats else {"finished": 0, "failed": 0, "discarded": 0,
                                                                    "claimed": 0, "passes": 0, "seconds": 0.0,
                                                                    "workers": 0},
        "plan": {"runs": len(todo), "passes": len(units)},
        "executor": ex.name, "seconds": round(time.perf_counter() - start, 3), "failures": status["failures"],
        "weights_changed": changed,
    }
    if bar is not None:
        bar.note(f"{parsed.name}: {summary['finished']}/{summary['total']} finished, {summary['failed']} failed, "
                 f"{summary['running']} running elsewhere, {summary['pending']} pending ({summary['seconds']:.1f} s)")
    return summary


def weights_changes(runs: Sequence[RunConfig], store: ResultsStore) -> list[dict[str, Any]]:
    """Runs that are new because their weights file's contents changed: for each, the store's
    run that was the same in every other respect but was made from other contents.

    Returns ``[{"id", "previous_id", "weights", "sha256", "previous_sha256", "previous_status"}]``
    (runs recorded by a lossnet that did not hash weights files are not listed).
    """
    hashed = [r for r in runs if r.weights_sha256]
    if not hashed:
        return []

    def key(rc: RunConfig) -> str:
        ident = rc.identity()
        ident.pop("weights_sha256")
        return canonical_json(ident)

    current = {key(r): r for r in hashed}
    ids = {r.id for r in runs}
    changes = []
    for rec in store.records_with_weights(sorted({r.weights for r in hashed})):
        if rec.id in ids or not rec.config.get("weights_sha256"):
            continue
        old = RunConfig.from_dict(rec.config)
        new = current.get(key(old))
        if new is not None and old.weights_sha256 != new.weights_sha256:
            changes.append({"id": new.id, "previous_id": rec.id, "weights": new.weights, "sha256": new.weights_sha256,
                            "previous_sha256": old.weights_sha256, "previous_status": rec.status})
    return changes


def _weights_change_lines(changes: Sequence[Mapping[str, Any]]) -> list[str]:
    by_file: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in changes:
        by_file.setdefault((c["weights"], c["sha256"]), []).append(c)
    lines = []
    for (weights, sha), items in by_file.items():
        before = ", ".join(sorted({c["previous_sha256"][:12] for c in items}))
        ids = ", ".join(f"{c['id']} (was {c['previous_id']})" for c in items[:5])
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        lines.append(f"weights file {weights} changed (sha256 {before}... -> {sha[:12]}...): {len(items)} run(s) are "
                     f"new and run again: {ids}{more}")
    return lines


def sweep_status(spec: SpecArg, db: str | os.PathLike | ResultsStore,
                 overrides: Sequence[str] | Mapping[str, Any] | None = None,
                 runs: Sequence[RunConfig] | None = None) -> dict[str, Any]:
    """How far ``spec`` got in ``db``.

    ``runs``: the spec's expanded runs when the caller has them already (they are not
    expanded again).

    Returns ``{"spec", "db", "total", "finished", "failed", "running", "pending", "by_task":
    {task: {status: n}}, "failures": [{id, task, arch, label, distance, seed, attempts, error,
    traceback}], "running_runs": [{id, worker, host, pid, heartbeat_age}], "weights_changed":
    [...]}`` (see :func:`weights_changes`).

    Example:
        >>> sweep_status("mini", "results.sqlite")["pending"]   # doctest: +SKIP
        0
    """
    parsed = spec if isinstance(spec, SweepSpec) and overrides is None else load_spec(spec, overrides)
    runs = list(runs) if runs is not None else expand(parsed)
    if isinstance(db, ResultsStore) or Path(db).expanduser().exists():
        store = _open(db)
        return _status(parsed.name, runs, store, str(store.path))
    return _status(parsed.name, runs, None, str(db))  # no store yet: everything is pending (no file is created)


def _status(name: str, runs: Sequence[RunConfig], store: ResultsStore | None, db_path: str) -> dict[str, Any]:
    records = {r.id: r for r in store.records([r.id for r in runs])} if store is not None else {}
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
    changed = weights_changes(runs, store) if store is not None else []
    return {"spec": name, "db": db_path, "total": len(runs), **counts, "by_task": by_task,
            "failures": failures, "running_runs": running, "weights_changed": changed}


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
    lines.extend(f"  {line}" for line in _weights_change_lines(status.get("weights_changed", [])))
    return "\n".join(lines)


__all__ = ["default_work_root", "format_status", "run_sweep", "sweep_status", "weights_changes"]
