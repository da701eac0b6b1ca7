"""``lossnet demo``: which loss network should I use? Answered on built-in data, in one report."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="which loss network should I use? (built-in data, one HTML report)",
        description="Compares the loss networks at hand offline (EfficientNet-Lite0 with its real ImageNet weights "
                    "at several extraction points, an untrained copy, the pixel baselines) as a perceptual metric "
                    "(built-in 2AFC with 95%% intervals) and as a training loss (mini super-resolution, autoencoding "
                    "with probes, road segmentation), with pictures; ends by printing the path of one HTML report "
                    "(and its JSON). Finished runs in --out are reused and a killed demo resumes.")
    p.add_argument("--out", default="lossnet-out/demo", help="output folder (default: lossnet-out/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="the perceptual-metric step only (under a minute); the report shows the training runs "
                        "already finished in --out")
    p.add_argument("--restart", action="store_true", help="discard the finished runs and reports in --out first")
    p.add_argument("--kumar", action="store_true",
                   help="also run the kumar-mini classifier study (about 10 more minutes)")
    p.add_argument("--workers", type=int, default=None,
                   help="training runs in parallel (default: the CPU count, at most 4)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import DemoSettings, run_demo
    from ..errors import InputError

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}.")
    settings = DemoSettings.preset("quick" if args.quick else "full", kumar=args.kumar, workers=args.workers)
    run_demo(args.out, seed=args.seed, restart=args.restart, settings=settings)
    return 0
