"""Loss networks: the architecture registry, weights and feature extraction."""
from .extraction import LossNetwork, extraction_points, layer_sets, resolve_layers
from .registry import ARCHITECTURES, ArchSpec, get_spec, list_architectures
from .weights import imagenet_top1, load_model, read_state_dict

__all__ = [
    "ARCHITECTURES", "ArchSpec", "LossNetwork", "extraction_points", "get_spec", "imagenet_top1",
    "layer_sets", "list_architectures", "load_model", "read_state_dict", "resolve_layers",
]
