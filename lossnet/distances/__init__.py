"""Perceptual distances over feature dicts, pixel baselines and learned lin weights."""
from .functional import (
    FEATURE_DISTANCES,
    PIXEL_DISTANCES,
    FeatureDistance,
    canonical_distance,
    cosine,
    feature_distance,
    gram,
    l1,
    layer_weight_map,
    mean_pool,
    mse,
    normalize_channels,
    pixel_l2,
    pixel_ssim,
    register_distance,
    spatial,
    spatial_map,
    ssim,
    style,
)
from .lin import LPIPS_ARCHS, lpips_lin_weights, read_lin_file, resolve_lin, save_lin

__all__ = [
    "FEATURE_DISTANCES", "FeatureDistance", "LPIPS_ARCHS", "PIXEL_DISTANCES", "canonical_distance", "cosine",
    "feature_distance", "gram", "l1", "layer_weight_map", "lpips_lin_weights", "mean_pool", "mse",
    "normalize_channels", "pixel_l2", "pixel_ssim", "read_lin_file", "register_distance", "resolve_lin",
    "save_lin", "spatial", "spatial_map", "ssim", "style",
]
