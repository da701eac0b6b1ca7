"""The demo's steps in order, and the summary that points at every output."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..utils.jsonio import write_json
from .distortions import format_ranking_table, run_distortion_ranking
from .similarity import builtin_table
from .sweep import demo_step as mini_sweep_step
from .tasks import format_task_demos, run_task_demos


def _distortions(out: Path, seed: int) -> dict:
    print("lossnet demo: built-in photos with graded synthetic distortions (not human judgements)")
    ranking = run_distortion_ranking(out_dir=out, seed=seed)
    print(format_ranking_table(ranking))
    print(f"\nwrote {out / 'demo.json'} and {ranking.get('figure')}")
    return {"json": str(out / "demo.json"), "figure": ranking.get("figure")}


def _builtin_2afc(out: Path, seed: int) -> dict:
    print("\n== built-in 2AFC (synthetic judgements)")
    return builtin_table(out, seed=seed)


def _task_demos(out: Path, seed: int) -> dict:
    print("\n== mini training runs: perceptual loss against pixel loss")
    result = run_task_demos(out / "tasks", seed=seed)
    print(format_task_demos(result))
    return result


def _mini_sweep(out: Path, seed: int) -> dict:
    print("\n== mini sweep (results store + study-style report)")
    return mini_sweep_step(out, seed)


# (name, step(out_dir, seed) -> summary section, runs with --quick)
DEMO_STEPS: list[tuple[str, Callable[[Path, int], dict], bool]] = [
    ("distortion_ranking", _distortions, True),
    ("builtin_2afc", _builtin_2afc, False),
    ("tasks", _task_demos, False),
    ("sweep", _mini_sweep, False),
]


def run_demo(out_dir: str | os.PathLike = "lossnet-out/demo", seed: int = 0, quick: bool = False) -> dict[str, Any]:
    """Run the demo steps (``quick``: only those marked quick) and write ``summary.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    summary: dict[str, Any] = {}
    for name, step, in_quick in DEMO_STEPS:
        if quick and not in_quick:
            continue
        section = step(out, seed)
        if section is not None:
            summary[name] = section
    summary["seconds"] = round(time.time() - start, 1)
    write_json(out / "summary.json", summary)
    print(f"\ndone in {summary['seconds']} s; summary in {out / 'summary.json'}")
    return summary
