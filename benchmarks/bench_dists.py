#!/usr/bin/env python
"""lossnet's DISTS against the reference ``DISTS_pytorch`` package: forward and forward+backward.

Run from the repo root::

    python benchmarks/bench_dists.py              # 256x256, batch 8, 3 repeats; writes benchmarks/results/dists.{json,md}
    python benchmarks/bench_dists.py --repeats 1  # a smoke run (same output files)

Setting: ``torch.set_num_threads(2)`` on the CPU (or ``--device cuda``), batch 8 of real
scikit-image photos at 256x256 in [0, 1], targets = photos + 0.08 noise. Both libraries get
the SAME seeded random VGG-16 trunk (``lossnet.networks.dists_vgg.dists_vgg16(weights="random",
seed=0)``; the reference's torchvision builder is replaced by a VGG-16 holding those tensors)
and DISTS_pytorch's shipped alpha/beta; nothing is downloaded. Values are checked to agree
(1e-5) before timing.

- ``forward``: ``lossnet.loss.dists.dists(reduction="none")(x, y)`` under ``torch.no_grad()``
  vs ``DISTS_pytorch.DISTS()(x, y)`` (its default ``require_grad=False``).
- ``forward+backward``: the input requires grad, the target does not; lossnet's batch mean
  ``.backward()`` vs ``DISTS()(x, y, require_grad=True, batch_average=True).backward()``.

Each mode: one warm-up call per library on a batch of 2, then ``repeats`` timed calls with
the two libraries interleaved (order alternating every repeat). Reported: medians and
peer / lossnet ratios (> 1: lossnet is faster), also per-repeat ("paired") and of the
fastest calls, which are less sensitive to load from other processes on a shared machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
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

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
RTOL = 1e-5
ATOL = 1e-6
MODES = ("forward", "forward+backward")


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
        t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True)[0]
        images += [t, t.flip(-1)]
    x = torch.stack([images[i % len(images)] for i in range(batch)]).clamp(0, 1)
    g = torch.Generator().manual_seed(0)
    return x, (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def build(device: torch.device):
    """(lossnet's DISTS, the reference DISTS) with one seeded random trunk."""
    import DISTS_pytorch.DISTS_pt as ref_module
    import torchvision

    from lossnet.loss.dists import dists
    from lossnet.networks.dists_vgg import dists_vgg16

    ours = dists(weights="random", seed=0, reduction="none")
    features = {k[len("features."):]: v.detach().clone() for k, v in dists_vgg16(weights="random", seed=0)
                .state_dict().items()}
    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
    vgg.features[:30].load_state_dict(features, strict=True, assign=True)
    original = ref_module.models
    ref_module.models = types.SimpleNamespace(vgg16=lambda pretrained=True: vgg)
    try:
        reference = ref_module.DISTS().eval()
    finally:
        ref_module.models = original
    return ours.to(device), reference.to(device)


def timed_calls(ours, reference, x, y, mode: str, sync):
    if mode == "forward":
        def run_ours():
            with torch.no_grad():
                out = ours(x, y)
            sync()
            return out

        def run_ref():
            out = reference(x, y).detach()  # alpha and beta are parameters: the score carries a graph
            sync()
            return out
    else:
        def run_ours():
            xg = x.clone().requires_grad_(True)
            loss = ours(xg, y).mean()
            loss.backward()
            sync()
            return loss.detach()

        def run_ref():
            xg = x.clone().requires_grad_(True)
            loss = reference(xg, y, require_grad=True, batch_average=True)
            loss.backward()
            sync()
            return loss.detach()
    return {"lossnet": run_ours, "DISTS_pytorch": run_ref}


def markdown_report(result: dict) -> str:
    s = result["settings"]
    rows = []
    for r in result["results"]:
        rows.append([r["mode"], f"{r['lossnet']['median_s']:.3f}", f"{r['peer']['median_s']:.3f}",
                     f"**{r['ratio']:.2f}**", f"{r['ratio_paired']['median']:.2f}", f"{r['ratio_of_mins']:.2f}",
                     f"{r['ratio_cpu']:.2f}", r["repeats"], f"{r['max_rel_err']:.1e}"])
    table = markdown_table(["mode", "lossnet median (s)", "DISTS_pytorch median (s)", "peer / lossnet", "paired",
                            "of mins", "cpu time", "repeats", "value rel err"], rows)
    return f"""# DISTS: lossnet vs DISTS_pytorch 0.1

Generated by `python benchmarks/bench_dists.py` on {result['machine']['date_utc']} in
{result['total_runtime_s']:.0f} s. **peer / lossnet** = DISTS_pytorch median time / lossnet median time
(wall clock; > 1 means lossnet is faster). "paired": median of the per-repeat ratios (the two calls of a
repeat run back to back); "of mins": ratio of the fastest calls; "cpu time": ratio of this process's CPU
seconds. This is a shared machine: load at start `{result['uptime_at_start']}`, at end
`{result['uptime_at_end']}`.

{table}

Settings: {s['device']}, {s['threads']} torch threads, batch {s['batch']} real photos at {s['size']}x{s['size']}
(target = photo + 0.08 noise), float32, the same seeded random VGG-16 trunk and DISTS_pytorch's alpha/beta
in both; values agree (rtol {s['rtol']}, atol {s['atol']}) before and during timing. One warm-up call per library on batch 2, then
{s['repeats']} interleaved repeats (alternating order). `forward` = `torch.no_grad()` (the reference's default
`require_grad=False`); `forward+backward` = input requires grad, target does not, batch mean backward
(reference: `require_grad=True, batch_average=True`).

## Machine

{machine_markdown(result['machine'])}
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="dists", help="results file name (default dists)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t_start = time.perf_counter()
    up_start = uptime()
    info = machine_info()
    ours, reference = build(device)
    x, y = make_pair(args.batch, args.size)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        expected, got = reference(x, y), ours(x, y)
    expected = expected.detach()
    max_rel = float(((got - expected).abs() / expected.abs()).max())
    if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        raise SystemExit(f"values disagree: lossnet {got.tolist()} vs DISTS_pytorch {expected.tolist()}")
    print(f"values agree (max rel err {max_rel:.1e}); {up_start}", flush=True)

    results = []
    for mode in MODES:
        fns = timed_calls(ours, reference, x, y, mode, sync)
        warm = timed_calls(ours, reference, x[:2], y[:2], mode, sync)
        t = time_interleaved(fns, warmup=1, repeats=args.repeats, warmup_fns=warm)
        a, b = t["lossnet"], t["DISTS_pytorch"]
        rel = float(((a["last"] - b["last"]).abs() / b["last"].abs()).max())
        if not torch.allclose(a["last"], b["last"], rtol=RTOL, atol=ATOL):
            raise SystemExit(f"{mode}: values disagree during timing (rel err {rel:.1e})")
        cell = {"mode": mode, "repeats": args.repeats, "max_rel_err": rel,
                "lossnet": {k: v for k, v in a.items() if k != "last"},
                "peer": {k: v for k, v in b.items() if k != "last"},
                "ratio": b["median_s"] / a["median_s"], "ratio_of_mins": b["min_s"] / a["min_s"],
                "ratio_paired": paired_ratios(b["times_s"], a["times_s"]),
                "ratio_cpu": b["cpu_median_s"] / a["cpu_median_s"], "load_average": load_average()}
        results.append(cell)
        print(f"[{time.perf_counter() - t_start:5.0f}s] {mode:<16} lossnet {a['median_s']:7.3f}s  DISTS_pytorch "
              f"{b['median_s']:7.3f}s  ratio {cell['ratio']:.2f} (paired {cell['ratio_paired']['median']:.2f}, "
              f"mins {cell['ratio_of_mins']:.2f}, cpu {cell['ratio_cpu']:.2f})", flush=True)

    result = {
        "benchmark": "bench_dists",
        "settings": {"batch": args.batch, "size": args.size, "threads": args.threads, "device": str(device),
                     "dtype": "float32", "repeats": args.repeats, "rtol": RTOL, "atol": ATOL, "photos": list(PHOTOS),
                     "weights": "dists_vgg16(weights='random', seed=0) in both; DISTS_pytorch's alpha/beta"},
        "machine": info, "uptime_at_start": up_start, "uptime_at_end": uptime(),
        "results": results, "total_runtime_s": time.perf_counter() - t_start,
    }
    if not args.no_write:
        j, m = write_results(args.name, result, markdown_report(result), args.out_dir)
        print(f"wrote {j} and {m}")
    return result


if __name__ == "__main__":
    main()
