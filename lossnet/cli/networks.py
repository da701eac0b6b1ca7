"""``lossnet list`` and ``lossnet distance``."""
from __future__ import annotations

import argparse
import json

from .metric_args import add_metric_args, metric_from_args, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="architectures and their extraction points",
                              description="List architectures, or one architecture's extraction points and layer sets.")
    p.add_argument("arch", nargs="?", help="an architecture name (e.g. vgg16, timm:convnext_tiny)")
    p.add_argument("--all", action="store_true", help="also list every torchvision classification model")
    p.add_argument("--metrics", action="store_true", help="list the metric presets (for --metric) instead")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("distance", help="perceptual distance between two image files",
                              description="Print the distance between two images under a loss network.")
    p.add_argument("image_a")
    p.add_argument("image_b")
    add_metric_args(p, multi_distance=False)
    p.add_argument("--size", type=positive_int(1), default=None,
                   help="resize both images so that their SHORTER side is SIZE pixels (aspect ratio kept) first")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_distance)


def _list_metrics(args: argparse.Namespace) -> int:
    from ..loss.factory import list_metrics
    from ..loss.presets import METRIC_PRESETS

    names = list_metrics()
    if args.json:  # every field of the preset, its extra and resize policy included
        print(json.dumps({n: METRIC_PRESETS[n].describe() for n in names}, indent=2))
        return 0
    needs = {n: f"lossnet[{METRIC_PRESETS[n].extra}]" if METRIC_PRESETS[n].extra else "-" for n in names}
    width, needs_width = max(len(n) for n in names), max(len("needs"), *(len(v) for v in needs.values()))
    print(f"{'preset':<{width}}  {'needs':<{needs_width}}  description")
    for n in names:
        print(f"{n:<{width}}  {needs[n]:<{needs_width}}  {METRIC_PRESETS[n].description}")
    print("\n'needs': the extra to install (pip install 'lossnet[EXTRA]'); '-': the core install.")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..networks import (
        extraction_points,
        get_spec,
        layer_sets,
        list_architectures,
        weights_info,
    )

    if args.metrics:
        if args.arch:
            from ..errors import LossnetError

            raise LossnetError("lossnet list --metrics lists presets; drop the architecture name, or drop --metrics.")
        return _list_metrics(args)
    if args.arch:
        spec = get_spec(args.arch)
        weights = weights_info(spec, "imagenet")
        info = {"arch": spec.name, "source": spec.source, "family": spec.family,
                "extraction_points": extraction_points(spec),
                "layer_sets": {k: v for k, v in layer_sets(spec).items() if k != "all"},
                "default_layers": spec.default_layers, "input_mean": weights.mean, "input_std": weights.std,
                "input_norm_source": weights.norm_source, "resize_policy": weights.resize_policy,
                "imagenet_top1": weights.imagenet_top1, "imagenet_top1_source": weights.top1_source}
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"{spec.name} ({spec.source}, ImageNet top-1: {info['imagenet_top1'] or 'n/a'})")
        print("extraction points, shallow to deep:")
        for p in info["extraction_points"]:
            sets = [k for k, v in info["layer_sets"].items() if p in v]
            print(f"  {p}" + (f"    [{', '.join(sets)}]" if sets else ""))
        for name, points in info["layer_sets"].items():
            print(f"layer set {name}: {', '.join(points)}")
        return 0
    names = list_architectures(include_torchvision=args.all)
    if args.json:
        print(json.dumps({n: layer_sets(n).get(get_spec(n).default_layers, []) for n in names}, indent=2))
        return 0
    width = max(len(n) for n in names)
    print(f"{'architecture':<{width}}  default layers")
    for n in names:
        spec = get_spec(n)
        sets = spec.layer_sets
        shown = sets.get(spec.default_layers) or ("(every extraction point)" if spec.default_layers == "all" else "")
        print(f"{n:<{width}}  {spec.default_layers}: {', '.join(shown) if isinstance(shown, tuple) else shown}")
    print("\nAlso: any torchvision classification model (lossnet list --all) and any timm model as timm:<name>.")
    return 0


def cmd_distance(args: argparse.Namespace) -> int:
    import torch

    from ..data.images import load_image

    size = args.size
    a = load_image(args.image_a, size=size)
    b = load_image(args.image_b, size=size)
    if a.shape != b.shape and size is None:
        from ..errors import InputError

        raise InputError(f"{args.image_a} is {tuple(a.shape[1:])} but {args.image_b} is {tuple(b.shape[1:])} "
                         "(H, W): pass --size N to resize both.")
    metric, _ = metric_from_args(args)
    with torch.no_grad():
        value = float(metric(a[None], b[None])[0])
    if args.json:
        from ..loss.factory import describe_metric

        described = describe_metric(metric)
        print(json.dumps({"image_a": args.image_a, "image_b": args.image_b, **described,
                          "layers": described["points"], "value": value}))
    else:
        print(f"{value:.6f}")
    return 0
