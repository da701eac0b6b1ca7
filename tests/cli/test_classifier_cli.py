"""``lossnet train classifier``: a short run from the command line, and flags that do not apply."""
from __future__ import annotations

import json

import pytest
import torch

from lossnet.cli.main import main
from lossnet.data.imagenet64 import write_npz_fixture


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _cli(data, out, *extra: str) -> int:
    return main(["train", "classifier", "--arch", "kumar_resnet2_w0.125", "--data", data, "--threads", "1",
                 "--quiet", "--out", str(out), "--set", "train_steps=4", "--set", "batch_size=8",
                 "--set", "eval_points=1", "--set", "ps_data=none", *extra])


def test_train_classifier_on_imagenet64_npz_files(tmp_path, capsys):
    data = tmp_path / "in64"
    write_npz_fixture(data, n_per_file=2, n_val=4, labels=[1, 2])
    assert _cli(f"imagenet64:{data}", tmp_path / "run", "--config", "kumar-resnet") == 0
    printed = capsys.readouterr().out
    assert "best PS" in printed and "metrics.json" in printed
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["arch"] == "kumar_resnet2_w0.125"  # 1000 classes: the data's labels lie in 1..1000
    cfg = result["config"]["config"]
    assert cfg["optimizer"] == "sgd" and cfg["weight_decay"] == 1e-4 and cfg["train_steps"] == 4
    assert [r["step"] for r in result["evaluations"]] == [0, 4]
    assert (data / "lossnet64" / "train_images.npy").is_file()  # converted once, next to the npz files


@pytest.mark.parametrize("args, message", [
    (["--net", "vgg16"], "--net do not apply"),
    (["--distance", "style", "--layers", "layer1"], "--layers, --distance do not apply"),
    (["--config", "kumar-resnets"], "unknown classifier config"),
    (["--set", "epochs=3"], "train_steps"),
])
def test_flags_that_do_not_apply_are_errors(tmp_path, capsys, args, message):
    assert _cli("builtin", tmp_path / "r", *args) == 2
    assert message in capsys.readouterr().err


def test_arch_is_required_and_only_for_the_classifier(tmp_path, capsys):
    assert main(["train", "classifier", "--out", str(tmp_path)]) == 2
    assert "needs --arch" in capsys.readouterr().err
    assert main(["train", "segmentation", "--arch", "kumar_resnet6", "--out", str(tmp_path)]) == 2
    assert "--arch applies to 'lossnet train classifier' only" in capsys.readouterr().err
    assert main(["train", "segmentation", "--config", "kumar-resnet", "--out", str(tmp_path)]) == 2
    assert "use mini or paper" in capsys.readouterr().err
