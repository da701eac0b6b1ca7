"""The results store: exactly-once claims, take-over of abandoned runs, concurrent writers, export."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

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


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _filled_store(path, n: int = 300) -> list:
    """A store of ``n`` finished noop runs, closed (its WAL checkpointed into the file)."""
    store = ResultsStore(path)
    runs = _runs(n)
    store.add_runs(runs, sweep="t")
    for r in runs:
        store.finish(store.claim(r.id, "w"), {"score": float(r.seed), "text": "x" * 200})
    store.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return runs


def test_bad_store_paths(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        ResultsStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="junk.sqlite' is not an SQLite results store.*left it as it is"):
        ResultsStore(junk)
    assert junk.read_bytes() == b"this is not a database" * 100
    with pytest.raises(StoreError, match="stale-after.*positive"):
        ResultsStore(tmp_path / "r.sqlite", stale_after=0)


def test_an_emptied_store_is_an_error_not_an_empty_store(tmp_path):
    from lossnet.sweeps.runner import run_sweep, sweep_status

    db = tmp_path / "r.sqlite"
    db.touch()  # 0 bytes, e.g. truncated by a full disk
    spec = {"name": "t", "grid": {"tasks": ["noop"], "seeds": [0, 1]}}
    for call in (lambda: ResultsStore(db), lambda: run_sweep(spec, db, progress=False),
                 lambda: sweep_status(spec, db)):
        with pytest.raises(StoreError, match=r"r.sqlite' is an empty \(0-byte\) file.*left it as it is.*delete it"):
            call()
    assert db.stat().st_size == 0 and not Path(f"{db}-wal").exists()


def test_a_damaged_store_is_a_clear_error_and_left_as_it_is(tmp_path):
    from lossnet.sweeps.runner import run_sweep

    db = tmp_path / "r.sqlite"
    runs = _filled_store(db)
    page = 4096
    assert db.stat().st_size > 8 * page
    with open(db, "r+b") as fh:  # zero two pages after the header page
        fh.seek(2 * page)
        fh.write(b"\0" * 2 * page)
    before = _sha(db)
    with pytest.raises(StoreError, match=r"r.sqlite' is damaged.*left the file as it is.*\.recover.*r-recovered"):
        ResultsStore(db)
    with pytest.raises(StoreError, match="is damaged"):
        run_sweep({"name": "t", "grid": {"tasks": ["noop"], "seeds": [0]}}, db, progress=False)
    assert _sha(db) == before
    # without the check on open, a damaged page still surfaces as a StoreError, never a raw sqlite3 error
    unchecked = ResultsStore(db, verify=False)
    with pytest.raises(StoreError, match="is damaged"):
        unchecked.records([r.id for r in runs])
        unchecked.counts()
    unchecked.close()


def _open_new(db: str, barrier, out) -> None:
    barrier.wait()
    try:
        ResultsStore(db).add_runs(_runs(2))
        out.put("ok")
    except Exception as exc:  # noqa: BLE001
        out.put(repr(exc))


def test_many_processes_creating_one_new_store_at_once(tmp_path):
    ctx = mp.get_context("fork")
    db = str(tmp_path / "new.sqlite")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_new, args=(db, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results == ["ok"] * 4
    assert ResultsStore(db).counts()["total"] == 2
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".new.sqlite.new-")]  # no build files left


def test_exports_never_write_over_the_store_or_foreign_files(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    db = tmp_path / "r.sqlite"
    _filled_store(db, 3)
    before = _sha(db)  # read while no connection is open (a plain close would drop SQLite's locks)
    store = ResultsStore(db)
    link = tmp_path / "link.sqlite"
    link.symlink_to(db)
    for target in (db, str(db), tmp_path / "." / "r.sqlite", link, Path(f"{db}-wal")):
        for export in (store.export_csv, store.export_parquet):
            for force in (False, True):
                with pytest.raises(StoreError, match="the results store .* itself"):
                    export(target, force=force)
    assert store.counts()["finished"] == 3
    store.close()
    assert _sha(db) == before

    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\nnotes,1\n")
    with pytest.raises(StoreError, match="refusing to overwrite .*notes.csv.*not a lossnet sweep csv export.*--force"):
        store.export_csv(notes)
    assert notes.read_text() == "my,own\nnotes,1\n"
    with pytest.raises(StoreError, match="not a lossnet sweep parquet export"):
        store.export_parquet(notes)
    out_csv, out_pq = tmp_path / "x.csv", tmp_path / "x.parquet"
    store.export_csv(out_csv)
    store.export_parquet(out_pq)
    assert json.loads(pq.read_schema(out_pq).metadata[b"lossnet.sweep_export"])["runs"] == 3
    store.export_csv(out_csv)  # its own exports are replaced without --force
    store.export_parquet(out_pq)
    with pytest.raises(StoreError, match="not a lossnet sweep csv export"):
        store.export_csv(out_pq)  # an export of the other format is not a CSV export
    store.export_csv(notes, force=True)
    with open(notes, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    with pytest.raises(StoreError, match="is a folder"):
        store.export_csv(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


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
