"""``lossnet sweep run|status|report|export`` on a tiny spec (real similarity adapter, built-in data)."""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from lossnet.cli import sweep as sweep_cli
from lossnet.errors import LossnetError

TINY = """
name = "tiny"
[grid]
architectures = ["resnet18"]
weights = ["random"]
points = ["layer1"]
distances = ["spatial"]
tasks = ["similarity"]
baselines = ["l2"]
[tasks.similarity]
data = "builtin"
n_per_subset = 4
bootstrap = 0
device = "cpu"
"""


def lossnet(*argv: str) -> int:
    """The ``lossnet`` command with the sweep subcommand (as lossnet.cli.main runs it)."""
    from lossnet.cli import main as cli_main

    if "lossnet.cli.sweep" in cli_main.COMMAND_MODULES:
        return cli_main.main(list(argv))
    parser = argparse.ArgumentParser(prog="lossnet")
    sweep_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    try:
        return int(args.func(args) or 0)
    except LossnetError as exc:
        print(f"lossnet: error: {exc}")
        return 2


@pytest.fixture()
def tiny(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    return spec, tmp_path / "results.sqlite"


def test_run_status_report_export(tiny, tmp_path, capsys):
    spec, db = tiny
    assert lossnet("sweep", "run", str(spec), "--db", str(db), "--quiet") == 0
    out = capsys.readouterr().out
    assert "tiny: 2/2 finished, 0 failed" in out

    assert lossnet("sweep", "status", str(spec), "--db", str(db), "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert {k: status[k] for k in ("total", "finished", "failed", "running", "pending")} == {
        "total": 2, "finished": 2, "failed": 0, "running": 0, "pending": 0}
    assert status["failures"] == [] and status["by_task"]["similarity"]["finished"] == 2

    # the run's record: similarity metrics per subset and layer, environment with versions and device
    from lossnet.sweeps.store import ResultsStore

    recs = ResultsStore(db).records()
    net = next(r for r in recs if r.arch == "resnet18")
    assert set(net.metrics["subsets"]) == {"same-family", "mixed-family", "structure-vs-appearance"}
    assert 0 <= net.metrics["mean"] <= 100 and "layer1" in net.metrics["layers"]
    assert net.metrics["synthetic"] is True and net.metrics["n"] == 12  # 4 triplets x 3 subsets
    assert net.environment["versions"]["torch"] and net.environment["device"] == "cpu"
    assert net.environment["weights"] == {"source": "random"}

    # running again redoes nothing
    assert lossnet("sweep", "run", str(spec), "--db", str(db), "--json", "--quiet") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["skipped"] == 2 and again["ran"]["claimed"] == 0

    report_dir = tmp_path / "report"
    assert lossnet("sweep", "report", str(spec), "--db", str(db), "--out", str(report_dir)) == 0
    assert "2/2 runs finished" in capsys.readouterr().out
    md = (report_dir / "report.md").read_text()
    assert "resnet18 (random)" in md and "pixel l2" in md and "SYNTHETIC" in md
    assert (report_dir / "report.html").is_file() and list((report_dir / "figures").glob("*.png"))

    csv_path, pq_path = tmp_path / "x.csv", tmp_path / "x.parquet"
    assert lossnet("sweep", "export", "--db", str(db), "--csv", str(csv_path), "--parquet", str(pq_path)) == 0
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}
    assert float(rows[0]["metrics.mean"]) == pytest.approx(next(r for r in recs if r.id == rows[0]["id"]).metrics["mean"])
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(pq_path).num_rows == 2


def test_failed_runs_are_reported_with_their_errors(tiny, tmp_path, capsys):
    spec, db = tiny
    bad = tmp_path / "missing-data"
    assert lossnet("sweep", "run", str(spec), "--db", str(db), "--quiet", "--set", f"similarity.data={bad}",
                   "--set", "similarity.n_per_subset=1") == 1
    assert "FAILED" in capsys.readouterr().out
    assert lossnet("sweep", "status", str(spec), "--db", str(db), "--set", f"similarity.data={bad}",
                   "--set", "similarity.n_per_subset=1", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["failed"] == 2 and status["finished"] == 0
    assert all("does not exist" in f["error"] and "DataError" in f["traceback"] for f in status["failures"])
    # the unmodified spec is a different set of runs (the override is part of their ids)
    assert lossnet("sweep", "status", str(spec), "--db", str(db)) == 0
    assert "0/2 finished" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert lossnet("sweep", "run", "no-such-spec", "--db", str(tmp_path / "r.sqlite")) == 2
    captured = capsys.readouterr()
    assert "ready-made spec" in captured.out + captured.err
    assert lossnet("sweep", "export", "--db", str(tmp_path / "none.sqlite"), "--csv", str(tmp_path / "x.csv")) == 2
    assert lossnet("sweep", "export", "--db", str(tmp_path / "none.sqlite")) == 2
    spec = tmp_path / "bad.toml"
    spec.write_text(textwrap.dedent("""
        [grid]
        architectures = ["resnet18"]
        points = ["layer9"]
        tasks = ["similarity"]
    """))
    assert lossnet("sweep", "status", str(spec), "--db", str(tmp_path / "r.sqlite")) == 2
    err = capsys.readouterr()
    assert "unknown extraction point of resnet18 'layer9'" in err.out + err.err
    assert not Path(tmp_path / "x.csv").exists()


def _noop_store(path: Path, n: int = 2) -> str:
    from lossnet.sweeps.spec import expand
    from lossnet.sweeps.store import ResultsStore

    store = ResultsStore(path)
    runs = expand({"grid": {"tasks": ["noop"], "seeds": list(range(n))}})
    store.add_runs(runs)
    for r in runs:
        store.finish(store.claim(r.id, "w"), {"score": float(r.seed)})
    store.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_never_overwrites_its_store_or_a_foreign_file(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    digest = _noop_store(db)
    for flag in ("--csv", "--parquet"):
        for extra in ((), ("--force",)):
            assert lossnet("sweep", "export", "--db", str(db), flag, str(db), *extra) == 2
            out = capsys.readouterr()
            assert "it is the results store" in out.out + out.err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    from lossnet.sweeps.store import ResultsStore

    assert ResultsStore(db).counts()["finished"] == 2  # still the store, with its runs

    notes = tmp_path / "notes.csv"
    notes.write_text("mine\n")
    good = tmp_path / "ok.parquet"
    # a refused target stops the whole export: the other one is not written either
    assert lossnet("sweep", "export", "--db", str(db), "--csv", str(notes), "--parquet", str(good)) == 2
    out = capsys.readouterr()
    assert "refusing to overwrite" in out.out + out.err and "--force" in out.out + out.err
    assert notes.read_text() == "mine\n" and not good.exists()
    assert lossnet("sweep", "export", "--db", str(db), "--csv", str(notes), "--force") == 0
    assert "wrote 2 runs" in capsys.readouterr().out
    assert lossnet("sweep", "export", "--db", str(db), "--csv", str(notes)) == 0  # now an export of its own
    with open(notes, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert lossnet("sweep", "export", "--db", str(db), "--csv", str(good), "--parquet", str(good)) == 2


def test_bad_executor_flags_are_clear_errors(tmp_path, capsys):
    spec = tmp_path / "noop.toml"
    spec.write_text('[grid]\ntasks = ["noop"]\nseeds = [0]\n')
    db = tmp_path / "r.sqlite"
    for argv, message in [(("--executor", "processes", "--workers", "-1"), "--workers must be a whole number"),
                          (("--executor", "processes", "--workers", "0"), "--workers must be a whole number"),
                          (("--workers", "4"), "--workers 4 needs --executor processes"),
                          (("--address", "auto"), "--address is for --executor ray"),
                          (("--limit", "-1"), "--limit must be"),
                          (("--stale-after", "0"), "--stale-after) must be a positive")]:
        assert lossnet("sweep", "run", str(spec), "--db", str(db), "--quiet", *argv) == 2, argv
        out = capsys.readouterr()
        assert message in out.out + out.err, (argv, out)
    assert not db.exists()


@pytest.mark.parametrize("flags, share", [([], True), (["--no-share"], False)])
def test_no_share_reaches_the_runner(monkeypatch, tmp_path, flags, share):
    from lossnet.cli.main import main
    import lossnet.sweeps.runner as runner

    seen = {}

    def fake_run_sweep(spec, db, **kwargs):
        seen.update(kwargs)
        return {"spec": "mini", "db": str(db), "finished": 0, "failed": 0, "total": 0, "running": 0, "pending": 0,
                "failures": []}

    monkeypatch.setattr(runner, "run_sweep", fake_run_sweep)
    main(["sweep", "run", "mini", "--db", str(tmp_path / "r.sqlite"), "--quiet", *flags])
    assert seen["share"] is share
