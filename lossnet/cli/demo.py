"""``lossnet demo``: the main job on built-in data."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on built-in data (real photos, real EfficientNet-Lite0)",
        description="Distortion ranking on built-in photos with the real ImageNet EfficientNet-Lite0 at every "
                    "extraction point, an untrained copy and pixel baselines; the built-in 2AFC table; mini runs "
                    "of the training tasks; the mini sweep. Writes tables, JSON and PNG figures to --out.")
    p.add_argument("--out", default="lossnet-out/demo", help="output folder (default: lossnet-out/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="only the first step (under a minute)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, seed=args.seed, quick=args.quick)
    return 0
