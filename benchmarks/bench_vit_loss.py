#!/usr/bin/env python
"""A DINO-style ViT as a loss: lossnet's preset against a plain timm forward on the same input.

Run from the repo root::

    python benchmarks/bench_vit_loss.py              # 224x224, batch 8, 15 repeats; writes benchmarks/results/vit_loss.{json,md}
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

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import common as bench  # noqa: E402

PRESET = "dino-vitb16-cls-cosine"
TIMM_MODEL = "vit_base_patch16_224.dino"
RTOL = 1e-5
ATOL = 1e-5
MODES = ("forward", "forward+backward")
GOAL = 1.05


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
    table = bench.markdown_table(["mode", "lossnet median (s)", "timm median (s)", "lossnet / timm", "paired", "of mins",
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

{bench.machine_markdown(result['machine'])}
"""


def main(argv: list[str] | None = None) -> dict:
    args = bench.comparison_parser(__doc__.split("\n\n")[0], "vit_loss", repeats=15, batch=8, size=224).parse_args(argv)
    device, sync, t_start, up_start, info = bench.start_comparison(args)
    ours, peer, described, policy = build(device)
    x, y = bench.photo_pair(args.batch, args.size)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        expected, got = peer(x, y), ours(x, y)
    bench.check_values(got, expected, "timm", (RTOL, ATOL), "abs", up_start)

    results = []
    for mode in MODES:
        t = bench.time_sides(lambda x, y: timed_calls(ours, peer, x, y, mode, sync), x, y, args.repeats)
        results.append(bench.comparison_cell(mode, t, "timm", args, (RTOL, ATOL), error="abs",
                                             lossnet_over_peer=True, t_start=t_start, digits=3))

    result = {
        "benchmark": "bench_vit_loss",
        "settings": {**bench.comparison_settings(args, device, RTOL, ATOL),
                     "preset": PRESET, "timm_model": TIMM_MODEL, "points": described["points"],
                     "resize_policy": policy, "goal": GOAL,
                     "argv": "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))},
        "metric": described, "machine": info, "uptime_at_start": up_start, "uptime_at_end": bench.uptime(),
        "results": results, "total_runtime_s": time.perf_counter() - t_start,
    }
    bench.write_comparison(args, result, markdown_report(result))
    return result


if __name__ == "__main__":
    main()
