"""One-pass 2AFC scoring: the engine on the distance records (this tree) against the engine it
replaced (a checkout of commit 414e261, passed as --old-tree), same data, same process layout.

Each measurement is a fresh subprocess (imports excluded from the timing); old and new are
interleaved and repeated, and the ratio old/new of the median seconds is reported (>1: the new
engine is faster). Random vgg16 at the LPIPS points and alexnet at the Pihlgren points, 64x64,
3 distances (spatial, mean_pool, style) from one pass.

    python benchmarks/bench_engine_refactor.py --old-tree /tmp/before --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads({threads})
import lossnet
from lossnet.data import builtin_2afc
try:
    from lossnet.scoring import score_2afc
except ImportError:
    from lossnet.tasks.similarity import score_2afc
sets = {{k: [v[i] for i in range(len(v))] for k, v in builtin_2afc(n_per_subset={n}, seed=0).items()}}
metric = lossnet.PerceptualLoss("{arch}", layers="{layers}", weights="random")
score_2afc(metric, {{k: v[:4] for k, v in sets.items()}}, distances={distances}, bootstrap=0, progress=False)
t = time.perf_counter()
r = score_2afc(metric, sets, distances={distances}, bootstrap=0, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t, "mean": r.mean}}))
"""


def run(tree: Path, arch: str, layers: str, n: int, threads: int) -> dict:
    code = CHILD.format(arch=arch, layers=layers, n=n, threads=threads,
                        distances=["spatial", "mean_pool", "style"])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-tree", required=True, type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=100, help="triplets per built-in subset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine_refactor.md")
    args = ap.parse_args()
    new_tree = Path(__file__).resolve().parents[1]
    load = os.getloadavg()
    rows = []
    for arch, layers in (("vgg16", "lpips"), ("alexnet", "pihlgren")):
        old_s, new_s, means = [], [], {}
        for _ in range(args.repeats):
            o = run(args.old_tree, arch, layers, args.n, args.threads)
            w = run(new_tree, arch, layers, args.n, args.threads)
            old_s.append(o["seconds"])
            new_s.append(w["seconds"])
            means = {"old": o["mean"], "new": w["mean"]}
        rows.append((arch, layers, statistics.median(old_s), statistics.median(new_s), means))
    end_load = os.getloadavg()
    lines = ["# One-pass engine: distance records (new) vs the engine they replaced (old, 414e261)", "",
             f"{3 * args.n} triplets of the built-in set, 64x64, spatial + mean_pool + style from one pass, "
             f"{args.threads} torch threads, {args.repeats} interleaved repeats, fresh process each. "
             f"Load average at start {load[0]:.2f}, at end {end_load[0]:.2f} (2 cores).", "",
             "| network | points | old s (median) | new s (median) | old/new | mean PS old | mean PS new |",
             "|---|---|---|---|---|---|---|"]
    for arch, layers, o, w, m in rows:
        lines.append(f"| {arch} | {layers} | {o:.2f} | {w:.2f} | {o / w:.2f} | {m['old']:.4f} | {m['new']:.4f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
