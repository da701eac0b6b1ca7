#!/usr/bin/env python
"""Training-step cost of a perceptual loss in the downstream tasks, and lossnet against piq.

Run from the repo root::

    python benchmarks/bench_tasks.py            # writes benchmarks/results/tasks.{json,md}
    python benchmarks/bench_tasks.py --quick    # fewer repeats (a smoke run; same output files)

Setting: CPU, ONE torch thread by default (``--threads N`` to change it), nothing downloaded. The
task networks are tiny: on a shared 2-core machine, two OpenMP threads gain little when idle and
slow down 10-30x whenever another process runs, which made 2-thread step times unrepeatable.

1. Training step, perceptual vs pixel loss. One full optimizer step (forward, backward, Adam)
   of each task's ``mini`` network on a ``mini``-sized batch: super-resolution (x4, batch 8 of
   64x64 HR crops), segmentation (iterative U-Net, 2 iterations, batch 8 of 48x48 crops) and
   the autoencoder (batch 32 of 32x32 digits). Losses: the pixel MSE (``l2``), and MSE at one
   point of EfficientNet-Lite0 (real ImageNet weights, ``blocks.0``) and of VGG-16 (random
   weights, ``features.8`` = relu2_2, the study's best family). Reported: step times and the
   ratio perceptual / pixel (the price of the perceptual loss).
2. Feature loss, lossnet vs piq. ``PerceptualLoss("vgg16", layers=["features.8"],
   distance="mse", input_norm="imagenet")`` against ``piq.ContentLoss`` at ``relu2_2`` with
   the SAME random VGG-16 (its ``features`` module passed as ``feature_extractor``: piq would
   otherwise download ImageNet weights in its constructor), forward + backward of a batch of
   4 images of 128x128. piq runs the whole ``features`` stack (to pool5) unless handed a
   truncated one, so it is timed both ways. piq averages over H, W and sums over channels, so
   its value is C = 128 times lossnet's mean: checked to 1e-4 before timing.

Timings are interleaved (alternating order each repeat) after warm-up; ratios are medians of
per-repeat ratios (robust to load from other processes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import torch  # noqa: E402
import common as bench  # noqa: E402

from lossnet import PerceptualLoss, load_model  # noqa: E402
from lossnet.tasks.autoencoding import ConvVAE, vae_step  # noqa: E402
from lossnet.tasks.config import LossConfig
from lossnet.tasks.segmentation import IterativeUNet, seg_step  # noqa: E402
from lossnet.tasks.superres import TransformNet, sr_step  # noqa: E402

THREADS = 1
LOSSES = {
    "pixel l2": dict(net=None, distance="l2"),
    "efficientnet_lite0 blocks.0 (ImageNet)": dict(net="efficientnet_lite0", layers=["blocks.0"], weights="imagenet"),
    "vgg16 features.8 (random)": dict(net="vgg16", layers=["features.8"], weights="random"),
}


def _tasks(g: torch.Generator) -> dict[str, tuple]:
    """(model factory, step factory(loss), batch) of each task at its mini size."""
    hr = torch.rand(8, 3, 64, 64, generator=g)
    img, mask = torch.rand(8, 3, 48, 48, generator=g), (torch.rand(8, 1, 48, 48, generator=g) > 0.9).float()
    digits = torch.rand(32, 3, 32, 32, generator=g)
    return {
        "superres x4 (8 x 64x64)": (lambda: TransformNet(4, 24, 4, residual=True), lambda l: sr_step(l, 4, 1.0), hr),
        "segmentation (8 x 48x48, K=2)": (lambda: IterativeUNet(8, 3, 2), lambda l: seg_step(l, 0.01, 2),
                                          (img, mask)),
        "autoencoder (32 x 32x32)": (lambda: ConvVAE(32), lambda l: vae_step(l, 0.0), digits),
    }


def _train_step(model: torch.nn.Module, step, opt: torch.optim.Optimizer, batch) -> float:
    loss = step(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def bench_steps(repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    losses = {name: LossConfig(**cfg).build() for name, cfg in LOSSES.items()}
    rows = []
    for task, (make_model, make_step, batch) in _tasks(g).items():
        fns = {}
        for name, loss in losses.items():
            torch.manual_seed(0)
            model = make_model().train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            step = make_step(loss)
            fns[name] = (lambda m=model, s=step, o=opt: _train_step(m, s, o, batch))
        times = bench.time_interleaved(fns, warmup=2, repeats=repeats)
        pixel = times["pixel l2"]
        for name in losses:
            t = times[name]
            rows.append({
                "task": task, "loss": name, "step_ms": 1000 * t["median_s"], "step_ms_min": 1000 * t["min_s"],
                "ratio_vs_pixel": bench.paired_ratios(t["times_s"], pixel["times_s"])["median"],
            })
        print(f"  {task}: " + ", ".join(f"{r['loss']} {r['step_ms']:.1f} ms" for r in rows[-len(losses):]),
              flush=True)
    return rows


def bench_piq(repeats: int) -> dict:
    import piq

    # The same seeded random weights on both sides (the value check below confirms it).
    vgg = load_model("vgg16", weights="random", seed=0)
    ours = PerceptualLoss("vgg16", layers=["features.8"], distance="mse", input_norm="imagenet", weights="random",
                          seed=0)
    full = vgg.features.eval()
    truncated = torch.nn.Sequential(*list(vgg.features.children())[:9]).eval()
    piq_full = piq.ContentLoss(feature_extractor=full, layers=("8",), weights=[1.0], distance="mse")
    piq_cut = piq.ContentLoss(feature_extractor=truncated, layers=("8",), weights=[1.0], distance="mse")

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 128, 128, generator=g)
    y = torch.rand(4, 3, 128, 128, generator=g)
    with torch.no_grad():
        a, b, c = float(ours(x, y)), float(piq_full(x, y)), float(piq_cut(x, y))
    channels = 128
    if abs(b - channels * a) > 1e-4 * abs(b) or abs(c - b) > 1e-4 * abs(b):
        raise SystemExit(f"values disagree: lossnet {a} x {channels} = {channels * a}, piq {b} / {c}")

    def fwd_bwd(fn):
        def call():
            xi = x.clone().requires_grad_(True)
            fn(xi, y).backward()
            return float(xi.grad.abs().sum())
        return call

    times = bench.time_interleaved({"lossnet": fwd_bwd(ours), "piq ContentLoss (full features)": fwd_bwd(piq_full),
                              "piq ContentLoss (truncated)": fwd_bwd(piq_cut)}, warmup=2, repeats=repeats)
    base = times["lossnet"]
    out = {"value_check": {"lossnet_mse": a, "piq": b, "piq_over_lossnet": b / a, "channels": channels},
           "rows": []}
    for name, t in times.items():
        out["rows"].append({"impl": name, "ms": 1000 * t["median_s"], "ms_min": 1000 * t["min_s"],
                            "ratio_vs_lossnet": bench.paired_ratios(t["times_s"], base["times_s"])["median"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch CPU threads (default {THREADS})")
    args = parser.parse_args()
    bench.set_threads(args.threads)
    repeats = 3 if args.quick else 5
    info = bench.machine_info()
    t0 = time.perf_counter()
    print("training steps (perceptual vs pixel loss) ...", flush=True)
    steps = bench_steps(repeats)
    print("feature loss (lossnet vs piq ContentLoss) ...", flush=True)
    piq_res = bench_piq(repeats)
    info["load_average_at_end"] = bench.load_average()
    payload = {"machine": info, "repeats": repeats, "threads": args.threads, "train_steps": steps, "piq": piq_res,
               "seconds": round(time.perf_counter() - t0, 1)}
    md = ["# Downstream tasks: cost of the perceptual loss, and lossnet vs piq", "",
          f"CPU, {args.threads} thread{'s' if args.threads != 1 else ''}, medians of {repeats} interleaved repeats after 2 warm-ups. "
          "Ratios are medians of per-repeat ratios.", "",
          "## One training step (forward + backward + Adam), mini sizes", "",
          bench.markdown_table(["task", "loss", "step (ms)", "x pixel loss"],
                         [[r["task"], r["loss"], f"{r['step_ms']:.1f}", f"{r['ratio_vs_pixel']:.2f}"] for r in steps]),
          "", "## Feature MSE at vgg16 relu2_2 (features.8), forward + backward, 4 x 128x128", "",
          bench.markdown_table(["implementation", "ms", "x lossnet"],
                         [[r["impl"], f"{r['ms']:.1f}", f"{r['ratio_vs_lossnet']:.2f}"] for r in piq_res["rows"]]),
          "", f"Values agree: piq / lossnet = {piq_res['value_check']['piq_over_lossnet']:.4f} "
              f"(= C = {piq_res['value_check']['channels']}: piq sums over channels, lossnet averages).", "",
          "## Machine", "", bench.machine_markdown(info)]
    json_path, md_path = bench.write_results("tasks", payload, "\n".join(md))
    print(f"wrote {json_path} and {md_path} ({payload['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
