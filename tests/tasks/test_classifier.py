"""Classifier training: schedules equal their formulas, the optimiser gets the configured weight
decay and the loss the label smoothing, evaluation steps, the low-pass filter, and a short run
whose checkpoints load as loss networks."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from lossnet.data.imagenet64 import ImageArrays
from lossnet.errors import LossnetError
from lossnet.tasks import classifier as T
from lossnet.tasks.classifier_eval import lowpass_mask, lowpass_square
from lossnet.tasks.classifier_schedules import (
    evaluation_steps,
    learning_rate,
    make_optimizer,
    parameter_groups,
)
from lossnet.tasks.config import ConfigMismatchError
from lossnet.tasks.run import RunOptions


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------
# Schedules, step by step


def test_step_schedule_matches_its_formula():
    T_, base = 90, 0.1
    got = [learning_rate(s, base, T_, "step") for s in range(T_)]
    want = [base * (1.0 if s < 30 else 0.1 if s < 60 else 0.01 if s < 80 else 0.001) for s in range(T_)]
    assert got == pytest.approx(want, rel=1e-12)


def test_exponential_schedule_with_warmup_matches_its_formula():
    base, W, every = 0.128, 5, 3
    got = [learning_rate(s, base, 40, "exponential", warmup_steps=W, rate=0.97, every=every) for s in range(40)]
    want = [base * min(1.0, (s + 1) / W) * 0.97 ** (s // every) for s in range(40)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(base / 5) and got[4] == pytest.approx(base * 0.97)


def test_cosine_schedule_with_warmup_matches_its_formula():
    base, T_, W = 3e-3, 50, 10
    got = [learning_rate(s, base, T_, "cosine", warmup_steps=W) for s in range(T_)]
    want = [base * (s + 1) / W if s < W else base * 0.5 * (1 + math.cos(math.pi * (s - W) / (T_ - W)))
            for s in range(T_)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[W - 1] == pytest.approx(base) and got[-1] < base * 0.01


def test_bad_schedules_are_clear_errors():
    cfg = T.ClassifierConfig.for_arch("mini", "kumar_resnet6")
    with pytest.raises(LossnetError, match="schedule"):
        cfg.with_overrides({"schedule": "linear"}).check()
    with pytest.raises(LossnetError, match="warmup_steps"):
        cfg.with_overrides({"warmup_steps": 500}).check()
    with pytest.raises(LossnetError, match="fractions"):
        cfg.with_overrides({"step_boundaries": "[30, 60]"}).check()


def test_evaluation_steps_are_dense_early():
    steps = evaluation_steps(112_590, 20)
    assert steps[0] == 0 and steps[-1] == 112_590
    gaps = np.diff(steps[1:])
    assert np.all(gaps[1:] >= gaps[:-1])  # sparser and sparser
    assert sum(s <= 112_590 // 10 for s in steps) > len(steps) / 2  # most of them in the first tenth
    assert evaluation_steps(100, 3, explicit=[5, 1]) == [1, 5, 100]


def test_presets_follow_appendix_m():
    r = T.ClassifierConfig.for_arch("paper", "kumar_resnet50")
    assert (r.batch_size, r.lr, r.train_steps, r.optimizer, r.momentum, r.weight_decay, r.label_smoothing,
            r.schedule, r.bn_momentum) == (1024, 0.1, 112_590, "sgd", 0.9, 1e-4, 0.0, "step", 0.9)
    e = T.ClassifierConfig.for_arch("paper", "kumar_efficientnet_b0")
    assert (e.batch_size, e.lr, e.train_steps, e.optimizer, e.weight_decay, e.label_smoothing, e.schedule,
            e.ema_decay) == (2048, 0.128, 218_949, "rmsprop", 1e-5, 0.1, "exponential", 0.9999)
    v = T.ClassifierConfig.for_arch("paper", "kumar_vit_b8")
    assert (v.batch_size, v.lr, v.warmup_steps, v.schedule, v.train_steps, v.weight_decay, v.dropout,
            v.label_smoothing, v.beta1, v.beta2) == (4096, 3e-3, 10_000, "cosine", 93_834, 0.3, 0.1, 0.1, 0.9, 0.999)
    assert T.paper_config("kumar_vit_l4") == "kumar-vit-l4"
    with pytest.raises(LossnetError, match="kumar-resnet"):
        T.ClassifierConfig.for_arch("kumar-resnets", "kumar_resnet6")


# ------------------------------------------------------------------------------------------
# The optimiser and the loss


def test_weight_decay_goes_to_weights_only_and_acts_as_configured():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.rand(1, 3, 5, 5))
    decay, no_decay = parameter_groups(net, 1e-2)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert decay["weight_decay"] == 1e-2 and no_decay["weight_decay"] == 0.0
    assert len(parameter_groups(net, 1e-2, decay_norm_and_bias=True)) == 1
    # with a zero gradient one update shrinks the weights by exactly lr * wd (SGD's L2 and AdamW's decoupled
    # decay), and leaves biases and BN parameters alone
    for name in ("sgd", "adamw"):
        w0 = net[0].weight.detach().clone()
        b0 = net[0].bias.detach().clone()
        opt = make_optimizer(name, parameter_groups(net, 1e-2), lr=0.5)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        assert torch.allclose(net[0].weight, w0 * (1 - 0.5 * 1e-2), atol=1e-7)
        assert torch.equal(net[0].bias, b0)


def test_label_smoothing_reaches_the_loss():
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    logp = torch.log_softmax(logits, 1)
    eps = 0.1
    manual = ((1 - eps) * -logp[torch.arange(6), labels] + eps * -logp.mean(1)).mean()
    assert T.classification_loss(logits, labels, eps).item() == pytest.approx(manual.item(), rel=1e-6)
    cfg = T.ClassifierConfig.for_arch("mini", "kumar_resnet6", label_smoothing=0.3, crop="none", flip=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    batch = {"images": torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), "labels": labels,
             "seeds": torch.arange(6)}
    loss = T.make_step_fn(cfg, (0.5,) * 3, (0.25,) * 3, False)(model, batch)
    x = (batch["images"].float() / 255 - 0.5) / 0.25
    assert loss.item() == pytest.approx(T.classification_loss(model(x), labels, 0.3).item(), rel=1e-6)


# ------------------------------------------------------------------------------------------
# Spatial-frequency sensitivity


@pytest.mark.parametrize("n, r", [(16, 5), (16, 1), (15, 7), (16, 16)])
def test_lowpass_keeps_exactly_the_centred_square_of_odd_side(n, r):
    x = torch.rand(2, 3, n, n, dtype=torch.float64)
    y = lowpass_square(x, r)
    fx = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    fy = torch.fft.fftshift(torch.fft.fft2(y), dim=(-2, -1))
    c, h = n // 2, r // 2
    inside = torch.zeros(n, n, dtype=torch.bool)
    inside[c - h:c - h + r, c - h:c - h + r] = True
    assert torch.equal(lowpass_mask(n, r), inside)
    if r % 2 or r == n:  # a symmetric square: the real filtered image has exactly this spectrum
        assert torch.allclose(fy[..., inside], fx[..., inside], atol=1e-9)
        assert torch.allclose(fy[..., ~inside], torch.zeros(1, dtype=fy.dtype), atol=1e-9)
    if r == 1:
        assert torch.allclose(y, x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-12)


def test_lowpass_even_side_stays_inside_the_square_and_its_mirror():
    n, r = 16, 6
    y = lowpass_square(torch.rand(1, 1, n, n, dtype=torch.float64), r)
    fy = torch.fft.fftshift(torch.fft.fft2(y), dim=(-2, -1))[0, 0]
    mask = lowpass_mask(n, r)
    mirror = torch.roll(mask.flip(0).flip(1), shifts=(1, 1), dims=(0, 1))  # k -> -k in fftshift order
    assert torch.allclose(fy[~(mask | mirror)], torch.zeros(1, dtype=fy.dtype), atol=1e-9)
    with pytest.raises(LossnetError, match="1..16"):
        lowpass_mask(16, 17)


# ------------------------------------------------------------------------------------------
# A short run on generated arrays


def toy_arrays(n_train: int = 48, n_val: int = 16, classes: int = 3, seed: int = 0) -> tuple[ImageArrays, ImageArrays]:
    """Images whose class is their dominant colour channel (learnable in a few steps)."""
    rng = np.random.default_rng(seed)

    def make(n: int, name: str) -> ImageArrays:
        labels = np.arange(n) % classes
        images = rng.integers(0, 90, (n, 3, 64, 64), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, c] += 150
        return ImageArrays(images, labels, classes, name)

    return make(n_train, "toy train"), make(n_val, "toy val")


TINY = {"train_steps": 12, "batch_size": 16, "lr": 0.05, "eval_points": 2, "eval_first": 4, "checkpoint_every": 3,
        "ps_data": "none", "schedule": "cosine", "warmup_steps": 3}


def test_short_run_records_lr_applied_and_optimizer_state(tmp_path):
    out = tmp_path / "run"
    result = T.train_classifier("kumar_resnet2_w0.125", "mini", toy_arrays(), RunOptions(out_dir=out, device="cpu",
                                progress=False), {**TINY, "eval_steps": list(range(1, 13)), "weight_decay": 3e-3})
    rows = result["evaluations"]
    assert [r["step"] for r in rows] == list(range(1, 13))
    want = [learning_rate(s - 1, 0.05, 12, "cosine", warmup_steps=3) for s in range(1, 13)]
    assert [r["lr"] for r in rows] == pytest.approx(want, rel=1e-12)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    wds = sorted(g["weight_decay"] for g in state["optimizer"]["param_groups"])
    assert wds == [0.0, 3e-3]
    assert result["arch"] == "kumar_resnet2_w0.125_c3"  # classes taken from the data
    assert all((out / "ckpt" / f"step-{s:07d}.pt").is_file() for s in range(1, 13))


def test_unused_fields_and_mismatched_classes_are_errors(tmp_path):
    opts = RunOptions(out_dir=tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(LossnetError, match="train_steps"):
        T.train_classifier("kumar_resnet2", "mini", toy_arrays(), opts, {"epochs": 3})
    with pytest.raises(LossnetError, match="_c5"):
        T.train_classifier("kumar_resnet2_c5", "mini", toy_arrays(), opts, TINY)
    with pytest.raises(LossnetError, match="imagenet64:DIR"):
        T.train_classifier("kumar_resnet2", "mini", "/some/folder", opts, TINY)


def test_crash_then_resume_is_bit_identical(tmp_path, monkeypatch):
    opts = lambda out: RunOptions(out_dir=out, device="cpu", progress=False, seed=2)  # noqa: E731
    data = toy_arrays()
    overrides = {**TINY, "ema_decay": 0.9, "crop": "resized"}  # EMA state and seeded crops must survive too
    ref = T.train_classifier("kumar_resnet3_w0.125", "mini", data, opts(tmp_path / "a"), overrides)

    calls = {"n": 0}
    original = T.ClassifierTrainer._train_step

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == 8:  # after the step-6 checkpoint
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(T.ClassifierTrainer, "_train_step", crashing)
    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("kumar_resnet3_w0.125", "mini", data, opts(tmp_path / "b"), overrides)
    monkeypatch.setattr(T.ClassifierTrainer, "_train_step", original)
    again = T.train_classifier("kumar_resnet3_w0.125", "mini", data, opts(tmp_path / "b"), overrides)
    assert again["train"]["resumed_from_step"] == 6
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "checkpoint")} for r in rows]  # noqa
    assert strip(again["evaluations"]) == strip(ref["evaluations"])
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    with pytest.raises(ConfigMismatchError, match="weight_decay"):
        T.train_classifier("kumar_resnet3_w0.125", "mini", data, opts(tmp_path / "b"), {**overrides,
                                                                                        "weight_decay": 0.1})


def test_a_nan_loss_is_a_clear_error_before_anything_is_written(tmp_path):
    # the losses are read in blocks (no device sync per step): a NaN must still stop the run with the
    # step it appeared at, and no checkpoint or evaluation after it may be written
    out = tmp_path / "run"
    with pytest.raises(T.TrainingError, match=r"the loss became nan at step (\d+).*lower the learning rate") as err:
        T.train_classifier("kumar_resnet2_w0.125", "mini", toy_arrays(), RunOptions(out_dir=out, device="cpu",
                           progress=False), {**TINY, "lr": 1e30, "schedule": "constant", "warmup_steps": 0,
                                             "checkpoint_every": 100, "eval_steps": [0, 12]})
    bad_step = int(re.search(r"step (\d+)", str(err.value)).group(1))
    assert 1 <= bad_step <= 12
    assert not (out / "metrics.json").exists() and not (out / "evals" / "step-0000012.json").exists()
    if (out / "checkpoint.pt").exists():  # only an epoch-end checkpoint before the NaN step, with finite weights
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["step"] < bad_step
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    if bad_step > 1:  # the steps before it were finite: the same run stopped just before trains cleanly
        ok = T.train_classifier("kumar_resnet2_w0.125", "mini", toy_arrays(), RunOptions(
            out_dir=tmp_path / "ok", device="cpu", progress=False), {**TINY, "lr": 1e30, "schedule": "constant",
            "warmup_steps": 0, "checkpoint_every": 100, "eval_steps": [0], "train_steps": bad_step - 1})
        assert math.isfinite(ok["train"]["last_loss"])
