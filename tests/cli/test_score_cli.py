"""``lossnet score 2afc|jnd|mos``, ``lossnet calibrate`` and ``lossnet download`` end to end."""
from __future__ import annotations

import json

import pytest

import lossnet
from lossnet.cli.main import main
from lossnet.data import (
    load_2afc,
    write_bapps_fixture,
    write_jnd_fixture,
    write_mos_csv_fixture,
    write_tid2013_fixture,
)
from lossnet.scoring import score_2afc


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    root = tmp_path_factory.mktemp("bapps")
    write_bapps_fixture(root, n=6)
    write_jnd_fixture(root, n=6)
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_2afc_builtin_with_json(capsys, tmp_path):
    out_json = tmp_path / "builtin.json"
    code, out, err = run(capsys, "score", "2afc", "--data", "builtin", "--limit", "4", "--net", "alexnet",
                         "--layers", "features.1,features.4", "--weights", "random", "--distance", "spatial", "style",
                         "--bootstrap", "50", "--json", out_json, "--no-progress")
    assert code == 0, err
    assert "same-family" in out and "mixed-family" in out and "SYNTHETIC" in out and "Layer-wise PS" in out
    d = json.loads(out_json.read_text())
    assert d["synthetic"] is True and d["note"]
    assert set(d["subsets"]) == {"same-family", "mixed-family", "structure-vs-appearance"}
    for v in d["subsets"].values():
        assert set(v) >= {"score", "n", "ci_low", "ci_high"} and v["n"] == 4 and 0 <= v["score"] <= 100
    assert isinstance(d["mean"], float)
    assert set(d["layers"]) == {"features.1", "features.4", "combined"}
    assert all(set(v) == {"same-family", "mixed-family", "structure-vs-appearance"} for v in d["layers"].values())
    assert set(d["distances"]) == {"spatial", "style"} and d["distance"] == "spatial"


def test_score_2afc_fixture_dir_equals_python_api(capsys, tmp_path, bapps, trunk):
    out_json = tmp_path / "ps.json"
    code, out, err = run(capsys, "score", "2afc", "--data", bapps / "2afc" / "val", "--net", "alex",
                         "--weights", trunk, "--batch-size", "4", "--json", out_json, "--no-progress")
    assert code == 0, err
    d = json.loads(out_json.read_text())
    expected = score_2afc(lossnet.lpips("alex", weights=trunk), load_2afc(bapps), progress=False)
    assert d["synthetic"] is False and d["lin"] is True and d["arch"] == "alexnet"
    assert {k: v["score"] for k, v in d["subsets"].items()} == pytest.approx(
        {k: v["score"] for k, v in expected.subsets.items()})
    for point, scores in expected.layers.items():
        assert d["layers"][point] == pytest.approx(scores)
    assert "traditional" in out and "cnn" in out


def test_progress_bar_goes_to_stderr(capsys, bapps):
    code, out, err = run(capsys, "score", "2afc", "--data", bapps, "--net", "none", "--distance", "l2",
                         "--bootstrap", "0")
    assert code == 0
    assert "2AFC" in err and "triplet" in err  # tqdm
    assert "pixel l2" in out


@pytest.mark.parametrize("data", ["/nonexistent/bapps", "FILE"])
def test_bad_data_is_a_one_line_error_with_exit_code_2(capsys, tmp_path, data):
    if data == "FILE":
        data = tmp_path / "not_a_folder.txt"
        data.write_text("x")
    code, out, err = run(capsys, "score", "2afc", "--data", data, "--net", "none", "--distance", "l2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossnet: error:")
    assert str(data) in lines[0] and "2afc" in lines[0]


def test_bad_metric_options_are_clear(capsys):
    code, _, err = run(capsys, "score", "2afc", "--data", "builtin", "--limit", "2", "--net", "none",
                       "--distance", "spatial")
    assert code == 2 and "--distance l2" in err
    code, _, err = run(capsys, "score", "2afc", "--data", "builtin", "--limit", "2", "--net", "alexnet",
                       "--weights", "random", "--lin", "lpips", "--layers", "features.1")
    assert code == 2 and "lpips" in err


def test_score_jnd_cli(capsys, tmp_path, bapps, trunk):
    out_json = tmp_path / "jnd.json"
    code, out, err = run(capsys, "score", "jnd", "--data", bapps, "--net", "alex", "--weights", trunk,
                         "--lin", "none", "--json", out_json, "--no-progress")
    assert code == 0, err
    d = json.loads(out_json.read_text())
    assert d["task"] == "jnd" and set(d["subsets"]) == {"traditional", "cnn"} and d["lin"] is False
    assert "mAP" in out


def test_score_mos_cli(capsys, tmp_path):
    root = write_tid2013_fixture(tmp_path / "tid")
    out_json = tmp_path / "tid.json"
    code, out, err = run(capsys, "score", "mos", "--dataset", "tid2013", "--data", root, "--net", "none",
                         "--distance", "l2", "ssim", "--json", out_json, "--no-progress")
    assert code == 0, err
    d = json.loads(out_json.read_text())
    assert d["dataset"] == "tid2013" and d["higher_is_better"] is True and d["srocc"] > 0
    assert "SROCC" in out
    csv_path = write_mos_csv_fixture(tmp_path / "csv")
    code, out, err = run(capsys, "score", "mos", "--dataset", "csv", "--data", csv_path, "--lower-is-better",
                         "--net", "none", "--distance", "l2", "--no-progress")
    assert code == 0, err and "worse" in out


def test_calibrate_cli_writes_loadable_weights(capsys, tmp_path, trunk):
    out = tmp_path / "lin.pt"
    hist = tmp_path / "hist.json"
    code, text, err = run(capsys, "calibrate", "--data", "builtin", "--limit", "4", "--net", "alexnet",
                          "--layers", "features.1", "--weights", trunk, "--epochs", "1", "--decay-epochs", "1",
                          "--out", out, "--json", hist, "--no-progress")
    assert code == 0, err
    assert "SYNTHETIC" in err and "saved lin weights" in text
    assert len(json.loads(hist.read_text())["history"]) == 2
    metric = lossnet.PerceptualLoss("alexnet", layers="features.1", weights=trunk, lin=out)
    assert metric.lin["features.1"].shape == (64,) and bool((metric.lin["features.1"] >= 0).all())
    code, text, err = run(capsys, "score", "2afc", "--data", "builtin", "--limit", "2", "--net", "alexnet",
                          "--layers", "features.1", "--weights", trunk, "--lin", out, "--no-progress")
    assert code == 0, err


def test_calibrate_needs_a_network(capsys):
    code, _, err = run(capsys, "calibrate", "--data", "builtin", "--out", "x.pt")
    assert code == 2 and "--net" in err


def test_download_manual_and_failure(capsys, tmp_path, monkeypatch):
    code, out, _ = run(capsys, "download", "bapps", "--to", tmp_path, "--manual")
    assert code == 0 and "twoafc_val" in out and "2afc" in out

    from lossnet.data import download as dl
    from lossnet.errors import DownloadError

    def fail(*args, **kwargs):
        raise DownloadError("download failed: cannot reach the server")

    monkeypatch.setattr(dl, "download_dataset", fail)
    code, out, err = run(capsys, "download", "kadid10k", "--to", tmp_path)
    assert code == 1
    assert "cannot reach" in err and "How to place" in err and "dmos.csv" in err
    code, _, err = run(capsys, "download", "bapps", "--to", tmp_path, "--parts", "nonsense")
    assert code == 2 and "twoafc_val" in err
