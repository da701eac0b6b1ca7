"""``lossnet sweep report`` dispatches to the classifier-study report when the store holds
classifier runs of the spec (both reports for a spec that also has other tasks)."""
from __future__ import annotations

import json

from lossnet.networks import classifiers as C
from lossnet.sweeps import classifier_task  # noqa: F401  (registers the task)
from lossnet.sweeps.spec import expand, load_spec
from lossnet.sweeps.store import ResultsStore

SPEC = """
name = "kumar-cli-test"
imports = ["lossnet.sweeps.classifier_task"]
[[grid]]
architectures = ["kumar_resnet2_w0.125"]
weights = ["random"]
points = "combined:kumar"
distances = ["spatial"]
tasks = ["classifier"]
seeds = [0, 1]
"""
NOOP = """
[[grid]]
tasks = ["noop"]
seeds = [0]
"""


def lossnet(*argv: str) -> int:
    from lossnet.cli import main as cli_main

    return cli_main.main(list(argv))


def _filled(tmp_path, text: str):
    C.ensure_registered("kumar_resnet2_w0.125")
    path = tmp_path / "spec.toml"
    path.write_text(text)
    db = tmp_path / "r.sqlite"
    with ResultsStore(db) as store:
        runs = expand(load_spec(path))
        store.add_runs(runs)
        for run in runs:
            seed = run.seed
            metrics = {"score": 1.0} if run.task == "noop" else {
                "arch_trained": run.arch, "synthetic": True,
                "evaluations": [{"step": 0, "top1": 7.0, "ps": {"spatial": 66.0}},
                                {"step": 4, "top1": 20.0, "ps": {"spatial": 68.0 + seed}},
                                {"step": 8, "top1": 30.0 + seed, "ps": {"spatial": 64.0}}]}
            store.finish(store.claim(run.id, worker="t"), metrics, environment={})
    return path, db, runs


def test_report_dispatches_to_the_classifier_study(tmp_path, capsys):
    spec, db, runs = _filled(tmp_path, SPEC)
    out = tmp_path / "report"
    assert lossnet("sweep", "report", str(spec), "--db", str(db), "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "classifier study report of kumar-cli-test (2/2 classifier runs finished, 6 evaluations)" in text
    for run in runs:  # the best-PS checkpoint of every run
        assert f"(seed {run.seed}, {run.id}): best PS {68.0 + run.seed:.2f} at step 4, final PS 64.00" in text
    data = json.loads((out / "report.json").read_text())
    assert data["spec"] == "kumar-cli-test" and len(data["run_table"]) == 2 and "pareto" in data
    assert "Accuracy vs Perceptual Score" in (out / "report.md").read_text()
    assert (out / "report.html").is_file() and (out / "figures" / "fig1_pareto.png").is_file()
    assert not (out / "classifier").exists()


def test_a_spec_with_other_tasks_gets_both_reports(tmp_path, capsys):
    spec, db, _ = _filled(tmp_path, SPEC + NOOP)
    out = tmp_path / "report"
    assert lossnet("sweep", "report", str(spec), "--db", str(db), "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "3/3 runs finished" in text and "classifier study report" in text
    assert (out / "report.md").is_file() and (out / "classifier" / "report.md").is_file()
    assert "Classifier study" in (out / "classifier" / "report.md").read_text()
