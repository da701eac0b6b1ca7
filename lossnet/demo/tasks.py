"""Mini runs of the three downstream tasks: a perceptual loss against a pixel loss.

The perceptual loss is EfficientNet-Lite0 with its real ImageNet weights (the one pretrained
network available offline), MSE at one early extraction point (``blocks.0``) on [0, 1] inputs,
as in Pihlgren et al.; the pixel loss is the mean squared error of the images (for segmentation
the extra term next to BCE). Built-in data only; each run is a shortened ``mini`` config, so
the numbers show the pipeline working, not the study's results.

Example:
    >>> result = run_task_demos("lossnet-out/demo/tasks", seconds_budget=150)  # doctest: +SKIP
    >>> print(format_task_demos(result))  # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import WeightsError
from ..tasks.autoencoding import train_autoencoder
from ..tasks.common import ConfigMismatchError, LossConfig, RunOptions
from ..tasks.segmentation import train_segmentation
from ..tasks.superres import train_superres
from ..utils.jsonio import write_json

PERCEPTUAL = dict(net="efficientnet_lite0", layers=["blocks.0"], distance="mse", weights="imagenet", input_norm="none")
PIXEL = dict(net=None, distance="l2")

# Shortened mini configs: about 2-3 minutes for the six runs on 2 CPU cores.
DEMO_RUNS: dict[str, tuple[Callable[..., dict], dict[str, Any], tuple[str, ...]]] = {
    "superres": (train_superres, dict(epochs=3, lr=5e-4, train_length=128, crop=64, width=16, eval_size=128,
                                      checkpoint_every=16),
                 ("psnr", "ssim", "lpips", "bicubic_psnr", "bicubic_ssim")),
    "segmentation": (train_segmentation, dict(epochs=8, n_train=96, n_test=16, checkpoint_every=24),
                     ("quality", "f1", "completeness", "correctness", "relaxed_quality", "relaxed_f1")),
    "autoencoder": (train_autoencoder, dict(epochs=3, batch_size=32, max_train=768, probe_epochs=25,
                                            checkpoint_every=20),
                    ("accuracy", "linear_accuracy", "pixel_mse")),
}


def _run(fn: Callable[..., dict], loss: LossConfig, out: Path, overrides: dict[str, Any], seed: int,
         progress: bool) -> dict[str, Any]:
    opts = RunOptions(out_dir=out, seed=seed, device="cpu", progress=progress)
    try:
        return fn("mini", loss, options=opts, **overrides)
    except ConfigMismatchError:  # a demo folder from another version: start it over
        opts.restart = True
        return fn("mini", loss, options=opts, **overrides)


def run_task_demos(out_dir: str | Path = "lossnet-out/demo/tasks", seconds_budget: float = 180.0, seed: int = 0,
                   progress: bool = False, tasks: tuple[str, ...] = ("superres", "segmentation", "autoencoder"),
                   threads: int | None = 1) -> dict[str, Any]:
    """Run each task twice (perceptual and pixel loss); write ``<out_dir>/tasks.json``; return it.

    A run is skipped (and says so) when the time budget is spent before it starts. Runs are
    kept in ``<out_dir>/<task>-<loss>/`` and reused by a later call with the same settings.
    ``threads`` sets torch's CPU threads during the runs (restored after): these models are
    tiny, and one thread is as fast as two on an idle machine and far faster on a busy one.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_all(Path(out_dir), seconds_budget, seed, progress, tasks)
    finally:
        torch.set_num_threads(previous_threads)


def _run_all(out_dir: Path, seconds_budget: float, seed: int, progress: bool, tasks: tuple[str, ...]
             ) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    perceptual = LossConfig(**PERCEPTUAL)
    notes = []
    try:
        perceptual.build()
    except WeightsError as exc:
        perceptual = LossConfig(**{**PERCEPTUAL, "weights": "random"})
        notes.append(f"efficientnet_lite0 ImageNet weights unavailable ({exc}); used random weights instead")
    losses = {"perceptual": perceptual, "pixel": LossConfig(**PIXEL)}
    result: dict[str, Any] = {
        "what": "mini runs on built-in data (digits, scikit-image photos, generated roads): the pipeline "
                "working, not the study's numbers",
        "losses": {k: v.describe() for k, v in losses.items()},
        "tasks": {}, "notes": notes,
    }
    for task in tasks:
        fn, overrides, headline = DEMO_RUNS[task]
        entry: dict[str, Any] = {}
        for name, loss in losses.items():
            if time.perf_counter() - t0 > seconds_budget:
                entry[name] = {"skipped": f"time budget of {seconds_budget:.0f} s spent"}
                continue
            t = time.perf_counter()
            metrics = _run(fn, loss, out_dir / f"{task}-{name}", overrides, seed, progress)
            entry[name] = {k: metrics["metrics"].get(k) for k in headline}
            entry[name]["seconds"] = round(time.perf_counter() - t, 1)
            if task == "superres":
                entry[name]["lpips_note"] = metrics.get("lpips_info", {}).get("note")
        result["tasks"][task] = entry
        write_json(out_dir / "tasks.json", result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out_dir / "tasks.json", result)
    return result


def format_task_demos(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_task_demos` results."""
    lines = [f"Downstream tasks ({result['what']})",
             f"  perceptual = {result['losses']['perceptual']}; pixel = {result['losses']['pixel']}"]
    for task, entry in result["tasks"].items():
        lines.append(f"  {task}:")
        for name, metrics in entry.items():
            if "skipped" in metrics:
                lines.append(f"    {name:<10} skipped: {metrics['skipped']}")
                continue
            cells = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} n/a"
                     for k, v in metrics.items() if k not in ("seconds", "lpips_note")]
            lines.append(f"    {name:<10} " + ", ".join(cells) + f"  ({metrics['seconds']} s)")
    lines += [f"  note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


__all__ = ["format_task_demos", "run_task_demos"]
