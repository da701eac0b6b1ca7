"""benchmarks/gpu.py in its CPU smoke mode: the script runs end to end and its checks hold."""
import importlib.util
import json
from pathlib import Path

import pytest

from lossnet.loss.fast import tolerance

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("lossnet_gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("results")
    result = module.main(["--device", "cpu", "--smoke", "--out-dir", str(out), "--name", "gpu_smoke"])
    return result, out


def test_writes_results_that_say_they_are_not_gpu_numbers(smoke):
    result, out = smoke
    saved = json.loads((out / "gpu_smoke.json").read_text())
    assert saved["device"]["type"] == "cpu" and saved["settings"]["smoke"] is True
    assert "NOT GPU numbers" in (out / "gpu_smoke.md").read_text()
    for r in saved["2afc"]["results"].values():  # no CUDA memory counters on the CPU: no number, a reason
        assert r["memory"]["peak_above_start_mib"] is None and "CUDA only" in r["memory"]["note"]


def test_2afc_contenders_score_the_same_metric(smoke):
    result, _ = smoke
    afc = result["2afc"]
    assert afc["lpips_parity_max_rel_diff"] <= 1e-4
    assert set(afc["results"]) == {"lossnet float32", "lossnet channels_last", "lossnet bf16+channels_last",
                                   "lpips (eval script)", "lpips (no_grad)"}
    assert all(r["triplets_per_s"] > 0 for r in afc["results"].values())
    assert afc["results"]["lossnet channels_last"]["max_rel_diff_vs_float32"] <= tolerance(None, "spatial")
    assert 0 < afc["results"]["lossnet bf16+channels_last"]["max_rel_diff_vs_float32"] <= tolerance("bf16", "spatial")


def test_loss_cells_match_their_peers(smoke):
    result, _ = smoke
    cells = {c["key"]: c for c in result["loss"]}
    assert set(cells) == {"spatial_vs_lpips", "mse_vs_piq_content", "style_vs_piq_style"}
    assert cells["spatial_vs_lpips"]["peer_value_rel_err"] <= 1e-4
    assert cells["mse_vs_piq_content"]["peer_value_rel_err"] <= 1e-4
    for key, cell in cells.items():
        assert set(cell["results"]) == {"lossnet float32", "lossnet channels_last", "lossnet bf16+channels_last",
                                        cell["peer_name"]}
        distance = key.split("_")[0]
        assert cell["results"]["lossnet bf16+channels_last"]["rel_diff_vs_float32"] <= tolerance("bf16", distance)
        assert all(r["median_s"] > 0 for r in cell["results"].values())
