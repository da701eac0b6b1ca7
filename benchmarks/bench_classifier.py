#!/usr/bin/env python
"""The classifier study's data loader, training-step overhead and checkpoint-evaluation cost.

Run from the repo root::

    python benchmarks/bench_classifier.py            # writes benchmarks/results/classifier.{json,md}
    python benchmarks/bench_classifier.py --quick    # fewer images and repeats (a smoke run)

Setting: CPU, ONE torch thread by default (``--threads N``), nothing downloaded.

1. Loader, images/s: one pass over N 64x64 images (the built-in photo patches) in batches of
   256 with random crop (pad 4) + flip and normalisation, (a) lossnet: the uint8 arrays in a
   memory-mapped ``.npy`` file, fetched a batch at a time (``ClassificationItems``) and
   augmented batched on tensors (``augment_batch``); (b) torchvision: the same images as PNG
   files read by ``ImageFolder`` with ``RandomCrop(64, padding=4)``, ``RandomHorizontalFlip``,
   ``ToTensor``, ``Normalize`` and a ``DataLoader`` (0 workers in both). Ratio b / a (goal >= 10).
2. Training-step overhead: ``train_classifier`` (the shared Trainer, its data order, batched
   augmentation, learning-rate schedule; no checkpoint or evaluation inside the timed loop)
   against a minimal hand-written loop (the same model, optimiser, batches and augmentation)
   for the same steps of ResNet-6 at width 0.25, batch 64. Overhead = ratio - 1 (goal <= 5 %).
3. One checkpoint evaluation (top-1 on the 560 validation patches + PS with three functions and
   layer-wise PS on the built-in 2AFC set, 100 triplets per subset, from one pass) against one
   training epoch on the 2240 training patches.

Timings are interleaved (alternating order each repeat) after warm-up; ratios are medians of
per-repeat ratios.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, which puts the repo root on the path

import common as bench  # noqa: E402

ARCH = "kumar_resnet6_w0.25_c14"


def _loader_setup(n: int, folder: Path):
    import numpy as np
    from PIL import Image

    from lossnet.data.imagenet64 import ClassificationItems, ImageArrays
    from lossnet.data.patches64 import builtin_patches

    sets = builtin_patches(n_train=max(1, n // 14 + 1), n_val=0)
    src = sets["train"]
    images, labels = np.ascontiguousarray(src.images[:n]), np.asarray(src.labels[:n])
    np.save(folder / "images.npy", images)
    arrays = ImageArrays(np.load(folder / "images.npy", mmap_mode="r"), labels, src.num_classes, "bench")
    tree = folder / "tree"
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = tree / f"class{int(lab):02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:05d}.png")
    return ClassificationItems(arrays), tree


def bench_loader(n: int, repeats: int, folder: Path) -> dict:
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from lossnet.data.imagenet64 import augment_batch, collate_batch, normalize
    from lossnet.tasks.trainer import epoch_keys

    items, tree = _loader_setup(n, folder)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def ours():
        loader = torch.utils.data.DataLoader(items, batch_size=256, sampler=epoch_keys(len(items), 0, 0),
                                             collate_fn=collate_batch)
        seen = 0
        for batch in loader:
            x = normalize(augment_batch(batch["images"], batch["seeds"], crop="pad", padding=4), mean, std)
            seen += x.shape[0]
        return seen

    folder_ds = ImageFolder(str(tree), transform=T.Compose([
        T.RandomCrop(64, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]))

    def theirs():
        seen = 0
        for x, _ in torch.utils.data.DataLoader(folder_ds, batch_size=256, shuffle=True):
            seen += x.shape[0]
        return seen

    t = bench.time_interleaved({"lossnet": ours, "torchvision": theirs}, warmup=1, repeats=repeats)
    assert t["lossnet"]["last"] == t["torchvision"]["last"] == n
    ratio = bench.paired_ratios(t["torchvision"]["times_s"], t["lossnet"]["times_s"])
    return {"n_images": n, "lossnet_images_per_s": n / t["lossnet"]["median_s"],
            "torchvision_images_per_s": n / t["torchvision"]["median_s"], "speedup": ratio,
            "lossnet": bench.timings(t["lossnet"]),
            "torchvision": bench.timings(t["torchvision"])}


def bench_step_overhead(steps: int, repeats: int, folder: Path) -> dict:
    import torch

    from lossnet.data.imagenet64 import ClassificationItems, augment_batch, normalize
    from lossnet.data.patches64 import builtin_patches
    from lossnet.networks.classifiers import build_classifier
    from lossnet.tasks.classifier import classification_loss, train_classifier
    from lossnet.tasks.classifier_schedules import (
        learning_rate,
        make_optimizer,
        parameter_groups,
    )
    from lossnet.tasks.run import RunOptions
    from lossnet.tasks.trainer import epoch_keys

    sets = builtin_patches()
    train = sets["train"]
    tiny_val = type(train)(train.images[:8], train.labels[:8], train.num_classes, "val")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    overrides = {"train_steps": steps, "batch_size": 64, "eval_steps": [steps], "eval_at_init": False,
                 "ps_data": "none", "checkpoint_every": 10 ** 9, "schedule": "constant", "lr": 0.05}
    counter = {"n": 0}

    def ours():
        counter["n"] += 1
        out = folder / f"run{counter['n']}"
        result = train_classifier(ARCH, "mini", (train, tiny_val), RunOptions(out_dir=out, device="cpu",
                                  progress=False), overrides)
        return result["train"]["train_seconds"]

    def hand():
        torch.manual_seed(0)
        model = build_classifier(ARCH, seed=0, bn_momentum=0.9)
        opt = make_optimizer("sgd", parameter_groups(model, 5e-4), lr=0.05)
        items = ClassificationItems(train)
        keys = epoch_keys(len(train), 0, 0)
        t0 = time.perf_counter()
        model.train()
        for s in range(steps):
            batch = items.__getitems__(keys[s * 64:(s + 1) * 64])
            for g in opt.param_groups:
                g["lr"] = learning_rate(s, 0.05, steps, "constant")
            x = normalize(augment_batch(batch["images"], batch["seeds"]), mean, std)
            loss = classification_loss(model(x), batch["labels"], 0.0)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    times = {"trainer": [], "hand": []}
    hand()  # warm-up
    for i in range(repeats):
        order = ("trainer", "hand") if i % 2 == 0 else ("hand", "trainer")
        for name in order:
            times[name].append(ours() if name == "trainer" else hand())
    ratio = bench.paired_ratios(times["trainer"], times["hand"])
    return {"arch": ARCH, "steps": steps, "batch_size": 64, "trainer_s": times["trainer"], "hand_s": times["hand"],
            "ratio": ratio, "overhead_percent": 100 * (ratio["median"] - 1)}


def bench_eval_vs_epoch(repeats: int, folder: Path) -> dict:
    import torch

    from lossnet.data.patches64 import builtin_patches
    from lossnet.networks.classifiers import arch_spec, build_classifier
    from lossnet.tasks.classifier import train_classifier
    from lossnet.tasks.classifier_eval import (
        accuracy,
        perceptual_score,
        perceptual_sets,
    )
    from lossnet.tasks.run import RunOptions

    sets = builtin_patches()
    train, val = sets["train"], sets["val"]
    steps = len(train) // 64
    ps_sets = perceptual_sets("builtin", 100)
    spec = arch_spec(ARCH)
    model = build_classifier(ARCH, seed=0)
    ckpt = folder / "eval.pt"
    torch.save(model.state_dict(), ckpt)
    counter = {"n": 0}

    def epoch():
        counter["n"] += 1
        result = train_classifier(ARCH, "mini", (train, val), RunOptions(
            out_dir=folder / f"epoch{counter['n']}", device="cpu", progress=False),
            {"train_steps": steps, "batch_size": 64, "eval_steps": [steps], "eval_at_init": False, "ps_data": "none",
             "val_limit": 1, "checkpoint_every": 10 ** 9})
        return result["train"]["train_seconds"]

    def evaluate():
        t0 = time.perf_counter()
        accuracy(model, val, spec.mean, spec.std, torch.device("cpu"), 256)
        perceptual_score(ARCH, ckpt, ps_sets, ["spatial", "mean_pool", "style"], torch.device("cpu"))
        return time.perf_counter() - t0

    evaluate()
    times = {"epoch": [], "eval": []}
    for i in range(repeats):
        for name in (("epoch", "eval") if i % 2 == 0 else ("eval", "epoch")):
            times[name].append(epoch() if name == "epoch" else evaluate())
    ratio = bench.paired_ratios(times["eval"], times["epoch"])
    return {"epoch_steps": steps, "n_val": len(val), "n_triplets": sum(len(v) for v in ps_sets.values()),
            "epoch_s": times["epoch"], "eval_s": times["eval"], "eval_over_epoch": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, steps and repeats")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    bench.set_threads(args.threads)
    info = bench.machine_info()
    n, steps, repeats = (512, 10, 2) if args.quick else (2048, 30, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loader = bench_loader(n, repeats, tmp)
        overhead = bench_step_overhead(steps, repeats, tmp)
        cost = bench_eval_vs_epoch(max(1, repeats - 1), tmp)
    payload = {"machine": info, "quick": args.quick, "loader": loader, "step_overhead": overhead,
               "eval_vs_epoch": cost}
    md = ["# Classifier study benchmarks", "", __doc__[__doc__.index("Setting:"):__doc__.index("Timings")].strip(), "",
          bench.markdown_table(["measure", "value", "goal"], [
              ["loader images/s, lossnet", f"{loader['lossnet_images_per_s']:.0f}", ""],
              ["loader images/s, torchvision ImageFolder", f"{loader['torchvision_images_per_s']:.0f}", ""],
              ["loader speed-up (median paired ratio)", f"{loader['speedup']['median']:.1f}x", ">= 10x"],
              ["training-step overhead vs hand-written loop", f"{overhead['overhead_percent']:+.1f} %", "<= 5 %"],
              ["one checkpoint evaluation / one epoch", f"{cost['eval_over_epoch']['median']:.2f}", ""],
          ]), "", "## Machine", "", bench.machine_markdown(info)]
    json_path, md_path = bench.write_results("classifier", payload, "\n".join(md) + "\n")
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
