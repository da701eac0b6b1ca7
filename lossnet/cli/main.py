"""The ``lossnet`` command: a thin layer over the Python API.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed arguments; returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import LossnetError

# Subcommand modules (data, not if/elif): each defines register(subparsers).
COMMAND_MODULES = (
    "lossnet.cli.networks",   # list, distance
    "lossnet.cli.demo",       # demo
    "lossnet.cli.score",      # score 2afc|jnd|mos, calibrate
    "lossnet.cli.download",   # download
    "lossnet.cli.train",      # train autoencoder|superres|segmentation
    "lossnet.cli.sweep",      # sweep run|status|report|export
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossnet",
        description="Choose, use and study deep perceptual loss networks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a capability not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LossnetError as exc:
        print(f"lossnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
