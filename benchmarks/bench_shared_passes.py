#!/usr/bin/env python
"""Sweeps share passes: one network at 4 points x 3 distances against one pass of its deepest
point, and the ``mini`` grid shared against unshared (``share=False``, one pass per run).

Run from the repo root::

    python benchmarks/bench_shared_passes.py            # writes benchmarks/results/shared_passes.{json,md}
    python benchmarks/bench_shared_passes.py --quick    # a smoke run (fewer triplets, mini's similarity
                                                        # runs only, one repeat; same output files)

1. vgg16 (random weights, 64x64, the built-in 2AFC set) at the points features.3, .8, .15 and
   .22 (relu1_2 ... relu4_3) x the distances spatial, mean_pool and style: 12 runs. Timed as
   whole in-process sweeps into fresh stores (claiming, recording and bootstrap included):
   the 12 runs shared (ONE pass) and the single run of the deepest point with spatial (one pass
   of the deepest point), interleaved repeats; goal: shared <= 1.3x the single run. Then the 12
   runs unshared (12 passes, today's cost without sharing), timed once: it takes 12x as long and
   its ratio is far from any goal, so one call says enough.
2. The ``mini`` grid (``lossnet/sweeps/specs/mini.toml``, all 13 runs, training included) in-process
   into fresh stores, shared against unshared, interleaved repeats. Its training runs (superres,
   autoencoder) are never grouped and cost the same either way.

Ratios of interleaved repeats are medians of the paired ratios; the single-call ratios are
against the median of the other side.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import common as bench  # noqa: E402

from lossnet.sweeps.runner import run_sweep  # noqa: E402
from lossnet.sweeps.spec import load_spec  # noqa: E402

POINTS = ["features.3", "features.8", "features.15", "features.22"]
DISTANCES = ["spatial", "mean_pool", "style"]


def network_spec(points: list[str], distances: list[str], n_per_subset: int, bootstrap: int) -> dict:
    return {"name": "shared-bench", "threads": 1,
            "grid": {"architectures": ["vgg16"], "weights": ["random"], "points": points, "distances": distances,
                     "tasks": ["similarity"], "seeds": [0]},
            "tasks": {"similarity": {"data": "builtin", "n_per_subset": n_per_subset, "bootstrap": bootstrap,
                                     "batch_size": 50, "size": 64, "device": "cpu"}}}


def mini_spec(similarity_only: bool, overrides: list[str]):
    spec = load_spec("mini", overrides)
    if similarity_only:
        spec = copy.deepcopy(spec)
        spec.grids = [g for g in spec.grids if "similarity" in g.get("tasks", [])]
    return spec


class FreshSweep:
    """A callable that runs ``spec`` into a fresh store each call and checks every run finished."""

    counter = itertools.count()

    def __init__(self, spec, tmp: Path, share: bool, name: str) -> None:
        self.spec, self.tmp, self.share, self.name = spec, tmp, share, name
        self.summary: dict | None = None

    def __call__(self) -> dict:
        db = self.tmp / f"{self.name}-{next(self.counter)}.sqlite"
        summary = run_sweep(self.spec, db, progress=False, share=self.share)
        if summary["finished"] != summary["total"]:
            raise RuntimeError(f"{self.name}: {summary['finished']}/{summary['total']} finished: "
                               f"{summary['failures'][:1]}")
        self.summary = summary
        return {"runs": summary["total"], "passes": summary["ran"]["passes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer triplets, one repeat, "
                        "mini's similarity runs only")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats of part 1's shared "
                        "sweep and single run, and of part 2's two mini sweeps (default 3; quick 1); "
                        "part 1's unshared sweep is always one call")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    n_per_subset = 20 if args.quick else 50
    bootstrap = 200
    info = bench.machine_info()
    results: dict = {"machine": info, "quick": args.quick, "repeats": repeats, "load_average_at_start": bench.load_average(),
                     "network": {}, "mini": {}}
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp_name:
        tmp = Path(tmp_name)
        grid = network_spec(POINTS, DISTANCES, n_per_subset, bootstrap)
        deepest = network_spec([POINTS[-1]], [DISTANCES[0]], n_per_subset, bootstrap)
        fns = {"shared 12 runs": FreshSweep(grid, tmp, True, "grid-shared"),
               "one run (deepest point)": FreshSweep(deepest, tmp, True, "deepest")}
        warm = {k: FreshSweep(network_spec([POINTS[0]], [DISTANCES[0]], 5, 0), tmp, True, f"warm-{i}")
                for i, k in enumerate(fns)}
        timed = bench.time_interleaved(fns, warmup=1, repeats=repeats, warmup_fns=warm)
        print({k: round(v["median_s"], 2) for k, v in timed.items()}, bench.load_average(), flush=True)
        timed["unshared 12 runs"] = bench.time_call(FreshSweep(grid, tmp, False, "grid-alone"), warmup=0, repeats=1)
        one = timed["one run (deepest point)"]["times_s"]
        one_median = [timed["one run (deepest point)"]["median_s"]]
        shared_median = [timed["shared 12 runs"]["median_s"]]
        results["network"] = {
            "arch": "vgg16", "weights": "random", "points": POINTS, "distances": DISTANCES,
            "n_triplets": 3 * n_per_subset, "bootstrap": bootstrap,
            "timings": {k: {kk: vv for kk, vv in v.items() if kk != "last"} | {"plan": v["last"]}
                        for k, v in timed.items()},
            "shared_vs_one_pass": bench.paired_ratios(timed["shared 12 runs"]["times_s"], one),
            "unshared_vs_one_pass": bench.paired_ratios(timed["unshared 12 runs"]["times_s"], one_median),
            "unshared_vs_shared": bench.paired_ratios(timed["unshared 12 runs"]["times_s"], shared_median),
        }
        print({k: results["network"][k] for k in ("shared_vs_one_pass", "unshared_vs_shared")}, flush=True)

        overrides = ["similarity.n_per_subset=20"] if args.quick else []
        mini = mini_spec(args.quick, overrides)
        mfns = {"mini shared": FreshSweep(mini, tmp, True, "mini-shared"),
                "mini unshared": FreshSweep(mini, tmp, False, "mini-alone")}
        # warm-up: one whole call of each, so that first-use costs (loading EfficientNet-Lite0's weights,
        # the digits, imports of the training tasks) land on no timed call
        mtimed = bench.time_interleaved(mfns, warmup=1, repeats=repeats)
        results["mini"] = {
            "similarity_only": args.quick, "overrides": overrides,
            "timings": {k: {kk: vv for kk, vv in v.items() if kk != "last"} | {"plan": v["last"]}
                        for k, v in mtimed.items()},
            "unshared_vs_shared": bench.paired_ratios(mtimed["mini unshared"]["times_s"], mtimed["mini shared"]["times_s"]),
        }
        print(results["mini"]["unshared_vs_shared"], flush=True)
    results["load_average_at_end"] = bench.load_average()

    net = results["network"]
    md = ["# Shared passes in sweeps", ""]
    if args.quick:
        md += ["**Quick configuration (a smoke run: few triplets, one repeat, mini's similarity runs only): "
               "not a measurement.**", ""]
    md += [f"1. vgg16 (random weights, 64x64, {net['n_triplets']} built-in triplets, bootstrap {bootstrap}) at "
           f"{len(POINTS)} points x {len(DISTANCES)} distances ({', '.join(DISTANCES)}) = 12 runs, as in-process "
           f"sweeps into fresh stores (1 torch thread, as the spec says), network built, data scored, bootstrap "
           f"and store writes included; shared and the single run: {repeats} interleaved repeat(s); unshared: one "
           "call. Goal: shared <= 1.3x one pass of the deepest point.", ""]
    rows = [[k, v["plan"]["runs"], v["plan"]["passes"], f"{v['median_s']:.2f}"] for k, v in net["timings"].items()]
    md.append(bench.markdown_table(["sweep", "runs", "passes", "median wall (s)"], rows))
    md += ["", bench.markdown_table(["ratio", "value"], [
        ["shared 12 runs / one run of the deepest point (median of paired ratios)",
         f"**{net['shared_vs_one_pass']['median']:.2f}x** {net['shared_vs_one_pass']['all']}"],
        ["unshared 12 runs (one call) / median one run of the deepest point",
         f"{net['unshared_vs_one_pass']['median']:.2f}x"],
        ["unshared (one call) / median shared", f"{net['unshared_vs_shared']['median']:.2f}x"]])]
    mini_rows = [[k, v["plan"]["runs"], v["plan"]["passes"], f"{v['median_s']:.2f}"]
                 for k, v in results["mini"]["timings"].items()]
    what = "its similarity runs only" if args.quick else "the whole grid, training runs included"
    md += ["", f"2. The `mini` grid ({what}), in-process into fresh stores, {repeats} interleaved repeat(s) after one "
           "warm-up call of each.", "",
           bench.markdown_table(["sweep", "runs", "passes", "median wall (s)"], mini_rows), "",
           f"unshared / shared: {results['mini']['unshared_vs_shared']['median']:.2f}x", "",
           "## Machine", "", bench.machine_markdown(info),
           f"- load_average_at_end: {results['load_average_at_end']}"]
    json_path, md_path = bench.write_results("shared_passes", results, "\n".join(md))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - t0:.1f} s")
    sys.exit(code)
