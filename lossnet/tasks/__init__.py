"""Downstream tasks trained with a perceptual loss (Pihlgren et al. 2023): autoencoding with MLP
probes, x4/x8 super-resolution, and road segmentation; each with ``mini`` and ``paper`` configs,
resumable runs and a metrics JSON.

Example:
    >>> from lossnet.tasks import LossConfig, RunOptions, train_superres
    >>> metrics = train_superres("mini", LossConfig("efficientnet_lite0", layers="blocks.0"),
    ...                          options=RunOptions(out_dir="runs/sr"))  # doctest: +SKIP
    >>> metrics["metrics"]["psnr"]  # doctest: +SKIP
"""
from .autoencoding import AutoencoderConfig, ConvVAE, train_autoencoder
from .config import ConfigMismatchError, LossConfig, TrainConfig, TrainingError
from .metrics import psnr_y, rgb_to_y, road_counts, road_scores, ssim_y
from .run import RunOptions
from .segmentation import IterativeUNet, SegmentationConfig, train_segmentation
from .superres import SuperresConfig, TransformNet, train_superres
from .trainer import Precision

TASKS = {"autoencoder": train_autoencoder, "superres": train_superres, "segmentation": train_segmentation}
CONFIGS = {"autoencoder": AutoencoderConfig, "superres": SuperresConfig, "segmentation": SegmentationConfig}

__all__ = [
    "AutoencoderConfig", "CONFIGS", "ConfigMismatchError", "ConvVAE", "IterativeUNet", "LossConfig", "Precision",
    "RunOptions", "SegmentationConfig", "SuperresConfig", "TASKS", "TrainConfig", "TrainingError", "TransformNet",
    "psnr_y", "rgb_to_y", "road_counts", "road_scores", "ssim_y", "train_autoencoder",
    "train_segmentation", "train_superres",
]
