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
import sys
from typing import Any

from ..errors import LossnetError
from .metric_args import (
    LPIPS_SHORT_NETS,
    add_metric_args,
    add_run_args,
    metric_from_args,
    positive_int,
)


def _label(args: argparse.Namespace, metric) -> str | None:
    """A short name for the table: the preset a command line means, if any."""
    return getattr(metric, "preset", None)


def _limit(sets: dict, limit: int | None) -> dict:
    if limit is None:
        return sets
    from torch.utils.data import Subset

    return {k: (Subset(ds, range(min(limit, len(ds)))) if len(ds) > limit else ds) for k, ds in sets.items()}


def _subsets_arg(value: str | None):
    return None if not value else [s.strip() for s in value.split(",") if s.strip()]


def _add_interpolation_arg(p: argparse.ArgumentParser) -> None:
    from ..data import INTERPOLATIONS

    p.add_argument("--interpolation", default=None, choices=sorted(INTERPOLATIONS),
                   help="resizing filter; default: the reference protocol (BAPPS: torchvision Resize(64), bilinear "
                        "with antialiasing, as the LPIPS evaluation does). Another filter gives other scores")


def _add_data_args(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--data", required=True,
                   help="a BAPPS root (holding 2afc/ and jnd/), a split or subset folder, or 'builtin' "
                        "(a SYNTHETIC set generated from scikit-image photos)")
    if kind == "2afc":
        p.add_argument("--split", default="val", choices=("val", "train"), help="BAPPS 2AFC split (default: val)")
    p.add_argument("--subsets", default=None, help="comma-separated subsets (default: all found)")
    _add_interpolation_arg(p)
    p.add_argument("--limit", type=positive_int(1), default=None,
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
    add_metric_args(p)
    add_run_args(p)
    p.add_argument("--bootstrap", type=positive_int(0), default=1000, help="bootstrap resamples for the CIs (0: none)")
    p.add_argument("--analyses", action="store_true",
                   help="also the Kumar et al. analyses (distortion sensitivity, activation entropy, rank correlation)")
    p.set_defaults(func=cmd_2afc)

    p = sub.add_parser("jnd", help="BAPPS JND mAP per subset and per layer",
                       description="BAPPS JND mAP (0-100): pairs ranked by distance, 'same' judgements as positives.")
    _add_data_args(p, "jnd")
    add_metric_args(p)
    add_run_args(p)
    p.set_defaults(func=cmd_jnd)

    p = sub.add_parser("mos", help="SROCC/KROCC/PLCC on TID2013, KADID-10k or a CSV of opinion scores",
                       description="Correlation of d(reference, distorted) with opinion scores; the sign is set so "
                                   "that a metric agreeing with people gets positive values.")
    p.add_argument("--dataset", required=True, choices=("tid2013", "kadid10k", "csv"))
    p.add_argument("--data", required=True, help="the dataset folder (csv: the CSV file with columns ref,dist,score)")
    p.add_argument("--root", default=None, help="csv: folder the image paths are relative to (default: the CSV's)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="csv: a higher score means WORSE quality (e.g. DMOS); default: higher is better")
    p.add_argument("--size", type=positive_int(1), default=None,
                   help="resize each image so that its SHORTER side is SIZE pixels, aspect ratio kept (default: keep)")
    p.add_argument("--limit", type=positive_int(1), default=None, help="score only the first N images")
    _add_interpolation_arg(p)
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT")
    add_metric_args(p)
    add_run_args(p)
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
    p.add_argument("--limit", type=positive_int(1), default=None, help="use only the first N triplets of each subset")
    p.add_argument("--out", required=True, help="where to save the lin weights (.pt)")
    p.add_argument("--epochs", type=positive_int(0), default=5, help="epochs at the constant rate (default: 5)")
    p.add_argument("--decay-epochs", type=positive_int(0), default=None,
                   help="epochs of linear decay (default: = --epochs)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the training history as JSON to OUT")
    add_metric_args(p, multi_distance=False, default_net=None)
    add_run_args(p)
    p.set_defaults(func=cmd_calibrate)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def _interpolation(args: argparse.Namespace) -> dict:
    return {} if getattr(args, "interpolation", None) is None else {"interpolation": args.interpolation}


def _load_2afc_sets(args: argparse.Namespace, split: str) -> dict:
    if args.data == "builtin":
        if getattr(args, "interpolation", None) is not None:
            raise LossnetError("--interpolation applies to image files; the builtin set is generated at its size.")
        from ..data.synthetic import builtin_2afc

        sets = builtin_2afc(n_per_subset=500 if args.limit is None else args.limit, seed=0)
        wanted = _subsets_arg(args.subsets)
        if wanted:
            missing = [s for s in wanted if s not in sets]
            if missing:
                raise LossnetError(f"subset(s) {', '.join(missing)} not in the builtin set; available: "
                                   f"{', '.join(sets)}")
            sets = {k: sets[k] for k in wanted}
        return sets
    from ..data import load_2afc

    return _limit(load_2afc(args.data, split=split, subsets=_subsets_arg(args.subsets),
                            **_interpolation(args)), args.limit)


def _note_synthetic(sets: dict) -> None:
    from ..scoring import is_synthetic

    if any(is_synthetic(ds) for ds in sets.values()):
        print("note: SYNTHETIC built-in data (rule-based judgements, not human).", file=sys.stderr)


def cmd_2afc(args: argparse.Namespace) -> int:
    from ..scoring import score_2afc

    sets = _load_2afc_sets(args, args.split)
    metric, distances = metric_from_args(args)
    if args.analyses:
        from ..scoring import analyze_2afc, format_analysis

        report = analyze_2afc(metric, sets, batch_size=args.batch_size, distances=distances,
                              bootstrap=args.bootstrap, seed=args.seed, progress=_progress(args), device=args.device,
                              num_workers=args.workers)
        print(_table_from_dict(report["score"]))
        print()
        print(format_analysis(report))
        if args.json:
            _write(args.json, report)
        return 0
    result = score_2afc(metric, sets, distances=distances, bootstrap=args.bootstrap, seed=args.seed,
                        **_run_options(args, metric))
    return _show(result, args)


def _table_from_dict(d: dict) -> str:
    """The 2AFC table of a serialised result (as stored in an analysis report)."""
    from ..scoring import TwoAFCResult, format_table

    r = TwoAFCResult(subsets=d["subsets"], mean=d["mean"], mean_ci_low=d["mean_ci_low"],
                     mean_ci_high=d["mean_ci_high"], layers=d["layers"], layer_means=d["layer_means"],
                     distance=d["distance"], distances=d["distances"], metric=d["metric"], synthetic=d["synthetic"],
                     n=d["n"], bootstrap=d["bootstrap"], seed=d["seed"], batch_size=d["batch_size"],
                     seconds=d["seconds"], datasets=d["datasets"], name=d.get("name"))
    return format_table(r)


def _run_options(args: argparse.Namespace, metric) -> dict:
    return {"batch_size": args.batch_size, "progress": _progress(args), "device": args.device,
            "num_workers": args.workers, "name": _label(args, metric)}


def _show(result, args: argparse.Namespace) -> int:
    from ..scoring import format_table

    print(format_table(result))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def _write(path: str, obj: Any) -> None:
    from ..utils.jsonio import write_json

    write_json(path, obj)
    print(f"\nwrote {path}")


def cmd_jnd(args: argparse.Namespace) -> int:
    from ..scoring import score_jnd

    if args.data == "builtin":
        from ..data.synthetic import builtin_jnd

        if args.interpolation is not None:
            raise LossnetError("--interpolation applies to image files; the builtin set is generated at its size.")
        sets = builtin_jnd(n=300 if args.limit is None else args.limit, seed=0)
    else:
        from ..data import load_jnd

        sets = _limit(load_jnd(args.data, subsets=_subsets_arg(args.subsets), **_interpolation(args)), args.limit)
    metric, distances = metric_from_args(args)
    return _show(score_jnd(metric, sets, distances=distances, **_run_options(args, metric)), args)


def cmd_mos(args: argparse.Namespace) -> int:
    from ..data import load_kadid10k, load_mos_csv, load_tid2013
    from ..scoring import score_mos

    if args.dataset == "csv":
        ds = load_mos_csv(args.data, root=args.root, size=args.size, higher_is_better=not args.lower_is_better,
                          **_interpolation(args))
    else:
        if args.root is not None or args.lower_is_better:
            raise LossnetError(f"--root and --lower-is-better apply to --dataset csv; {args.dataset} knows its own "
                               "layout and scale.")
        loader = {"tid2013": load_tid2013, "kadid10k": load_kadid10k}[args.dataset]
        ds = loader(args.data, size=args.size, **_interpolation(args))
    higher = ds.higher_is_better
    name = getattr(ds, "name", args.dataset)
    if args.limit is not None and args.limit < len(ds):
        from torch.utils.data import Subset

        ds = Subset(ds, range(args.limit))
    metric, distances = metric_from_args(args)
    result = score_mos(metric, ds, distances=distances, higher_is_better=higher, dataset_name=name,
                       **_run_options(args, metric))
    return _show(result, args)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..scoring import calibrate

    if args.metric is None and (args.net is None or args.net in ("none", "pixel")):
        raise LossnetError("calibrate needs --net ARCH (a loss network; alex/vgg/squeeze mean the LPIPS trunks) "
                           "or --metric PRESET.")
    sets = _load_2afc_sets(args, args.split)
    _note_synthetic(sets)
    metric, _ = metric_from_args(args)
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
    layers = args.layers or ("lpips" if args.net in LPIPS_SHORT_NETS else None)
    print(f"use: lossnet score 2afc --data DIR --net {args.net}{' --layers ' + layers if layers else ''} "
          f"--weights {args.weights} --lin {args.out}")
    if args.json:
        _write(args.json, {"out": args.out, "arch": metric.net.arch, "points": list(metric.net.points),
                           "distance": metric.distance, "history": history})
    return 0
