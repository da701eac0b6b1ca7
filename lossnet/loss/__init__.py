"""The perceptual loss module, the metric presets and the one metric factory.

Example:
    >>> from lossnet.loss import create_metric, list_metrics
    >>> "lpips-alex" in list_metrics()
    True
"""
from .dists import dists  # registers the "dists" distance, trunk and preset
from .factory import create_metric, describe_metric, lpips
from .perceptual import PerceptualLoss
from .presets import (
    METRIC_PRESETS,
    MetricPreset,
    get_preset,
    list_metrics,
    lpips_preset_name,
    register_metric,
)
from .stateful import PerceptualMetric, as_torchmetric

__all__ = [
    "METRIC_PRESETS", "MetricPreset", "PerceptualLoss", "PerceptualMetric", "as_torchmetric", "create_metric",
    "describe_metric", "dists", "get_preset", "list_metrics", "lpips", "lpips_preset_name", "register_metric",
]
