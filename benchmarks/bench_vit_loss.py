#!/usr/bin/env python
"""A DINO-style ViT as a loss: lossnet's preset against a plain timm forward on the same input.

Run from the repo root::

    python benchmarks/bench_vit_loss.py              # 224x224, batch 8, 5 repeats; writes benchmarks/results/vit_loss.{json,md}
    python benchmarks/bench_vit_loss.py --repeats 1 --batch 2 --no-write   # a smoke run

Setting: ``torch.set_num_threads(2)`` on the CPU (or ``--device cuda``), batch 8 of real
scikit-image photos at 224x224 in [0, 1], targets = photos + 0.08 noise, float32. lossnet:
the preset ``dino-vitb16-cls-cosine`` (timm ``vit_base_patch16_224``, the class token after
the final norm, 1 - cosine similarity) with ``weights="random"`` (seed 0). Peer: timm's
``create_model("vit_base_patch16_224.dino", pretrained=False)`` under the same seed (the
same tensors: checked), the input normalised with the pretrained config's mean/std, then
``1 - F.cosine_similarity(model.forward_features(x)[:, 0], model.forward_features(y)[:, 0])``.
Nothing is downloaded. Values are checked to agree (1e-5) before and during timing.

- ``forward``: both under ``torch.no_grad()``; both run ONE forward pass over the 2B images
  (``torch.cat([x, y])``), as lossnet does when nothing needs a gradient.
- ``forward+backward``: the input requires grad, the target does not (its pass runs under
  ``no_grad`` in both); batch mean ``.backward()``.

lossnet's path includes what it always does: input checks (shape, range, NaN), the
normalisation, and the traced network cut at the extraction point. Each mode: one warm-up call
per side on a batch of 2, then ``repeats`` timed calls interleaved (order alternating every
repeat). Reported: medians and **lossnet / timm** ratios (goal <= 1.05), also per-repeat
("paired") and of the fastest calls, which are less sensitive to load on a shared machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    machine_markdown,
    markdown_table,
    paired_ratios,
    set_threads,
    time_interleaved,
    write_results,
)

PRESET = "dino-vitb16-cls-cosine"
TIMM_MODEL = "vit_base_patch16_224.dino"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
RTOL = 1e-5
ATOL = 1e-5
MODES = ("forward", "forward+backward")
GOAL = 1.05


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {load_average()}"


def make_pair(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` real photos (the four scikit-image photos and their mirror images), and noisy targets."""
    from skimage import data

    images = []
    for name in PHOTOS:
        t = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1).float() / 255
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True)[0]
        images += [t, t.flip(-1)]
    x = torch.stack([images[i % len(images)] for i in range(batch)]).clamp(0, 1)
    g = torch.Generator().manual_seed(0)
    return x, (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)


class TimmCosine(torch.nn.Module):
    """The peer: a plain timm ViT, its pretrained config's normalisation, CLS cosine distance."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        import timm

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = timm.create_model(TIMM_MODEL, pretrained=False).eval().requires_grad_(False)
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features((x - self.mean) / self.std)[:, 0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)):
            e = self.embed(torch.cat([x, y]))
            e0, e1 = e[: x.shape[0]], e[x.shape[0]:]
        else:
            e0 = self.embed(x)
            with torch.no_grad():
                e1 = self.embed(y)
        return 1 - F.cosine_similarity(e0, e1, dim=1)


def build(device: torch.device):
    """(lossnet's preset metric, the timm peer), with the same seeded random weights (checked)."""
    from lossnet.loss import create_metric, describe_metric

    ours = create_metric(PRESET, weights="random", seed=0, reduction="none")
    peer = TimmCosine(seed=0)
    theirs = peer.model.state_dict()
    mine = ours.net.body.state_dict()
    for key, tensor in mine.items():
        if not torch.equal(tensor, theirs[key]):
            raise SystemExit(f"the two models differ at {key}: the benchmark compares different networks")
    return ours.to(device), peer.to(device), describe_metric(ours), ours.net.resize_policy


def timed_calls(ours, peer, x, y, mode: str, sync):
    def run(fn):
        if mode == "forward":
            def call():
                with torch.no_grad():
                    out = fn(x, y)
                sync()
                return out
        else:
            def call():
                xg = x.clone().requires_grad_(True)
                loss = fn(xg, y).mean()
                loss.backward()
                sync()
                return loss.detach()
        return call

    return {"lossnet": run(ours), "timm": run(peer)}


def markdown_report(result: dict) -> str:
    s = result["settings"]
    rows = []
    for r in result["results"]:
        rows.append([r["mode"], f"{r['lossnet']['median_s']:.3f}", f"{r['peer']['median_s']:.3f}",
                     f"**{r['ratio']:.3f}**", f"{r['ratio_paired']['median']:.3f}", f"{r['ratio_of_mins']:.3f}",
                     f"{r['ratio_cpu']:.3f}", "yes" if r["ratio_paired"]["median"] <= GOAL else "no", r["repeats"],
                     f"{r['max_abs_err']:.1e}"])
    table = markdown_table(["mode", "lossnet median (s)", "timm median (s)", "lossnet / timm", "paired", "of mins",
                            "cpu time", f"<= {GOAL}", "repeats", "value abs err"], rows)
    return f"""# A DINO-style ViT as a loss: lossnet vs a plain timm forward

Generated by `python benchmarks/bench_vit_loss.py{s['argv']}` on {result['machine']['date_utc']} in
{result['total_runtime_s']:.0f} s. **lossnet / timm** = lossnet median time / timm median time (wall clock;
goal <= {GOAL}). "paired": median of the per-repeat ratios (the two calls of a repeat run back to back); "of
mins": ratio of the fastest calls; "cpu time": ratio of this process's CPU seconds. Load at start
`{result['uptime_at_start']}`, at end `{result['uptime_at_end']}`.

{table}

Settings: {s['device']}, {s['threads']} torch threads, batch {s['batch']} real photos at {s['size']}x{s['size']}
(target = photo + 0.08 noise), float32. lossnet: preset `{PRESET}` (weights random, seed 0; points
{s['points']}, resize policy `{s['resize_policy']}`); timm: `{TIMM_MODEL}` (pretrained=False, the same seeded
tensors, checked), mean/std of its pretrained_cfg, `forward_features(x)[:, 0]`, `1 - cosine_similarity`.
Values agree (rtol {s['rtol']}, atol {s['atol']}) before and during timing. `forward` = `torch.no_grad()`, one
pass over both batches concatenated in both; `forward+backward` = input requires grad, target does not
(its pass without a graph in both), batch mean backward. One warm-up call per side on batch 2, then
{s['repeats']} interleaved repeats (alternating order).

## Machine

{machine_markdown(result['machine'])}
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="vit_loss", help="results file name (default vit_loss)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t_start = time.perf_counter()
    up_start = uptime()
    info = machine_info()
    ours, peer, described, policy = build(device)
    x, y = make_pair(args.batch, args.size)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        expected, got = peer(x, y), ours(x, y)
    if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        raise SystemExit(f"values disagree: lossnet {got.tolist()} vs timm {expected.tolist()}")
    print(f"values agree (max abs err {float((got - expected).abs().max()):.1e}); {up_start}", flush=True)

    results = []
    for mode in MODES:
        fns = timed_calls(ours, peer, x, y, mode, sync)
        warm = timed_calls(ours, peer, x[:2], y[:2], mode, sync)
        t = time_interleaved(fns, warmup=1, repeats=args.repeats, warmup_fns=warm)
        a, b = t["lossnet"], t["timm"]
        err = float((a["last"] - b["last"]).abs().max())
        if not torch.allclose(a["last"], b["last"], rtol=RTOL, atol=ATOL):
            raise SystemExit(f"{mode}: values disagree during timing (abs err {err:.1e})")
        cell = {"mode": mode, "repeats": args.repeats, "max_abs_err": err,
                "lossnet": {k: v for k, v in a.items() if k != "last"},
                "peer": {k: v for k, v in b.items() if k != "last"},
                "ratio": a["median_s"] / b["median_s"], "ratio_of_mins": a["min_s"] / b["min_s"],
                "ratio_paired": paired_ratios(a["times_s"], b["times_s"]),
                "ratio_cpu": a["cpu_median_s"] / b["cpu_median_s"], "load_average": load_average()}
        results.append(cell)
        print(f"[{time.perf_counter() - t_start:5.0f}s] {mode:<16} lossnet {a['median_s']:7.3f}s  timm "
              f"{b['median_s']:7.3f}s  lossnet/timm {cell['ratio']:.3f} (paired {cell['ratio_paired']['median']:.3f}, "
              f"mins {cell['ratio_of_mins']:.3f}, cpu {cell['ratio_cpu']:.3f})", flush=True)

    result = {
        "benchmark": "bench_vit_loss",
        "settings": {"batch": args.batch, "size": args.size, "threads": args.threads, "device": str(device),
                     "dtype": "float32", "repeats": args.repeats, "rtol": RTOL, "atol": ATOL, "photos": list(PHOTOS),
                     "preset": PRESET, "timm_model": TIMM_MODEL, "points": described["points"],
                     "resize_policy": policy, "goal": GOAL,
                     "argv": "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))},
        "metric": described, "machine": info, "uptime_at_start": up_start, "uptime_at_end": uptime(),
        "results": results, "total_runtime_s": time.perf_counter() - t_start,
    }
    if not args.no_write:
        j, m = write_results(args.name, result, markdown_report(result), args.out_dir)
        print(f"wrote {j} and {m}")
    return result


if __name__ == "__main__":
    main()
