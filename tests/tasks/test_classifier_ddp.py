"""Data-parallel classifier training: 2 gloo processes on the CPU equal 1 process with the same
global batch, only rank 0 writes, a killed 2-process run resumes from the checkpoint on every
rank; and the launch errors are clear.

The comparison uses a small ViT (LayerNorm only: no BatchNorm, whose per-rank statistics would
differ from whole-batch ones, and no dropout), so the two runs differ only in the order of the
float sums of the gradient all-reduce. Tolerance: 1e-5 absolute on the weights and losses after
16 SGD steps (the float32 rounding of a 2-way sum is ~1e-7 relative; observed differences are
~1e-7).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossnet.errors import LossnetError
from lossnet.tasks import classifier as C
from lossnet.tasks.run import RunOptions

ARCH = "kumar_vit_p8_w32_d2_h2_m64"
OVERRIDES = {"train_steps": 16, "batch_size": 8, "checkpoint_every": 3, "eval_steps": [0, 5, 11], "ps_data": "builtin",
             "ps_n_per_subset": 4, "lr": 0.05, "schedule": "cosine", "warmup_steps": 2, "crop": "resized"}
ATOL = 1e-5
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def _rank(data: str, out: str, report: str, crash_at: int) -> None:
    """One process of a torchrun launch (this file run as a script): the training entry point,
    recording every file the process writes through lossnet's atomic writers."""
    torch.set_num_threads(1)
    from lossnet.tasks import classifier, rundir

    writes: list[str] = []

    def recording_json(original):
        def write_json(path, obj, *args, **kwargs):
            writes.append(str(path))
            return original(path, obj, *args, **kwargs)
        return write_json

    def recording_torch(original):
        def atomic_torch_save(obj, path):
            writes.append(str(path))
            return original(obj, path)
        return atomic_torch_save

    for module in (classifier, rundir):
        module.write_json = recording_json(module.write_json)
        module.atomic_torch_save = recording_torch(module.atomic_torch_save)
    calls = {"n": 0}
    step = classifier.ClassifierTrainer._train_step

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt  # as a kill: no cleanup in the trainer
        return step(self, batch)

    classifier.ClassifierTrainer._train_step = crashing
    result, crashed = None, False
    try:
        result = classifier.train_classifier(ARCH, "mini", f"imagenet64:{data}",
                                             RunOptions(out_dir=out, device="cpu", progress=False, seed=3), OVERRIDES)
    except KeyboardInterrupt:
        crashed = True
    Path(f"{report}-rank{os.environ['RANK']}.json").write_text(
        json.dumps({"writes": writes, "crashed": crashed, "result": result}))


def _launch(tmp: Path, data: Path, out: Path, tag: str, crash_at: int = 0) -> list[dict]:
    """``torchrun --standalone --nproc_per_node 2`` of this file; the two ranks' reports."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           __file__, str(data), str(out), str(tmp / tag), str(crash_at)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp / f"{tag}-rank{r}.json").read_text()) for r in range(2)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_and_resume_after_a_kill(tmp_path, imagenet64_folder):
    data = imagenet64_folder
    single = C.train_classifier(ARCH, "mini", f"imagenet64:{data}",
                                RunOptions(out_dir=tmp_path / "one", device="cpu", progress=False, seed=3), OVERRIDES)

    # 2 processes, killed at the 9th step call (after the step-6 checkpoint), then the same launch again
    first = _launch(tmp_path, data, tmp_path / "two", "first", crash_at=9)
    assert [r["crashed"] for r in first] == [True, True]
    assert not (tmp_path / "two" / "metrics.json").exists()
    second = _launch(tmp_path, data, tmp_path / "two", "second")
    assert second[0]["result"] == second[1]["result"]  # every rank returns rank 0's result
    double = second[0]["result"]
    assert double["train"]["resumed_from_step"] == 6 and double["train"]["steps"] == 16

    # only rank 0 wrote, and it wrote the files a single process writes
    assert first[1]["writes"] == [] and second[1]["writes"] == []
    assert any(w.endswith("checkpoint.pt") for w in first[0]["writes"])
    assert any(w.endswith("metrics.json") for w in second[0]["writes"])
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "two") == files(tmp_path / "one")

    # equal up to the order of float sums
    a, b = _weights(tmp_path / "one" / "checkpoint.pt"), _weights(tmp_path / "two" / "checkpoint.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=0)
    t1, t2 = single["train"], double["train"]
    assert t2["first_loss"] == pytest.approx(t1["first_loss"], abs=ATOL)
    assert t2["last_loss"] == pytest.approx(t1["last_loss"], abs=ATOL)
    assert t2["epoch_losses"] == pytest.approx(t1["epoch_losses"], abs=ATOL)
    rows1, rows2 = single["evaluations"], double["evaluations"]
    assert [r["step"] for r in rows2] == [r["step"] for r in rows1] == [0, 5, 11, 16]
    for r1, r2 in zip(rows1, rows2):
        assert r2["lr"] == r1["lr"] and r2["top1"] == r1["top1"] and r2["top5"] == r1["top5"]
        if r1["train_loss"] is not None:
            assert r2["train_loss"] == pytest.approx(r1["train_loss"], abs=ATOL)
        for d in ("spatial", "mean_pool", "style"):
            assert r2["ps"][d] == pytest.approx(r1["ps"][d], abs=ATOL)
    # and training moved the weights far more than the tolerance
    init = torch.load(tmp_path / "one" / "ckpt" / "step-0000000.pt", weights_only=True)
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 100 * ATOL


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 15}, "batch_size 15 .*does not divide among 2 processes.*multiple of 2"),
    ({"sync_bn": True}, "sync_bn needs CUDA"),
])
def test_launch_errors_are_clear_and_come_before_any_process_group(tmp_path, monkeypatch, overrides, message):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(LossnetError, match=message):
        C.train_classifier("kumar_resnet2_w0.125", "mini", "builtin",
                           RunOptions(out_dir=tmp_path / "r", device="cpu", progress=False), overrides)
    assert not torch.distributed.is_initialized() and not (tmp_path / "r").exists()


if __name__ == "__main__":  # a rank of _launch's torchrun
    _rank(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
