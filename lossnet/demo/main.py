"""The demo's steps in order, and the one report that holds their results.

Example:
    >>> [name for name, _ in DEMO_STEPS]
    ['metric', 'training', 'pictures', 'study', 'kumar']
    >>> DemoSettings.preset("quick").train
    False
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..errors import LossnetError
from .pictures import TASK_FIGURES, curves_figure
from .report import report_data, write_report
from .similarity import format_2afc, run_builtin_2afc
from .sweep import kumar_section, study_report
from .tasks import (
    DEMO_TASKS,
    TRAIN_POINTS,
    collect_runs,
    demo_spec,
    judge_task,
    run_training_sweep,
)


@dataclass
class DemoSettings:
    """What the demo runs.

    Attributes:
        n_per_subset, bootstrap: size of the built-in 2AFC set and bootstrap resamples.
        weights: the trained network's weights (``imagenet``; tests use ``random``).
        tasks: task -> overrides of its ``mini`` config.
        points: extraction points trained with the ImageNet weights.
        train: run the training sweep (False: report only the runs already finished).
        workers: parallel training runs (default: the CPU count, at most 4).
        kumar: also run the ``kumar-mini`` classifier study (about 10 minutes).
    """

    n_per_subset: int = 100
    bootstrap: int = 1000
    weights: str = "imagenet"
    tasks: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEMO_TASKS))
    points: tuple[str, ...] = TRAIN_POINTS
    train: bool = True
    workers: int | None = None
    kumar: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "quick": {"n_per_subset": 40, "bootstrap": 500, "train": False},
    }

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "DemoSettings":
        if name not in cls.PRESETS:
            raise LossnetError(f"unknown demo preset {name!r}: use one of {', '.join(cls.PRESETS)}.")
        return cls(**{**cls.PRESETS[name], **changes})

    def n_workers(self) -> int:
        return self.workers or max(1, min(4, os.cpu_count() or 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _metric(out: Path, seed: int, s: DemoSettings, state: dict) -> dict:
    print("== as a perceptual metric: built-in 2AFC (SYNTHETIC judgements), with 95% intervals", flush=True)
    saved = out / "builtin_2afc.json"
    if saved.exists():  # the same settings as last time: reuse (the scores are deterministic)
        previous = json.loads(saved.read_text())
        same = {k: previous.get(k) for k in ("n_per_subset", "bootstrap", "seed", "weights")} == \
            {"n_per_subset": s.n_per_subset, "bootstrap": s.bootstrap, "seed": seed, "weights": s.weights}
        if same and previous.get("figure") and Path(previous["figure"]).exists():
            print(f"(reusing {saved}: same settings)", flush=True)
            print(format_2afc(previous), flush=True)
            return previous
    result = run_builtin_2afc(out, n_per_subset=s.n_per_subset, bootstrap=s.bootstrap, seed=seed, weights=s.weights,
                              progress=True)
    print(format_2afc(result), flush=True)
    return result


def _training(out: Path, seed: int, s: DemoSettings, state: dict) -> dict:
    spec = demo_spec(s.tasks, seed, s.points)
    state["spec"] = spec
    if s.train:
        print(f"\n== as a training loss: {len(s.tasks)} mini tasks x {len(s.points) + 2} losses "
              f"({s.n_workers()} in parallel; finished runs are reused)", flush=True)
    else:
        print("\n== training runs: not run (--quick); the report shows those already finished", flush=True)
    sweep = run_training_sweep(out / "sweep", spec, workers=s.n_workers(), run=s.train)
    state["sweep"] = sweep
    tasks = collect_runs(spec, sweep["db"])
    result = {}
    for task, runs in tasks.items():
        judged = judge_task(task, runs, seed)
        result[task] = {"runs": runs, **judged}
        for c in judged["checks"]:
            print(f"  {task:<12} {c['loss']:<40} {c['metric']} {c['value']:.3f} (baseline {c['baseline']:.3f}) "
                  f"{'beats it' if c['beats_baseline'] else 'does NOT beat it'}, "
                  f"{'plateaued' if c['plateaued'] else 'loss still falling'}", flush=True)
    return result


def _pictures(out: Path, seed: int, s: DemoSettings, state: dict) -> dict:
    tasks = state["training"]
    figures: dict[str, Any] = {}
    for task, t in tasks.items():
        done = [r for r in t["runs"] if "metrics" in r]
        if done:
            figures[task] = str(TASK_FIGURES[task](done, out / "figures" / f"{task}.png"))
    if any(r.get("curve") for t in tasks.values() for r in t["runs"]):
        figures["curves"] = str(curves_figure({k: v["runs"] for k, v in tasks.items()}, out / "figures" / "curves.png"))
    return figures


def _study(out: Path, seed: int, s: DemoSettings, state: dict) -> dict | None:
    if not Path(state["sweep"]["db"]).exists():
        return None
    return study_report(state["spec"], state["sweep"]["db"], out / "sweep" / "report")


def _kumar(out: Path, seed: int, s: DemoSettings, state: dict) -> dict:
    if s.kumar:
        print("\n== classifier study kumar-mini (about 10 minutes)", flush=True)
    return kumar_section(out, run=s.kumar, workers=s.n_workers())


#: (name, step(out_dir, seed, settings, state) -> its section); ``state`` holds earlier sections.
DEMO_STEPS: list[tuple[str, Callable[[Path, int, DemoSettings, dict], Any]]] = [
    ("metric", _metric),
    ("training", _training),
    ("pictures", _pictures),
    ("study", _study),
    ("kumar", _kumar),
]

def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the sweep's workers): the demo's cost
    apart from what other programs on the machine take."""
    try:
        import resource
    except ImportError:  # Windows: this process only
        return time.process_time()
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


#: What ``restart`` discards: the demo's results store, its run folders and its reports.
RESTART_PATHS = ("sweep/results.sqlite", "sweep/results-runs", "sweep/report", "figures", "report.html",
                 "report.json", "builtin_2afc.json")


def run_demo(out_dir: str | os.PathLike = "lossnet-out/demo", seed: int = 0, quick: bool = False,
             restart: bool = False, kumar: bool = False, settings: DemoSettings | None = None) -> dict[str, Any]:
    """Run the demo's steps and write ``report.html`` + ``report.json`` into ``out_dir``.

    Finished training runs in ``out_dir`` are reused, a killed run resumes; ``restart=True``
    discards them first. Returns ``{"html", "json", "data"}``.
    """
    s = settings or DemoSettings.preset("quick" if quick else "full", kumar=kumar)
    out = Path(out_dir)
    if restart:
        for rel in RESTART_PATHS:
            p = out / rel
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    load = round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None
    start, cpu_start = time.time(), _cpu_seconds()
    state: dict[str, Any] = {}
    step_seconds = {}
    for name, step in DEMO_STEPS:
        t = time.time()
        state[name] = step(out, seed, s, state)
        step_seconds[name] = round(time.time() - t, 1)
    timing = {"seconds": round(time.time() - start, 1), "cpu_seconds": round(_cpu_seconds() - cpu_start, 1),
              "steps": step_seconds, "cpus": os.cpu_count(), "load_average": load,
              "load_average_end": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None}
    data = report_data(out, state["metric"], state["training"], state["pictures"], state["study"], state["kumar"],
                       timing, {**s.to_dict(), "seed": seed})
    paths = write_report(out, data)
    print(f"\ndone in {timing['seconds']} s ({timing['cpu_seconds']} CPU seconds). The report (and its JSON):\n{paths['html']}\n{paths['json']}", flush=True)
    return {**paths, "data": data}


__all__ = ["DEMO_STEPS", "DemoSettings", "RESTART_PATHS", "run_demo"]
