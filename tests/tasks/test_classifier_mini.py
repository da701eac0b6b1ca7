"""The mini study on the built-in photo patches: accuracy rises over training, PS (three functions,
layer-wise) is recorded at every checkpoint, and the best-PS checkpoint is a loss network."""
from __future__ import annotations

import json

import pytest
import torch

import lossnet
from lossnet.tasks.classifier import train_classifier
from lossnet.tasks.run import RunOptions


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_mini_study_accuracy_rises_and_ps_is_recorded_at_every_checkpoint(tmp_path):
    overrides = {"train_steps": 40, "batch_size": 32, "builtin_train": 24, "builtin_val": 10, "ps_n_per_subset": 8,
                 "eval_points": 3, "eval_first": 10, "eval_lowpass": [3, 9], "eval_entropy": True}
    result = train_classifier("kumar_resnet4_w0.25", "mini", "builtin",
                              RunOptions(out_dir=tmp_path, device="cpu", progress=False), overrides)
    rows = result["evaluations"]
    assert [r["step"] for r in rows] == [0, 10, 20, 40]
    n_classes = int(result["arch"].rsplit("_c", 1)[1])
    assert rows[0]["top1"] < 100 / n_classes + 10           # about chance at initialisation
    assert rows[-1]["top1"] > rows[0]["top1"] + 15          # and it learns
    for r in rows:
        assert set(r["ps"]) == {"spatial", "mean_pool", "style"}
        assert all(0 <= v <= 100 for v in r["ps"].values())
        assert set(r["layerwise"]["spatial"]) == {"layer1", "layer2", "layer3", "layer4"}
        assert r["sensitivity"]["spatial"]["n"] > 0 and set(r["entropy"]) >= {"layer1", "mean"}
        assert set(r["frequency"]["sizes"]) == {"3", "9"}
        assert r["synthetic"] is True
    m = result["metrics"]
    best = max(rows, key=lambda r: r["ps"]["spatial"])
    assert m["best_ps"] == best["ps"]["spatial"] and m["best_ps_step"] == min(
        r["step"] for r in rows if r["ps"]["spatial"] == m["best_ps"])
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == m
    metric = lossnet.PerceptualLoss(result["arch"], layers="kumar", weights=m["best_ps_checkpoint"], distance="spatial")
    x = torch.rand(2, 3, 64, 64)
    assert metric(x, x).item() == 0.0
