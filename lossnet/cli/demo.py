"""``lossnet demo``: the main job on built-in data."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on built-in data (real photos, real EfficientNet-Lite0)",
        description="Distortion ranking on built-in photos with the real ImageNet EfficientNet-Lite0 at every "
                    "extraction point, an untrained copy and pixel baselines; the built-in 2AFC table; mini runs "
                    "of the training tasks. Writes a table, JSON and PNG figures to --out.")
    p.add_argument("--out", default="lossnet-out/demo", help="output folder (default: lossnet-out/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="only the distortion ranking")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import format_ranking_table, run_distortion_ranking

    out = Path(args.out)
    start = time.time()
    print("lossnet demo: built-in photos with graded synthetic distortions (not human judgements)")
    ranking = run_distortion_ranking(out_dir=out, seed=args.seed)
    print(format_ranking_table(ranking))
    summary = {"distortion_ranking": {"json": str(out / "demo.json"), "figure": ranking.get("figure")}}
    print(f"\nwrote {out / 'demo.json'} and {ranking.get('figure')}")
    if not args.quick:
        for name, step in _EXTRA_STEPS:
            section = step(out, args.seed)
            if section is not None:
                summary[name] = section
    summary["seconds"] = round(time.time() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\ndone in {summary['seconds']} s; summary in {out / 'summary.json'}")
    return 0


def _builtin_2afc(out: Path, seed: int) -> dict:
    from ..tasks.similarity import builtin_table

    print("\n== built-in 2AFC (synthetic judgements)")
    return builtin_table(out, seed=seed)


def _task_demos(out: Path, seed: int) -> dict:
    from ..tasks.demo import format_task_demos, run_task_demos

    print("\n== mini training runs: perceptual loss against pixel loss")
    result = run_task_demos(out / "tasks")
    print(format_task_demos(result))
    return result


def _mini_sweep(out: Path, seed: int) -> dict:
    from ..sweeps.demo import demo_step

    print("\n== mini sweep (results store + study-style report)")
    return demo_step(out, seed)


# Demo steps after the distortion ranking: (name, function(out_dir, seed) -> summary | None).
_EXTRA_STEPS: list = [("builtin_2afc", _builtin_2afc), ("tasks", _task_demos), ("sweep", _mini_sweep)]
