"""The results store: one SQLite file that never loses a run and never records one twice.

Table ``runs`` holds one row per run id: its config (JSON), status (``pending``, ``running``,
``finished``, ``failed``), metrics (JSON), timings, environment (library versions, device,
weight checksums), error text and traceback, attempts, the worker holding it (host, pid,
process start time) and a heartbeat. Table ``events`` is an append-only log of every state
change (claimed, finished, failed, released, discarded); ``meta`` holds the schema version.

Guarantees:

- Every state change is one short ``BEGIN IMMEDIATE`` transaction (WAL mode, ``synchronous
  = FULL``, a busy timeout), so several processes may share the file.
- A run is *claimed* atomically: it is pending, failed (only with ``retry_failed``), or
  ``running`` but abandoned: its worker's process is gone (same host: pid dead, zombie or
  reused) or its heartbeat is older than ``stale_after`` seconds. Each claim gets a fresh
  token; ``finish``/``fail`` only apply while the row still holds that token and is
  ``running``, so a finished run is never overwritten and a run is recorded exactly once.
- A ``kill -9`` at any moment leaves either the previous state or the new one (SQLite
  transactions); a run killed while ``running`` is re-claimed on the next invocation.

Example:
    >>> store = ResultsStore("results.sqlite")                          # doctest: +SKIP
    >>> store.add_runs(runs, sweep="mini")                              # doctest: +SKIP
    >>> claim = store.claim(runs[0].id, worker="me")                    # doctest: +SKIP
    >>> store.finish(claim, {"mean": 71.2}, environment={})             # doctest: +SKIP
    >>> store.export_csv("results.csv"); store.export_parquet("results.parquet")  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import LossnetError

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "finished", "failed")
DEFAULT_STALE_AFTER = 600.0  # seconds without a heartbeat before a running run counts as abandoned
HEARTBEAT_INTERVAL = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    sweep       TEXT,
    task        TEXT NOT NULL,
    arch        TEXT,
    weights     TEXT,
    label       TEXT,
    points      TEXT,
    distance    TEXT,
    seed        INTEGER,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    metrics     TEXT,
    environment TEXT,
    error       TEXT,
    traceback   TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    host        TEXT,
    pid         INTEGER,
    pid_start   TEXT,
    claim       TEXT,
    heartbeat   REAL,
    created     REAL NOT NULL,
    started     REAL,
    ended       REAL,
    seconds     REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    time    REAL NOT NULL,
    event   TEXT NOT NULL,
    worker  TEXT,
    host    TEXT,
    pid     INTEGER,
    attempt INTEGER,
    detail  TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

BASE_COLUMNS = ("id", "sweep", "task", "arch", "weights", "label", "points", "distance", "seed", "status",
                "attempts", "seconds", "created", "started", "ended", "worker", "host", "pid", "error")
JSON_COLUMNS = ("config", "metrics", "environment")


class StoreError(LossnetError):
    """The results store cannot be opened or written."""


@dataclass(frozen=True)
class Claim:
    """A run held by one worker: only the holder of ``token`` may record its outcome."""

    run_id: str
    token: str
    worker: str
    attempt: int
    config: dict


@dataclass
class RunRecord:
    """One row of the ``runs`` table, JSON columns parsed."""

    id: str
    sweep: str | None
    task: str
    arch: str | None
    weights: str | None
    label: str | None
    points: list[str] | None
    distance: str | None
    seed: int | None
    config: dict
    status: str
    metrics: dict | None
    environment: dict | None
    error: str | None
    traceback: str | None
    attempts: int
    worker: str | None
    host: str | None
    pid: int | None
    heartbeat: float | None
    created: float
    started: float | None
    ended: float | None
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def clean_json(obj: Any) -> Any:
    """A JSON-safe copy: NaN/inf become null, numpy/torch scalars numbers, tuples lists."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return clean_json(obj.item())
    if hasattr(obj, "tolist"):
        return clean_json(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(clean_json(obj), allow_nan=False)  # key order kept


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# ----------------------------------------------------------------------------------------------
# Processes


def process_start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """True while process ``pid`` runs (not a zombie) and, when known, still has the same start time."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return False
        if start is not None and fields[19].decode() != start:
            return False
    except (OSError, IndexError):
        pass  # no /proc (macOS): os.kill is all we know
    return True


HOST = socket.gethostname()


# ----------------------------------------------------------------------------------------------
# The store


class ResultsStore:
    """The SQLite results store (one file; created on first use).

    Args:
        path: the database file.
        timeout: seconds to wait for another writer's lock before failing.
        stale_after: seconds without a heartbeat after which a ``running`` run may be re-claimed
            (runs whose worker process is known dead are re-claimed at once).

    Example:
        >>> with ResultsStore("results.sqlite") as store:   # doctest: +SKIP
        ...     print(store.counts())
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 120.0,
                 stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = Path(path).expanduser()
        self.timeout = float(timeout)
        self.stale_after = float(stale_after)
        if self.path.is_dir():
            raise StoreError(f"results store {str(self.path)!r} is a folder: pass a file such as "
                             f"{self.path / 'results.sqlite'}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._init_schema()

    # -- connections and transactions --

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _retry(self, fn, attempts: int = 50):
        delay = 0.01
        deadline = time.monotonic() + self.timeout
        for _ in range(attempts * 100):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(f"results store {self.path} stayed locked for {self.timeout:.0f} s: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise StoreError(f"results store {self.path} stayed locked")  # pragma: no cover

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error): one atomic state change."""
        conn = self.conn
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            self._retry(lambda: conn.execute("COMMIT"))

    def _init_schema(self) -> None:
        try:
            with self.transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"results store {self.path} has schema version {row[0]}, newer than this "
                                     f"lossnet's ({SCHEMA_VERSION}): upgrade lossnet.")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the results store {str(self.path)!r}: {exc}. Is it an SQLite file?") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, conn: sqlite3.Connection, run_id: str, event: str, worker: str | None = None,
               attempt: int | None = None, detail: str | None = None) -> None:
        conn.execute("INSERT INTO events (run_id, time, event, worker, host, pid, attempt, detail) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, time.time(), event, worker, HOST, os.getpid(), attempt, detail))

    # -- adding runs --

    def add_runs(self, runs: Iterable[Any], sweep: str | None = None) -> int:
        """Insert runs (``RunConfig`` or their dicts) that are not in the store yet; returns how many were new."""
        rows = []
        now = time.time()
        for run in runs:
            d = run.to_dict() if hasattr(run, "to_dict") else dict(run)
            rows.append((d["id"], sweep, d["task"], d.get("arch"), d.get("weights"), d.get("label"),
                         _dumps(d.get("points")), d.get("distance"), d.get("seed"), _dumps(d), now))
        if not rows:
            return 0
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO runs (id, sweep, task, arch, weights, label, points, distance, seed, config, "
                "status, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)", rows)
            return conn.total_changes - before

    # -- claiming and recording --

    def _claimable(self, row: sqlite3.Row, retry_failed: bool, now: float) -> str | None:
        status = row["status"]
        if status == "pending":
            return "pending"
        if status == "failed" and retry_failed:
            return "retry failed"
        if status == "running":
            if row["heartbeat"] is None or row["heartbeat"] < now - self.stale_after:
                return "stale heartbeat"
            if row["host"] == HOST and not process_alive(row["pid"], row["pid_start"]):
                return "worker process gone"
        return None

    def claim(self, run_id: str, worker: str, retry_failed: bool = False) -> Claim | None:
        """Claim ``run_id`` for ``worker`` if it is pending (or failed with ``retry_failed``, or
        abandoned by a dead worker); None when it is finished or held by a live worker."""
        now = time.time()
        token = uuid.uuid4().hex
        pid = os.getpid()
        with self.transaction() as conn:
            row = conn.execute("SELECT status, host, pid, pid_start, heartbeat, attempts, config FROM runs "
                               "WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            reason = self._claimable(row, retry_failed, now)
            if reason is None:
                return None
            conn.execute(
                "UPDATE runs SET status = 'running', claim = ?, attempts = attempts + 1, worker = ?, host = ?, "
                "pid = ?, pid_start = ?, heartbeat = ?, started = ?, ended = NULL, seconds = NULL, error = NULL, "
                "traceback = NULL WHERE id = ?",
                (token, worker, HOST, pid, process_start_time(pid), now, now, run_id))
            attempt = int(row["attempts"]) + 1
            self._event(conn, run_id, "claimed", worker, attempt, reason)
        return Claim(run_id, token, worker, attempt, json.loads(row["config"]))

    def claimable_ids(self, run_ids: Sequence[str], retry_failed: bool = False) -> list[str]:
        """The ids of ``run_ids`` (in order) that :meth:`claim` would take now (one scan)."""
        now = time.time()
        out: list[str] = []
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = {r["id"]: r for r in self.conn.execute(
                f"SELECT id, status, host, pid, pid_start, heartbeat FROM runs WHERE id IN ({marks})", chunk)}
            out.extend(rid for rid in chunk if rid in rows and self._claimable(rows[rid], retry_failed, now))
        return out

    def claim_next(self, run_ids: Sequence[str], worker: str, retry_failed: bool = False) -> Claim | None:
        """Claim the first claimable run of ``run_ids`` (in order); None when none is left."""
        for rid in self.claimable_ids(run_ids, retry_failed):
            claim = self.claim(rid, worker, retry_failed)
            if claim is not None:
                return claim
        return None

    def heartbeat(self, claims: Iterable[Claim]) -> int:
        """Refresh the heartbeat of runs still held; returns how many are."""
        claims = list(claims)
        if not claims:
            return 0
        now = time.time()
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany("UPDATE runs SET heartbeat = ? WHERE id = ? AND claim = ? AND status = 'running'",
                             [(now, c.run_id, c.token) for c in claims])
            return conn.total_changes - before

    def _close_claim(self, claim: Claim, status: str, event: str, values: Mapping[str, Any]) -> bool:
        now = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE runs SET status = ?, {sets}, ended = ?, heartbeat = ?, claim = NULL "
                "WHERE id = ? AND claim = ? AND status = 'running'",
                (status, *values.values(), now, now, claim.run_id, claim.token))
            ok = cur.rowcount == 1
            self._event(conn, claim.run_id, event if ok else "discarded", claim.worker, claim.attempt,
                        None if ok else f"{event} after the claim was lost")
        return ok

    def finish(self, claim: Claim, metrics: Mapping[str, Any], environment: Mapping[str, Any] | None = None,
               seconds: float | None = None) -> bool:
        """Record a finished run; False (nothing written) when ``claim`` no longer holds the run."""
        return self._close_claim(claim, "finished", "finished", {
            "metrics": _dumps(metrics), "environment": _dumps(environment), "seconds": seconds,
            "error": None, "traceback": None})

    def fail(self, claim: Claim, error: str, traceback: str | None = None,
             environment: Mapping[str, Any] | None = None, seconds: float | None = None) -> bool:
        """Record a failed run with its error and traceback (re-run only with ``retry_failed``)."""
        return self._close_claim(claim, "failed", "failed", {
            "error": error, "traceback": traceback, "environment": _dumps(environment), "seconds": seconds})

    def release(self, claim: Claim, reason: str = "released") -> bool:
        """Give a run back (status pending), e.g. when the sweep is interrupted."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE runs SET status = 'pending', claim = NULL, heartbeat = NULL "
                               "WHERE id = ? AND claim = ? AND status = 'running'", (claim.run_id, claim.token))
            ok = cur.rowcount == 1
            if ok:
                self._event(conn, claim.run_id, "released", claim.worker, claim.attempt, reason)
        return ok

    # -- reading --

    def _record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], sweep=row["sweep"], task=row["task"], arch=row["arch"], weights=row["weights"],
            label=row["label"], points=_loads(row["points"]), distance=row["distance"], seed=row["seed"],
            config=_loads(row["config"]), status=row["status"], metrics=_loads(row["metrics"]),
            environment=_loads(row["environment"]), error=row["error"], traceback=row["traceback"],
            attempts=row["attempts"], worker=row["worker"], host=row["host"], pid=row["pid"],
            heartbeat=row["heartbeat"], created=row["created"], started=row["started"], ended=row["ended"],
            seconds=row["seconds"])

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(f"SELECT * FROM runs {where} ORDER BY created, rowid", params).fetchall()

    def get(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` (None when absent)."""
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else self._record(row)

    def records(self, run_ids: Sequence[str] | None = None, status: str | None = None) -> list[RunRecord]:
        """Records of ``run_ids`` in that order (absent ids skipped), or of every run; optionally one status."""
        if run_ids is None:
            rows = self._select(*(("WHERE status = ?", (status,)) if status else ()))
            return [self._record(r) for r in rows]
        by_id: dict[str, RunRecord] = {}
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.conn.execute(f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for r in rows:
                by_id[r["id"]] = self._record(r)
        out = [by_id[i] for i in ids if i in by_id]
        return [r for r in out if r.status == status] if status else out

    def counts(self, run_ids: Sequence[str] | None = None) -> dict[str, int]:
        """``{status: n}`` over ``run_ids`` (ids not in the store count as pending), plus ``total``."""
        counts = dict.fromkeys(STATUSES, 0)
        if run_ids is None:
            for status, n in self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
                counts[status] = n
        else:
            ids = list(dict.fromkeys(run_ids))
            seen = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for status, n in self.conn.execute(
                        f"SELECT status, COUNT(*) FROM runs WHERE id IN ({','.join('?' * len(chunk))}) GROUP BY status",
                        chunk):
                    counts[status] += n
                    seen += n
            counts["pending"] += len(ids) - seen
        counts["total"] = sum(counts[s] for s in STATUSES)
        return counts

    def events(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The event log (oldest first), of one run or of all."""
        if run_id is None:
            rows = self.conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    # -- export --

    def export_rows(self, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One flat dict per run: the base columns, every scalar metric as ``metrics.<path>``,
        and the ``config``/``metrics``/``environment`` JSON texts (lossless)."""
        rows = []
        for rec in self.records(run_ids):
            row: dict[str, Any] = {c: getattr(rec, c) for c in BASE_COLUMNS}
            row["points"] = "+".join(rec.points) if rec.points else None
            for c in JSON_COLUMNS:
                value = getattr(rec, c)
                row[c] = None if value is None else json.dumps(value)
            row.update(_flatten(rec.metrics or {}, "metrics."))
            rows.append(row)
        return rows

    def _columns(self, rows: list[dict[str, Any]]) -> list[str]:
        extra = sorted({k for r in rows for k in r} - set(BASE_COLUMNS) - set(JSON_COLUMNS))
        return [*BASE_COLUMNS, *JSON_COLUMNS, *extra]

    def export_csv(self, path: str | os.PathLike, run_ids: Sequence[str] | None = None) -> Path:
        """Write every run (or ``run_ids``) to a CSV file; returns its path."""
        rows = self.export_rows(run_ids)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns(rows))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return path

    def export_parquet(self, path: str | os.PathLike, run_ids: Sequence[str] | None = None) -> Path:
        """Write every run (or ``run_ids``) to a Parquet file (needs pyarrow); returns its path."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise StoreError("Parquet export needs pyarrow: pip install 'lossnet[parquet]'.") from exc
        rows = self.export_rows(run_ids)
        columns = self._columns(rows)
        arrays, fields = [], []
        for c in columns:
            values = [r.get(c) for r in rows]
            kind = _column_type(c, values)
            if kind == "string":
                values = [None if v is None else str(v) for v in values]
            elif kind == "float64":
                values = [None if v is None else float(v) for v in values]
            arrow_type = {"int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64(), "string": pa.string()}[kind]
            arrays.append(pa.array(values, type=arrow_type))
            fields.append(pa.field(c, arrow_type))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
        return path


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[f"{prefix}{k}"] = v
    return out


_INT_COLUMNS = {"seed", "attempts", "pid"}


def _column_type(name: str, values: list[Any]) -> str:
    """The Parquet type of an export column: int64, bool, float64 or string."""
    present = [v for v in values if v is not None]
    if name in _INT_COLUMNS:
        return "int64"
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    if not present and name in ("seconds", "created", "started", "ended"):
        return "float64"
    return "string"


__all__ = ["Claim", "DEFAULT_STALE_AFTER", "HEARTBEAT_INTERVAL", "ResultsStore", "RunRecord", "STATUSES",
           "StoreError", "clean_json", "process_alive", "process_start_time"]
