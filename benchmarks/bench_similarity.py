#!/usr/bin/env python
"""2AFC scoring speed and memory of ``lossnet.scoring.score_2afc``.

Run from the repo root::

    python benchmarks/bench_similarity.py            # writes benchmarks/results/similarity.{json,md}
    python benchmarks/bench_similarity.py --quick    # fewer repeats, smaller memory runs

Setting: CPU, vgg16 with the SAME random weights everywhere (``lossnet.load_model("vgg16",
weights="random", seed=0)`` saved to a temporary state-dict file), 64x64 triplets from an
in-memory dataset of seeded random tensors (no disk, nothing downloaded), batch 50.

1. Throughput (triplets/s) against ``lpips.LPIPS(net="vgg", pnet_rand=True)`` used the way
   its own evaluation script (``lpips.score_2afc_dataset``) uses it: two calls per batch,
   ``d(ref, p0)`` and ``d(ref, p1)``, without ``torch.no_grad`` (as that script runs); the
   same under ``torch.no_grad()`` is also timed (the stricter comparison). lossnet runs
   ``score_2afc(lossnet.lpips("vgg", weights=...))``: the identical metric, whose d0/d1 are
   checked against lpips's to 1e-4 relative before timing. Goals: >= 1.5x (earlier), >= 2x
   (issue 11). Beside them, the trunk alone (``benchmarks.common.trunk_alone``) doing lossnet's
   work and doing lpips's: lpips's time over the first is the ceiling any scorer on this trunk
   can reach on this machine.
2. All 4 Pihlgren points of vgg16 (``layers="pihlgren"``: per-point AND combined scores)
   against the deepest point alone (``["features.29"]``), both ``score_2afc``. Goal: <= 1.3x.
3. Peak memory: a fresh subprocess per size scores 1k and 10k triplets (bootstrap 1000
   included) while a thread samples its RSS every 5 ms; reported: the peak RSS while scoring
   above the RSS after loading the network and a warm-up batch, and the tracemalloc peak of
   Python-side allocations. The subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that
   freed blocks go back to the OS and RSS follows live memory rather than malloc's caching.
   The network for this part is AlexNet up to ``features.1`` (random weights) so that 10k
   triplets fit in the time budget; the streaming code path is the same for every network.
   Goal: flat.

Timings alternate the contenders within each repeat (see ``common.time_interleaved``) and
report paired ratios of wall-clock AND of process CPU time (all threads), so load from other
processes hits both sides; on a busy machine the CPU-time ratios are the steadier ones.
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

import torch  # noqa: E402
import common as bench  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

BATCH = 50
SIZE = 64


class RandomTriplets(Dataset):
    """``n`` seeded random 2AFC triplets (64x64 in [0, 1]), generated on access: no disk, flat memory."""

    def __init__(self, n: int, seed: int = 0, size: int = SIZE) -> None:
        self.n, self.seed, self.size = n, seed, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        x = torch.rand(3, 3, self.size, self.size, generator=g)
        judge = torch.rand((), generator=g)
        return {"ref": x[0], "p0": x[1], "p1": x[2], "judge": judge, "subset": "random", "index": i}


def _weights_file(arch: str, tmp: str) -> str:
    import lossnet

    path = os.path.join(tmp, f"{arch}_random_seed0.pt")
    torch.save(lossnet.load_model(arch, weights="random", seed=0).state_dict(), path)
    return path


def _lpips_reference(path: str, net: str = "vgg"):
    """lpips.LPIPS with the same trunk weights as lossnet (features.i -> net.sliceK.i)."""
    import lpips

    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu")
    with torch.no_grad():
        for name, param in model.net.named_parameters():
            _, idx, kind = name.split(".")
            param.copy_(state[f"features.{idx}.{kind}"])
    return model.eval()


def _lpips_eval(model, loader, no_grad: bool) -> list[float]:
    """lpips.score_2afc_dataset's loop: d(ref, p0) and d(ref, p1) as two calls per batch."""
    d0s: list[float] = []
    d1s: list[float] = []
    ctx = torch.no_grad() if no_grad else torch.enable_grad()
    with ctx:
        for data in loader:
            ref, p0, p1 = data["ref"] * 2 - 1, data["p0"] * 2 - 1, data["p1"] * 2 - 1
            d0s += model(ref, p0).data.cpu().numpy().flatten().tolist()
            d1s += model(ref, p1).data.cpu().numpy().flatten().tolist()
    return d0s + d1s


def bench_throughput(tmp: str, n: int, repeats: int) -> dict:
    import lossnet
    from lossnet.scoring import score_2afc

    path = _weights_file("vgg16", tmp)
    ours = lossnet.lpips("vgg", weights=path)
    ref = _lpips_reference(path)
    ds = RandomTriplets(n)
    loader = DataLoader(ds, batch_size=BATCH, shuffle=False)

    # same metric: d0/d1 agree with lpips to 1e-4 relative
    check = RandomTriplets(8, seed=1)
    result = score_2afc(ours, check, batch_size=8, bootstrap=0, progress=False)
    with torch.no_grad():
        b = next(iter(DataLoader(check, batch_size=8)))
        r0 = ref(b["ref"], b["p0"], normalize=True).flatten().double().numpy()
        r1 = ref(b["ref"], b["p1"], normalize=True).flatten().double().numpy()
    t = result.triplets
    rel = max(float(abs(t.d0["spatial"]["combined"] - r0).max() / abs(r0).max()),
              float(abs(t.d1["spatial"]["combined"] - r1).max() / abs(r1).max()))
    if rel > 1e-4:
        raise SystemExit(f"lossnet and lpips disagree (max relative difference {rel:.2e}): not the same metric")

    lossnet_work, lpips_work = _trunk_only(ours, loader)
    fns = {
        "lossnet score_2afc": lambda: score_2afc(ours, ds, batch_size=BATCH, bootstrap=0, progress=False),
        "lpips (eval script)": lambda: _lpips_eval(ref, loader, no_grad=False),
        "lpips (no_grad)": lambda: _lpips_eval(ref, loader, no_grad=True),
        TRUNK_LOSSNET: lossnet_work,
        TRUNK_LPIPS: lpips_work,
    }
    small = RandomTriplets(BATCH // 5)
    small_loader = DataLoader(small, batch_size=BATCH // 5)
    small_lossnet, small_lpips = _trunk_only(ours, small_loader)
    warm = {
        "lossnet score_2afc": lambda: score_2afc(ours, small, batch_size=BATCH // 5, bootstrap=0, progress=False),
        "lpips (eval script)": lambda: _lpips_eval(ref, small_loader, no_grad=False),
        "lpips (no_grad)": lambda: _lpips_eval(ref, small_loader, no_grad=True),
        TRUNK_LOSSNET: small_lossnet,
        TRUNK_LPIPS: small_lpips,
    }
    times = bench.time_interleaved(fns, warmup=1, repeats=repeats, warmup_fns=warm)
    out = {"triplets": n, "batch_size": BATCH, "max_relative_difference_vs_lpips": rel, "results": {}}
    base = times["lossnet score_2afc"]["times_s"]
    base_cpu = times["lossnet score_2afc"]["cpu_times_s"]
    for name, t in times.items():
        t = bench.timings(t)
        out["results"][name] = {**t, "triplets_per_s": n / t["median_s"],
                                "speedup_of_lossnet": bench.paired_ratios(t["times_s"], base)["median"],
                                "cpu_speedup_of_lossnet": bench.paired_ratios(t["cpu_times_s"], base_cpu)["median"]}
    out["speedup_vs_lpips_eval"] = out["results"]["lpips (eval script)"]["speedup_of_lossnet"]
    out["speedup_vs_lpips_no_grad"] = out["results"]["lpips (no_grad)"]["speedup_of_lossnet"]
    ceiling = bench.paired_ratios(times["lpips (no_grad)"]["times_s"], times[TRUNK_LOSSNET]["times_s"])["median"]
    out["ceiling_vs_lpips"] = ceiling
    out["share_of_ceiling"] = out["speedup_vs_lpips_no_grad"] / ceiling
    out["lpips_over_its_trunk"] = bench.paired_ratios(times["lpips (no_grad)"]["times_s"],
                                                      times[TRUNK_LPIPS]["times_s"])["median"]
    out["layout_and_reuse_gain"] = bench.paired_ratios(times[TRUNK_LPIPS]["times_s"],
                                                       times[TRUNK_LOSSNET]["times_s"])["median"]
    return out


TRUNK_LOSSNET = "trunk only, lossnet's work (one 3B pass, channels-last)"
TRUNK_LPIPS = "trunk only, lpips's work (four B passes, default layout)"


def _trunk_only(metric, loader):
    """Two callables that run only the vgg16 trunk (``metric.net.body``, inputs normalised in
    advance) over the batches of ``loader``: lossnet's work per batch (one pass of the 3B images
    [ref, p0, p1] in channels-last, as ``score_2afc`` runs it) and lpips's (``model(ref, p0)`` and
    ``model(ref, p1)``: four passes of B images in the default layout). lpips's time over the
    first is the speed-up a scorer with no cost beyond its trunk would reach: the ceiling; the
    second's time over the first is what the layout and the reused reference alone gain."""
    net = metric.net
    batches = list(loader)
    lossnet_work = bench.trunk_alone(metric, [torch.cat([b["ref"], b["p0"], b["p1"]]) for b in batches])[0]
    with torch.inference_mode():
        ready = [(net.prepare(b["ref"]), net.prepare(b["p0"]), net.prepare(b["p1"])) for b in batches]

    def lpips_work():
        with torch.inference_mode():
            for r, p0, p1 in ready:
                for x in (r, p0, r, p1):
                    net.body(x)

    return lossnet_work, lpips_work


def bench_points(tmp: str, n: int, repeats: int) -> dict:
    import lossnet
    from lossnet.scoring import score_2afc

    path = os.path.join(tmp, "vgg16_random_seed0.pt")
    if not os.path.exists(path):
        path = _weights_file("vgg16", tmp)
    four = lossnet.PerceptualLoss("vgg16", layers="pihlgren", weights=path)
    one = lossnet.PerceptualLoss("vgg16", layers=["features.29"], weights=path)
    ds = RandomTriplets(n)
    small = RandomTriplets(BATCH // 5)
    fns = {"4 points (pihlgren)": lambda: score_2afc(four, ds, batch_size=BATCH, bootstrap=0, progress=False),
           "1 point (features.29)": lambda: score_2afc(one, ds, batch_size=BATCH, bootstrap=0, progress=False)}
    warm = {"4 points (pihlgren)": lambda: score_2afc(four, small, batch_size=BATCH // 5, bootstrap=0, progress=False),
            "1 point (features.29)": lambda: score_2afc(one, small, batch_size=BATCH // 5, bootstrap=0, progress=False)}
    times = bench.time_interleaved(fns, warmup=1, repeats=repeats, warmup_fns=warm)
    t4, t1 = times["4 points (pihlgren)"], times["1 point (features.29)"]
    return {"triplets": n, "points": four.points,
            "results": {k: {**{kk: vv for kk, vv in v.items() if kk != "last"}, "triplets_per_s": n / v["median_s"]}
                        for k, v in times.items()},
            "cost_ratio_4_vs_1": bench.paired_ratios(t4["times_s"], t1["times_s"])["median"],
            "cpu_cost_ratio_4_vs_1": bench.paired_ratios(t4["cpu_times_s"], t1["cpu_times_s"])["median"]}


MEMORY_METRIC = dict(arch="alexnet", layers=["features.1"], weights="random")


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RSSSampler:
    """Samples this process's current RSS every few milliseconds in a thread; keeps the maximum."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.interval, self.peak, self._stop = interval, _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> "_RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _memory_child(n: int) -> dict:
    """Runs in a fresh process: RSS while scoring n triplets, above the RSS after set-up."""
    import gc
    import resource
    import tracemalloc

    import lossnet
    from lossnet.scoring import score_2afc

    torch.manual_seed(0)
    metric = lossnet.PerceptualLoss(**MEMORY_METRIC)
    score_2afc(metric, RandomTriplets(BATCH), batch_size=BATCH, bootstrap=1000, progress=False)  # warm-up
    gc.collect()
    base = _rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    with _RSSSampler() as sampler:
        result = score_2afc(metric, RandomTriplets(n, seed=2), batch_size=BATCH, bootstrap=1000, progress=False)
    seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"triplets": n, "rss_after_setup_mb": base, "rss_peak_while_scoring_mb": sampler.peak,
            "rss_growth_mb": sampler.peak - base, "tracemalloc_peak_mb": py_peak / 2**20,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": seconds, "triplets_per_s": n / seconds, "ps": result.mean}


def bench_memory(sizes: list[int]) -> dict:
    runs = []
    for n in sizes:
        # large blocks straight from mmap and back on free: RSS then follows live memory, not malloc's caching
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", str(n)],
                              capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"memory run for {n} triplets failed:\n{proc.stderr}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    growth = [r["rss_growth_mb"] for r in runs]
    return {"network": "alexnet features.1, random weights, spatial", "runs": runs,
            "peak_rss_ratio_largest_vs_smallest":
                runs[-1]["rss_peak_while_scoring_mb"] / runs[0]["rss_peak_while_scoring_mb"],
            "growth_difference_mb": growth[-1] - growth[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller memory runs")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats of the timings (default 5; "
                        "quick 2): calls on a shared 2-core VM vary by +-15%%, so the paired medians need several")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child)))
        return 0

    repeats = args.repeats or (2 if args.quick else 5)
    start = time.perf_counter()
    info = bench.machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        print("throughput vs lpips ...", flush=True)
        throughput = bench_throughput(tmp, n=BATCH * 2, repeats=repeats)
        print("4 points vs 1 point ...", flush=True)
        points = bench_points(tmp, n=BATCH * 2, repeats=repeats)
    print("memory ...", flush=True)
    memory = bench_memory([500, 2000] if args.quick else [1000, 10000])
    total = time.perf_counter() - start
    info["load_average_at_end"] = bench.load_average()

    goals = {
        "throughput >= 2x lpips (no_grad), wall (issue 11)": throughput["speedup_vs_lpips_no_grad"] >= 2.0,
        "ceiling (lpips no_grad / lossnet's trunk alone) >= 2x: what 2x needs from the hardware":
            throughput["ceiling_vs_lpips"] >= 2.0,
        "score_2afc >= 90% of the ceiling (the trunk alone)": throughput["share_of_ceiling"] >= 0.9,
        "throughput >= 1.5x lpips (eval script), wall": throughput["speedup_vs_lpips_eval"] >= 1.5,
        "throughput >= 1.5x lpips (no_grad), wall": throughput["speedup_vs_lpips_no_grad"] >= 1.5,
        "throughput >= 1.5x lpips (no_grad), CPU time":
            throughput["results"]["lpips (no_grad)"]["cpu_speedup_of_lossnet"] >= 1.5,
        "4 points <= 1.3x one point, wall": points["cost_ratio_4_vs_1"] <= 1.3,
        "4 points <= 1.3x one point, CPU time": points["cpu_cost_ratio_4_vs_1"] <= 1.3,
        "flat memory (RSS growth while scoring 10x the triplets within 20 MB of the smaller run's)":
            memory["growth_difference_mb"] <= 20,
    }
    payload = {"machine": info, "throughput": throughput, "points": points, "memory": memory, "goals": goals,
               "seconds": total, "quick": args.quick}

    rows = [[name, f"{r['triplets_per_s']:.1f}", f"{r['median_s']:.2f}", f"{r['cpu_median_s']:.2f}",
             f"{r['speedup_of_lossnet']:.2f}x", f"{r['cpu_speedup_of_lossnet']:.2f}x"]
            for name, r in throughput["results"].items()]
    prow = [[name, f"{r['triplets_per_s']:.1f}", f"{r['median_s']:.2f}", f"{r['cpu_median_s']:.2f}"]
            for name, r in points["results"].items()]
    mrow = [[r["triplets"], f"{r['rss_after_setup_mb']:.0f}", f"{r['rss_peak_while_scoring_mb']:.0f}",
             f"{r['rss_growth_mb']:.1f}", f"{r['tracemalloc_peak_mb']:.2f}", f"{r['triplets_per_s']:.0f}"]
            for r in memory["runs"]]
    md = "\n\n".join([
        "# 2AFC scoring: throughput and memory (`benchmarks/bench_similarity.py`)",
        f"vgg16 (random weights, identical in both libraries), 64x64, batch {BATCH}, CPU, "
        f"{throughput['triplets']} triplets per timed run, {repeats} interleaved repeats (medians). "
        f"lossnet's d0/d1 match lpips's to {throughput['max_relative_difference_vs_lpips']:.1e} relative.",
        "## Throughput against lpips\n\n" + bench.markdown_table(
            ["contender", "triplets/s", "median wall s", "median CPU s", "lossnet speed-up (wall, paired)",
             "lossnet speed-up (CPU, paired)"], rows),
        f"**Ceiling.** lpips (no_grad) takes {throughput['ceiling_vs_lpips']:.2f}x the time of lossnet's trunk "
        "alone doing lossnet's work (one channels-last pass of [ref, p0, p1], inputs ready; paired wall clock). "
        "That is the most any scorer built on this trunk could gain over lpips on this machine: it would have "
        f"to cost nothing beyond the convolutions. score_2afc's speed-up over lpips (no_grad) is "
        f"{throughput['share_of_ceiling']:.1%} of it. Of the ceiling, the channels-last layout and the reused "
        f"reference (3 images per triplet instead of 4) give {throughput['layout_and_reuse_gain']:.2f}x (the same "
        f"trunk doing lpips's work against lossnet's), and lpips's own cost beyond its trunk gives "
        f"{throughput['lpips_over_its_trunk']:.2f}x.",
        "## All 4 Pihlgren points in one pass against the deepest point alone\n\n" + bench.markdown_table(
            ["layers", "triplets/s", "median wall s", "median CPU s"], prow) +
        f"\n\ncost ratio 4 points / 1 point (paired median): wall {points['cost_ratio_4_vs_1']:.3f}, "
        f"CPU {points['cpu_cost_ratio_4_vs_1']:.3f}",
        "## Peak memory (fresh process per size; " + memory["network"] + ")\n\n" + bench.markdown_table(
            ["triplets", "RSS after set-up MB", "peak RSS while scoring MB", "growth MB", "tracemalloc peak MB",
             "triplets/s"],
            mrow),
        "## Why lossnet is faster\n\n"
        "- one forward pass of 3B images per batch ([ref, p0, p1]) instead of lpips's two calls of two B-image "
        "passes each: 3 images per triplet instead of 4 (the reference is computed once);\n"
        "- on CPU the trunk runs in channels-last memory format (oneDNN's fast path; weights restored after);\n"
        "- each image's features are channel-normalised once, with one fused norm and a multiply, and the "
        "per-pair distance is a fused vector norm over channels; everything under torch.inference_mode.\n"
        "The 4-point run adds only the distance arithmetic at the three shallower points: the trunk is the same.",
        "## Goals\n\n" + "\n".join(f"- [{'x' if ok else ' '}] {g}" for g, ok in goals.items()),
        "## Machine\n\n" + bench.machine_markdown(info) + f"\n- total benchmark time: {total:.0f} s",
    ])
    json_path, md_path = bench.write_results("similarity", payload, md)
    print(md)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
