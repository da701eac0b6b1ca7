"""The evaluations table: one row per evaluated checkpoint (run id + step), written with the run's
completion in one transaction, rewritten idempotently, and a version-1 store upgraded in place."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3

import pytest

from lossnet.sweeps.store import ResultsStore, StoreError


def _runs(n: int = 2) -> list[dict]:
    return [{"id": f"run{i}", "task": "classifier", "arch": "kumar_resnet6", "distance": "spatial", "seed": i}
            for i in range(n)]


def _evals(scale: float = 1.0) -> list[dict]:
    return [{"step": s, "epoch": s / 10, "top1": 10.0 * scale + s, "ps": {"spatial": 60.0 + s / 10, "style": 61.0},
             "layerwise": {"spatial": {"layer1": 59.0}}, "synthetic": True} for s in (0, 10, 40)]


def test_finish_writes_one_row_per_evaluation(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.add_runs(_runs())
        claim = store.claim("run0", worker="t")
        assert store.finish(claim, {"top1": 50.0, "evaluations": _evals()}, environment={})
        rec = store.get("run0")
        assert rec.status == "finished" and rec.metrics == {"top1": 50.0}  # rows live in their own table
        assert store.evaluations() == {"run0": _evals()}
        assert store.evaluations(["run1", "run0"]) == {"run0": _evals()}
        rows = store.conn.execute("SELECT run_id, step, epoch, top1, ps FROM evaluations ORDER BY step").fetchall()
        assert [tuple(r)[:4] for r in rows] == [("run0", 0, 0.0, 10.0), ("run0", 10, 1.0, 20.0),
                                                ("run0", 40, 4.0, 50.0)]
        assert json.loads(rows[1]["ps"]) == {"spatial": 61.0, "style": 61.0}
        # a claim that lost the run writes neither the run nor its rows
        assert store.claim("run0", worker="t") is None
        assert not store.finish(claim, {"evaluations": _evals(2.0)})
        assert store.evaluations()["run0"] == _evals()


def test_bad_evaluations_are_clear_errors_and_leave_the_run_running(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.add_runs(_runs(1))
        claim = store.claim("run0", worker="t")
        for bad, message in (([{"epoch": 1}], "whole 'step'"), ([{"step": 1}, {"step": 1}], "two evaluations at step 1"),
                             ({"step": 1}, "must be a list"), ([{"step": -1}], "whole 'step' >= 0")):
            with pytest.raises(StoreError, match=message):
                store.finish(claim, {"evaluations": bad})
        assert store.get("run0").status == "running" and store.evaluation_count() == 0


def test_record_evaluations_is_an_idempotent_rewrite(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.add_runs(_runs())
        assert store.record_evaluations("run1", _evals()) == 3
        assert store.record_evaluations("run1", _evals()) == 3
        assert store.evaluation_count() == 3 and store.evaluations() == {"run1": _evals()}
        fewer = _evals(3.0)[:2]
        assert store.record_evaluations("run1", fewer) == 2
        assert store.evaluations() == {"run1": fewer}
        with pytest.raises(StoreError, match="no run 'nope'"):
            store.record_evaluations("nope", _evals())


def _finish_then_die(db: str) -> None:
    """Finish run0 and die (os._exit, as kill -9) inside the transaction: after the rows, before COMMIT."""
    from lossnet.sweeps import store as S

    real = S._write_evaluations

    def write_then_die(conn, run_id, rows):
        real(conn, run_id, rows)
        os._exit(9)

    S._write_evaluations = write_then_die
    store = S.ResultsStore(db)
    claim = store.claim("run0", worker="doomed")
    store.finish(claim, {"top1": 1.0, "evaluations": [{"step": 0, "top1": 1.0}, {"step": 5, "top1": 2.0}]})


def test_a_process_killed_while_finishing_leaves_no_half_run(tmp_path):
    db = tmp_path / "r.sqlite"
    with ResultsStore(db) as store:
        store.add_runs(_runs(1))
    proc = mp.get_context("fork").Process(target=_finish_then_die, args=(str(db),))  # fork: no re-import
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    with ResultsStore(db) as store:
        rec = store.get("run0")
        assert rec.status == "running" and rec.metrics is None  # not finished, and no rows either
        assert store.evaluation_count() == 0
        # the dead worker's run is taken over and finished whole
        claim = store.claim("run0", worker="next")
        assert claim is not None and store.finish(claim, {"top1": 2.0, "evaluations": _evals()})
        assert store.evaluations() == {"run0": _evals()} and store.get("run0").metrics == {"top1": 2.0}


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    with ResultsStore(db) as store:
        store.add_runs(_runs())
        store.finish(store.claim("run0", worker="t"), {"top1": 5.0})
    # make it a version-1 store: no evaluations table, evaluations inside the metrics JSON
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE evaluations")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.execute("UPDATE runs SET metrics = ? WHERE id = 'run0'", (json.dumps({"top1": 5.0, "evaluations": _evals()}),))
    conn.commit()
    conn.close()
    with ResultsStore(db) as store:
        assert store.evaluations() == {"run0": _evals()}
        assert store.get("run0").metrics == {"top1": 5.0}
        version = store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == "2"
    with ResultsStore(db) as store:  # opening again changes nothing
        assert store.evaluations() == {"run0": _evals()} and store.evaluation_count() == 3


def test_exports_keep_the_evaluations(tmp_path):
    import csv

    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.add_runs(_runs())
        store.finish(store.claim("run0", worker="t"), {"top1": 5.0, "evaluations": _evals()})
        out = store.export_csv(tmp_path / "x.csv")
    with open(out, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert json.loads(rows["run0"]["evaluations"]) == _evals() and rows["run1"]["evaluations"] == ""
    assert json.loads(rows["run0"]["metrics"]) == {"top1": 5.0}
