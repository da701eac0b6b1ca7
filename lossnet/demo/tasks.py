"""The demo's training-loss step: the loss networks at hand on three mini downstream tasks.

One sweep (a results store, so a killed demo loses nothing and a rerun resumes) trains
each task with: EfficientNet-Lite0 with its real ImageNet weights at two extraction points,
its untrained copy at the first one, and the pixel loss. Each task runs its ``mini`` config
(:mod:`lossnet.tasks`): long enough that the training loss flattens out. Every run is then
compared with the task's trivial baseline and judged by metrics that are not its training
loss:

- super-resolution (x2, photos): PSNR and SSIM on Y against bicubic upscaling;
- autoencoding (digits): MLP-probe accuracy on the frozen codes against the majority class;
- road segmentation (generated tiles): quality and F1 against predicting all road or no road.

Example:
    >>> spec = demo_spec(DEMO_TASKS)
    >>> sorted({(r.task, r.network_label, r.label) for r in expand(spec)})[:2]
    [('autoencoder', 'efficientnet_lite0', 'blocks.0'), ('autoencoder', 'efficientnet_lite0', 'blocks.1')]
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..data.autoencoding import load_autoencoding_data
from ..data.roads import load_segmentation_data
from ..sweeps.runner import default_work_root, run_sweep
from ..sweeps.spec import RunConfig, expand
from ..sweeps.store import ResultsStore
from ..tasks import CONFIGS
from ..tasks.metrics import RoadCounts, road_counts, road_scores

ARCH = "efficientnet_lite0"
#: Extraction points trained with the ImageNet weights (an early and a middle one); the untrained
#: copy uses the first.
TRAIN_POINTS = ("blocks.0", "blocks.1")
#: Per task: the mini config's overrides (none: the demo runs exactly ``--config mini``).
DEMO_TASKS: dict[str, dict[str, Any]] = {"superres": {}, "autoencoder": {}, "segmentation": {}}
#: Per task: (headline metric, higher is better, metrics shown, the judging metrics that are not a training loss).
TASK_METRICS: dict[str, tuple[str, bool, tuple[str, ...], str]] = {
    "superres": ("psnr", True, ("psnr", "ssim", "lpips"), "PSNR and SSIM on Y (LPIPS when its weights are on disk)"),
    "autoencoder": ("accuracy", True, ("accuracy", "linear_accuracy", "pixel_mse"),
                    "accuracy of MLP probes trained on the frozen latent codes"),
    "segmentation": ("quality", True, ("quality", "f1", "completeness", "correctness", "relaxed_quality"),
                     "road quality (IoU of the road class), F1, completeness, correctness"),
}
TASK_TITLES = {"superres": "Super-resolution (x2, scikit-image photos)",
               "autoencoder": "Autoencoding (scikit-learn digits, MLP probes)",
               "segmentation": "Road segmentation (generated aerial tiles)"}
#: A pixel-loss super-resolution run must beat bicubic by at least this much (dB).
SR_MARGIN_DB = 0.5
#: The training loss has flattened out when its last quarter of epochs brought less than this
#: fraction of its whole decrease.
PLATEAU_TOLERANCE = 0.10


def demo_spec(tasks: Mapping[str, Mapping[str, Any]] = DEMO_TASKS, seed: int = 0,
              points: tuple[str, ...] = TRAIN_POINTS) -> dict[str, Any]:
    """The sweep spec (a TOML-shaped dict) of the demo's training runs."""
    names = list(tasks)
    return {
        "name": "demo",
        "description": f"{ARCH}: ImageNet weights at {', '.join(points)}, untrained at {points[0]}, and the "
                       "pixel loss, as training losses of three mini tasks on built-in data",
        "threads": 1,
        "grid": [
            {"architectures": [ARCH], "weights": ["imagenet"], "points": list(points), "distances": ["mse"],
             "tasks": names, "seeds": [seed], "baselines": ["l2"]},
            {"architectures": [ARCH], "weights": ["random"], "points": [points[0]], "distances": ["mse"],
             "tasks": names, "seeds": [seed]},
        ],
        "tasks": {t: {"config": "mini", "data": "builtin", "overrides": dict(o)} for t, o in tasks.items()},
    }


def loss_label(run: RunConfig) -> str:
    """How the report names a run's training loss."""
    if run.arch is None:
        return f"pixel {run.distance}"
    weights = "ImageNet" if run.weights == "imagenet" else "untrained" if run.weights == "random" else run.weights
    return f"{run.arch} ({weights}) {'+'.join(run.points or ())}"


def run_training_sweep(out_dir: str | Path, spec: Mapping[str, Any], workers: int = 2, run: bool = True,
                       progress: bool = True) -> dict[str, Any]:
    """Run (or, ``run=False``, only look up) the demo's training sweep in ``out_dir/results.sqlite``.

    Finished runs are kept and reused; a run killed half way resumes from its checkpoint.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "results.sqlite"
    summary = None
    if run:
        executor = "processes" if workers > 1 else "inprocess"
        summary = run_sweep(spec, db, executor=executor, workers=workers, progress=progress)
    return {"db": str(db), "work_root": str(default_work_root(db)), "summary": summary}


def _plateau(curve: list[float]) -> dict[str, Any]:
    """Whether a loss curve (per epoch) has flattened out: its last quarter of epochs (at least
    two) brought less than :data:`PLATEAU_TOLERANCE` of the loss's whole decrease since epoch 1.

    ``last_share`` is that fraction: (mean of the quarter before the last - mean of the last
    quarter) / (first epoch - mean of the last quarter).
    """
    k = max(2, len(curve) // 4)
    if len(curve) < 2 * k + 1:
        return {"plateaued": False, "last_share": None}
    last, before = float(np.mean(curve[-k:])), float(np.mean(curve[-2 * k:-k]))
    total = curve[0] - last
    share = (before - last) / total if total > 0 else 1.0
    return {"plateaued": share < PLATEAU_TOLERANCE, "last_share": share}


def collect_runs(spec: Mapping[str, Any], db: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Per task, every run of ``spec`` with its status, metrics, training curve and plateau check."""
    db = Path(db)
    runs = expand(spec)
    records = {}
    if db.exists():
        with ResultsStore(db) as store:
            records = {r.id: r for r in store.records([r.id for r in runs])}
    root = default_work_root(db)
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        rec = records.get(run.id)
        entry: dict[str, Any] = {"id": run.id, "loss": loss_label(run), "arch": run.arch, "weights": run.weights,
                                 "point": run.label, "status": rec.status if rec else "not run",
                                 "work_dir": str(root / run.id)}
        metrics_file = root / run.id / "metrics.json"
        if rec is not None and rec.status == "finished" and metrics_file.exists():
            full = json.loads(metrics_file.read_text())
            train = full.get("train", {})
            curve = train.get("val_losses") or train.get("epoch_losses") or []
            entry.update(metrics=full["metrics"], config=full["config"]["config"], steps=train.get("steps"),
                         epochs=train.get("epochs"), seconds=train.get("train_seconds"),
                         curve=curve, curve_kind="validation loss" if train.get("val_losses") else "training loss",
                         **_plateau(curve))
        elif rec is not None and rec.status == "failed":
            entry["error"] = rec.error
        out.setdefault(run.task, []).append(entry)
    return out


# ------------------------------------------------------------------------------------------------
# Trivial baselines (computed on the same data the runs were evaluated on)


def superres_baseline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Bicubic upscaling (the runs measure it on the same images)."""
    done = [r for r in runs if "metrics" in r]
    if not done:
        return {}
    m = done[0]["metrics"]
    return {"bicubic": {"psnr": m.get("bicubic_psnr"), "ssim": m.get("bicubic_ssim"), "lpips": m.get("bicubic_lpips")}}


def autoencoder_baseline(config: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
    """The majority class of the probes' test split (what a probe that learnt nothing scores)."""
    data = load_autoencoding_data("builtin", val_fraction=config["val_fraction"], seed=seed, pad_to=config["pad_to"])
    labels = np.array([data.probe_test.label(i) for i in range(len(data.probe_test))])
    counts = np.bincount(labels, minlength=data.num_classes)
    return {"majority class": {"accuracy": float(counts.max() / counts.sum()), "linear_accuracy": None,
                               "pixel_mse": None}}


def segmentation_baseline(config: Mapping[str, Any]) -> dict[str, Any]:
    """Scores of predicting road everywhere and nowhere on the runs' test tiles."""
    data = load_segmentation_data("builtin", crop=config["crop"], n_train=config["n_train"], n_val=config["n_val"],
                                  n_test=config["n_test"], tile_size=config["tile_size"], seed=0)
    out = {}
    for name, value in (("all road", 1.0), ("no road", 0.0)):
        counts = RoadCounts()
        for i in range(len(data.test)):
            _, mask = data.test[i]
            counts = counts + road_counts(torch.full_like(mask[0], value), mask[0], config["threshold"],
                                          config["buffer"])
        exact, relaxed = road_scores(counts), road_scores(counts, relaxed=True)
        scores = {k: (0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in exact.items()}
        rq = relaxed.get("quality")
        scores["relaxed_quality"] = 0.0 if rq is None or math.isnan(rq) else rq
        out[name] = scores
    return out


def judge_task(task: str, runs: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The task's baselines, and for every finished run whether it beats them and plateaued."""
    done = [r for r in runs if "metrics" in r]
    if not done:
        return {"baselines": {}, "checks": []}
    config = done[0]["config"]
    baselines = {"superres": lambda: superres_baseline(runs), "autoencoder": lambda: autoencoder_baseline(config, seed),
                 "segmentation": lambda: segmentation_baseline(config)}[task]()
    headline = TASK_METRICS[task][0]
    trivial = max(b[headline] for b in baselines.values() if b.get(headline) is not None)
    checks = []
    for r in done:
        value = r["metrics"].get(headline)
        margin = SR_MARGIN_DB if task == "superres" and r["arch"] is None else 0.0
        beats = value is not None and value > trivial + margin
        r["beats_baseline"] = beats
        r["gain_over_baseline"] = None if value is None else value - trivial
        checks.append({"loss": r["loss"], "metric": headline, "value": value, "baseline": trivial,
                       "required_margin": margin, "beats_baseline": beats, "plateaued": r.get("plateaued")})
    return {"baselines": baselines, "baseline_value": trivial, "checks": checks}


def _superres_model(cfg: Any) -> torch.nn.Module:
    from ..tasks.superres import TransformNet

    return TransformNet(cfg.scale, cfg.width, cfg.blocks, cfg.residual)


def _autoencoder_model(cfg: Any) -> torch.nn.Module:
    from ..tasks.autoencoding import ConvVAE

    return ConvVAE(32, cfg.z_dim, sample=cfg.sample)  # the built-in digits are 32x32


def _segmentation_model(cfg: Any) -> torch.nn.Module:
    from ..tasks.segmentation import IterativeUNet

    return IterativeUNet(cfg.width, cfg.depth, cfg.iterations)


#: task -> the untrained network of a config (the run's checkpoint fills in its weights).
MODEL_BUILDERS = {"superres": _superres_model, "autoencoder": _autoencoder_model,
                  "segmentation": _segmentation_model}


def trained_model(task: str, run: Mapping[str, Any]) -> torch.nn.Module:
    """The trained network of a finished run, rebuilt from its folder (config + final checkpoint)."""
    model = MODEL_BUILDERS[task](CONFIGS[task](**run["config"]))
    state = torch.load(Path(run["work_dir"]) / "checkpoint.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


__all__ = ["ARCH", "DEMO_TASKS", "TASK_METRICS", "TASK_TITLES", "TRAIN_POINTS", "collect_runs", "demo_spec",
           "judge_task", "loss_label", "MODEL_BUILDERS", "run_training_sweep", "trained_model"]
