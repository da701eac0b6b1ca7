#!/usr/bin/env python
"""Sweep scheduling: overhead per run of each executor, and the mini grid against the worker count.

Run from the repo root::

    python benchmarks/bench_sweep.py            # writes benchmarks/results/sweep.{json,md}
    python benchmarks/bench_sweep.py --quick    # smaller grids (a smoke run; same output files)

1. Scheduling overhead: sweeps of ``noop`` runs (the task returns at once) of two sizes,
   N1 and N2, into fresh SQLite stores, for the ``inprocess``, ``processes`` (2 workers) and
   ``ray`` (a local instance, 2 CPUs, started once beforehand) executors; in-process and Ray
   are warmed up first (8 runs), the processes executor is not (its start-up is the fixed cost). The per-run
   overhead is the slope (t(N2) - t(N1)) / (N2 - N1): claiming, recording (a few SQLite
   transactions with fsync), environment capture and, for Ray, task submission; the
   intercept is the fixed cost (worker start-up: interpreters importing torch).
2. The ``mini`` grid (``lossnet/sweeps/specs/mini.toml``: 13 runs on built-in data)
   end to end with the ``processes`` executor and 1 then 2 workers (each run uses the
   spec's ``threads``, 1 for mini, whatever the executor), into fresh stores.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray instance on loopback only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import common as bench  # noqa: E402

from lossnet.sweeps.runner import run_sweep  # noqa: E402


def noop_spec(n: int, tag: str) -> dict:
    # the tag keeps run ids distinct between measurements (each gets a fresh store anyway)
    return {"name": f"noop-{tag}", "grid": {"tasks": ["noop"], "seeds": list(range(n))}}


def time_sweep(spec, executor, workers: int, tmp: Path, name: str) -> tuple[float, dict]:
    db = tmp / f"{name}.sqlite"
    by_name = {"workers": workers} if isinstance(executor, str) else {}  # an Executor object carries its own
    t0 = time.perf_counter()
    summary = run_sweep(spec, db, executor=executor, progress=False, **by_name)
    wall = time.perf_counter() - t0
    if summary["finished"] != summary["total"]:
        raise RuntimeError(f"{name}: only {summary['finished']}/{summary['total']} runs finished: "
                           f"{summary['failures'][:1]}")
    return wall, summary


def overhead(executor_name: str, make_executor, sizes: tuple[int, int], tmp: Path) -> dict:
    walls = {}
    for n in sizes:
        walls[n], _ = time_sweep(noop_spec(n, f"{executor_name}-{n}"), make_executor(), 2, tmp,
                                 f"{executor_name}-{n}")
    n1, n2 = sizes
    slope = (walls[n2] - walls[n1]) / (n2 - n1)
    return {"executor": executor_name, "sizes": list(sizes), "wall_s": {str(k): v for k, v in walls.items()},
            "per_run_ms": 1000 * slope, "fixed_s": walls[n1] - slope * n1,
            "mean_per_run_ms_at_n2": 1000 * walls[n2] / n2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small grids, no mini grid with 2 workers")
    parser.add_argument("--skip-mini", action="store_true", help="only the scheduling overhead")
    args = parser.parse_args()
    info = bench.machine_info()
    sizes = (20, 60) if args.quick else (50, 250)
    results: dict = {"machine": info, "overhead": [], "mini": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        from lossnet.sweeps.executors import (
            InProcessExecutor,
            ProcessExecutor,
            RayExecutor,
        )

        # warm-up: first-use costs in this process (imports, environment capture, spec machinery)
        time_sweep(noop_spec(8, "inprocess-warmup"), InProcessExecutor(), 1, tmp, "inprocess-warmup")
        results["overhead"].append(overhead("inprocess", InProcessExecutor, sizes, tmp))
        print(results["overhead"][-1], flush=True)
        results["overhead"].append(overhead("processes", lambda: ProcessExecutor(workers=2), sizes, tmp))
        print(results["overhead"][-1], flush=True)
        try:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            ray_init = time.perf_counter() - t0
            # warm-up: Ray starts its worker processes (which import lossnet) on the first tasks
            time_sweep(noop_spec(8, "ray-warmup"), RayExecutor(), 2, tmp, "ray-warmup")
            try:
                entry = overhead("ray", RayExecutor, sizes, tmp)
            finally:
                ray.shutdown()
            entry["ray_init_s"] = ray_init
            results["overhead"].append(entry)
            print(entry, flush=True)
        except ImportError:
            results["ray_skipped"] = "ray is not installed"
        if not args.skip_mini:
            for workers in ((1,) if args.quick else (1, 2)):
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, summary = time_sweep("mini", "processes", workers, tmp, f"mini-{workers}")
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
                entry = {"workers": workers, "wall_s": wall, "workers_cpu_s": cpu, "runs": summary["total"],
                         "load_average_after": bench.load_average()}
                results["mini"].append(entry)
                print(entry, flush=True)
    results["load_average_at_end"] = bench.load_average()

    md = ["# Sweep scheduling benchmark", "",
          "Scheduling overhead per run: sweeps of `noop` runs (the task returns at once) of two sizes into fresh "
          "SQLite stores; per-run overhead = slope between the sizes (claim, record, environment capture, "
          "fsync'd SQLite transactions; Ray: task submission too), fixed = intercept (worker start-up).", ""]
    rows = [[o["executor"], f"{o['per_run_ms']:.2f}", f"{o['fixed_s']:.2f}",
             " / ".join(f"{o['wall_s'][str(n)]:.2f}" for n in o["sizes"]), "/".join(map(str, o["sizes"]))]
            for o in results["overhead"]]
    md.append(bench.markdown_table(["executor", "overhead per run (ms)", "fixed cost (s)", "wall (s)", "runs"], rows))
    if any(o["executor"] == "ray" for o in results["overhead"]):
        ray_entry = next(o for o in results["overhead"] if o["executor"] == "ray")
        md += ["", f"Ray: a local instance (2 CPUs, loopback) started once beforehand in {ray_entry['ray_init_s']:.1f} s "
                   "and warmed up with 8 runs (not included above)."]
    if results["mini"]:
        md += ["", "## The mini grid against the number of workers", "",
               "`lossnet sweep run mini --executor processes --workers W` into a fresh store "
               "(each run uses the spec's torch thread count, 1 for mini, in every executor).", ""]
        base = results["mini"][0]["wall_s"]
        md.append(bench.markdown_table(["workers", "runs", "wall (s)", "speed-up", "workers' CPU time (s)", "load after"],
                                 [[m["workers"], m["runs"], f"{m['wall_s']:.1f}", f"{base / m['wall_s']:.2f}x",
                                   f"{m['workers_cpu_s']:.1f}", m["load_average_after"]] for m in results["mini"]]))
        md += ["", "Each run has one torch thread here (the mini spec's `threads`), so W workers run W runs at "
                   "once; on a machine shared with other jobs (see the load averages) the speed-up depends on the "
                   "cores left free. The CPU time shows the work itself."]
    md += ["", "## Machine", "", bench.machine_markdown(info), f"- load_average_at_end: {results['load_average_at_end']}"]
    json_path, md_path = bench.write_results("sweep", results, "\n".join(md))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
