"""A run killed with SIGKILL and started again ends exactly like an uninterrupted one (CPU)."""
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

from lossnet.data import load_segmentation_data
from lossnet.tasks.config import (
    ConfigMismatchError,
    LossConfig,
    TrainConfig,
    TrainingError,
)
from lossnet.tasks.rundir import RunDir
from lossnet.tasks.segmentation import IterativeUNet, seg_step
from lossnet.tasks.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
# Two epochs of 8 steps, a checkpoint every 3 steps (and at the epoch end), early-stopping
# bookkeeping on a validation split, the VAE's sampling noise from the global RNG.
AE_ARGS = ["train", "autoencoder", "--data", "builtin", "--net", "efficientnet_lite0", "--layers", "blocks.0",
           "--quiet", "--threads", "1", "--set", "epochs=2", "--set", "batch_size=32", "--set", "max_train=256",
           "--set", "checkpoint_every=3", "--set", "val_fraction=0.1", "--set", "patience=2",
           "--set", "probe_epochs=2", "--set", "probe_hidden=[[],[16]]"]


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "lossnet", *AE_ARGS, "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def _kill_when(proc: subprocess.Popen, ckpt: Path, min_step: int, timeout: float = 240) -> int:
    """SIGKILL ``proc`` as soon as its checkpoint reaches ``min_step``; returns that step."""
    deadline = time.monotonic() + timeout
    last_mtime = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed:\n{err.decode()[-2000:]}")
        mtime = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if mtime is not None and mtime != last_mtime:
            last_mtime = mtime
            step = _checkpoint_step(ckpt)
            if step is not None and step >= min_step:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return step
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_kill_9_then_resume_gives_identical_metrics(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(_start(straight))
    reference = json.loads((straight / "metrics.json").read_text())
    per_epoch = reference["train"]["steps_per_epoch"]
    assert reference["train"]["steps"] == 2 * per_epoch and reference["train"]["resumed_from_step"] is None

    at = _kill_when(_start(killed), killed / "checkpoint.pt", min_step=per_epoch + 1)  # inside epoch 2
    assert at < 2 * per_epoch and not (killed / "metrics.json").exists()
    _finish(_start(killed))
    resumed = json.loads((killed / "metrics.json").read_text())

    assert resumed["train"]["resumed_from_step"] == at
    assert resumed["metrics"] == reference["metrics"]  # exact: every float identical
    for key in ("epoch_losses", "val_losses", "first_loss", "last_loss", "steps"):
        assert resumed["train"][key] == reference["train"][key]
    ref_model = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    new_model = torch.load(killed / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ref_model[k], new_model[k]) for k in ref_model)


# ------------------------------------------------------------------------------------------
# In-process: a crash mid-epoch (augmented crops, data order) and the config check.

class _Crash(Exception):
    pass


def _seg_trainer(out: Path, crash_at: int | None = None, epochs: int = 2, restart: bool = False):
    torch.manual_seed(0)
    data = load_segmentation_data("builtin", crop=24, n_train=12, n_val=0, n_test=1, tile_size=32)
    cfg = TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, checkpoint_every=2)
    step = seg_step(LossConfig(net=None, distance="l2").build(), 0.01, 2)
    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise _Crash()
        return step(model, batch)

    run = RunDir(out, {"task": "test", "epochs": epochs}, restart=restart)
    return Trainer(IterativeUNet(width=4, depth=2, iterations=2), data.train, crashing, cfg, run, seed=3,
                   progress=False)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_crash_mid_epoch_resumes_to_identical_weights(tmp_path, one_thread):
    ref = _seg_trainer(tmp_path / "a")
    ref_summary = ref.fit()
    with pytest.raises(_Crash):
        _seg_trainer(tmp_path / "b", crash_at=5).fit()  # step 5 of 6: epoch 2, after the step-4 checkpoint
    again = _seg_trainer(tmp_path / "b")
    summary = again.fit()
    assert summary["resumed_from_step"] == 4
    assert summary["epoch_losses"] == ref_summary["epoch_losses"]
    ref_state, state = ref.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)


def test_other_config_in_the_same_folder_is_a_clear_error(tmp_path, one_thread):
    _seg_trainer(tmp_path, epochs=1).fit()
    with pytest.raises(ConfigMismatchError, match=r"epochs: 1 -> 2.*--restart"):
        _seg_trainer(tmp_path, epochs=2)
    restarted = _seg_trainer(tmp_path, epochs=2, restart=True)
    assert restarted.fit()["resumed_from_step"] is None


def test_stale_temporary_files_are_removed_and_a_torn_checkpoint_is_reported(tmp_path):
    run = RunDir(tmp_path, {"a": 1})
    (tmp_path / ".checkpoint.pt.tmp-123").write_bytes(b"half a checkpoint")
    run = RunDir(tmp_path, {"a": 1})
    assert not list(tmp_path.glob(".*.tmp-*"))
    run.checkpoint_path.write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="--restart"):
        run.load_checkpoint()
