#!/usr/bin/env python
"""Peak CPU memory of a training-loss forward+backward: lossnet against lpips.

Run from the repo root::

    python benchmarks/bench_memory.py            # 256 and 512 px: benchmarks/results/memory.{json,md}
    python benchmarks/bench_memory.py --quick    # 128 and 256 px

Setting: vgg16 up to relu5_3 (the LPIPS layers), batch 8, the same random weights in both
libraries (``lossnet.load_model("vgg16", weights="random", seed=0)`` saved to a file, copied into
lpips's slices), inputs in [0, 1], the input requiring grad and the target not:

- ``lossnet``: ``lossnet.lpips("vgg", weights=<file>)`` (LPIPS with its lin weights);
- ``lossnet channels_last``: the same after ``lossnet.loss.fast.accelerate(metric)``;
- ``lpips``: ``lpips.LPIPS(net="vgg", pnet_rand=True)`` with the same trunk, called with ``normalize=True``.

Each measurement runs in a fresh process (``tracemalloc`` does not see torch's CPU tensors): the
model is built, one warm-up forward+backward on a single image of the same size runs, then the
kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``) and the peak (``VmHWM``)
read after one forward+backward of the batch; reported is that peak above the RSS just before
the call (model and inputs excluded). ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc hand every
large tensor straight to mmap and back on free, so RSS follows live memory. The loss values of
the libraries agree (checked, 1e-4 relative).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import common as bench  # noqa: E402

BATCH = 8
CONTENDERS = ("lossnet", "lossnet channels_last", "lpips")


def _status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(contender: str, size: int, weights: str, threads: int) -> dict:
    """One measurement in this (fresh) process."""
    import gc
    import warnings

    import torch

    torch.set_num_threads(threads)
    from bench_similarity import _lpips_reference

    import lossnet
    from lossnet.loss.fast import accelerate

    g = torch.Generator().manual_seed(size)
    x = torch.rand(BATCH, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(BATCH, 3, size, size, generator=g)).clamp(0, 1)
    if contender == "lpips":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _lpips_reference(weights)
        loss_fn = lambda a, b: model(a, b, normalize=True).mean()  # noqa: E731
    else:
        metric = lossnet.lpips("vgg", weights=weights)
        if contender == "lossnet channels_last":
            accelerate(metric)
        loss_fn = metric

    def fwd_bwd(a, b):
        a = a.clone().requires_grad_(True)
        value = loss_fn(a, b)
        value.backward()
        return float(value.detach())

    fwd_bwd(x[:1], y[:1])  # warm-up: one image of the same size (oneDNN primitives, lazy init)
    gc.collect()
    before = _status_mib("VmRSS")
    exact = _reset_peak()
    t0 = time.perf_counter()
    value = fwd_bwd(x, y)
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM")
    return {"contender": contender, "size": size, "batch": BATCH, "rss_before_mib": before, "peak_rss_mib": peak,
            "peak_above_before_mib": peak - before, "peak_counter_reset": exact, "seconds": seconds, "value": value}


def measure(contender: str, size: int, weights: str, threads: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", contender, str(size), weights,
                           str(threads)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {contender} at {size} px failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 and 256 px")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        contender, size, weights, threads = args.child
        print(json.dumps(child(contender, int(size), weights, int(threads))))
        return {}

    import torch

    import lossnet

    sizes = args.sizes or ([128, 256] if args.quick else [256, 512])
    info = bench.machine_info()
    start = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "vgg16_random_seed0.pt")
        torch.save(lossnet.load_model("vgg16", weights="random", seed=0).state_dict(), weights)
        for size in sizes:
            for contender in CONTENDERS:
                run = measure(contender, size, weights, args.threads)
                run["load_average"] = bench.load_average()
                runs.append(run)
                print(f"{size}px {contender:<24} peak {run['peak_above_before_mib']:8.1f} MiB above start "
                      f"({run['seconds']:.1f} s, load {run['load_average']})", flush=True)
    by = {(r["size"], r["contender"]): r for r in runs}
    summary = {}
    for size in sizes:
        lp = by[(size, "lpips")]
        for contender in CONTENDERS[:2]:
            r = by[(size, contender)]
            rel = abs(r["value"] - lp["value"]) / abs(lp["value"])
            if rel > 1e-4:
                raise SystemExit(f"{contender} and lpips disagree at {size} px: {r['value']} vs {lp['value']}")
            r["peak_ratio_vs_lpips"] = r["peak_above_before_mib"] / lp["peak_above_before_mib"]
            summary[f"{size}/{contender}"] = {"peak_ratio_vs_lpips": r["peak_ratio_vs_lpips"],
                                              "value_rel_diff_vs_lpips": rel}
    result = {"benchmark": "bench_memory", "machine": info, "batch": BATCH, "sizes": sizes, "threads": args.threads,
              "runs": runs, "summary": summary, "load_average_at_end": bench.load_average(),
              "seconds": time.perf_counter() - start}
    rows = [[f"{r['size']}x{r['size']}", r["contender"], f"{r['peak_above_before_mib']:.0f}",
             f"{r['peak_rss_mib']:.0f}", f"{r['peak_ratio_vs_lpips']:.3f}" if "peak_ratio_vs_lpips" in r else "",
             f"{r['seconds']:.1f}",
             r["load_average"]] for r in runs]
    md = f"""# Peak memory of a training-loss forward+backward (CPU): lossnet vs lpips

Generated by `python benchmarks/bench_memory.py{' --quick' if args.quick else ''}` on {info['date_utc']} in
{result['seconds']:.0f} s; load average {info['load_average_at_start']} at start, {result['load_average_at_end']} at end
(memory does not depend on load; the seconds do).

vgg16 up to relu5_3 (LPIPS layers and lin weights), batch {BATCH}, {args.threads} threads, float32, one fresh process
per row; the input requires grad, the target does not. "peak above start": the kernel's peak RSS during one
forward+backward (counter reset just before) minus the RSS just before (model and inputs excluded).

{bench.markdown_table(['size', 'contender', 'peak above start (MiB)', 'peak RSS (MiB)', 'ratio to lpips', 'seconds',
                 'load'], rows)}

The loss values of lossnet and lpips agree to {max(v['value_rel_diff_vs_lpips'] for v in summary.values()):.1e} relative.

## Machine

{bench.machine_markdown(info)}
- load_average_at_end: {result['load_average_at_end']}
"""
    kw = {} if args.out_dir is None else {"out_dir": args.out_dir}
    j, m = bench.write_results("memory", result, md, **kw)
    print(md)
    print(f"wrote {j} and {m}")
    return result


if __name__ == "__main__":
    main()
