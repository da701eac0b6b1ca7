"""The results store: exactly-once claims, take-over of abandoned runs, concurrent writers, export."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import subprocess
import sys
import time

import pytest

from lossnet.sweeps.executors import worker_loop
from lossnet.sweeps.spec import expand
from lossnet.sweeps.store import ResultsStore, StoreError, process_alive


def _runs(n: int, sleep: float = 0.0):
    return expand({"name": "t", "grid": {"tasks": ["noop"], "seeds": list(range(n))},
                   "tasks": {"noop": {"sleep": sleep}}})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_claim_finish_exactly_once(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    runs = _runs(3)
    assert store.add_runs(runs, sweep="t") == 3
    assert store.add_runs(runs, sweep="t") == 0  # never recorded twice
    rid = runs[0].id
    claim = store.claim(rid, "w1")
    assert claim is not None and claim.attempt == 1 and claim.config["id"] == rid
    assert store.claim(rid, "w2") is None  # held by a live worker (this process)
    assert store.finish(claim, {"score": 1.5, "nan": float("nan")}, {"device": "cpu"}, seconds=0.1)
    assert store.finish(claim, {"score": 9.0}) is False  # a second outcome is discarded
    assert store.fail(claim, "late error") is False
    assert store.claim(rid, "w3") is None and store.claim(rid, "w3", retry_failed=True) is None
    rec = store.get(rid)
    assert rec.status == "finished" and rec.metrics == {"score": 1.5, "nan": None} and rec.attempts == 1
    assert rec.environment == {"device": "cpu"} and rec.seconds == pytest.approx(0.1)
    assert [e["event"] for e in store.events(rid)] == ["claimed", "finished", "discarded", "discarded"]
    # failures keep error and traceback; they are re-run only with retry_failed
    c2 = store.claim(runs[1].id, "w1")
    assert store.fail(c2, "ValueError: boom", "Traceback ...")
    assert store.claim(runs[1].id, "w2") is None
    c3 = store.claim(runs[1].id, "w2", retry_failed=True)
    assert c3 is not None and c3.attempt == 2
    assert store.get(runs[1].id).error is None  # cleared while it runs again
    assert store.release(c3)
    assert store.get(runs[1].id).status == "pending"
    assert store.counts([r.id for r in runs] + ["not-added"]) == {
        "pending": 3, "running": 0, "finished": 1, "failed": 0, "total": 4}


def test_abandoned_runs_are_taken_over(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite", stale_after=60)
    runs = _runs(3)
    store.add_runs(runs)
    # 1) its worker process is dead (same host): taken over at once; the old claim can no longer record
    old = store.claim(runs[0].id, "dead")
    store.conn.execute("UPDATE runs SET pid = ?, pid_start = NULL WHERE id = ?", (_dead_pid(), runs[0].id))
    new = store.claim(runs[0].id, "alive")
    assert new is not None and new.attempt == 2
    assert store.events(runs[0].id)[-1]["detail"] == "worker process gone"
    assert store.finish(old, {"score": -1}) is False
    assert store.finish(new, {"score": 1})
    assert store.get(runs[0].id).metrics == {"score": 1}
    # 2) a reused pid (same pid, another start time) counts as dead
    c = store.claim(runs[1].id, "w")
    store.conn.execute("UPDATE runs SET pid_start = 'not-the-same' WHERE id = ?", (runs[1].id,))
    assert store.claim(runs[1].id, "w2") is not None
    # 3) another host: only an old heartbeat makes it stale
    store.claim(runs[2].id, "remote")
    store.conn.execute("UPDATE runs SET host = 'elsewhere', pid = 1 WHERE id = ?", (runs[2].id,))
    assert store.claim(runs[2].id, "w") is None
    store.conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 120, runs[2].id))
    assert store.claim(runs[2].id, "w") is not None
    assert store.events(runs[2].id)[-1]["detail"] == "stale heartbeat"
    assert c is not None and not process_alive(_dead_pid())


def test_bad_store_paths(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        ResultsStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="Is it an SQLite file"):
        ResultsStore(junk)


def _claim_same(db: str, rid: str, barrier, out) -> None:
    store = ResultsStore(db)
    barrier.wait()
    won = store.claim(rid, f"p{mp.current_process().pid}") is not None
    barrier.wait()  # the winner stays alive until all have tried (a dead holder's run may be taken over)
    out.put(won)


def _worker(db: str, runs: list, barrier, out) -> None:
    store = ResultsStore(db)
    store.add_runs(runs)  # every writer also tries to add the same runs
    barrier.wait()
    stats = worker_loop(store, runs, f"w{mp.current_process().pid}", None)
    out.put(stats["finished"])


def test_concurrent_writers_record_every_run_exactly_once(tmp_path):
    ctx = mp.get_context("fork")
    db = str(tmp_path / "r.sqlite")
    ResultsStore(db)
    runs = [r.to_dict() for r in _runs(80, sleep=0.002)]
    n_procs = 4
    barrier, out = ctx.Barrier(n_procs), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db, runs, barrier, out)) for _ in range(n_procs)]
    for p in procs:
        p.start()
    finished = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = ResultsStore(db)
    assert sum(finished) == 80 and sum(1 for f in finished if f > 0) >= 2  # the work was shared
    assert store.counts()["finished"] == 80 and store.counts()["total"] == 80
    events = store.events()
    for kind in ("claimed", "finished"):
        per_run = {}
        for e in events:
            if e["event"] == kind:
                per_run[e["run_id"]] = per_run.get(e["run_id"], 0) + 1
        assert len(per_run) == 80 and set(per_run.values()) == {1}, kind
    assert not [e for e in events if e["event"] == "discarded"]
    # many processes claiming the same pending run at once: exactly one wins
    rid = runs[0]["id"]
    store.conn.execute("UPDATE runs SET status = 'pending', claim = NULL WHERE id = ?", (rid,))
    barrier6 = ctx.Barrier(6)
    procs = [ctx.Process(target=_claim_same, args=(db, rid, barrier6, out)) for _ in range(6)]
    for p in procs:
        p.start()
    wins = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sum(wins) == 1


def test_export_csv_and_parquet_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    store = ResultsStore(tmp_path / "r.sqlite")
    runs = _runs(3)
    store.add_runs(runs, sweep="t")
    metrics = {"mean": 71.25, "subsets": {"cnn": {"score": 70.5, "n": 12}, "trad": {"score": 72.0, "n": 8}},
               "synthetic": True, "layers": {"features.3": {"cnn": 69.0}}, "note": "x|y"}
    c = store.claim(runs[0].id, "w")
    store.finish(c, metrics, {"versions": {"torch": "2"}}, seconds=1.25)
    c = store.claim(runs[1].id, "w")
    store.fail(c, "RuntimeError: boom", "Traceback (most recent call last): ...")
    recs = {r.id: r for r in store.records()}

    csv_path = store.export_csv(tmp_path / "out" / "r.csv")
    with open(csv_path, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(recs)
    row = rows[runs[0].id]
    assert row["status"] == "finished" and json.loads(row["metrics"]) == metrics
    assert json.loads(row["config"]) == recs[runs[0].id].config
    assert float(row["metrics.subsets.cnn.score"]) == 70.5 and float(row["metrics.mean"]) == 71.25
    assert row["metrics.note"] == "x|y" and float(row["seconds"]) == 1.25
    assert rows[runs[1].id]["error"] == "RuntimeError: boom" and rows[runs[2].id]["status"] == "pending"

    pq_path = store.export_parquet(tmp_path / "r.parquet")
    table = pq.read_table(pq_path)
    assert str(table.schema.field("metrics.mean").type) == "double"
    assert str(table.schema.field("seed").type) == "int64"
    prow = {r["id"]: r for r in table.to_pylist()}
    assert set(prow) == set(recs)
    for rid, rec in recs.items():
        p = prow[rid]
        assert p["status"] == rec.status and p["seed"] == rec.seed and p["attempts"] == rec.attempts
        assert (json.loads(p["metrics"]) if p["metrics"] else None) == rec.metrics
        assert json.loads(p["config"]) == rec.config
    assert prow[runs[0].id]["metrics.subsets.trad.n"] == 8.0 and prow[runs[0].id]["metrics.synthetic"] is True
    assert prow[runs[2].id]["metrics.mean"] is None
