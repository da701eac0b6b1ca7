"""lossnet: choose, use and study deep perceptual loss networks.

Example:
    >>> import lossnet, torch
    >>> loss_fn = lossnet.PerceptualLoss("vgg16", layers=["features.8"], distance="mse", weights="random")
    >>> loss = loss_fn(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
"""
from .distances import feature_distance
from .errors import InputError, LossnetError, UnknownNameError, WeightsError
from .loss import PerceptualLoss, lpips
from .networks import (
    LossNetwork,
    extraction_points,
    get_spec,
    imagenet_top1,
    layer_sets,
    list_architectures,
    load_model,
)

from .tasks.similarity import score_2afc, score_jnd, score_mos  # noqa: E402  (needs the core above)

__version__ = "0.1.0"

__all__ = [
    "InputError", "LossNetwork", "LossnetError", "PerceptualLoss", "UnknownNameError", "WeightsError",
    "extraction_points", "feature_distance", "get_spec", "imagenet_top1", "layer_sets",
    "list_architectures", "load_model", "lpips", "score_2afc", "score_jnd", "score_mos",
]
