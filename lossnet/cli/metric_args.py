"""The metric flags every command shares, and the one place they become a metric.

``--metric PRESET`` (``lossnet list --metrics``) or ``--net ARCH`` with ``--layers``,
``--distance``, ``--weights``, ``--lin``, ``--resize``; ``--net alex|vgg|squeeze`` alone means exactly LPIPS
(its learned lin weights); ``--net none`` is a pixel baseline (``--distance l2|ssim``). Every
flag reaches :func:`lossnet.create_metric`, which refuses conflicting ones with a clear error:
no flag is silently ignored.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_metric_args(parser, multi_distance=False)
    >>> metric_from_args(parser.parse_args(["--net", "none", "--distance", "ssim"]))[0].pixel
    True
"""
from __future__ import annotations

import argparse

from ..distances.functional import PIXEL_DISTANCES
from ..errors import LossnetError
from ..networks.extraction import INTERPOLATIONS, RESIZE_MODES

LPIPS_SHORT_NETS = ("alex", "vgg", "squeeze")
PIXEL_NETS = ("none", "pixel")


def positive_int(minimum: int = 1):
    """An argparse type: an integer >= ``minimum`` (a clear error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def resize_arg(text: str) -> str | int | tuple[int, str]:
    """An argparse type for ``--resize``: ``auto``, ``none``, an interpolation, ``N`` or
    ``N:interpolation`` (the values of ``LossNetwork(resize=...)``).

    Example:
        >>> resize_arg("224"), resize_arg("224:bicubic"), resize_arg("none")
        (224, (224, 'bicubic'), 'none')
    """
    words = (*RESIZE_MODES, *INTERPOLATIONS)
    value = text.strip().lower()
    if value in words:
        return value
    size, _, interpolation = value.partition(":")
    if size.isdigit() and int(size) > 0 and (not interpolation or interpolation in INTERPOLATIONS):
        return (int(size), interpolation) if interpolation else int(size)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a resize policy: use {', '.join(words)}, a size N (e.g. 224) or N:INTERPOLATION "
        f"(e.g. 224:bicubic)")


def add_metric_args(p: argparse.ArgumentParser, multi_distance: bool = True, default_net: str | None = "alex") -> None:
    g = p.add_argument_group("metric")
    g.add_argument("--metric", default=None, metavar="PRESET",
                   help="a metric preset (lossnet list --metrics), e.g. lpips-vgg, dists, ssim; replaces --net")
    g.add_argument("--net", default=None,
                   help="architecture (e.g. vgg16, resnet18, efficientnet_lite0, timm:NAME), alex/vgg/squeeze for the "
                        "LPIPS trunks, or 'none' for the pixel baselines" +
                        (f" (default: {default_net})" if default_net else ""))
    g.add_argument("--layers", default=None,
                   help="layer set (pihlgren, lpips, kumar, all) or comma-separated extraction points")
    if multi_distance:
        g.add_argument("--distance", nargs="+", default=None, metavar="D",
                       help="distance(s): spatial, mean_pool, style, mse, l1, cosine; l2, ssim with --net none. "
                            "Several are scored side by side from one pass; the first is the headline")
    else:
        g.add_argument("--distance", default=None, help="spatial (default), mean_pool, style, mse, l1, cosine; "
                                                        "l2, ssim with --net none")
    g.add_argument("--weights", default=None, help="imagenet (default), random, or a state-dict file")
    g.add_argument("--lin", default=None,
                   help="per-channel lin weights: 'lpips' (LPIPS's learned weights: alex/vgg/squeeze at their "
                        "LPIPS layers, spatial distance), a file from `lossnet calibrate`, or 'none'. "
                        "Default: lpips for a bare --net alex|vgg|squeeze, none otherwise")
    g.add_argument("--resize", type=resize_arg, default=None, metavar="POLICY",
                   help="how images reach the network's input size: auto (a fixed-size model's size, the weights' "
                        "interpolation), none (never; a wrong size is an error), bilinear, bicubic, N or "
                        "N:bilinear|bicubic. Default: the preset's policy (auto for --net). Recorded in results")
    g.add_argument("--version", default=None, choices=("0.0", "0.1"), help="LPIPS version (LPIPS metrics only)")
    g.add_argument("--seed", type=int, default=0, help="seed of random weights and of the bootstrap (default: 0)")
    p.set_defaults(_default_net=default_net)


def add_run_args(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=positive_int(1), default=50, help="items per forward pass (default: 50)")
    r.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:1, mps")
    r.add_argument("--workers", type=positive_int(0), default=0, help="data-loading worker processes (default: 0)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def _distances(args: argparse.Namespace) -> list[str] | None:
    d = getattr(args, "distance", None)
    if d is None:
        return None
    return list(d) if isinstance(d, list) else [d]


def metric_from_args(args: argparse.Namespace, reduction: str = "none"):
    """``(metric, distances)`` from the shared flags, through :func:`lossnet.loss.create_metric`."""
    from ..loss.factory import create_metric
    from ..loss.presets import lpips_preset_name

    distances = _distances(args)
    first = distances[0] if distances else None
    lin = args.lin
    if args.metric is not None:
        if args.net is not None:
            raise LossnetError(f"--metric {args.metric} and --net {args.net} both name the metric: give one of them.")
        name = args.metric
        if args.version is not None:
            raise LossnetError("--version applies to --net alex|vgg|squeeze; a preset names its version "
                               "(e.g. --metric lpips-alex-v0.0).")
    else:
        net = args.net or args._default_net
        if net is None:
            raise LossnetError("name the metric: --net ARCH, --net none with --distance l2|ssim, or --metric PRESET.")
        if net in LPIPS_SHORT_NETS and args.layers is None and first in (None, "spatial"):
            # exactly LPIPS: its learned lin weights (default), its lpips=False baseline (--lin none), or the
            # LPIPS trunk and input scaling with your own lin file
            own = lin not in (None, "lpips", "none")
            name = lpips_preset_name(net, args.version or "0.1", lin=lin in (None, "lpips"))
            lin = lin if own else None
        elif args.version is not None:
            raise LossnetError(f"--version {args.version} applies to the LPIPS metrics (a bare --net alex|vgg|squeeze), "
                               f"not to --net {net} with these flags.")
        else:
            name = None if net in PIXEL_NETS else net
            if name is None and first not in PIXEL_DISTANCES:
                raise LossnetError(f"--net {net} compares pixels: pass --distance l2 or --distance ssim "
                                   f"(got {first or 'no --distance'}).")
    kwargs = {} if args.weights is None else {"weights": args.weights}
    if getattr(args, "resize", None) is not None:
        kwargs["resize"] = args.resize
    if lin is not None:
        kwargs["lin"] = None if lin.lower() == "none" else lin
    metric = create_metric(name, layers=args.layers, distance=first, reduction=reduction, seed=args.seed, **kwargs)
    return metric, distances


__all__ = ["add_metric_args", "add_run_args", "metric_from_args", "positive_int", "resize_arg"]
