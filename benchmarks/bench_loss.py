#!/usr/bin/env python
"""PerceptualLoss speed against its peers: lpips.LPIPS and piq's ContentLoss / StyleLoss.

Run from the repo root::

    python benchmarks/bench_loss.py            # full run, writes benchmarks/results/loss.{json,md}
    python benchmarks/bench_loss.py --quick    # 64x64 only, 3 repeats (a smoke run; same output files)

Setting: CPU, ``torch.set_num_threads(2)``, vgg16, batch 16, 64x64 and 256x256 images in
[0, 1]. Every library gets the SAME random vgg16 weights (``lossnet.load_model("vgg16",
weights="random", seed=0)``, saved to a temporary state-dict file); nothing is downloaded.

Comparisons (lossnet vs peer):

- ``spatial``: ``PerceptualLoss(layers="lpips", distance="spatial", input_norm="lpips")`` vs
  ``lpips.LPIPS(net="vgg", lpips=False)`` called with ``normalize=True``; the values must agree
  to 1e-4 relative (checked per sample before timing, and on every timed call).
- ``mse``: ``PerceptualLoss(layers=["features.15"], distance="mse")`` vs ``piq.ContentLoss``
  with its defaults (``layers=("relu3_3",)``, ``distance="mse"``, ImageNet mean/std -- the
  same normalisation lossnet applies for vgg16 -- ``normalize_features=False``,
  ``replace_pooling=False``). piq averages over H, W and *sums* over channels, so its value
  is C = 256 times lossnet's mean; that factor is checked to 1e-4 relative.
- ``style``: ``PerceptualLoss(layers=["features.15"], distance="style")`` vs ``piq.StyleLoss``
  with its defaults (``layers=("relu3_3",)``, ``distance="mse"``, ImageNet mean/std). The
  distances differ (Kumar's spatially normalised Gram vs piq's raw Gram), so only time is
  compared.

Modes: ``forward`` under ``torch.no_grad()``; ``forward+backward`` with the input requiring
grad and the target not. Each (comparison, mode, size) cell times the two libraries
interleaved (alternating order each repeat) after warm-up, and reports medians and the ratio
peer_time / lossnet_time (> 1: lossnet is faster).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import torch  # noqa: E402
import common as bench  # noqa: E402

ARCH = "vgg16"
RELU3_3 = "features.15"
# lpips.pretrained_networks.vgg16 slices torchvision's vgg16.features into 5 Sequentials.
LPIPS_SLICES = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}
RTOL = 1e-4
# Input gradients pass ReLU / max-pool kinks: a rounding-level (1e-7) change of the input moves the
# float64 gradient of this random vgg16 by up to ~1e-3, so gradients get a gross check only.
GRAD_RTOL = 1e-2
PIQ_CONTENT_FACTOR = 256  # channels at relu3_3: piq sums over channels, lossnet averages

# (size, repeats, warm-up calls, warm-up batch): one batch-16 call at 256x256 takes seconds to
# tens of seconds on 2 cores, so big sizes warm up on a small batch of the same shape and time fewer repeats.
FULL_PLAN = ((64, 5, 1, None), (256, 2, 1, 2))
QUICK_PLAN = ((64, 3, 1, None),)  # 64x64 only: about 2 minutes on an idle 2-core machine


# --------------------------------------------------------------------------- models

def shared_weights(tmpdir: str) -> tuple[str, dict[str, torch.Tensor]]:
    """A seeded random torchvision vgg16, saved as a state-dict file every library loads."""
    import lossnet

    model = lossnet.load_model(ARCH, weights="random", seed=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = os.path.join(tmpdir, "vgg16_random_seed0.pth")
    torch.save(state, path)
    return path, state


def build_lossnet(path: str, layers, distance: str, **kw) -> torch.nn.Module:
    import lossnet

    return lossnet.PerceptualLoss(ARCH, layers=layers, distance=distance, weights=path, **kw)


def build_lpips(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """lpips.LPIPS(lpips=False) on vgg16 with lossnet's weights (loaded strictly into the slices)."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="vgg", pnet_rand=True, lpips=False, verbose=False)
    sliced = {}
    for k, idx in LPIPS_SLICES.items():
        for i in idx:
            for p in ("weight", "bias"):
                key = f"features.{i}.{p}"
                if key in state:
                    sliced[f"slice{k}.{i}.{p}"] = state[key]
    model.net.load_state_dict(sliced, strict=True)
    return model.eval()


@contextlib.contextmanager
def piq_offline(state: dict[str, torch.Tensor]):
    """piq builds ``torchvision.models.vgg16(pretrained=True)`` in its constructor (a download).

    Swap the ``vgg16`` name piq.perceptual imported for a builder returning torchvision's
    vgg16 with our state dict, and make any hub download fail loudly.
    """
    import piq.perceptual as pp
    import torchvision

    def offline_vgg16(pretrained: bool = False, progress: bool = True, **_):
        model = torchvision.models.vgg16(weights=None)
        model.load_state_dict(state, strict=True)
        return model

    def no_download(*args, **kwargs):
        raise RuntimeError("benchmark is offline: piq tried to download weights")

    saved = pp.vgg16, torch.hub.load_state_dict_from_url
    pp.vgg16, torch.hub.load_state_dict_from_url = offline_vgg16, no_download
    try:
        yield
    finally:
        pp.vgg16, torch.hub.load_state_dict_from_url = saved


def build_piq(cls_name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    import piq

    with piq_offline(state):
        model = getattr(piq, cls_name)(feature_extractor="vgg16", layers=("relu3_3",), weights=[1.0],
                                       distance="mse", reduction="mean")
    # The same weights really went in.
    assert torch.equal(model.model[0].weight, state["features.0.weight"])
    assert torch.equal(model.model[14].weight, state["features.14.weight"])
    return model


def build_cases(path: str, state: dict[str, torch.Tensor]) -> list[dict]:
    """The three comparisons: name, the two loss callables and how their values relate."""
    lp = build_lpips(state)
    return [
        {
            "name": "spatial @ LPIPS layers vs lpips.LPIPS(lpips=False)",
            "key": "spatial_vs_lpips",
            "peer_name": "lpips",
            "lossnet": build_lossnet(path, "lpips", "spatial", input_norm="lpips"),
            "peer": lp,
            "peer_call": lambda m, x, y: m(x, y, normalize=True).mean(),
            "peer_per_sample": lambda m, x, y: m(x, y, normalize=True).flatten(),
            "value_factor": 1.0,  # peer == factor * lossnet
        },
        {
            "name": "mse @ relu3_3 vs piq.ContentLoss",
            "key": "mse_vs_piq_content",
            "peer_name": "piq.ContentLoss",
            "lossnet": build_lossnet(path, [RELU3_3], "mse"),
            "peer": build_piq("ContentLoss", state),
            "peer_call": lambda m, x, y: m(x, y),
            "peer_per_sample": None,
            "value_factor": float(PIQ_CONTENT_FACTOR),
        },
        {
            "name": "style @ relu3_3 vs piq.StyleLoss",
            "key": "style_vs_piq_style",
            "peer_name": "piq.StyleLoss",
            "lossnet": build_lossnet(path, [RELU3_3], "style"),
            "peer": build_piq("StyleLoss", state),
            "peer_call": lambda m, x, y: m(x, y),
            "peer_per_sample": None,
            "value_factor": None,  # different definitions: time only
        },
    ]


# --------------------------------------------------------------------------- inputs, checks

def make_pair(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image batch in [0, 1] and a noisy copy of it (the 'target')."""
    g = torch.Generator().manual_seed(seed + size)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1)
    return x, y


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


@contextlib.contextmanager
def per_sample(loss: torch.nn.Module):
    """Temporarily ``reduction="none"`` (lossnet and piq keep it as a plain attribute)."""
    saved = getattr(loss, "reduction", None)
    if saved is not None:
        loss.reduction = "none"
    try:
        yield
    finally:
        if saved is not None:
            loss.reduction = saved


def per_sample_checks(cases: list[dict]) -> dict:
    """Before timing, on a small batch: per-sample values (and input gradients) agree."""
    x, y = make_pair(4, 64, seed=123)
    out = {}
    for case in cases:
        if case["value_factor"] is None:
            continue
        ln, peer, f = case["lossnet"], case["peer"], case["value_factor"]
        with torch.no_grad(), per_sample(ln), per_sample(peer):
            a = ln(x, y)
            b = (case["peer_per_sample"] or case["peer_call"])(peer, x, y)
        value_err = float(((b - f * a).abs() / (f * a).abs()).max())
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        (f * ln(xa, y)).backward()
        case["peer_call"](peer, xb, y).backward()
        grad_err = float((xa.grad - xb.grad).norm() / xb.grad.norm())
        ok = value_err < RTOL and grad_err < GRAD_RTOL
        out[case["key"]] = {"per_sample_max_rel_err": value_err, "input_grad_rel_err": grad_err, "ok": ok}
        if not ok:
            raise SystemExit(f"sanity check failed for {case['name']}: value rel err {value_err:.2e}, "
                             f"grad rel err {grad_err:.2e} (tolerances {RTOL}, {GRAD_RTOL})")
    return out


# --------------------------------------------------------------------------- timing

def forward_fn(loss, x, y):
    def run():
        with torch.no_grad():
            return float(loss(x, y))
    return run


def forward_backward_fn(loss, x, y):
    xg = x.clone().requires_grad_(True)

    def run():
        xg.grad = None
        value = loss(xg, y)
        value.backward()
        return float(value.detach())
    return run


MODES = {"forward": forward_fn, "forward+backward": forward_backward_fn}


def run_cell(case: dict, mode: str, x, y, xw, yw, repeats: int, warmup: int) -> dict:
    ln, peer, call = case["lossnet"], case["peer"], case["peer_call"]
    peer_loss = lambda a, b: call(peer, a, b)  # noqa: E731
    make = MODES[mode]
    timed = bench.time_interleaved(
        {"lossnet": make(ln, x, y), "peer": make(peer_loss, x, y)}, warmup=warmup, repeats=repeats,
        warmup_fns={"lossnet": make(ln, xw, yw), "peer": make(peer_loss, xw, yw)})
    ln_t, peer_t = timed["lossnet"], timed["peer"]
    cell = {
        "lossnet": bench.timings(ln_t),
        "peer": bench.timings(peer_t),
        "ratio_peer_over_lossnet": peer_t["median_s"] / ln_t["median_s"],
        "ratio_of_mins": peer_t["min_s"] / ln_t["min_s"],
        "ratio_paired": bench.paired_ratios(peer_t["times_s"], ln_t["times_s"]),
        "ratio_cpu_time": peer_t["cpu_median_s"] / ln_t["cpu_median_s"],
        "lossnet_value": ln_t["last"],
        "peer_value": peer_t["last"],
    }
    if case["value_factor"] is not None:
        err = rel_err(peer_t["last"], case["value_factor"] * ln_t["last"])
        cell["value_rel_err"] = err
        if err >= RTOL:
            raise SystemExit(f"{case['name']} {mode}: values disagree ({peer_t['last']} vs "
                             f"{case['value_factor']} * {ln_t['last']}, rel err {err:.2e})")
    return cell


# --------------------------------------------------------------------------- report

def markdown_report(result: dict) -> str:
    rows = []
    for r in result["results"]:
        check = "time only" if r.get("value_rel_err") is None else f"rel err {r['value_rel_err']:.1e}"
        rows.append([f"{r['size']}x{r['size']}", r["mode"], r["comparison"],
                     f"{r['lossnet']['median_s']:.3f}", f"{r['peer']['median_s']:.3f}",
                     f"**{r['ratio_peer_over_lossnet']:.2f}**", f"{r['ratio_paired']['median']:.2f}",
                     f"{r['ratio_of_mins']:.2f}", r["repeats"], check])
    table = bench.markdown_table(["size", "mode", "comparison", "lossnet median (s)", "peer median (s)",
                            "peer / lossnet", "paired", "of mins", "repeats", "values"], rows)
    checks = "\n".join(f"- {k}: per-sample max rel err {v['per_sample_max_rel_err']:.1e}, "
                       f"input-gradient rel err {v['input_grad_rel_err']:.1e}"
                       for k, v in result["sanity_checks"].items())
    s = result["settings"]
    plan = "; ".join(f"{p['size']}x{p['size']}: {p['warmup']} warm-up on batch {p['warmup_batch']}, "
                     f"{p['repeats']} repeats" for p in s["plan"])
    return f"""# PerceptualLoss vs lpips / piq (CPU)

Generated by `python benchmarks/bench_loss.py{' --quick' if s['quick'] else ''}` on {result['machine']['date_utc']}
in {result['total_runtime_s']:.0f} s. **peer / lossnet** = peer median time / lossnet median time (wall clock; > 1 means
lossnet is faster). "paired" is the median over repeats of the per-repeat ratio (the two calls of a repeat run back to
back), "of mins" the ratio of the fastest calls: both are less sensitive to load from other processes
(load average {result['machine']['load_average_at_start']} at start, {result['load_average_at_end']} at end).

{table}

Settings: {s['arch']}, batch {s['batch']}, {s['threads']} torch threads, float32, same random vgg16 weights
(seed 0) in every library, inputs in [0, 1] (target = input + 0.1 noise, clamped). Each cell: warm-up call(s), then
repeats with the two libraries interleaved, alternating order ({plan}). `forward` runs under `torch.no_grad()`;
`forward+backward` has the input requiring grad, not the target.

- spatial: `lossnet.PerceptualLoss("vgg16", layers="lpips", distance="spatial", input_norm="lpips")` vs
  `lpips.LPIPS(net="vgg", pnet_rand=True, lpips=False)` (weights loaded into its slices), called with `normalize=True`.
- mse: `PerceptualLoss(layers=["features.15"], distance="mse")` vs `piq.ContentLoss(feature_extractor="vgg16",
  layers=("relu3_3",), weights=[1.0], distance="mse", reduction="mean")` with piq's default ImageNet mean/std
  (lossnet's vgg16 normalisation too), `normalize_features=False`, `replace_pooling=False`. piq sums over channels
  where lossnet averages: piq = 256 x lossnet, checked.
- style: `PerceptualLoss(layers=["features.15"], distance="style")` (Kumar: features L2-normalised over space,
  batched Gram, mean squared difference) vs `piq.StyleLoss` with the same arguments as ContentLoss (raw Gram per
  sample, MSE): different definitions, time only.
- piq downloads VGG weights in its constructor; the benchmark swaps `piq.perceptual.vgg16` for a builder that loads
  the shared state dict (downloads blocked).

Sanity checks before timing (batch 4, 64x64; values to {RTOL:g}, and on every timed call; input gradients only
to {GRAD_RTOL:g}, because ReLU/max-pool kinks make them move by up to ~1e-3 under a 1e-7 change of the input):
{checks}

## Machine

{bench.machine_markdown(result['machine'])}
- load_average_at_end: {result['load_average_at_end']}
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="image sizes (default 64 256)")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats at every size")
    parser.add_argument("--out-dir", type=Path, default=bench.RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    bench.set_threads(args.threads)
    t_start = time.perf_counter()
    info = bench.machine_info()
    plan = [{"size": s, "repeats": args.repeats or r, "warmup": w, "warmup_batch": wb or args.batch}
            for s, r, w, wb in (QUICK_PLAN if args.quick else FULL_PLAN)]
    if args.sizes:
        known = {p["size"]: p for p in plan}
        plan = [known.get(s, {"size": s, "repeats": args.repeats or 2, "warmup": 1, "warmup_batch": 2})
                for s in args.sizes]

    with tempfile.TemporaryDirectory() as tmp:
        path, state = shared_weights(tmp)
        cases = build_cases(path, state)
    checks = per_sample_checks(cases)
    print("sanity:", {k: f"{v['per_sample_max_rel_err']:.1e}/{v['input_grad_rel_err']:.1e}" for k, v in checks.items()},
          flush=True)

    results = []
    for p in plan:
        x, y = make_pair(args.batch, p["size"])
        xw, yw = (x, y) if p["warmup_batch"] >= args.batch else (x[: p["warmup_batch"]], y[: p["warmup_batch"]])
        for mode in MODES:
            for case in cases:
                cell = run_cell(case, mode, x, y, xw, yw, p["repeats"], p["warmup"])
                cell.update(size=p["size"], mode=mode, comparison=case["name"], key=case["key"],
                            peer_name=case["peer_name"], repeats=p["repeats"])
                results.append(cell)
                print(f"[{time.perf_counter() - t_start:5.0f}s] {p['size']:>3}px {mode:<16} {case['key']:<18} "
                      f"lossnet {cell['lossnet']['median_s']:7.3f}s  {case['peer_name']:<15} "
                      f"{cell['peer']['median_s']:7.3f}s  ratio {cell['ratio_peer_over_lossnet']:.2f} "
                      f"(paired {cell['ratio_paired']['median']:.2f}, mins {cell['ratio_of_mins']:.2f}, "
                      f"cpu {cell['ratio_cpu_time']:.2f})", flush=True)

    result = {
        "benchmark": "bench_loss",
        "settings": {"arch": ARCH, "batch": args.batch, "threads": args.threads, "dtype": "float32",
                     "device": "cpu", "quick": args.quick, "plan": plan, "rtol": RTOL,
                     "weights": "lossnet.load_model('vgg16', weights='random', seed=0), shared by all libraries"},
        "machine": info,
        "sanity_checks": checks,
        "results": results,
        "ratios_peer_over_lossnet": {f"{r['size']}/{r['mode']}/{r['key']}": round(r["ratio_peer_over_lossnet"], 3)
                                     for r in results},
        "load_average_at_end": bench.load_average(),
        "total_runtime_s": time.perf_counter() - t_start,
    }
    md = markdown_report(result)
    if not args.no_write:
        j, m = bench.write_results("loss", result, md, args.out_dir)
        print(f"wrote {j} and {m}")
    print(md)
    return result


if __name__ == "__main__":
    main()
