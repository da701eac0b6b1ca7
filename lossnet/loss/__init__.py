"""The perceptual loss module, the metric presets and the one metric factory.

Example:
    >>> from lossnet.loss import create_metric, list_metrics
    >>> "lpips-alex" in list_metrics()
    True
"""
from .factory import create_metric, describe_metric, lpips
from .perceptual import PerceptualLoss
from .presets import METRIC_PRESETS, MetricPreset, get_preset, list_metrics, lpips_preset_name, register_metric
from . import dists as _dists  # noqa: E402,F401  (registers the "dists" distance and preset)

__all__ = [
    "METRIC_PRESETS", "MetricPreset", "PerceptualLoss", "create_metric", "describe_metric", "get_preset",
    "list_metrics", "lpips", "lpips_preset_name", "register_metric",
]
