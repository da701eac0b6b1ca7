#!/usr/bin/env python
"""GPU benchmark: 2AFC scoring and training-loss speed and peak memory, lossnet against lpips and piq.

Run from the repo root::

    python benchmarks/gpu.py                        # one GPU, under 8 minutes: benchmarks/results/gpu.{json,md}
    python benchmarks/gpu.py --compile              # also the torch.compile'd fast path (compile time reported)
    python benchmarks/gpu.py --device cpu --smoke   # tiny sizes on the CPU in seconds: checks the script (CI)

Every library gets the SAME random vgg16 weights (``lossnet.load_model("vgg16", weights="random",
seed=0)``; lpips built with ``pnet_rand=True`` and piq with its VGG builder swapped, weights copied
in and checked); nothing is downloaded. lossnet's fast path is :func:`lossnet.loss.fast.accelerate`.

1. **2AFC triplets/s** (64x64 triplets in memory, batch 50): ``score_2afc`` of ``lossnet.lpips("vgg")``
   in float32, channels-last, and bf16 autocast + channels-last (distances in float32), against
   ``lpips.LPIPS(net="vgg")`` used the way its ``score_2afc_dataset`` uses it (two calls per batch,
   ``d(ref, p0)`` and ``d(ref, p1)``, gradients enabled, ``.data.cpu().numpy()``), and the same
   under ``torch.no_grad()``. The d0/d1 of float32 lossnet and lpips agree (checked), and the bf16
   run's decisions are compared with float32's.
2. **Loss forward+backward** at 256 px batch 16 and 512 px batch 8: ``spatial`` at the LPIPS layers
   against ``lpips.LPIPS(lpips=False)``, ``mse`` at relu3_3 against ``piq.ContentLoss``, ``style`` at
   relu3_3 against ``piq.StyleLoss`` (as in ``bench_loss.py``); lossnet in float32, channels-last and
   bf16 + channels-last; the peers as they are (float32).
3. **Peak memory** of each call: ``torch.cuda.max_memory_allocated()`` above the memory allocated
   before the call (weights excluded), after ``torch.cuda.reset_peak_memory_stats()``. On the CPU
   this does not exist: see ``bench_memory.py`` for CPU peak memory.

Timing: warm-up calls, then repeats with the contenders interleaved (rotated order each repeat),
``torch.cuda.synchronize()`` inside every timed call; medians and paired ratios. A time budget
(``--budget-s``, default 420 s) skips, and records as skipped, any part that would not fit.
PyTorch's defaults are kept (cuDNN may use TF32 for float32 convolutions: recorded), plus
``cudnn.benchmark = True`` for everyone.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import numpy as np  # noqa: E402
import torch  # noqa: E402
import common as bench  # noqa: E402

PLANS = {
    # 2AFC: triplets per timed run, image size, batch; loss: (size, batch) cells; repeats; warm-up calls
    "full": {"afc_n": 4000, "afc_size": 64, "afc_batch": 50, "afc_repeats": 3,
             "loss_cells": ((256, 16), (512, 8)), "loss_repeats": 10, "warmup": 3},
    "smoke": {"afc_n": 2, "afc_size": 16, "afc_batch": 2, "afc_repeats": 1,
              "loss_cells": ((32, 1),), "loss_repeats": 1, "warmup": 1},  # piq runs all of vgg16.features: >= 32 px
}
VARIANTS = {  # lossnet fast-path settings: accelerate(metric, **settings)
    "float32": None,
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"channels_last": True, "autocast": "bf16"},
}
NO_CUDA_MEMORY = "torch.cuda.max_memory_allocated exists on CUDA only (CPU peak memory: benchmarks/bench_memory.py)"


class Budget:
    """Seconds left of the run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


_INITS = ("uniform_", "normal_", "constant_", "zeros_", "ones_", "kaiming_uniform_", "kaiming_normal_",
          "xavier_uniform_", "xavier_normal_", "trunc_normal_")


@contextlib.contextmanager
def no_random_init():
    """Skip torch.nn.init while building models whose every weight is then loaded (strictly) from the
    shared state dict: random init of vgg16 (138M values, classifier included) costs seconds on a CPU."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITS}
    for name in _INITS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def synchronizer(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def synced(fn, sync):
    def run():
        out = fn()
        sync()
        return out
    return run


def peak_memory(fn, device: torch.device) -> dict:
    """Peak CUDA memory of one call above what was allocated before it (MiB)."""
    if device.type != "cuda":
        return {"peak_above_start_mib": None, "peak_mib": None, "note": NO_CUDA_MEMORY}
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_above_start_mib": (peak - start) / 2**20, "peak_mib": peak / 2**20}


def fast_variant(metric: torch.nn.Module, settings: dict | None, compile: bool = False) -> torch.nn.Module:
    """A copy of ``metric`` on the fast path (``settings`` None: the plain float32 copy)."""
    from lossnet.loss.fast import accelerate

    # eval(): a deep copy of a LossNetwork's fx trunk comes back in training mode (a torch.fx quirk)
    clone = copy.deepcopy(metric).eval()
    if settings is None and not compile:
        return clone
    return accelerate(clone, **(settings or {}), compile=compile)


# --------------------------------------------------------------------------- 2AFC

def make_triplets(n: int, size: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 3, size, size, generator=g)
    judges = torch.rand(n, generator=g)
    return [{"ref": images[i, 0], "p0": images[i, 1], "p1": images[i, 2], "judge": judges[i]} for i in range(n)]


def lpips_eval(model, loader, device, no_grad: bool) -> tuple[np.ndarray, np.ndarray]:
    """lpips.trainer.score_2afc_dataset's loop (inputs in [-1, 1], two calls per batch, numpy out)."""
    d0s: list[float] = []
    d1s: list[float] = []
    with torch.no_grad() if no_grad else contextlib.nullcontext():
        for data in loader:
            ref, p0, p1 = (data[k].to(device) * 2 - 1 for k in ("ref", "p0", "p1"))
            d0s += model(ref, p0).data.cpu().numpy().flatten().tolist()
            d1s += model(ref, p1).data.cpu().numpy().flatten().tolist()
    return np.array(d0s), np.array(d1s)


def bench_2afc(path: str, plan: dict, device: torch.device, budget: Budget, compile: bool) -> dict:
    from bench_similarity import _lpips_reference
    from torch.utils.data import DataLoader

    import lossnet
    from lossnet.scoring import score_2afc

    sync = synchronizer(device)
    n, size, batch = plan["afc_n"], plan["afc_size"], plan["afc_batch"]
    items = make_triplets(n, size)
    warm_items = items[: min(n, 4 * batch)]
    with no_random_init():  # trunk weights from the file, lin from the lpips wheel
        base = lossnet.lpips("vgg", weights=path)
        ref = _lpips_reference(path).to(device)  # every trunk weight copied in
    ours = {name: fast_variant(base, settings).to(device) for name, settings in VARIANTS.items()}
    compile_s = None
    if compile:
        ours["bf16+channels_last+compile"] = fast_variant(base, VARIANTS["bf16+channels_last"], compile=True).to(device)
    loader = DataLoader(items, batch_size=batch, shuffle=False)
    warm_loader = DataLoader(warm_items, batch_size=batch, shuffle=False)

    def scorer(metric, data):
        return lambda: score_2afc(metric, data, batch_size=batch, bootstrap=0, progress=False, device=device,
                                  channels_last=False)  # the layout is the fast path's business here

    if compile:  # first calls compile: timed apart, outside the comparison
        t0 = time.perf_counter()
        synced(scorer(ours["bf16+channels_last+compile"], warm_items), sync)()
        compile_s = time.perf_counter() - t0

    # same metric: d0/d1 of float32 lossnet against lpips
    check = score_2afc(ours["float32"], warm_items, batch_size=batch, bootstrap=0, progress=False, device=device,
                       channels_last=False).triplets
    r0, r1 = lpips_eval(ref, warm_loader, device, no_grad=True)
    parity = max(float(np.abs(check.d0["spatial"]["combined"] - r0).max() / np.abs(r0).max()),
                 float(np.abs(check.d1["spatial"]["combined"] - r1).max() / np.abs(r1).max()))

    fns = {f"lossnet {name}": synced(scorer(m, items), sync) for name, m in ours.items()}
    fns["lpips (eval script)"] = synced(lambda: lpips_eval(ref, loader, device, no_grad=False), sync)
    fns["lpips (no_grad)"] = synced(lambda: lpips_eval(ref, loader, device, no_grad=True), sync)
    warm = {f"lossnet {name}": synced(scorer(m, warm_items), sync) for name, m in ours.items()}
    warm["lpips (eval script)"] = synced(lambda: lpips_eval(ref, warm_loader, device, no_grad=False), sync)
    warm["lpips (no_grad)"] = synced(lambda: lpips_eval(ref, warm_loader, device, no_grad=True), sync)

    # warm-up rounds (cuDNN autotuning), then one more gives the cost of a repeat: fit the repeats to the budget
    for _ in range(plan["warmup"]):
        for f in warm.values():
            f()
    t0 = time.perf_counter()
    for f in warm.values():
        f()
    per_round = (time.perf_counter() - t0) * n / len(warm_items)
    repeats = max(1, min(plan["afc_repeats"], int(budget.left() * 0.4 / max(per_round, 1e-9))))
    times = bench.time_interleaved(fns, warmup=0, repeats=repeats)

    memory = {name: peak_memory(warm[name], device) for name in warm}
    head = times["lossnet float32"]["last"].triplets
    results = {}
    for name, t in times.items():
        results[name] = {**bench.timings(t), "triplets_per_s": n / t["median_s"],
                         "speedup_vs_lpips_eval": bench.paired_ratios(times["lpips (eval script)"]["times_s"],
                                                                t["times_s"])["median"],
                         "speedup_vs_lpips_no_grad": bench.paired_ratios(times["lpips (no_grad)"]["times_s"],
                                                                   t["times_s"])["median"],
                         "memory": memory[name]}
        if name.startswith("lossnet") and name != "lossnet float32":
            tr = t["last"].triplets
            a0, a1 = tr.d0["spatial"]["combined"], tr.d1["spatial"]["combined"]
            h0, h1 = head.d0["spatial"]["combined"], head.d1["spatial"]["combined"]
            results[name]["max_rel_diff_vs_float32"] = float(max(np.abs(a0 - h0).max() / np.abs(h0).max(),
                                                                 np.abs(a1 - h1).max() / np.abs(h1).max()))
            results[name]["same_decision_as_float32"] = float(np.mean(np.sign(a1 - a0) == np.sign(h1 - h0)))
            results[name]["ps_difference_vs_float32"] = t["last"].mean - times["lossnet float32"]["last"].mean
    return {"triplets": n, "size": size, "batch": batch, "repeats": repeats, "lpips_parity_max_rel_diff": parity,
            "compile_seconds_first_call": compile_s, "results": results}


# --------------------------------------------------------------------------- loss forward+backward

def bench_loss_cells(path: str, state: dict, plan: dict, device: torch.device, budget: Budget) -> list[dict]:
    from bench_loss import build_cases, make_pair

    sync = synchronizer(device)
    with no_random_init():  # every weight loaded strictly from the shared state dict (bench_loss checks)
        cases = build_cases(path, state)
    cells = []
    for size, batch in plan["loss_cells"]:
        x, y = (t.to(device) for t in make_pair(batch, size))
        for case in cases:
            label = f"{size}px batch {batch} {case['key']}"
            if budget.left() < 20:
                cells.append({"size": size, "batch": batch, "comparison": case["name"], "key": case["key"],
                              "skipped": "time budget spent"})
                print(f"skipped {label}: time budget spent", flush=True)
                continue
            ours = {name: fast_variant(case["lossnet"], s).to(device) for name, s in VARIANTS.items()}
            peer = case["peer"].to(device)
            call = case["peer_call"]

            def fwd_bwd(loss_fn):
                xg = x.clone().requires_grad_(True)

                def run():
                    xg.grad = None
                    value = loss_fn(xg, y)
                    value.backward()
                    return value.detach()
                return synced(run, sync)

            fns = {f"lossnet {name}": fwd_bwd(m) for name, m in ours.items()}
            fns[case["peer_name"]] = fwd_bwd(lambda a, b: call(peer, a, b))
            times = bench.time_interleaved(fns, warmup=plan["warmup"], repeats=plan["loss_repeats"])
            peer_t = times[case["peer_name"]]
            ref_value = float(times["lossnet float32"]["last"])
            cell = {"size": size, "batch": batch, "comparison": case["name"], "key": case["key"],
                    "peer_name": case["peer_name"], "results": {}}
            cells.append(cell)
            for name, t in times.items():
                value = float(t["last"])
                entry = {**bench.timings(t), "value": value,
                         "peer_over_this": bench.paired_ratios(peer_t["times_s"], t["times_s"])["median"],
                         "memory": peak_memory(fns[name], device)}
                if name.startswith("lossnet"):
                    entry["rel_diff_vs_float32"] = abs(value - ref_value) / abs(ref_value)
                cell["results"][name] = entry
            if case["value_factor"] is not None:
                cell["peer_value_rel_err"] = abs(float(peer_t["last"]) - case["value_factor"] * ref_value) / abs(
                    case["value_factor"] * ref_value)
            print(f"{label}: " + ", ".join(f"{k} {v['median_s'] * 1e3:.1f} ms" for k, v in cell["results"].items()),
                  flush=True)
            del ours, fns, times
    return cells


# --------------------------------------------------------------------------- report

def _mib(m: dict) -> str:
    v = m.get("peak_above_start_mib")
    return "n/a" if v is None else f"{v:.0f}"


def markdown(result: dict) -> str:
    s = result["settings"]
    gpu = result["device"]["type"] == "cuda"
    title = (f"# lossnet on the GPU: {result['device']['name']}" if gpu else
             "# lossnet GPU benchmark: CPU smoke run (NOT GPU numbers)" if s["smoke"] else
             "# lossnet GPU benchmark run on the CPU (NOT GPU numbers)")
    lines = [title, ""]
    if not gpu:
        lines += [f"**No GPU was used: {result['device']['note']}** The numbers below check that the script runs; "
                  "they are not GPU throughput and must not be quoted as such.", ""]
    lines += [f"Generated by `{result['command']}` on {result['machine']['date_utc']} in {result['seconds']:.0f} s "
              f"(budget {s['budget_s']:.0f} s); load average {result['machine']['load_average_at_start']} at start, "
              f"{result['load_average_at_end']} at end. Backends: {result['backends']}.", ""]
    afc = result.get("2afc")
    if afc and "results" in afc:
        rows = [[name, f"{r['triplets_per_s']:.0f}", f"{r['median_s']:.3f}", f"{r['speedup_vs_lpips_eval']:.2f}x",
                 f"{r['speedup_vs_lpips_no_grad']:.2f}x", _mib(r["memory"]),
                 "" if "max_rel_diff_vs_float32" not in r else
                 f"{r['max_rel_diff_vs_float32']:.1e} / {100 * r['same_decision_as_float32']:.2f}%"]
                for name, r in afc["results"].items()]
        lines += [f"## 2AFC scoring ({afc['triplets']} triplets of {afc['size']}x{afc['size']}, batch {afc['batch']}, "
                  f"{afc['repeats']} repeats)", "",
                  bench.markdown_table(["contender", "triplets/s", "median s", "vs lpips eval script (paired)",
                                  "vs lpips no_grad (paired)", "peak MiB (4-batch run)",
                                  "d0/d1 rel diff vs float32 / same decisions"], rows), "",
                  f"float32 lossnet vs lpips d0/d1: max relative difference {afc['lpips_parity_max_rel_diff']:.1e}."]
        if afc.get("compile_seconds_first_call") is not None:
            lines.append(f"torch.compile: the first (compiling) call took {afc['compile_seconds_first_call']:.1f} s.")
        lines.append("")
    elif afc:
        lines += ["## 2AFC scoring", "", f"skipped: {afc['skipped']}", ""]
    rows = []
    for c in result.get("loss", []):
        if "skipped" in c:
            rows.append([f"{c['size']}px x{c['batch']}", c["comparison"], "skipped", c["skipped"], "", "", ""])
            continue
        for name, r in c["results"].items():
            rows.append([f"{c['size']}px x{c['batch']}", c["comparison"], name, f"{r['median_s'] * 1e3:.2f}",
                         f"{r['peer_over_this']:.2f}x", _mib(r["memory"]),
                         "" if "rel_diff_vs_float32" not in r else f"{r['rel_diff_vs_float32']:.1e}"])
    lines += ["## Training loss: forward + backward", "",
              bench.markdown_table(["cell", "comparison", "contender", "median ms", "peer time / this (paired)",
                              "peak MiB above start", "value rel diff vs float32"], rows), "",
              "Peak memory: `torch.cuda.max_memory_allocated()` during one call, above the memory allocated before "
              "it (weights excluded)." if gpu else f"Peak memory: {NO_CUDA_MEMORY}.", "",
              "## Machine", "", bench.machine_markdown(result["machine"]), f"- device: {result['device']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (seconds; for CI)")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd fast path")
    parser.add_argument("--budget-s", type=float, default=420.0, help="time budget in seconds (default 420)")
    parser.add_argument("--out-dir", type=Path, default=bench.RESULTS_DIR)
    parser.add_argument("--name", default="gpu", help="result file name (default gpu)")
    args = parser.parse_args(argv)

    from bench_loss import shared_weights

    from lossnet.utils.devices import select_device

    device = select_device(args.device)
    if device.type != "cuda" and not args.smoke:
        raise SystemExit(f"the full plan is sized for one GPU ({PLANS['full']['afc_n']}-triplet runs, 512 px batches) and "
                         f"this run would use {device.type!r}: pass --smoke to check the script on the CPU, or run the "
                         "CPU benchmarks (bench_loss.py, bench_limit.py, bench_memory.py).")
    start = time.perf_counter()
    budget = Budget(args.budget_s)
    plan = PLANS["smoke" if args.smoke else "full"]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        dev = {"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version()}
    else:
        dev = {"type": device.type, "name": device.type,
               "note": "this run used the CPU" + ("" if torch.cuda.is_available() else " (no CUDA device here)") + "."}
    backends = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn.benchmark": torch.backends.cudnn.benchmark}
    info = bench.machine_info()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips/piq build torchvision models with deprecated arguments
        path, state = shared_weights(tmp)
        print("2AFC ...", flush=True)
        afc = bench_2afc(path, plan, device, budget, args.compile)
        print("loss forward+backward ...", flush=True)
        loss = bench_loss_cells(path, state, plan, device, budget)
    result = {"benchmark": "gpu", "command": "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": dev, "backends": backends,
              "settings": {"smoke": args.smoke, "compile": args.compile, "budget_s": args.budget_s, "plan": plan,
                           "variants": VARIANTS, "arch": "vgg16", "weights": "random, seed 0, shared by all libraries"},
              "machine": info, "2afc": afc, "loss": loss, "load_average_at_end": bench.load_average(),
              "seconds": time.perf_counter() - start}
    md = markdown(result)
    j, m = bench.write_results(args.name, result, md, args.out_dir)
    print(md)
    print(f"wrote {j} and {m}")
    return result


if __name__ == "__main__":
    main()
