"""lossnet: choose, use and study deep perceptual loss networks.

``import lossnet`` loads the core only (networks, distances, the loss and the metric factory:
torch, torchvision and numpy). The scorers on human judgements (``score_2afc``, ``score_jnd``,
``score_mos``, ``calibrate``) load on first use.

Example:
    >>> import lossnet, torch
    >>> loss_fn = lossnet.PerceptualLoss("vgg16", layers=["features.8"], distance="mse", weights="random")
    >>> loss = loss_fn(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
"""
import importlib

from .distances import feature_distance
from .errors import DataError, InputError, LossnetError, UnknownNameError, WeightsError
from .loss import (
    PerceptualLoss,
    PerceptualMetric,
    create_metric,
    dists,
    list_metrics,
    lpips,
)
from .networks import (
    LossNetwork,
    extraction_points,
    get_spec,
    imagenet_top1,
    layer_sets,
    list_architectures,
    load_model,
    register_architecture,
    weights_info,
)

__version__ = "0.1.0"

# name -> module: loaded on first access, so that the core imports without the optional extras.
_LAZY = {
    "score_2afc": "lossnet.scoring",
    "score_jnd": "lossnet.scoring",
    "score_mos": "lossnet.scoring",
    "calibrate": "lossnet.scoring",
    "analyze_2afc": "lossnet.scoring",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lossnet' has no attribute {name!r}")


__all__ = [
    "DataError", "InputError", "LossNetwork", "LossnetError", "PerceptualLoss", "PerceptualMetric", "UnknownNameError", "WeightsError",
    "analyze_2afc", "calibrate", "create_metric", "dists", "extraction_points", "feature_distance", "get_spec",
    "imagenet_top1", "layer_sets", "list_architectures", "list_metrics", "load_model", "lpips",
    "register_architecture", "score_2afc", "score_jnd", "score_mos", "weights_info",
]
