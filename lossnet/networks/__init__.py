"""Loss networks: the architecture registry, weights and their metadata, feature extraction."""
from . import classifiers  # noqa: E402,F401  (registers the Kumar et al. ResNet/EfficientNet/ViT families)
from .extraction import LossNetwork, extraction_points, layer_sets, resolve_layers
from .registry import (
    ARCHITECTURES,
    ArchSpec,
    get_spec,
    list_architectures,
    register_architecture,
)
from .weights import imagenet_top1, load_model, read_state_dict
from .weights_info import WeightsInfo, weights_info

__all__ = [
    "ARCHITECTURES", "ArchSpec", "LossNetwork", "WeightsInfo", "extraction_points", "get_spec", "imagenet_top1",
    "layer_sets", "list_architectures", "load_model", "read_state_dict", "register_architecture", "resolve_layers",
    "weights_info",
]
