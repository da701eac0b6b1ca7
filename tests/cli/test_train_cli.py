"""``lossnet train`` end to end on built-in data with the smallest configs."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from lossnet.cli.main import main
from lossnet.cli.train import default_out

TINY = {
    "superres": ["--set", "epochs=1", "--set", "train_length=16", "--set", "crop=32", "--set", "photo_size=96",
                 "--set", "eval_size=48", "--set", "width=8", "--set", "blocks=1", "--lpips", "none"],
    "segmentation": ["--set", "epochs=1", "--set", "n_train=16", "--set", "n_test=2", "--set", "tile_size=32",
                     "--set", "crop=24", "--set", "width=4", "--set", "depth=2"],
    "autoencoder": ["--set", "epochs=1", "--set", "max_train=64", "--set", "batch_size=32", "--set", "probe_epochs=2",
                    "--set", "probe_hidden=[[],[8]]"],
}
LITE0 = ["--net", "efficientnet_lite0", "--layers", "blocks.0"]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _train(task: str, out, *extra: str) -> int:
    return main(["train", task, "--data", "builtin", "--config", "mini", "--threads", "1", "--quiet",
                 "--out", str(out), *TINY[task], *extra])


@pytest.mark.parametrize("task, loss, names", [
    ("superres", LITE0, ["psnr", "ssim", "lpips", "bicubic_psnr", "bicubic_ssim", "bicubic_lpips"]),
    ("segmentation", ["--net", "none", "--distance", "l2"],
     ["completeness", "correctness", "quality", "f1", "iou", "relaxed_quality"]),
    ("autoencoder", LITE0, ["accuracy", "linear_accuracy", "probe_accuracy", "test_loss"]),
])
def test_train_end_to_end(tmp_path, capsys, task, loss, names):
    assert _train(task, tmp_path, *loss, "--seed", "3") == 0
    printed = capsys.readouterr().out
    assert "metrics.json" in printed and names[0] in printed
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["task"] == task
    assert all(name in result["metrics"] for name in names)
    cfg = result["config"]
    assert cfg["seed"] == 3 and cfg["task"] == task
    if "--net" in loss and loss[loss.index("--net") + 1] == "none":
        assert cfg["loss"]["net"] is None and cfg["loss"]["distance"] == "l2"
    else:
        assert cfg["loss"]["net"] == "efficientnet_lite0" and cfg["loss"]["layers"] == ["blocks.0"]
        assert cfg["loss"]["input_norm"] == "none" and cfg["loss"]["distance"] == "mse"
    assert result["train"]["steps"] > 0 and result["train"]["first_loss"] is not None
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "config.json").exists()
    # the same command again finds the finished run and reports the same metrics
    assert _train(task, tmp_path, *loss, "--seed", "3") == 0
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["metrics"] == result["metrics"] and again["train"]["steps"] == result["train"]["steps"]


def test_superres_metrics_are_sane(tmp_path):
    assert _train("superres", tmp_path, "--net", "none", "--distance", "l2", "--json") == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 10 < m["metrics"]["bicubic_psnr"] < 50 and 0 < m["metrics"]["bicubic_ssim"] <= 1
    assert m["metrics"]["lpips"] is None and "off" in m["lpips_info"]["note"]
    assert m["per_set"]["builtin"]["n_images"] == 3


@pytest.mark.parametrize("task", ["segmentation", "superres"])
def test_amp_on_cpu_runs_in_bfloat16(tmp_path, task):
    assert _train(task, tmp_path, *LITE0, "--amp", "--device", "cpu") == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["precision"] == "bfloat16" and m["device"] == "cpu" and m["config"]["amp"] is True


@pytest.mark.parametrize("args, message", [
    (["--net", "none", "--distance", "mse"], "needs a loss network"),
    (["--net", "efficientnet_lite0", "--distance", "l2"], "--net none"),
    (["--set", "colour=red"], "unknown config field 'colour'"),
    (["--set", "epochs=two"], "integer"),
    (["--set", "epochs"], "KEY=VALUE"),
    (["--layers", "blocks.99", "--net", "efficientnet_lite0"], "extraction point"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_arguments_give_clear_errors(tmp_path, capsys, args, message):
    assert _train("segmentation", tmp_path, *args) == 2
    assert message in capsys.readouterr().err


def test_bad_data_and_changed_config_give_clear_errors(tmp_path, capsys):
    assert main(["train", "segmentation", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "run"
    assert _train("segmentation", out, "--net", "none", "--distance", "l2") == 0
    capsys.readouterr()
    assert _train("segmentation", out, "--net", "none", "--distance", "l2", "--set", "mu=0.5") == 2
    err = capsys.readouterr().err
    assert "mu: 0.01 -> 0.5" in err and "--restart" in err
    assert _train("segmentation", out, "--net", "none", "--distance", "l2", "--set", "mu=0.5", "--restart") == 0


def test_default_output_folder_names_the_choices():
    args = argparse.Namespace(task="superres", net="efficientnet_lite0", layers="blocks.0,blocks.1", distance="mse",
                              config="mini", seed=2)
    assert default_out(args) == "lossnet-out/train/superres-efficientnet_lite0-blocks.0+blocks.1-mse-mini-seed2"
    args.net = "none"
    assert "superres-pixel-" in default_out(args)
