"""``lossnet score 2afc|jnd|mos`` and ``lossnet calibrate``: loss networks as perceptual metrics.

Examples::

    lossnet score 2afc --data builtin --net efficientnet_lite0 --distance spatial mean_pool style
    lossnet score 2afc --data ~/data/bapps --net alex --lin lpips --json alex.json
    lossnet score 2afc --data ~/data/bapps/2afc/val --net none --distance ssim
    lossnet score jnd --data ~/data/bapps --net vgg
    lossnet score mos --dataset tid2013 --data ~/data/tid2013 --net alex
    lossnet calibrate --data ~/data/bapps --net resnet18 --layers kumar --out resnet18_lin.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import LossnetError

LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
PIXEL_NETS = ("none", "pixel")


def _add_metric_args(p: argparse.ArgumentParser, multi_distance: bool = True) -> None:
    g = p.add_argument_group("metric")
    g.add_argument("--net", default="alex",
                   help="architecture (e.g. vgg16, resnet18, efficientnet_lite0, timm:NAME), alex/vgg/squeeze for "
                        "the LPIPS trunks, or 'none' for the pixel baselines (default: alex)")
    g.add_argument("--layers", default=None,
                   help="layer set (pihlgren, lpips, kumar, all) or comma-separated extraction points")
    if multi_distance:
        g.add_argument("--distance", nargs="+", default=None, metavar="D",
                       help="distance(s): spatial, mean_pool, style, mse, l1; l2, ssim with --net none. Several are "
                            "scored side by side from one pass; the first is the headline (default: spatial)")
    else:
        g.add_argument("--distance", default=None, help="spatial (default), mean_pool, mse or l1")
    g.add_argument("--weights", default="imagenet", help="imagenet (default), random, or a state-dict file")
    g.add_argument("--lin", default=None,
                   help="per-channel lin weights: 'lpips' (the shipped LPIPS weights, alex/vgg/squeeze), a file from "
                        "`lossnet calibrate`, or 'none'. Default: lpips for alex/vgg/squeeze, none otherwise")
    g.add_argument("--version", default="0.1", choices=("0.0", "0.1"), help="LPIPS version (alex/vgg/squeeze)")
    g.add_argument("--seed", type=int, default=0, help="seed of random weights and of the bootstrap (default: 0)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=50, help="items per forward pass (default: 50)")
    r.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    r.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default: 0)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_metric(net: str | None, layers: str | None, distance: str | None, weights: str, lin: str | None,
                 version: str = "0.1", seed: int = 0):
    """The metric a command line describes.

    ``alex``/``vgg``/``squeeze`` without ``--layers`` are exactly LPIPS (lin weights ``lpips`` unless
    ``--lin`` says otherwise); ``none`` is a pixel baseline (``--distance l2|ssim``); any other
    name is a :class:`lossnet.PerceptualLoss` over that architecture.

    Example:
        >>> build_metric("none", None, "ssim", "imagenet", None).pixel
        True
    """
    from ..distances.functional import PIXEL_DISTANCES, canonical_distance
    from ..loss import PerceptualLoss, lpips

    net = net or "alex"
    dist = canonical_distance(distance) if distance else None
    lin_arg: Any = None if lin is None or lin.lower() == "none" else lin
    if net in PIXEL_NETS or (dist in PIXEL_DISTANCES and net in LPIPS_NETS and layers is None and lin is None):
        if dist not in PIXEL_DISTANCES:
            raise LossnetError(f"--net {net} compares pixels: pass --distance l2 or --distance ssim "
                               f"(got {distance or 'none'}).")
        if lin_arg is not None or layers is not None:
            raise LossnetError("the pixel baselines (--net none) take no --layers and no --lin.")
        return PerceptualLoss(distance=dist, reduction="none")
    if dist in PIXEL_DISTANCES:
        raise LossnetError(f"--distance {dist} is a pixel baseline: use it with --net none.")
    if net in LPIPS_NETS and layers is None and dist in (None, "spatial"):
        return lpips(net, version=version, weights=weights,
                     lin="lpips" if lin is None else lin_arg, reduction="none")
    if lin_arg == "lpips":
        raise LossnetError("--lin lpips exists for the LPIPS trunks only (--net alex|vgg|squeeze without --layers "
                           "and with --distance spatial); for other networks calibrate your own with "
                           "`lossnet calibrate` and pass its file.")
    arch = LPIPS_NETS.get(net, net)
    if net in LPIPS_NETS and layers is None:
        layers = "lpips"
    return PerceptualLoss(arch, layers=layers, distance=dist or "spatial", weights=weights, lin=lin_arg,
                          reduction="none", seed=seed)


def _metric_from_args(args: argparse.Namespace):
    distances = args.distance if isinstance(args.distance, list) else ([args.distance] if args.distance else None)
    metric = build_metric(args.net, args.layers, distances[0] if distances else None, args.weights, args.lin,
                          args.version, args.seed)
    return metric, distances


def _label(args: argparse.Namespace, metric) -> str | None:
    """A short name for the table: the LPIPS variant when the command line means LPIPS."""
    if metric.pixel or args.net not in LPIPS_NETS or args.layers is not None:
        return None
    lin = args.lin if args.lin is not None else "lpips"
    return f"LPIPS-{args.net} v{args.version} (lin: {lin})"


def _limit(sets: dict, limit: int | None) -> dict:
    if not limit:
        return sets
    from torch.utils.data import Subset

    return {k: (Subset(ds, range(min(limit, len(ds)))) if len(ds) > limit else ds) for k, ds in sets.items()}


def _subsets_arg(value: str | None):
    return None if not value else [s.strip() for s in value.split(",") if s.strip()]


def _add_data_args(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--data", required=True,
                   help="a BAPPS root (holding 2afc/ and jnd/), a split or subset folder, or 'builtin' "
                        "(a SYNTHETIC set generated from scikit-image photos)")
    if kind == "2afc":
        p.add_argument("--split", default="val", choices=("val", "train"), help="BAPPS 2AFC split (default: val)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets (default: all found)")
    p.add_argument("--limit", type=int, default=None,
                   help="score only the first N items of each subset (builtin: N per subset; default: all)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT")


def register(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score", help="score a loss network as a perceptual metric (BAPPS 2AFC/JND, TID2013, KADID-10k)",
        description="Score a loss network (architecture x extraction points x distance) as a perceptual metric.")
    sub = score.add_subparsers(dest="task", metavar="TASK")

    p = sub.add_parser("2afc", help="BAPPS 2AFC Perceptual Score per subset and per layer",
                       description="BAPPS 2AFC Perceptual Score (0-100) per subset with bootstrap 95% CIs, the mean "
                                   "over subsets, and the layer-wise score of every extraction point, all from one "
                                   "pass over the data.")
    _add_data_args(p, "2afc")
    _add_metric_args(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (0: none)")
    p.add_argument("--analyses", action="store_true",
                   help="also the Kumar et al. analyses (distortion sensitivity, activation entropy, rank correlation)")
    p.set_defaults(func=cmd_2afc)

    p = sub.add_parser("jnd", help="BAPPS JND mAP per subset and per layer",
                       description="BAPPS JND mAP (0-100): pairs ranked by distance, 'same' judgements as positives.")
    _add_data_args(p, "jnd")
    _add_metric_args(p)
    p.set_defaults(func=cmd_jnd)

    p = sub.add_parser("mos", help="SROCC/KROCC/PLCC on TID2013, KADID-10k or a CSV of opinion scores",
                       description="Correlation of d(reference, distorted) with opinion scores; the sign is set so "
                                   "that a metric agreeing with people gets positive values.")
    p.add_argument("--dataset", required=True, choices=("tid2013", "kadid10k", "csv"))
    p.add_argument("--data", required=True, help="the dataset folder (csv: the CSV file with columns ref,dist,score)")
    p.add_argument("--root", default=None, help="csv: folder the image paths are relative to (default: the CSV's)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="csv: a higher score means WORSE quality (e.g. DMOS); default: higher is better")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE (default: keep)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT")
    _add_metric_args(p)
    p.set_defaults(func=cmd_mos, batch_size=8)

    score.set_defaults(func=lambda args: (score.print_help(), 2)[1])

    p = subparsers.add_parser(
        "calibrate", help="learn LPIPS-style per-channel lin weights for any loss network",
        description="Train non-negative per-channel linear weights on BAPPS 2AFC train with the LPIPS protocol "
                    "(batch 50, Adam 1e-4 betas (0.5, 0.999), N constant + N decaying epochs, ranking-net BCE). "
                    "Use the result with --lin FILE or PerceptualLoss(..., lin=FILE).")
    p.add_argument("--data", required=True, help="a BAPPS root, 2afc/train, or 'builtin' (SYNTHETIC)")
    p.add_argument("--split", default="train", choices=("train", "val"), help="BAPPS split (default: train)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets (default: all: traditional, cnn, mix)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N triplets of each subset")
    p.add_argument("--out", required=True, help="where to save the lin weights (.pt)")
    p.add_argument("--epochs", type=int, default=5, help="epochs at the constant rate (default: 5)")
    p.add_argument("--decay-epochs", type=int, default=None, help="epochs of linear decay (default: = --epochs)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the training history as JSON to OUT")
    _add_metric_args(p, multi_distance=False)
    p.set_defaults(func=cmd_calibrate, net=None)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def _load_2afc_sets(args: argparse.Namespace, split: str) -> dict:
    if args.data == "builtin":
        from ..data.synthetic import builtin_2afc

        sets = builtin_2afc(n_per_subset=args.limit or 500, seed=0)
        wanted = _subsets_arg(args.subsets)
        if wanted:
            missing = [s for s in wanted if s not in sets]
            if missing:
                raise LossnetError(f"subset(s) {', '.join(missing)} not in the builtin set; available: "
                                   f"{', '.join(sets)}")
            sets = {k: sets[k] for k in wanted}
        return sets
    from ..data import load_2afc

    return _limit(load_2afc(args.data, split=split, subsets=_subsets_arg(args.subsets)), args.limit)


def _note_synthetic(sets: dict) -> None:
    from ..tasks.similarity import is_synthetic

    if any(is_synthetic(ds) for ds in sets.values()):
        print("note: SYNTHETIC built-in data (rule-based judgements, not human).", file=sys.stderr)


def cmd_2afc(args: argparse.Namespace) -> int:
    from ..tasks.similarity import format_table, score_2afc

    sets = _load_2afc_sets(args, args.split)
    metric, distances = _metric_from_args(args)
    if args.analyses:
        from ..tasks.analyses import analyze_2afc, format_analysis

        report = analyze_2afc(metric, sets, batch_size=args.batch_size, distances=distances,
                              bootstrap=args.bootstrap, seed=args.seed, progress=_progress(args), device=args.device,
                              num_workers=args.workers)
        print(_table_from_dict(report["score"]))
        print()
        print(format_analysis(report))
        if args.json:
            _write(args.json, report)
        return 0
    result = score_2afc(metric, sets, batch_size=args.batch_size, distances=distances, bootstrap=args.bootstrap,
                        seed=args.seed, progress=_progress(args), device=args.device, num_workers=args.workers,
                        name=_label(args, metric))
    print(format_table(result))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _table_from_dict(d: dict) -> str:
    """The 2AFC table of a serialised result (as stored in an analysis report)."""
    from ..tasks.similarity import TwoAFCResult, format_table

    r = TwoAFCResult(subsets=d["subsets"], mean=d["mean"], mean_ci_low=d["mean_ci_low"],
                     mean_ci_high=d["mean_ci_high"], layers=d["layers"], layer_means=d["layer_means"],
                     distance=d["distance"], distances=d["distances"], metric=d["metric"], synthetic=d["synthetic"],
                     n=d["n"], bootstrap=d["bootstrap"], seed=d["seed"], batch_size=d["batch_size"],
                     seconds=d["seconds"], datasets=d["datasets"], name=d.get("name"))
    return format_table(r)


def _write(path: str, obj: Any) -> None:
    from pathlib import Path

    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {path}")


def cmd_jnd(args: argparse.Namespace) -> int:
    from ..tasks.similarity import format_table, score_jnd

    if args.data == "builtin":
        from ..data.synthetic import builtin_jnd

        sets = builtin_jnd(n=args.limit or 300, seed=0)
    else:
        from ..data import load_jnd

        sets = _limit(load_jnd(args.data, subsets=_subsets_arg(args.subsets)), args.limit)
    metric, distances = _metric_from_args(args)
    result = score_jnd(metric, sets, batch_size=args.batch_size, distances=distances, progress=_progress(args),
                       device=args.device, num_workers=args.workers, name=_label(args, metric))
    print(format_table(result))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def cmd_mos(args: argparse.Namespace) -> int:
    from ..data import load_kadid10k, load_mos_csv, load_tid2013
    from ..tasks.similarity import format_table, score_mos

    if args.dataset == "tid2013":
        ds = load_tid2013(args.data, size=args.size)
    elif args.dataset == "kadid10k":
        ds = load_kadid10k(args.data, size=args.size)
    else:
        ds = load_mos_csv(args.data, root=args.root, size=args.size, higher_is_better=not args.lower_is_better)
    higher = ds.higher_is_better
    name = getattr(ds, "name", args.dataset)
    if args.limit and args.limit < len(ds):
        from torch.utils.data import Subset

        ds = Subset(ds, range(args.limit))
    metric, distances = _metric_from_args(args)
    result = score_mos(metric, ds, batch_size=args.batch_size, distances=distances, progress=_progress(args),
                       device=args.device, num_workers=args.workers, higher_is_better=higher, name=_label(args, metric),
                       dataset_name=name)
    print(format_table(result))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..tasks.calibration import calibrate

    if not args.net or args.net in PIXEL_NETS:
        raise LossnetError("calibrate needs --net ARCH (a loss network; alex/vgg/squeeze mean the LPIPS trunks).")
    sets = _load_2afc_sets(args, args.split)
    _note_synthetic(sets)
    lin = None if args.lin in (None, "none") else args.lin
    if args.net in LPIPS_NETS and args.layers is None and args.distance in (None, "spatial"):
        from ..loss import lpips

        # the LPIPS trunk and input scaling; start from the shipped weights only with --lin lpips
        metric = lpips(args.net, version=args.version, weights=args.weights, lin=lin, reduction="none")
    else:
        if lin == "lpips":
            raise LossnetError("--lin lpips exists for the LPIPS trunks only "
                               "(--net alex|vgg|squeeze without --layers).")
        metric = build_metric(args.net, args.layers, args.distance or "spatial", args.weights, lin or "none",
                              args.version, args.seed)
    history: list = []
    weights = calibrate(metric, sets, epochs=args.epochs, decay_epochs=args.decay_epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=_progress(args),
                        device=args.device, num_workers=args.workers, out=args.out, history=history)
    print(f"calibrated {metric.net.arch} [{', '.join(metric.net.points)}], distance {metric.distance}, "
          f"{sum(len(s) for s in sets.values())} triplets")
    print(f"{'epoch':>5}  {'lr':>9}  {'loss':>8}  {'2AFC %':>7}")
    for h in history:
        print(f"{h['epoch']:>5}  {h['lr']:>9.2e}  {h['loss']:>8.4f}  {h['accuracy']:>7.2f}")
    print(f"saved lin weights ({', '.join(f'{p}: {w.numel()}' for p, w in weights.items())} channels) to {args.out}")
    layers = args.layers or ("lpips" if args.net in LPIPS_NETS else None)
    print(f"use: lossnet score 2afc --data DIR --net {args.net}{' --layers ' + layers if layers else ''} "
          f"--weights {args.weights} --lin {args.out}")
    if args.json:
        _write(args.json, {"out": args.out, "arch": metric.net.arch, "points": list(metric.net.points),
                           "distance": metric.distance, "history": history})
    return 0
