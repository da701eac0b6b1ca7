"""The results store: one SQLite file that never loses a run and never records one twice.

Table ``runs`` holds one row per run id: its config (JSON), status (``pending``, ``running``,
``finished``, ``failed``), metrics (JSON), timings, environment (library versions, device,
weight checksums), error text and traceback, attempts, the worker holding it (host, pid,
process start time) and a heartbeat. Table ``evaluations`` holds one row per evaluation of a
run along its training (key: run id + step; ``epoch``, ``top1``, ``ps`` and the whole
evaluation as JSON): a task's ``metrics["evaluations"]`` (a list of dicts with a ``step``) are
written there, in the same transaction that records the run finished, and left out of the
run's metrics JSON (:meth:`ResultsStore.evaluations` reads them back). Table ``events`` is an append-only log of every state
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
- A new store is built beside its path and linked into place complete, so a store file is
  never legitimately empty: a 0-byte file, a file that is not SQLite and a damaged one
  (``PRAGMA quick_check`` on open) are errors that name the file and the fix, and the
  file is left as it is (never taken for an empty store whose runs would all be redone).
- Exports (CSV, Parquet) never write over the store itself, nor over an existing file
  that is not a lossnet sweep export unless ``force=True``; they are written atomically.

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
import functools
import io
import json
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
from ..utils.jsonio import atomic_write_bytes, to_json_text

SCHEMA_VERSION = 2  # 2: the evaluations table (a version-1 store is upgraded in place when opened)
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
CREATE TABLE IF NOT EXISTS evaluations (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    step    INTEGER NOT NULL,
    epoch   REAL,
    top1    REAL,
    ps      TEXT,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""
EVALUATIONS_KEY = "evaluations"  # the metrics key whose rows go to the evaluations table

BASE_COLUMNS = ("id", "sweep", "task", "arch", "weights", "label", "points", "distance", "seed", "status",
                "attempts", "seconds", "created", "started", "ended", "worker", "host", "pid", "error")
CONFIG_COLUMNS = ("threads", "weights_sha256")  # export columns read from a run's config
JSON_COLUMNS = ("config", "metrics", "environment")
# How an export is recognised as one (and so may be replaced without force): a CSV file whose
# header row starts with these columns, in this order; a Parquet file whose schema metadata
# holds this key (a JSON object: format version, the store it came from, the run count).
EXPORT_HEADER = ",".join((*BASE_COLUMNS, *CONFIG_COLUMNS, *JSON_COLUMNS))
PARQUET_EXPORT_KEY = b"lossnet.sweep_export"
EXPORT_FORMATS = {"csv": ".csv", "parquet": ".parquet"}


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


def _dumps(obj: Any) -> str | None:
    """Compact JSON through the one JSON writer (NaN -> null, key order kept)."""
    if obj is None:
        return None
    try:
        return to_json_text(obj, indent=None)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {type(obj).__name__} as JSON ({exc}): metrics, configs and environments "
                         "must be dicts of numbers, strings, lists and dicts.") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def evaluation_rows(run_id: str, rows: Any) -> list[tuple]:
    """``rows`` (a task's evaluations) as rows of the ``evaluations`` table, checked: a list of
    dicts, each with a whole ``step`` >= 0, no step twice.

    Example:
        >>> evaluation_rows("r1", [{"step": 0, "top1": 1.5, "ps": {"spatial": 60.0}}])[0][:4]
        ('r1', 0, None, 1.5)
    """
    if not isinstance(rows, (list, tuple)):
        raise StoreError(f"run {run_id}: metrics['evaluations'] must be a list of dicts (one per evaluated "
                         f"checkpoint, each with its 'step'), got {type(rows).__name__}.")
    out, seen = [], set()
    for row in rows:
        step = row.get("step") if isinstance(row, Mapping) else None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise StoreError(f"run {run_id}: every evaluation must be a dict with a whole 'step' >= 0, got {row!r:.200}.")
        if step in seen:
            raise StoreError(f"run {run_id}: two evaluations at step {step}; each step is evaluated once.")
        seen.add(step)
        top1, epoch = row.get("top1"), row.get("epoch")
        out.append((run_id, step, None if epoch is None else float(epoch), None if top1 is None else float(top1),
                    _dumps(row.get("ps")), _dumps(dict(row))))
    return out


def _write_evaluations(conn: sqlite3.Connection, run_id: str, rows: Sequence[tuple]) -> None:
    """Replace the evaluations of ``run_id`` by ``rows`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM evaluations WHERE run_id = ?", (run_id,))
    conn.executemany("INSERT INTO evaluations (run_id, step, epoch, top1, ps, data) VALUES (?, ?, ?, ?, ?, ?)", rows)


_CORRUPT_WORDS = ("malformed", "not a database", "corrupt", "encrypted", "disk image")
# A reader that opens a WAL store just as another process closes its last connection (and
# checkpoints) can see "database disk image is malformed" once; a damaged file keeps saying
# it. Such errors are retried with these pauses (seconds) before the store counts as damaged.
_CORRUPT_RETRY_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.4)


def _is_corruption(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and any(w in str(exc).lower() for w in _CORRUPT_WORDS)


def _guarded(method):
    """Turn an ``sqlite3`` error inside a store method into a :class:`StoreError` naming the
    file (a corruption error is first retried on a fresh connection: it may be transient)."""
    @functools.wraps(method)
    def wrapper(self: "ResultsStore", *args: Any, **kwargs: Any) -> Any:
        pauses = iter(_CORRUPT_RETRY_PAUSES)
        while True:
            try:
                return method(self, *args, **kwargs)
            except StoreError:
                raise
            except sqlite3.DatabaseError as exc:
                pause = next(pauses, None) if _is_corruption(exc) else None
                if pause is None:
                    raise self._sqlite_error(exc) from exc
                self.close()  # a transaction that failed was rolled back: the call can be repeated
                time.sleep(pause)
            except json.JSONDecodeError as exc:  # a JSON column no longer parses: damaged contents
                raise self._damaged(f"a JSON column does not parse ({exc})") from exc
    return wrapper


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
        verify: run ``PRAGMA quick_check`` on an existing file before using it (workers of a
            sweep whose driver already checked pass False).

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with ResultsStore(os.path.join(d, "results.sqlite")) as store:
        ...         print(store.counts()["total"])
        0
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 120.0,
                 stale_after: float = DEFAULT_STALE_AFTER, verify: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.timeout = float(timeout)
        self.stale_after = float(stale_after)
        if not self.stale_after > 0:
            raise StoreError(f"stale_after (--stale-after) must be a positive number of seconds, got {stale_after!r}; "
                             f"the default is {DEFAULT_STALE_AFTER:g}.")
        if self.path.is_dir():
            raise StoreError(f"results store {str(self.path)!r} is a folder: pass a file such as "
                             f"{self.path / 'results.sqlite'}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        if self.path.exists():
            self._check_file(verify)
        else:
            self._create()
        self._init_schema()

    # -- opening: never take a damaged or emptied file for an empty store --

    def _damaged(self, what: str) -> StoreError:
        recovered = self.path.with_name(f"{self.path.stem}-recovered{self.path.suffix or '.sqlite'}")
        return StoreError(
            f"the results store {str(self.path)!r} is damaged: {what}. lossnet left the file as it is. Restore it "
            f"from a backup, or copy what is still readable into a new store with the sqlite3 shell "
            f"('sqlite3 {self.path} .recover | sqlite3 {recovered}') and use --db {recovered}; runs missing there "
            "are run again.")

    def _sqlite_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if "not a database" in text:
            return StoreError(
                f"{str(self.path)!r} is not an SQLite results store (SQLite says {text!r}), so lossnet left it as "
                "it is. Pass the .sqlite file of a sweep, or a path that does not exist yet to start a new store. If "
                "it was a store, its first page is damaged: restore it from a backup.")
        if any(w in text.lower() for w in _CORRUPT_WORDS):
            return self._damaged(f"SQLite says {text!r}")
        if "locked" in text or "busy" in text:
            return StoreError(f"the results store {str(self.path)!r} stayed locked ({text}): another process holds "
                              "it; wait for it or raise the timeout.")
        return StoreError(f"the results store {str(self.path)!r} cannot be used: {text} (is the disk full or the "
                          "file read-only?)")

    def _check_file(self, verify: bool) -> None:
        # Only os.stat and SQLite itself touch the file: opening and closing it with plain file
        # calls would drop the POSIX locks that this process's SQLite connections hold on it.
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise StoreError(f"cannot read the results store {str(self.path)!r}: {exc}.") from exc
        if size == 0:
            raise StoreError(
                f"the results store {str(self.path)!r} is an empty (0-byte) file, not a results store (lossnet "
                "creates stores complete, so it was emptied, e.g. truncated by a full disk or an interrupted copy). "
                "lossnet left it as it is and ran nothing. Restore it from a backup, or delete it (or pass another "
                "--db) to start a new store, in which every run is run again.")
        if not verify:
            return
        for pause in (*_CORRUPT_RETRY_PAUSES, None):
            conn = None
            try:
                conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            except sqlite3.DatabaseError as exc:
                if pause is None or not _is_corruption(exc):
                    raise self._sqlite_error(exc) from exc
                problems = None
            finally:
                if conn is not None:
                    conn.close()
            if problems == ["ok"] or pause is None:
                break
            time.sleep(pause)  # a damaged file stays damaged; a transient view does not
        if problems != ["ok"]:
            lines = [line.strip() for text in problems for line in str(text).splitlines() if line.strip()]
            raise self._damaged("PRAGMA quick_check reports " + "; ".join(lines[:5]))

    def _create(self) -> None:
        """Build a new store beside ``path`` and hard-link it into place complete (another
        process creating the same store at once wins, and its store is used)."""
        tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                self._create_tables(conn)
            finally:
                conn.close()  # the last connection checkpoints the WAL into the file
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system: let SQLite create it in place
                pass
        except sqlite3.DatabaseError as exc:
            raise self._sqlite_error(exc) from exc
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{tmp}{suffix}")

    # -- connections and transactions --

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            raise self._sqlite_error(exc) from exc
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
            if conn.in_transaction:  # SQLite may have rolled back already (e.g. on a damaged page)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        else:
            self._retry(lambda: conn.execute("COMMIT"))

    @staticmethod
    def _create_tables(conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @_guarded
    def _init_schema(self) -> None:
        with self.transaction() as conn:
            self._create_tables(conn)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"results store {self.path} has schema version {row[0]}, newer than this "
                                 f"lossnet's ({SCHEMA_VERSION}): upgrade lossnet.")
            if int(row[0]) < 2:
                self._move_evaluations(conn)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    @staticmethod
    def _move_evaluations(conn: sqlite3.Connection) -> None:
        """Upgrade a version-1 store: evaluations kept inside finished runs' metrics JSON become rows
        (in the caller's transaction, so the upgrade happens whole or not at all)."""
        for rid, text in conn.execute("SELECT id, metrics FROM runs WHERE metrics LIKE ?",
                                      (f'%"{EVALUATIONS_KEY}"%',)).fetchall():
            metrics = _loads(text)
            if not isinstance(metrics, dict) or EVALUATIONS_KEY not in metrics:
                continue
            _write_evaluations(conn, rid, evaluation_rows(rid, metrics.pop(EVALUATIONS_KEY)))
            conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (_dumps(metrics), rid))

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

    @_guarded
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

    @_guarded
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

    @_guarded
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

    @_guarded
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

    @_guarded
    def _close_claim(self, claim: Claim, status: str, event: str, values: Mapping[str, Any],
                     evaluations: Sequence[tuple] | None = None) -> bool:
        now = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE runs SET status = ?, {sets}, ended = ?, heartbeat = ?, claim = NULL "
                "WHERE id = ? AND claim = ? AND status = 'running'",
                (status, *values.values(), now, now, claim.run_id, claim.token))
            ok = cur.rowcount == 1
            if ok and evaluations is not None:
                _write_evaluations(conn, claim.run_id, evaluations)
            self._event(conn, claim.run_id, event if ok else "discarded", claim.worker, claim.attempt,
                        None if ok else f"{event} after the claim was lost")
        return ok

    def finish(self, claim: Claim, metrics: Mapping[str, Any], environment: Mapping[str, Any] | None = None,
               seconds: float | None = None) -> bool:
        """Record a finished run; False (nothing written) when ``claim`` no longer holds the run.

        ``metrics["evaluations"]`` (one dict per evaluated checkpoint, each with its ``step``)
        become rows of the evaluations table in the same transaction (all or nothing, also
        under ``kill -9``) and are left out of the metrics JSON.
        """
        metrics = dict(metrics)
        rows = evaluation_rows(claim.run_id, metrics.pop(EVALUATIONS_KEY)) if EVALUATIONS_KEY in metrics else None
        return self._close_claim(claim, "finished", "finished", {
            "metrics": _dumps(metrics), "environment": _dumps(environment), "seconds": seconds,
            "error": None, "traceback": None}, rows)

    def fail(self, claim: Claim, error: str, traceback: str | None = None,
             environment: Mapping[str, Any] | None = None, seconds: float | None = None) -> bool:
        """Record a failed run with its error and traceback (re-run only with ``retry_failed``)."""
        return self._close_claim(claim, "failed", "failed", {
            "error": error, "traceback": traceback, "environment": _dumps(environment), "seconds": seconds})

    @_guarded
    def release(self, claim: Claim, reason: str = "released") -> bool:
        """Give a run back (status pending), e.g. when the sweep is interrupted."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE runs SET status = 'pending', claim = NULL, heartbeat = NULL "
                               "WHERE id = ? AND claim = ? AND status = 'running'", (claim.run_id, claim.token))
            ok = cur.rowcount == 1
            if ok:
                self._event(conn, claim.run_id, "released", claim.worker, claim.attempt, reason)
        return ok

    @_guarded
    def record_evaluations(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Replace the evaluation rows of ``run_id`` by ``rows`` in one transaction (idempotent:
        writing the same rows again leaves the same table); returns how many rows it holds.

        Example:
            >>> import tempfile, os
            >>> with tempfile.TemporaryDirectory() as d, ResultsStore(os.path.join(d, "r.sqlite")) as store:
            ...     _ = store.add_runs([{"id": "r1", "task": "noop", "distance": "l2", "seed": 0}])
            ...     store.record_evaluations("r1", [{"step": 0, "top1": 5.0}, {"step": 10, "top1": 9.0}])
            ...     [e["top1"] for e in store.evaluations(["r1"])["r1"]]
            2
            [5.0, 9.0]
        """
        prepared = evaluation_rows(run_id, list(rows))
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"no run {run_id!r} in the results store {str(self.path)!r}: add it (add_runs) "
                                 "before recording its evaluations.")
            _write_evaluations(conn, run_id, prepared)
        return len(prepared)

    @_guarded
    def evaluations(self, run_ids: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """``{run id: [evaluation, ...]}`` (each the dict the task recorded, by step), for
        ``run_ids`` (ids without evaluations are left out) or for every run."""
        out: dict[str, list[dict[str, Any]]] = {}
        if run_ids is None:
            chunks: list[list[str] | None] = [None]
        else:
            ids = list(dict.fromkeys(run_ids))
            chunks = [ids[i:i + 500] for i in range(0, len(ids), 500)]
        for chunk in chunks:
            if chunk is None:
                rows = self.conn.execute("SELECT run_id, data FROM evaluations ORDER BY run_id, step")
            else:
                rows = self.conn.execute(f"SELECT run_id, data FROM evaluations WHERE run_id IN "
                                         f"({','.join('?' * len(chunk))}) ORDER BY run_id, step", chunk)
            for rid, data in rows:
                out.setdefault(rid, []).append(_loads(data))
        return out

    @_guarded
    def evaluation_count(self) -> int:
        """How many evaluation rows the store holds."""
        return int(self.conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])

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

    @_guarded
    def get(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` (None when absent)."""
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else self._record(row)

    @_guarded
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

    @_guarded
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

    @_guarded
    def events(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The event log (oldest first), of one run or of all."""
        if run_id is None:
            rows = self.conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    @_guarded
    def records_with_weights(self, weights: Sequence[str]) -> list[RunRecord]:
        """Every record whose ``weights`` is one of ``weights`` (e.g. to find runs made with an
        earlier content of the same weights file)."""
        names = list(dict.fromkeys(weights))
        out: list[RunRecord] = []
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            out.extend(self._record(r) for r in self._select(f"WHERE weights IN ({','.join('?' * len(chunk))})",
                                                             chunk))
        return out

    @_guarded
    def events_since(self, seq: int, events: Sequence[str] = ("finished", "failed")) -> list[dict[str, Any]]:
        """Events after sequence number ``seq`` (of the kinds in ``events``), oldest first: how a
        driver follows what its worker processes record."""
        marks = ",".join("?" * len(events))
        rows = self.conn.execute(f"SELECT * FROM events WHERE seq > ? AND event IN ({marks}) ORDER BY seq",
                                 (int(seq), *events)).fetchall()
        return [dict(r) for r in rows]

    @_guarded
    def last_event(self) -> int:
        """The sequence number of the newest event (0 when there is none)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    # -- export --

    @_guarded
    def export_rows(self, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One flat dict per run: the base columns, ``threads`` and ``weights_sha256`` (from the
        config), every scalar metric as ``metrics.<path>``, the ``config``/``metrics``/
        ``environment`` JSON texts (lossless) and, for runs with evaluation rows, ``evaluations``
        (a JSON list of them, by step)."""
        rows = []
        records = self.records(run_ids)
        evaluations = self.evaluations([r.id for r in records]) if records else {}
        for rec in records:
            row: dict[str, Any] = {c: getattr(rec, c) for c in BASE_COLUMNS}
            row["points"] = "+".join(rec.points) if rec.points else None
            for c in CONFIG_COLUMNS:
                row[c] = rec.config.get(c)
            for c in JSON_COLUMNS:
                value = getattr(rec, c)
                row[c] = None if value is None else json.dumps(value)
            row.update(_flatten(rec.metrics or {}, "metrics."))
            if rec.id in evaluations:  # the run's rows of the evaluations table, as one JSON list
                row[EVALUATIONS_KEY] = json.dumps(evaluations[rec.id])
            rows.append(row)
        return rows

    def _columns(self, rows: list[dict[str, Any]]) -> list[str]:
        fixed = (*BASE_COLUMNS, *CONFIG_COLUMNS, *JSON_COLUMNS)
        extra = sorted({k for r in rows for k in r} - set(fixed))
        return [*fixed, *extra]

    def check_export_target(self, path: str | os.PathLike, fmt: str, force: bool = False) -> Path:
        """The path an export of format ``fmt`` (``csv``/``parquet``) may write, or a
        :class:`StoreError`: never the store itself (nor its ``-wal``/``-shm``/``-journal``
        files), even with ``force``; never an existing file that is not a lossnet sweep export
        of that format (see :func:`is_export`) unless ``force``.

        Example:
            >>> import tempfile, os
            >>> with tempfile.TemporaryDirectory() as d:
            ...     store = ResultsStore(os.path.join(d, "r.sqlite"))
            ...     try:
            ...         store.check_export_target(store.path, "csv", force=True)
            ...     except StoreError as e:
            ...         print("it is the results store" in str(e))
            True
        """
        if fmt not in EXPORT_FORMATS:
            raise StoreError(f"unknown export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}.")
        target = Path(path).expanduser()
        for suffix in ("", "-wal", "-shm", "-journal"):
            if same_file(target, Path(f"{self.path}{suffix}")):
                raise StoreError(
                    f"refusing to export to {str(target)!r}: it is the results store {str(self.path)!r} itself"
                    f"{' (its ' + suffix[1:] + ' file)' if suffix else ''}, which the export would destroy "
                    f"(--force does not change this). Name another file, e.g. "
                    f"{self.path.with_name(self.path.stem + EXPORT_FORMATS[fmt])}.")
        if target.is_dir():
            raise StoreError(f"export target {str(target)!r} is a folder: name a file, e.g. "
                             f"{target / ('results' + EXPORT_FORMATS[fmt])}.")
        if target.exists() and not force and not is_export(target, fmt):
            raise StoreError(
                f"refusing to overwrite {str(target)!r}: it exists and is not a lossnet sweep {fmt} export "
                f"({'a CSV file whose header starts with ' + repr(EXPORT_HEADER[:40] + '...') if fmt == 'csv' else 'a Parquet file with the ' + repr(PARQUET_EXPORT_KEY.decode()) + ' schema metadata'}). "
                "Name another file, or pass --force (force=True) to replace it.")
        return target

    def export_csv(self, path: str | os.PathLike, run_ids: Sequence[str] | None = None, force: bool = False) -> Path:
        """Write every run (or ``run_ids``) to a CSV file atomically; returns its path.

        Refuses to write over the store itself, or over an existing file that is not a
        lossnet CSV export unless ``force`` (see :meth:`check_export_target`).
        """
        target = self.check_export_target(path, "csv", force)
        rows = self.export_rows(run_ids)
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=self._columns(rows), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        atomic_write_bytes(target, buf.getvalue().encode("utf-8"))
        return target

    def export_parquet(self, path: str | os.PathLike, run_ids: Sequence[str] | None = None,
                       force: bool = False) -> Path:
        """Write every run (or ``run_ids``) to a Parquet file atomically (needs pyarrow); returns its path.

        The schema metadata ``lossnet.sweep_export`` (JSON: format, store, runs) marks the file
        as an export; the same refusals as :meth:`export_csv`.
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise StoreError("Parquet export needs pyarrow: pip install 'lossnet[parquet]'.") from exc
        target = self.check_export_target(path, "parquet", force)
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
        marker = to_json_text({"format": 1, "store": str(self.path), "runs": len(rows)}, indent=None)
        schema = pa.schema(fields, metadata={PARQUET_EXPORT_KEY: marker.encode("utf-8")})
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
        atomic_write_bytes(target, sink.getvalue().to_pybytes())
        return target


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (symbolic links, hard links, relative spellings)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_export(path: str | os.PathLike, fmt: str) -> bool:
    """True when ``path`` is a lossnet sweep export of format ``fmt``: a CSV file whose header
    row starts with ``EXPORT_HEADER``, or a Parquet file whose schema metadata holds
    ``lossnet.sweep_export``. Such a file may be replaced by a new export without ``force``.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     notes = os.path.join(d, "notes.csv")
        ...     _ = open(notes, "w").write("name,score\\nme,1\\n")
        ...     is_export(notes, "csv")
        False
    """
    path = Path(path)
    if fmt == "csv":
        try:
            with open(path, "rb") as fh:
                first = fh.readline(len(EXPORT_HEADER) + 2).decode("utf-8", "replace").rstrip("\r\n")
        except OSError:
            return False
        return first == EXPORT_HEADER or first.startswith(EXPORT_HEADER + ",")
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
        except Exception:  # noqa: BLE001 - not readable as Parquet: not an export
            return False
        return PARQUET_EXPORT_KEY in metadata
    return False


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[f"{prefix}{k}"] = v
    return out


_INT_COLUMNS = {"seed", "attempts", "pid", "threads"}


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


__all__ = ["Claim", "DEFAULT_STALE_AFTER", "EVALUATIONS_KEY", "EXPORT_HEADER", "HEARTBEAT_INTERVAL", "PARQUET_EXPORT_KEY", "ResultsStore",
           "RunRecord", "STATUSES", "StoreError", "evaluation_rows", "is_export", "process_alive", "same_file", "process_start_time"]
