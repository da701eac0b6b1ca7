"""``lossnet train autoencoder|superres|segmentation``: the downstream tasks of Pihlgren et al.;
``lossnet train classifier``: the ImageNet-64 classifiers of Kumar et al., scored along training.

Examples:
    lossnet train superres --data builtin --net efficientnet_lite0 --layers blocks.0 --distance mse
    lossnet train superres --data builtin --net none --distance l2          # the pixel baseline
    lossnet train autoencoder --data ~/data/stl10 --dataset stl10 --config paper --net vgg16 --layers features.8
    lossnet train segmentation --data ~/data/mass_roads --config paper --net vgg16 --layers features.8
    lossnet train classifier --arch kumar_resnet6_w0.25 --data builtin --config mini
    lossnet train classifier --arch kumar_resnet50 --data imagenet64:~/data/imagenet64 --config kumar-resnet
    torchrun --nproc_per_node 4 -m lossnet train classifier --arch kumar_resnet50 --config kumar-resnet --data ...
        # (one run, data parallel over 4 GPUs with the same global batch)

Running the same command again with the same ``--out`` resumes an interrupted run from its
last checkpoint (or reports the finished one); ``--restart`` starts it over.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

TASK_NAMES = ("autoencoder", "superres", "segmentation", "classifier")
DOWNSTREAM_CONFIGS = ("mini", "paper")
# Defaults of the loss flags of the downstream tasks (None in the parser: the classifier task
# takes none of them, and a flag given to a task that does not use it is an error).
LOSS_DEFAULTS = {"net": "vgg16", "distance": "mse", "weights": "imagenet", "input_norm": "none"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a downstream task (autoencoder, superres, segmentation) with a perceptual loss, "
                      "or a Kumar et al. classifier",
        description="Train one of Pihlgren et al.'s downstream tasks with any loss network, extraction point and "
                    "distance as its loss (or a pixel loss as the baseline), then evaluate it; or (classifier) train "
                    "an ImageNet-64 classifier of Kumar et al. and score its Perceptual Score along training. Writes "
                    "config.json, checkpoint.pt and metrics.json to --out; the same command resumes an interrupted "
                    "run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lossnet train superres --data builtin --net efficientnet_lite0 --layers blocks.0\n"
               "  lossnet train superres --data builtin --net none --distance l2\n"
               "  lossnet train segmentation --data builtin --net efficientnet_lite0 --set epochs=2\n"
               "  lossnet train classifier --arch kumar_resnet6_w0.25 --data builtin --config mini\n"
               "  torchrun --nproc_per_node 2 -m lossnet train classifier --arch kumar_resnet6_w0.25 --data builtin\n"
               "      (one run, data parallel: batch_size stays the global batch)\n")
    p.add_argument("task", choices=TASK_NAMES, help="the task to train")
    p.add_argument("--data", default="builtin",
                   help="'builtin' (digits / scikit-image photos / generated roads) or a dataset folder "
                        "(STL-10 or SVHN; training images with Set5/Set14/BSD100; Massachusetts Roads)")
    p.add_argument("--dataset", default="auto", choices=("auto", "stl10", "svhn", "digits"),
                   help="autoencoder: which dataset --data holds (default: detected)")
    p.add_argument("--download", action="store_true",
                   help="autoencoder: download STL-10/SVHN into --data with torchvision (needs --dataset)")
    p.add_argument("--eval", dest="eval_dirs", action="append", metavar="DIR",
                   help="superres: a folder of HR evaluation images (repeat for Set5, Set14, BSD100); "
                        "default: those found inside --data")
    p.add_argument("--arch", default=None,
                   help="classifier: the network to train (kumar_resnet{D}[_w{W}][_noskip], kumar_efficientnet_b{0-5}, "
                        "kumar_vit_b8/b4/l8/l4, kumar_vit_p{P}_w{D}_d{L}_h{H}_m{M}); see lossnet.networks.classifiers")
    p.add_argument("--net", default=None,
                   help="loss network architecture (see 'lossnet list'), or 'none' for a pixel loss (default vgg16)")
    p.add_argument("--layers", default=None,
                   help="extraction point(s), comma-separated, or a layer set (pihlgren, lpips, ...); "
                        "default: the second of the study's four points (an early one)")
    p.add_argument("--distance", default=None,
                   help="mse (the study), l1, spatial, mean_pool, style; pixel baselines l2, ssim with --net none")
    p.add_argument("--weights", default=None, help="imagenet (default), random, or a state-dict path")
    p.add_argument("--input-norm", default=None, choices=("none", "auto", "imagenet"),
                   help="none: raw [0,1] inputs as the study (default); auto: what the weights expect")
    p.add_argument("--config", default=None,
                   help="mini: minutes on a CPU (default); paper: the study's hyperparameters; classifier also: "
                        "kumar-resnet, kumar-efficientnet, kumar-vit-b8, kumar-vit-l4")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a config field, e.g. --set epochs=2 --set lr=1e-4 (repeatable)")
    p.add_argument("--scale", type=int, default=None, help="superres: 4 (default) or 8")
    p.add_argument("--lpips", default=None, choices=("alex", "vgg", "squeeze", "none"),
                   help="superres: LPIPS backbone for evaluation (default alex)")
    p.add_argument("--lpips-weights", default=None,
                   help="superres: auto (ImageNet weights if already on disk, default), imagenet, random, or a path")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default=None, help="output folder (default lossnet-out/train/<task>-<net>-...)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU; bf16/fp16 on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--restart", action="store_true", help="discard an existing run in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the whole metrics JSON")
    p.set_defaults(func=run)


def default_out(args: argparse.Namespace) -> str:
    net = "pixel" if str(args.net).lower() in ("none", "pixel") else args.net
    layers = (args.layers or "default").replace(",", "+").replace("/", "_")
    return f"lossnet-out/train/{args.task}-{net}-{layers}-{args.distance}-{args.config}-seed{args.seed}"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import LossnetError
    from ..tasks import TASKS
    from ..tasks.config import LossConfig, parse_overrides
    from ..tasks.run import RunOptions

    if args.task == "classifier":
        return run_classifier(args)
    if args.arch is not None:
        raise LossnetError(f"--arch applies to 'lossnet train classifier' only; {args.task} takes --net.")
    for key, value in LOSS_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.config = args.config or "mini"
    if args.config not in DOWNSTREAM_CONFIGS:
        raise LossnetError(f"unknown --config {args.config!r} for {args.task}: use mini or paper.")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    if args.scale is not None:
        if args.task != "superres":
            print("lossnet: warning: --scale applies to superres only; ignored", file=sys.stderr)
        else:
            overrides["scale"] = args.scale
    for flag, key in (("lpips", "lpips_net"), ("lpips_weights", "lpips_weights")):
        value = getattr(args, flag)
        if value is not None:
            if args.task != "superres":
                print(f"lossnet: warning: --{flag.replace('_', '-')} applies to superres only; ignored", file=sys.stderr)
            else:
                overrides[key] = value
    loss = LossConfig(net=args.net, layers=args.layers, distance=args.distance, weights=args.weights,
                      input_norm=args.input_norm)
    out = args.out or default_out(args)
    options = RunOptions(out_dir=out, seed=args.seed, device=args.device, amp=args.amp,
                         progress=not args.quiet and sys.stderr.isatty(), restart=args.restart)
    kwargs: dict[str, Any] = {}
    if args.task == "autoencoder":
        kwargs.update(dataset=args.dataset, download=args.download)
    elif args.dataset != "auto" or args.download:
        print("lossnet: warning: --dataset/--download apply to autoencoder only; ignored", file=sys.stderr)
    if args.task == "superres":
        kwargs["eval_dirs"] = args.eval_dirs
    elif args.eval_dirs:
        print("lossnet: warning: --eval applies to superres only; ignored", file=sys.stderr)
    result = TASKS[args.task](args.config, loss, data=args.data, options=options, **kwargs, **overrides)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.task} with {loss.describe()} -> {out}/metrics.json")
    for key, value in result["metrics"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_format(v)}" for k, v in value.items())
        print(f"  {key:<22} {_format(value)}")
    return 0


# Flags of the downstream tasks that the classifier task does not take (dest -> value when unset).
_NOT_FOR_CLASSIFIER = {"net": None, "layers": None, "distance": None, "weights": None, "input_norm": None,
                       "dataset": "auto", "download": False, "eval_dirs": None, "scale": None, "lpips": None,
                       "lpips_weights": None}


def run_classifier(args: argparse.Namespace) -> int:
    """``lossnet train classifier``: train one Kumar et al. classifier, evaluating along training."""
    import torch

    from ..errors import LossnetError
    from ..tasks.classifier import train_classifier
    from ..tasks.config import parse_overrides
    from ..tasks.run import RunOptions

    given = [k for k, unset in _NOT_FOR_CLASSIFIER.items() if getattr(args, k) != unset]
    if given:
        flags = ", ".join("--" + k.replace("_", "-").replace("eval-dirs", "eval") for k in given)
        raise LossnetError(f"{flags} do not apply to 'lossnet train classifier' (it trains the network given by "
                           "--arch and scores it with the three Kumar distances); drop them.")
    if not args.arch:
        raise LossnetError("lossnet train classifier needs --arch (e.g. --arch kumar_resnet6_w0.25).")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = args.config or "mini"
    out = args.out or f"lossnet-out/train/classifier-{args.arch}-{config}-seed{args.seed}"
    options = RunOptions(out_dir=out, seed=args.seed, device=args.device, amp=args.amp,
                         progress=not args.quiet and sys.stderr.isatty(), restart=args.restart)
    result = train_classifier(args.arch, config, args.data, options, parse_overrides(args.overrides))
    if os.environ.get("RANK", "0") != "0":  # a data-parallel run (torchrun): rank 0 reports it
        return 0
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["metrics"]
    print(f"classifier {result['arch']} on {result['data']} -> {out}/metrics.json")
    print(f"  {'step':>8} {'top1':>7} " + " ".join(f"{'PS ' + d:>12}" for d in result["config"]["config"]["ps_distances"]))
    for row in result["evaluations"]:
        ps = " ".join(f"{_format(v):>12}" for v in row.get("ps", {}).values())
        print(f"  {row['step']:>8} {_format(row['top1']):>7} {ps}")
    print(f"  best PS {_format(m['best_ps'])} at step {m['best_ps_step']} (top-1 {_format(m['best_ps_top1'])}); "
          f"final top-1 {_format(m['top1'])}")
    return 0
