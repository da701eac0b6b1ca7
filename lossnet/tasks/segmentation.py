"""Road segmentation with a perceptual loss (topology-aware delineation, Mosinska et al. 2018).

An iterative U-Net takes the RGB image and its own previous prediction (zeros at first) and
refines it ``iterations`` times. The loss of each iteration is
``BCE + mu * feature_loss(prediction, label)`` with the prediction and the label repeated to
three channels; iteration ``k`` is weighted ``k / sum(1..K)`` (later ones count more).
Evaluation at threshold 0.3 on whole test images: completeness, correctness, quality, F1
and IoU, pixel-exact (as Pihlgren et al.) and with a buffer of ``buffer`` pixels
(``relaxed_*``, as the road-extraction literature).

Example:
    >>> net = IterativeUNet(width=8, depth=3)
    >>> [o.shape for o in net(torch.rand(1, 3, 32, 32), iterations=2)]
    [torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32])]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.roads import RoadPairs, SegmentationData, load_segmentation_data
from ..errors import LossnetError
from .config import LossConfig, TrainConfig
from .metrics import RoadCounts, road_counts, road_scores
from .run import RunOptions, finish_metrics, resolve_run, run_config
from .rundir import RunDir
from .trainer import Trainer, seed_everything


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """A U-Net with ``depth`` levels (``depth - 1`` poolings), ``width`` channels at the top,
    doubled at each level; bilinear upsampling; returns logits (B, 1, H, W)."""

    def __init__(self, in_channels: int = 4, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if depth < 2:
            raise LossnetError(f"the U-Net needs depth >= 2, got {depth}.")
        chans = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList([_double_conv(in_channels, chans[0])] +
                                  [_double_conv(chans[i - 1], chans[i]) for i in range(1, depth)])
        self.up = nn.ModuleList([_double_conv(chans[i] + chans[i - 1], chans[i - 1]) for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(chans[0], 1, 1)
        nn.init.constant_(self.head.bias, -2.0)  # roads are rare: start near a ~12% prior, not 50%
        self.multiple = 2 ** (depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class IterativeUNet(nn.Module):
    """Mosinska et al.'s iterative refinement: ``logits_k = unet([image, sigmoid(logits_{k-1})])``.

    ``forward(image, iterations)`` returns the logits of every iteration. Inputs whose size is
    not a multiple of ``2 ** (depth - 1)`` are padded (reflect) and the outputs cropped back.
    """

    def __init__(self, width: int = 64, depth: int = 4, iterations: int = 3) -> None:
        super().__init__()
        self.unet = UNet(4, width, depth)
        self.iterations = iterations

    def forward(self, image: torch.Tensor, iterations: int | None = None) -> list[torch.Tensor]:
        k = iterations or self.iterations
        h, w = image.shape[-2:]
        m = self.unet.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        prob = torch.zeros_like(image[:, :1])
        outs = []
        for _ in range(k):
            logits = self.unet(torch.cat([image, prob], dim=1))
            outs.append(logits[..., :h, :w])
            prob = torch.sigmoid(logits)
        return outs


@dataclass
class SegmentationConfig(TrainConfig):
    """Segmentation hyperparameters (``paper``: 100 epochs, batch 8, Adam 1e-3, 224 crops + flips,
    mu = 0.01, threshold 0.3).

    Attributes:
        crop: training crop side. mu: weight of the feature loss. iterations: refinement steps K.
        width/depth: U-Net channels at the top level and number of levels.
        threshold: probability above which a pixel is road. buffer: tolerance (pixels) of the relaxed metrics.
        n_train/n_val/n_test/tile_size: built-in generated set sizes.
    """

    crop: int = 224
    mu: float = 0.01
    iterations: int = 3
    width: int = 64
    depth: int = 4
    threshold: float = 0.3
    buffer: int = 3
    n_train: int = 96
    n_val: int = 0
    n_test: int = 16
    tile_size: int = 64

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # ~25 s of one CPU core: quality ~0.8-0.9 against ~0.1 for predicting road everywhere, and
        # the loss has flattened out by the last epochs.
        "mini": dict(epochs=12, batch_size=8, lr=3e-3, crop=48, width=8, depth=3, iterations=2, n_train=96,
                     n_test=16, tile_size=64, buffer=2, checkpoint_every=12),
        "paper": dict(epochs=100, batch_size=8, lr=1e-3, crop=224, width=64, depth=4, iterations=3, buffer=3,
                      tile_size=256, n_train=400, n_test=32, checkpoint_every=200, num_workers=4),
    }


def seg_loss(logits: list[torch.Tensor], mask: torch.Tensor, feature_loss: nn.Module, mu: float) -> torch.Tensor:
    """Sum over iterations k of k/Z * (BCE + mu * feature_loss(p_k x3, mask x3)), Z = sum of k."""
    z = sum(range(1, len(logits) + 1))
    target3 = mask.expand(-1, 3, -1, -1)
    total = None
    for k, lg in enumerate(logits, start=1):
        term = F.binary_cross_entropy_with_logits(lg.float(), mask)
        if mu:
            prob = torch.sigmoid(lg)
            term = term + mu * feature_loss(prob.expand(-1, 3, -1, -1), target3.to(prob.dtype))
        total = term * (k / z) if total is None else total + term * (k / z)
    return total


def seg_step(feature_loss: nn.Module, mu: float, iterations: int):
    def step(model: IterativeUNet, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        image, mask = batch
        return seg_loss(model(image, iterations), mask, feature_loss, mu)

    return step


@torch.no_grad()
def predict(model: IterativeUNet, image: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
    """Road probabilities (B, 1, H, W) of the last iteration."""
    model.eval()
    return torch.sigmoid(model(image, iterations)[-1].float())


@torch.no_grad()
def evaluate_segmentation(model: IterativeUNet, split: RoadPairs, device: torch.device, threshold: float = 0.3,
                          buffer: int = 3, iterations: int | None = None) -> tuple[dict[str, float], float]:
    """Pixel-exact and relaxed road scores over a split (micro-averaged), and the mean BCE."""
    counts = RoadCounts()
    bce, n = 0.0, 0
    for i in range(len(split)):
        image, mask = split[i]
        prob = predict(model, image[None].to(device), iterations).cpu()
        counts = counts + road_counts(prob[0, 0], mask[0], threshold, buffer)
        bce += float(F.binary_cross_entropy(prob.clamp(1e-7, 1 - 1e-7), mask[None]))
        n += 1
    exact = road_scores(counts)
    relaxed = road_scores(counts, relaxed=True)
    scores = dict(exact)
    scores.update({f"relaxed_{k}": v for k, v in relaxed.items()})
    return scores, bce / max(n, 1)


def train_segmentation(config: SegmentationConfig | str = "mini", loss: LossConfig | None = None,
                       data: str = "builtin", options: RunOptions | None = None, **overrides: Any) -> dict[str, Any]:
    """Train the iterative U-Net with BCE + mu x ``loss``; evaluate on the test split; write metrics.

    Metrics: ``completeness``, ``correctness``, ``quality``, ``f1``, ``iou``, ``miou`` (pixel-exact)
    and ``relaxed_*`` (within ``buffer`` pixels), plus ``test_bce``.
    """
    cfg, loss_cfg, opts, device, precision = resolve_run(SegmentationConfig, config, overrides, loss, options)
    seg_data: SegmentationData = load_segmentation_data(data, crop=cfg.crop, n_train=cfg.n_train, n_val=cfg.n_val,
                                                        n_test=cfg.n_test, tile_size=cfg.tile_size, seed=0)
    run_dir = RunDir(opts.out_dir, run_config("segmentation", cfg, loss_cfg, seg_data.source, opts,
                                              {"layout": seg_data.layout}), restart=opts.restart)
    seed_everything(opts.seed)
    model = IterativeUNet(cfg.width, cfg.depth, cfg.iterations)
    feature_loss = loss_cfg.build().to(device)
    trainer = Trainer(model, seg_data.train, seg_step(feature_loss, cfg.mu, cfg.iterations), cfg, run_dir,
                      seed=opts.seed, device=device, precision=precision, progress=opts.progress,
                      desc=f"segmentation {loss_cfg.describe()}")
    summary = trainer.fit()
    t0 = time.perf_counter()
    scores, bce = evaluate_segmentation(model, seg_data.test, device, cfg.threshold, cfg.buffer, cfg.iterations)
    metrics = dict(scores)
    metrics["test_bce"] = bce
    details = {"threshold": cfg.threshold, "buffer_px": cfg.buffer, "n_test": len(seg_data.test),
               "layout": seg_data.layout, "eval_seconds": round(time.perf_counter() - t0, 3)}
    return finish_metrics(run_dir, "segmentation", metrics, summary, device, precision, details)


__all__ = ["IterativeUNet", "SegmentationConfig", "UNet", "evaluate_segmentation", "predict", "seg_loss",
           "train_segmentation"]
