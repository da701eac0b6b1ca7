"""``lossnet train classifier`` killed with SIGKILL and started again ends bit-identical (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lossnet.data.imagenet64 import load_imagenet64, write_npz_fixture

REPO = Path(__file__).resolve().parents[2]


def _args(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lossnet", "train", "classifier", "--arch", "kumar_resnet3_w0.125",
            "--data", f"imagenet64:{data}", "--config", "mini", "--quiet", "--threads", "1", "--seed", "4",
            "--out", str(out), "--set", "train_steps=16", "--set", "batch_size=8", "--set", "checkpoint_every=2",
            "--set", "eval_points=3", "--set", "eval_first=2", "--set", "ps_data=none", "--set", "lr=0.05"]


def _start(data: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(_args(data, out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def _step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_bit_identical(tmp_path):
    data = tmp_path / "in64"
    write_npz_fixture(data, n_per_file=4, n_val=8, seed=3, labels=[1, 2, 3])
    load_imagenet64(data, "train", progress=False)  # convert once, before the runs
    load_imagenet64(data, "val", progress=False)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(_start(data, straight))
    reference = json.loads((straight / "metrics.json").read_text())
    assert reference["train"]["steps"] == 16

    proc = _start(data, killed)
    deadline, at = time.monotonic() + 240, None
    while time.monotonic() < deadline and at is None:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.communicate()[1].decode()[-2000:]}")
        step = _step(killed / "checkpoint.pt")
        if step is not None and step >= 7:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # the run may write one more checkpoint between the read and the kill
            at = _step(killed / "checkpoint.pt")
        time.sleep(0.005)
    assert at is not None and at < 16 and not (killed / "metrics.json").exists()
    _finish(_start(data, killed))
    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["train"]["resumed_from_step"] == at
    keep = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "checkpoint")} for r in rows]  # noqa
    assert keep(resumed["evaluations"]) == keep(reference["evaluations"])
    assert resumed["train"]["last_loss"] == reference["train"]["last_loss"]
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(killed / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
