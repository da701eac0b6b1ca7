"""Building a spec's model, and what lossnet reads from a built model.

One builder per source (data, not if/elif): torchvision's ``get_model``, timm's
``create_model`` or a registered spec's ``factory``. What depends on the model and not on
the registry entry (the token layout of a transformer, a fixed input size, the torch.fx
helpers that fit it) is read from the model here.

Example:
    >>> from lossnet.networks.registry import get_spec
    >>> model = meta_model(get_spec("vit_b_16"))
    >>> fixed_input_size(model), token_layout(model)
    (224, TokenLayout(num_prefix_tokens=1, patch_size=(16, 16)))
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Callable, Iterator, NamedTuple

import torch
from torch import nn

from ..errors import LossnetError, WeightsError
from .registry import ArchSpec


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise WeightsError("this architecture needs timm: pip install 'lossnet[timm]'.") from exc
    return timm


def _build_torchvision(spec: ArchSpec) -> nn.Module:
    import torchvision

    with warnings.catch_warnings():  # inception's init-weights FutureWarning is about defaults we set
        warnings.simplefilter("ignore", FutureWarning)
        return torchvision.models.get_model(spec.builder, weights=None, **dict(spec.build_kwargs))


def _build_timm(spec: ArchSpec) -> nn.Module:
    return _timm().create_model(spec.builder, pretrained=False, **dict(spec.build_kwargs))


def _build_factory(spec: ArchSpec) -> nn.Module:
    if not callable(spec.factory):
        raise LossnetError(f"architecture {spec.name!r} has source 'factory' but no callable factory.")
    model = spec.factory(**dict(spec.build_kwargs))
    if not isinstance(model, nn.Module):
        raise LossnetError(f"the factory of {spec.name!r} returned {type(model).__name__}, not an nn.Module.")
    return model


def _build_module(spec: ArchSpec) -> nn.Module:
    raise LossnetError(f"{spec.name!r} describes a user's module, which lossnet cannot rebuild: pass the module "
                       "itself (LossNetwork(module, ...), extraction_points(module)).")


_BUILDERS: dict[str, Callable[[ArchSpec], nn.Module]] = {
    "torchvision": _build_torchvision,
    "timm": _build_timm,
    "efficientnet_lite0_package": _build_timm,
    "factory": _build_factory,
    "module": _build_module,
}


def build_model(spec: ArchSpec) -> nn.Module:
    """A freshly initialised model of ``spec`` (global RNG; callers seed it)."""
    return _BUILDERS[spec.source](spec)


@functools.lru_cache(maxsize=64)
def meta_model(spec: ArchSpec) -> nn.Module:
    """The model of ``spec`` on the meta device (no memory, no initialisation), in eval mode.

    Cached per spec: callers only read it (structure, graph node names, attributes).
    """
    with torch.device("meta"):
        return build_model(spec).eval()


def is_timm_model(model: nn.Module) -> bool:
    return type(model).__module__.startswith("timm.")


def fx_helpers(model: nn.Module):
    """``(get_graph_node_names, create_feature_extractor)`` fitting ``model``: timm's (which know
    timm's leaf modules) for timm models, torchvision's for everything else."""
    if is_timm_model(model):
        from timm.models import create_feature_extractor, get_graph_node_names
    else:
        from torchvision.models.feature_extraction import (
            create_feature_extractor,
            get_graph_node_names,
        )
    return get_graph_node_names, create_feature_extractor


@contextlib.contextmanager
def modes_kept(model: nn.Module) -> Iterator[nn.Module]:
    """Restore the train/eval flag of every submodule afterwards (fx tracing flips them all)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def graph_node_names(model: nn.Module) -> list[str]:
    """The eval-mode torch.fx node names of ``model`` (which is left exactly as it was)."""
    get_graph_node_names, _ = fx_helpers(model)
    with warnings.catch_warnings(), modes_kept(model):
        warnings.simplefilter("ignore")
        try:
            _, eval_nodes = get_graph_node_names(model)
        except Exception as exc:  # torch.fx raises many kinds on untraceable code
            raise LossnetError(
                f"{type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}). Make its forward traceable (no "
                "data-dependent Python control flow), or wrap the untraceable part in a submodule that is "
                "extracted as a whole."
            ) from exc
    return eval_nodes


class TokenLayout(NamedTuple):
    """How a transformer lays out its (B, N, D) tokens: prefix tokens (class + register tokens)
    first, then the patch grid."""

    num_prefix_tokens: int
    patch_size: tuple[int, int] | None


def token_layout(model: nn.Module) -> TokenLayout | None:
    """The token layout of a transformer model, read from the model; None for CNNs.

    timm ViTs carry ``num_prefix_tokens`` (1 class token + register tokens, 0 for models
    without a class token); torchvision's ``VisionTransformer`` has one class token.
    """
    prefix = getattr(model, "num_prefix_tokens", None)
    patch = None
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:
        patch = tuple(int(v) for v in _pair(embed.patch_size))
    if prefix is None and hasattr(model, "class_token") and hasattr(model, "patch_size"):  # torchvision ViT
        prefix = 1
        patch = tuple(int(v) for v in _pair(model.patch_size))
    if prefix is None:
        return None
    return TokenLayout(int(prefix), patch)


def fixed_input_size(model: nn.Module) -> int | None:
    """The one input size ``model`` accepts (square), or None if it takes any size.

    torchvision ViTs: ``image_size``; timm ViTs: ``patch_embed.img_size`` when the patch
    embedding is strict and ``dynamic_img_size`` is off.
    """
    if hasattr(model, "class_token") and isinstance(getattr(model, "image_size", None), int):
        return int(model.image_size)
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
        size = getattr(embed, "img_size", None)
        if size is not None:
            h, w = _pair(size)
            if h == w:
                return int(h)
    return None


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
