import json

from lossnet.demo.distortions import rank_accuracy, run_distortion_ranking

import torch


def test_rank_accuracy_by_hand():
    assert rank_accuracy(torch.tensor([[1.0, 2.0, 3.0]])) == 1.0
    assert rank_accuracy(torch.tensor([[3.0, 2.0, 1.0]])) == 0.0
    # pairs: (1,3) ok, (1,2) ok, (3,2) wrong -> 2/3 ; a tie counts 1/2
    assert rank_accuracy(torch.tensor([[1.0, 3.0, 2.0]])) == 2 / 3
    assert rank_accuracy(torch.tensor([[1.0, 1.0]])) == 0.5


def test_distortion_ranking_end_to_end(tmp_path):
    result = run_distortion_ranking(out_dir=tmp_path, size=64, families=("gaussian_noise", "gaussian_blur"),
                                    levels=(0.2, 0.6, 1.0))
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["rows"] == result["rows"]
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    metrics = {r["metric"] for r in result["rows"]}
    assert metrics == {"efficientnet_lite0 (ImageNet)", "efficientnet_lite0 (untrained)", "pixel l2", "pixel ssim"}
    real = next(r for r in result["rows"] if r["metric"].endswith("(ImageNet)") and r["point"] == "all points")
    assert real["rank_accuracy"] > 0.9  # real features order noise and blur levels
    assert "not human" in result["task"]
