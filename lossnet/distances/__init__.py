"""Perceptual distances over feature dicts, pixel baselines and learned lin weights."""
from .functional import (
    FEATURE_DISTANCES,
    PIXEL_DISTANCES,
    canonical_distance,
    feature_distance,
    gram,
    l1,
    mean_pool,
    mse,
    normalize_channels,
    pixel_l2,
    pixel_ssim,
    spatial,
    spatial_map,
    ssim,
    style,
)
from .lin import lpips_lin_weights, read_lin_file, resolve_lin, save_lin

__all__ = [
    "FEATURE_DISTANCES", "PIXEL_DISTANCES", "canonical_distance", "feature_distance", "gram", "l1",
    "mean_pool", "mse", "normalize_channels", "pixel_l2", "pixel_ssim", "spatial", "spatial_map", "ssim",
    "style", "lpips_lin_weights", "read_lin_file", "resolve_lin", "save_lin",
]
