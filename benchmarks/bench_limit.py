#!/usr/bin/env python
"""In-process limit ratio: ``lossnet.score_2afc`` triplets/s against the trunk's own forward throughput.

Run from the repo root::

    python benchmarks/bench_limit.py            # writes benchmarks/results/limit.{json,md}
    python benchmarks/bench_limit.py --quick    # fewer repeats

Setting: CPU, vgg16 LPIPS metric (``lossnet.lpips("vgg")``, random weights, lin weights from
the lpips wheel), 64x64 triplets held in memory (no decoding), batch 50 triplets = 150 images.

1. **Limit ratio**: ``score_2afc(metric, items, batch_size=50, bootstrap=0)`` against the trunk alone
   (``net.body`` on the same 150-image batches, already normalised and channels-last, under
   ``torch.inference_mode``: the lowest cost any scorer of these triplets can have). Both are
   interleaved, repeat by repeat; the paired ratio trunk_time / score_time is the fraction of the
   trunk's throughput the scorer reaches (goal >= 0.90).
2. **Where the rest goes**: the scorer's per-batch steps timed one by one on the same batches,
   interleaved: data (batching, size runs, labels, stacking, concatenation), input checks, the
   normalisation + layout copy, the trunk, the distance engine, and the accumulation into
   per-triplet arrays.
3. **Before and after**: the peer ``whole_batch_call`` is the engine's distance loop as it was
   before it worked on cache-sized blocks of items (whole batches, torch's threads), timed as a
   step and inside the whole pass (``DistanceEngine.__call__`` swapped in this process only); the
   same numbers checked.

Load on the shared machine is recorded at start and end (``os.getloadavg``); every ratio is a
median of per-repeat ratios (the two sides of a repeat run back to back).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import numpy as np  # noqa: E402
import torch  # noqa: E402
import common as bench  # noqa: E402

BATCH = 50
SIZE = 64
PAIRS = [(0, 1), (0, 2)]


def make_items(n: int, seed: int = 0) -> list[dict]:
    """``n`` in-memory triplets of seeded random 64x64 images with judgements."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 3, SIZE, SIZE, generator=g)
    judges = torch.rand(n, generator=g)
    return [{"ref": images[i, 0], "p0": images[i, 1], "p1": images[i, 2], "judge": judges[i], "index": i}
            for i in range(n)]


def batches_of(items: list[dict]) -> list[torch.Tensor]:
    return [torch.cat([torch.stack([it[k] for it in items[s:s + BATCH]]) for k in ("ref", "p0", "p1")])
            for s in range(0, len(items), BATCH)]


# --------------------------------------------------------------------------- the peer: the engine before blocking

def whole_batch_call(self, images, groups, pairs, feats=None):
    """``DistanceEngine.__call__`` as it was before CPU blocking: each point's features prepared as a
    whole batch, then the group pairs compared (at 64 px, relu1_2 of 150 images is 157 MB, so every
    step streams from DRAM), on torch's threads. The same distance records, the same maths."""
    from lossnet.distances.functional import FEATURE_DISTANCES, PIXEL_DISTANCES
    from lossnet.scoring.engine import COMBINED

    if feats is None:
        feats = self.features(images)
    out = {}
    for name in self.distances:
        if name in PIXEL_DISTANCES:
            x = self._groups(images, groups)
            out[name] = {COMBINED: torch.stack([PIXEL_DISTANCES[name](x[a], x[b]) for a, b in pairs])}
            continue
        record = FEATURE_DISTANCES[name]
        per_point = {}
        for p in self.points:
            g = self._groups(record.prepare(feats[p]), groups)
            per_point[p] = torch.stack([record.compare(g[a], g[b], self.lin_for(name, p)) for a, b in pairs])
        per_point[COMBINED] = sum(per_point[p] * self.layer_weights[p] for p in self.points)  # exact for w = 1
        out[name] = per_point
    return out


# --------------------------------------------------------------------------- the benchmark

def build(weights_path: str):
    import lossnet

    metric = lossnet.lpips("vgg", weights=weights_path)
    return metric.eval()


def run(n: int, repeats: int) -> dict:
    import tempfile

    import lossnet
    from lossnet.inputs import check_images
    from lossnet.scoring import score_2afc
    from lossnet.scoring.datasets import (
        iter_batches,
        read_labels,
        same_size_runs,
        stack_images,
    )
    from lossnet.scoring.engine import (
        COMBINED,
        DistanceEngine,
        _Accumulator,
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "vgg16_random_seed0.pt")
        torch.save(lossnet.load_model("vgg16", weights="random", seed=0).state_dict(), path)
        metric = build(path)
    net = metric.net
    items = make_items(n)
    batches = batches_of(items)
    engine = DistanceEngine(metric, None)

    # --- 1. whole pass vs trunk alone (weights channels-last inside the block, as score_2afc does)
    def score():
        return score_2afc(metric, items, batch_size=BATCH, bootstrap=0, progress=False)

    trunk, layout, ready = bench.trunk_alone(metric, batches)

    def score_whole_batch():
        original = DistanceEngine.__call__
        DistanceEngine.__call__ = whole_batch_call  # this process only: the peer inside the real pass
        try:
            return score()
        finally:
            DistanceEngine.__call__ = original

    small = items[:10]
    warm_score = lambda: score_2afc(metric, small, batch_size=10, bootstrap=0, progress=False)  # noqa: E731
    whole = bench.time_interleaved({"score_2afc": score, "score_2afc (before: whole-batch distances)": score_whole_batch, "trunk": trunk},
                             warmup=1, repeats=repeats,
                             warmup_fns={"score_2afc": warm_score, "score_2afc (before: whole-batch distances)": warm_score,
                                         "trunk": trunk})
    limit = bench.paired_ratios(whole["trunk"]["times_s"], whole["score_2afc"]["times_s"])
    limit_cpu = bench.paired_ratios(whole["trunk"]["cpu_times_s"], whole["score_2afc"]["cpu_times_s"])
    before = whole["score_2afc (before: whole-batch distances)"]
    limit_before = bench.paired_ratios(whole["trunk"]["times_s"], before["times_s"])
    limit_before_cpu = bench.paired_ratios(whole["trunk"]["cpu_times_s"], before["cpu_times_s"])
    same = max(float(np.abs(before["last"].triplets.d0["spatial"][k] - whole["score_2afc"]["last"].triplets.d0["spatial"][k]).max()
                     / np.abs(whole["score_2afc"]["last"].triplets.d0["spatial"][k]).max())
               for k in whole["score_2afc"]["last"].triplets.d0["spatial"])
    print(f"limit ratio (trunk / score_2afc, paired): wall {limit['median']:.3f}, cpu {limit_cpu['median']:.3f}; "
          f"before blocking: wall {limit_before['median']:.3f}, cpu {limit_before_cpu['median']:.3f}  "
          f"load {bench.load_average()}", flush=True)

    # --- 2. the scorer's steps one by one, same batches
    with layout, torch.inference_mode():
        feats = [engine.features(layout.input(b)) for b in batches]
        outs = [engine(b, 3, PAIRS, f) for b, f in zip(batches, feats)]

        def data():
            for batch in iter_batches(items, BATCH):
                for run_items in same_size_runs(batch, ("ref", "p0", "p1"), "x"):
                    read_labels(run_items, "judge", "x", 0.0, 1.0)
                    torch.cat([stack_images(run_items, k, "x") for k in ("ref", "p0", "p1")])

        def checks():
            for b in batches:
                check_images(b, name="x")

        def prepare():
            for b in batches:
                layout.input(net.prepare(b))

        def trunk_step():
            for x in ready:
                net.body(x)

        def distances():
            for b, f in zip(batches, feats):
                engine(b, 3, PAIRS, f)

        def accumulate():
            acc = _Accumulator(engine, 2)
            for o in outs:
                acc.add(o)
            acc.arrays()

        def distances_whole_batch():
            for b, f in zip(batches, feats):
                whole_batch_call(engine, b, 3, PAIRS, f)

        steps = {"data": data, "checks": checks, "prepare+layout": prepare, "trunk": trunk_step,
                 "distances (engine)": distances, "accumulate": accumulate,
                 "distances (before: whole batch)": distances_whole_batch}
        parts = bench.time_interleaved(steps, warmup=1, repeats=repeats)

        # the peer gives the engine's numbers
        ref = outs[0]["spatial"]
        proto = whole_batch_call(engine, batches[0], 3, PAIRS, feats[0])["spatial"]
        proto_err = max(float(((proto[k] - ref[k]).abs() / ref[k].abs().clamp_min(1e-30)).max())
                        for k in [*engine.points, COMBINED])

    trunk_t = parts["trunk"]["times_s"]
    breakdown = {name: {"median_s": t["median_s"], "cpu_median_s": t["cpu_median_s"],
                        "share_of_trunk": bench.paired_ratios(t["times_s"], trunk_t)["median"],
                        "cpu_share_of_trunk": bench.paired_ratios(t["cpu_times_s"], parts["trunk"]["cpu_times_s"])["median"]}
                 for name, t in parts.items()}
    for name, b in breakdown.items():
        print(f"  {name:<40} {b['median_s']:.3f}s  {100 * b['share_of_trunk']:5.1f}% of the trunk "
              f"(cpu {100 * b['cpu_share_of_trunk']:5.1f}%)", flush=True)

    core = ("data", "checks", "prepare+layout", "distances (engine)", "accumulate")
    overhead = sum(breakdown[k]["share_of_trunk"] for k in core)
    overhead_cpu = sum(breakdown[k]["cpu_share_of_trunk"] for k in core)
    extra = breakdown["distances (before: whole batch)"]["share_of_trunk"] - breakdown["distances (engine)"]["share_of_trunk"]
    extra_cpu = (breakdown["distances (before: whole batch)"]["cpu_share_of_trunk"]
                 - breakdown["distances (engine)"]["cpu_share_of_trunk"])
    return {
        "triplets": n, "batch_size": BATCH, "size": SIZE, "repeats": repeats,
        "whole": {k: {kk: vv for kk, vv in v.items() if kk != "last"} for k, v in whole.items()},
        "score_triplets_per_s": n / whole["score_2afc"]["median_s"],
        "score_before_triplets_per_s": n / before["median_s"],
        "limit_ratio_before": limit_before, "limit_ratio_before_cpu": limit_before_cpu,
        "before_max_rel_diff_whole_pass": same,
        "trunk_triplets_per_s": n / whole["trunk"]["median_s"],
        "limit_ratio": limit, "limit_ratio_cpu": limit_cpu,
        "breakdown": breakdown,
        "predicted_ratio_from_steps": 1 / (1 + overhead), "predicted_ratio_from_steps_cpu": 1 / (1 + overhead_cpu),
        "predicted_ratio_before": 1 / (1 + overhead + extra),
        "predicted_ratio_before_cpu": 1 / (1 + overhead_cpu + extra_cpu),
        "before_max_rel_diff": proto_err,
    }


def markdown(result: dict, info: dict) -> str:
    from lossnet.scoring.engine import CPU_BLOCK_BYTES

    r = result
    rows = [[name, f"{b['median_s']:.3f}", f"{100 * b['share_of_trunk']:.1f}%", f"{100 * b['cpu_share_of_trunk']:.1f}%"]
            for name, b in r["breakdown"].items()]
    return f"""# In-process limit ratio: `score_2afc` against the trunk alone (CPU)

Generated by `python benchmarks/bench_limit.py` on {info['date_utc']} in {r['seconds']:.0f} s; load average
{info['load_average_at_start']} at start, {r['load_average_at_end']} at end (2 cores shared with other work: read the
paired ratios, not the absolute times).

vgg16 LPIPS (`lossnet.lpips("vgg")`, random trunk weights, lin from the lpips wheel), {r['size']}x{r['size']} triplets in
memory, batch {r['batch_size']} (= {3 * r['batch_size']} images), {r['triplets']} triplets per timed run, {r['repeats']} interleaved repeats.

## Limit ratio

| | triplets/s (median) |
|---|---|
| trunk alone (`net.body`, inputs ready, channels-last) | {r['trunk_triplets_per_s']:.1f} |
| `score_2afc` (whole pass) | {r['score_triplets_per_s']:.1f} |
| `score_2afc` before blocking (whole-batch distances, the peer) | {r['score_before_triplets_per_s']:.1f} |

**score_2afc reaches {100 * r['limit_ratio']['median']:.1f}% of the trunk's throughput** (paired wall-clock ratios
{r['limit_ratio']['all']}; process CPU time: {100 * r['limit_ratio_cpu']['median']:.1f}%). Goal: >= 90%.
Before blocking (the engine's distances on whole batches): {100 * r['limit_ratio_before']['median']:.1f}% (wall, paired
{r['limit_ratio_before']['all']}; CPU time {100 * r['limit_ratio_before_cpu']['median']:.1f}%); its d0 equal
the package's to {r['before_max_rel_diff_whole_pass']:.1e} relative.

## Where the rest goes (each step on the same batches, as a share of the trunk's time)

{bench.markdown_table(['step', 'median s', 'share of trunk (wall)', 'share of trunk (CPU)'], rows)}

Sum of the scorer's own steps (data, checks, prepare, distances, accumulate) predicts a ratio of
{100 * r['predicted_ratio_from_steps']:.1f}% (CPU time: {100 * r['predicted_ratio_from_steps_cpu']:.1f}%); with the whole-batch distances
{100 * r['predicted_ratio_before']:.1f}% (CPU time: {100 * r['predicted_ratio_before_cpu']:.1f}%). The two give the same numbers to
{r['before_max_rel_diff']:.1e} relative.

The distances were the only large step: computed on whole batches they normalise a whole point's features
(relu1_2 of 150 images at 64 px: 157 MB) and then compare pairs, so each step streams the features from memory
again. The engine (`lossnet.scoring.engine.DistanceEngine`) now runs the same records on blocks of items of about
{CPU_BLOCK_BYTES // 1024} KiB per point (one triplet at relu1_2), which stay in cache, on one thread (the blocks' many
small operations lose more to fork/join than two threads gain).

## Machine

{bench.machine_markdown(info)}
- load_average_at_end: {r['load_average_at_end']}
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats of 50 triplets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--triplets", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    bench.set_threads(args.threads)
    info = bench.machine_info()
    t0 = time.perf_counter()
    result = run(args.triplets or (BATCH if args.quick else 2 * BATCH), args.repeats or (2 if args.quick else 5))
    result["seconds"] = time.perf_counter() - t0
    result["load_average_at_end"] = bench.load_average()
    payload = {"benchmark": "bench_limit", "machine": info, **result}
    md = markdown(result, info)
    if not args.no_write:
        kw = {} if args.out_dir is None else {"out_dir": args.out_dir}
        j, m = bench.write_results("limit", payload, md, **kw)
        print(f"wrote {j} and {m}")
    print(md)
    return payload


if __name__ == "__main__":
    main()
