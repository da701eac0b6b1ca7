"""Extraction points and the frozen, truncated loss network.

Extraction points are named like torchvision's ``feature_extraction`` nodes (``features.8``,
``layer2``, ``encoder.layers.encoder_layer_3``). The network is traced with torch.fx, so the
model's own ``forward`` logic runs (inception's ``transform_input`` included), and
everything after the deepest requested point is removed: no computation and no parameters.
Any ``nn.Module`` of one's own works the same way, with its node names as points.

Functions here take an architecture name, its :class:`ArchSpec` (resolved once by the
caller) or a user's module.

Example:
    >>> net = LossNetwork("vgg16", layers=["features.3", "features.8"], weights="random")
    >>> feats = net(torch.rand(2, 3, 64, 64))
    >>> [tuple(f.shape) for f in feats.values()]
    [(2, 64, 64, 64), (2, 128, 32, 32)]
"""
from __future__ import annotations

import copy
import functools
import math
import os
import re
import warnings
from collections import OrderedDict
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, LossnetError, WeightsError, unknown_name
from ..inputs import check_images
from .build import (
    fixed_input_size,
    fx_helpers,
    graph_node_names,
    meta_model,
    token_layout,
)
from .checkpoints import WeightsArg, file_sha256, read_checkpoint
from .registry import (
    HEAD_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYER_SET_NAMES,
    LPIPS_SCALE,
    LPIPS_SHIFT,
    ArchSpec,
    get_spec,
    with_overrides,
)
from .weights import check_finite, load_model_with_info, load_state_dict_strict
from .weights_info import WeightsInfo, module_info

LayersArg = str | Sequence[str] | None
ArchArg = str | ArchSpec | nn.Module
# How inputs in [0,1] are prepared: "auto" = what the backbone's weights expect.
INPUT_NORMS = ("auto", "imagenet", "none", "lpips", "lpips_v0.0", "half")
TOKEN_MODES = ("cls", "mean", "patches")
# How inputs reach a network's input size: "auto" = the model's fixed size (if it has one) with
# the weights' interpolation; "none" = never resized (a wrong size is an error); an interpolation
# = the model's fixed size with it; a size N or (N, interpolation) = always N x N.
RESIZE_MODES = ("auto", "none")
INTERPOLATIONS = ("bilinear", "bicubic")
ResizeArg = str | int | tuple


class ResizePlan(NamedTuple):
    """What :class:`LossNetwork` does to an input's size, resolved once from ``resize``.

    ``size``/``interpolation``: every input is resized to ``size`` x ``size`` (None: never);
    ``required``: the one size inputs must have when they are not resized (a fixed-size model
    with ``resize="none"``); ``multiple``: sides must be multiples of it (patch models that
    take any size); ``policy``: the plan in words, recorded with results.
    """

    size: int | None
    interpolation: str | None
    required: int | None
    multiple: int | None
    policy: str


def _patch_multiple(model: nn.Module, layout) -> int | None:
    """The patch size sides must be multiples of when the model takes any size (None: no rule)."""
    embed = getattr(model, "patch_embed", None)
    if layout is None or layout.patch_size is None or getattr(embed, "dynamic_img_pad", False):
        return None
    h, w = layout.patch_size
    return int(h) if h == w else None  # rectangular patches: left to the model's own check


def resize_plan(arch: "str | ArchSpec", resize: ResizeArg = "auto", weights: WeightsArg = "random") -> ResizePlan:
    """The :class:`ResizePlan` a :class:`LossNetwork` of ``arch`` would use, without building it
    (read from the model on the meta device and the weights' metadata).

    Example:
        >>> resize_plan("vit_b_16").policy
        'resize to 224x224 (bilinear, antialias)'
        >>> resize_plan("vgg16", "none").policy
        'none'
    """
    from .weights_info import weights_info

    spec = get_spec(arch)
    info = weights_info(spec, weights)
    model = meta_model(spec)
    return _resize_plan(resize, spec.name, info.fixed_input_size, _patch_multiple(model, token_layout(model)), info)


def _weights_interpolation(info: WeightsInfo) -> str:
    return info.interpolation if info.interpolation in INTERPOLATIONS else "bilinear"


def _resize_plan(resize: object, arch: str, fixed: int | None, multiple: int | None, info: WeightsInfo) -> ResizePlan:
    """The :class:`ResizePlan` of ``resize`` for a model with a fixed input size ``fixed`` (or
    None) whose any-size inputs need sides that are multiples of ``multiple`` (or None)."""
    def resized(size: int, interpolation: str) -> ResizePlan:
        return ResizePlan(size, interpolation, None, None, f"resize to {size}x{size} ({interpolation}, antialias)")

    if isinstance(resize, str) and resize == "auto":
        if fixed is not None:
            return resized(fixed, _weights_interpolation(info))
        resize = "none"
    if isinstance(resize, str) and resize == "none":
        if fixed is not None:
            return ResizePlan(None, None, fixed, None, f"none (inputs must be {fixed}x{fixed})")
        if multiple is not None:
            return ResizePlan(None, None, None, multiple, f"none (sides must be multiples of {multiple})")
        return ResizePlan(None, None, None, None, "none")
    if isinstance(resize, str) and resize in INTERPOLATIONS:
        if fixed is None:
            raise LossnetError(
                f"resize={resize!r} resizes to the model's fixed input size, but {arch} takes any size: give the "
                f"size too, e.g. resize=(224, {resize!r}), or resize='none'.")
        return resized(fixed, resize)
    size, interpolation = resize, _weights_interpolation(info)
    if isinstance(resize, (tuple, list)) and len(resize) == 2:
        size, interpolation = resize
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not isinstance(interpolation, str) \
            or interpolation not in INTERPOLATIONS:
        raise LossnetError(
            f"resize must be 'auto', 'none', an interpolation ({', '.join(INTERPOLATIONS)}), a size N or "
            f"(N, interpolation), got {resize!r}.")
    if fixed is not None and size != fixed:
        raise LossnetError(f"{arch} takes {fixed}x{fixed} inputs only, but resize={resize!r} asks for {size}x{size}: "
                           f"use resize={fixed} (or 'auto'), or build the model for another size.")
    if multiple is not None and size % multiple:
        lower, upper = size - size % multiple, size - size % multiple + multiple
        raise LossnetError(f"{arch} splits inputs into {multiple}x{multiple} patches, so resize={resize!r} needs a "
                           f"multiple of {multiple}: use {lower or upper} or {upper}.")
    return resized(size, interpolation)


def _arch_of(arch: object) -> tuple[ArchSpec, nn.Module | None]:
    """(spec, module): a name becomes its spec once; a module gets a derived spec."""
    if isinstance(arch, nn.Module):
        return module_spec(arch), arch
    if isinstance(arch, (str, ArchSpec)):
        return get_spec(arch), None
    raise LossnetError(
        f"an architecture is a name (e.g. 'vgg16', 'timm:<name>'; see lossnet.list_architectures()), an "
        f"ArchSpec or an nn.Module, got {type(arch).__name__} {arch!r:.80}."
    )


def module_roots(module: nn.Module) -> tuple[str, ...]:
    """Extraction-point roots of a user's module: the module itself and, while it holds one
    child besides its head (a wrapper around a backbone, VGG's ``features``), that child."""
    roots, prefix, current = [""], "", module
    while True:
        body = [(name, child) for name, child in current.named_children() if name not in HEAD_NAMES]
        if len(body) != 1 or not any(True for _ in body[0][1].children()):
            return tuple(roots)
        prefix = f"{prefix}.{body[0][0]}" if prefix else body[0][0]
        roots.append(prefix)
        current = body[0][1]


def module_spec(module: nn.Module, **fields) -> ArchSpec:
    """The ArchSpec derived for a user's module (source ``"module"``; nothing is registered)."""
    cls = type(module)
    return ArchSpec(name=f"module:{cls.__qualname__}", source="module", builder=f"{cls.__module__}.{cls.__qualname__}",
                    points_roots=module_roots(module), layer_sets={}, default_layers="all", imagenet_weights=None,
                    family="module", **fields)


def _compute_points(model: nn.Module, roots: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    nodes = graph_node_names(model)
    module_names = {name for name, _ in model.named_modules()}
    last_index: dict[str, int] = {}
    for index, node in enumerate(nodes):
        point = _point_of(node, roots, module_names)
        if point is not None:
            last_index[point] = index
    points = tuple(sorted(last_index, key=last_index.__getitem__))
    return points, tuple(nodes)


@functools.lru_cache(maxsize=128)
def _spec_points_and_nodes(spec: ArchSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return _compute_points(meta_model(spec), spec.points_roots)


def _points_and_nodes(spec: ArchSpec, module: nn.Module | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if module is not None:  # a user's module can change between calls: not cached
        return _compute_points(module, spec.points_roots)
    return _spec_points_and_nodes(spec)


def _point_of(node: str, roots: tuple[str, ...], module_names: set[str]) -> str | None:
    """The module-level extraction point a graph node belongs to, if any."""
    parts = node.split(".")
    # The most specific root wins: with roots ("", "blocks"), "blocks.3.0.conv" -> "blocks.3".
    for root in sorted(roots, key=len, reverse=True):
        root_parts = root.split(".") if root else []
        if parts[: len(root_parts)] != root_parts or len(parts) <= len(root_parts):
            continue
        point = ".".join(parts[: len(root_parts) + 1])
        child = parts[len(root_parts)]
        if point in module_names and child not in HEAD_NAMES and point not in roots:
            return point
        if point in roots:
            continue
        return None
    return None


def extraction_points(arch: ArchArg) -> list[str]:
    """Every module-level extraction point of ``arch`` (a name, spec or module), shallow to deep.

    Finer graph nodes (e.g. ``layer2.0.relu``) are accepted by :class:`LossNetwork` too. For a
    module, the points are its children (the children of its backbone if it wraps one, see
    :func:`module_roots`); the module is not changed.

    Example:
        >>> extraction_points("resnet18")[:5]
        ['conv1', 'bn1', 'relu', 'maxpool', 'layer1']
        >>> extraction_points(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()))
        ['0', '1']
    """
    spec, module = _arch_of(arch)
    return list(_points_and_nodes(spec, module)[0])


def layer_sets(arch: ArchArg) -> dict[str, list[str]]:
    """The named layer sets of ``arch`` (``"pihlgren"``, ``"lpips"``, ``"kumar"``, ``"all"``).

    Example:
        >>> layer_sets("vgg16")["lpips"]
        ['features.3', 'features.8', 'features.15', 'features.22', 'features.29']
    """
    spec, module = _arch_of(arch)
    return _layer_sets(spec, module)


def _layer_sets(spec: ArchSpec, module: nn.Module | None = None) -> dict[str, list[str]]:
    sets = {name: list(points) for name, points in spec.layer_sets.items()}
    if "kumar" not in sets and spec.source == "timm":
        sets["kumar"] = _timm_reduction_points(spec)
    sets["all"] = list(_points_and_nodes(spec, module)[0])
    return sets


def _timm_reduction_points(spec: ArchSpec) -> list[str]:
    model = meta_model(spec)
    info = getattr(model, "feature_info", None)
    if not info:
        return list(_points_and_nodes(spec)[0][-4:])
    modules = [entry["module"] for entry in info]
    if token_layout(model) is not None:  # transformers: every block
        return modules
    points = [entry["module"] for entry in info if entry.get("reduction", 1) >= 4]
    return points[-4:]


def _layer_names(layers: object, spec: ArchSpec) -> list[str] | str:
    """``layers`` as a set name (str) or a list of names; anything else is a clear error."""
    if isinstance(layers, str):
        return layers
    if isinstance(layers, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in layers):
        return list(layers)
    bad = layers if not isinstance(layers, (list, tuple, set, frozenset)) else \
        next(v for v in layers if not isinstance(v, str))
    raise LossnetError(
        f"layers must be a layer-set name ({', '.join(repr(n) for n in LAYER_SET_NAMES)}), an extraction point "
        f"name (e.g. 'features.3') or a list of point names, but {'it is' if bad is layers else 'it holds'} "
        f"{type(bad).__name__} {bad!r:.60}. Points are names, not indices or modules: see "
        f"lossnet.extraction_points({spec.name!r})."
    )


def resolve_layers(arch: ArchArg, layers: LayersArg = None) -> list[str]:
    """Turn a layer-set name, a point name or a list of point names into points, shallow to deep.

    Unknown names raise an error listing the valid points and close matches.

    Example:
        >>> resolve_layers("resnet18", ["layer2", "relu"])
        ['relu', 'layer2']
    """
    spec, module = _arch_of(arch)
    return _resolve_layers(spec, layers, module)


def _resolve_layers(spec: ArchSpec, layers: LayersArg, module: nn.Module | None = None) -> list[str]:
    if layers is None:
        if module is not None:
            raise LossnetError(
                f"a module has no default extraction points: pass layers=[...] with its node names, e.g. "
                f"{list(_points_and_nodes(spec, module)[0][:4])} (all: lossnet.extraction_points(module)).")
        layers = spec.default_layers
    layers = _layer_names(layers, spec)
    if isinstance(layers, str):
        if layers in LAYER_SET_NAMES or layers in spec.layer_sets:
            sets = _layer_sets(spec, module)
            if layers not in sets:
                raise unknown_name(f"layer set of {spec.name}", layers, list(sets),
                                   hint="Pass extraction point names instead (see lossnet.extraction_points).")
            return list(sets[layers])
        layers = [layers] if "," not in layers else [s.strip() for s in layers.split(",") if s.strip()]
    if not layers:
        raise LossnetError(f"no extraction points given for {spec.name}: pass at least one "
                           f"(see lossnet.extraction_points({spec.name!r})).")
    points, nodes = _points_and_nodes(spec, module)
    order = {p: i for i, p in enumerate(points)}
    node_order = {n: i for i, n in enumerate(nodes)}
    for layer in layers:
        if layer not in order and layer not in node_order and not any(
                re.match(rf"^{re.escape(layer)}(\.|$)", n) for n in nodes):
            raise unknown_name(f"extraction point of {spec.name}", layer, points,
                               hint="Named sets: " + ", ".join(_layer_sets(spec, module)) + ".")
    if len(set(layers)) != len(layers):
        raise LossnetError(f"extraction points {layers} repeat a name: give each point once.")

    def depth(layer: str) -> int:
        if layer in node_order:
            return node_order[layer]
        return max(i for n, i in node_order.items() if n == layer or n.startswith(layer + "."))

    return sorted(layers, key=depth)


def _rgb(values: object, what: str) -> tuple[float, float, float]:
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,) * 3
    try:
        out = tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise LossnetError(f"input_norm {what} must be one number or 3 (one per RGB channel), got {values!r}.")
    return out  # type: ignore[return-value]


def _normalisation(input_norm: object, info: WeightsInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) such that the network sees (x - mean) / std for x in [0, 1]."""
    if isinstance(input_norm, (tuple, list)):
        if len(input_norm) != 2:
            raise LossnetError(f"input_norm as a pair is (mean, std), got {len(input_norm)} items: {input_norm!r}.")
        mean, std = _rgb(input_norm[0], "mean"), _rgb(input_norm[1], "std")
        if min(std) <= 0:
            raise LossnetError(f"input_norm std must be > 0, got {std}.")
        return mean, std
    if not isinstance(input_norm, str) or input_norm not in INPUT_NORMS:
        raise unknown_name("input_norm", str(input_norm), INPUT_NORMS, hint="Or pass (mean, std).")
    if input_norm == "auto":
        if info.mean is None or info.std is None:
            raise LossnetError(
                f"{info.arch} carries no input normalisation, so input_norm='auto' has nothing to apply: pass "
                "input_norm=(mean, std) (what the network was trained with), 'imagenet', or 'none' for raw [0, 1] "
                "images; or save its weights with {'state_dict': ..., 'lossnet': {'mean': [...], 'std': [...]}} "
                "and pass weights=<that file>.")
        return info.mean, info.std
    if input_norm == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if input_norm == "none":
        return (0.0,) * 3, (1.0,) * 3
    if input_norm == "lpips":
        # LPIPS v0.1: y = 2x - 1 in [-1, 1], then (y - shift) / scale.
        return tuple((1 + s) / 2 for s in LPIPS_SHIFT), tuple(s / 2 for s in LPIPS_SCALE)
    return (0.5,) * 3, (0.5,) * 3  # "half", and "lpips_v0.0", which fed [-1, 1] straight to the trunk


def _protect_returned_features(body: nn.Module) -> None:
    """Switch off in-place operations whose input is a returned feature map.

    An in-place ReLU after an extraction point (e.g. a conv output) would overwrite the
    returned tensor; every other in-place op keeps its speed and memory benefit.
    """
    import operator

    in_place_functions = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
    graphs = [g for g in (getattr(body, "train_graph", None), getattr(body, "eval_graph", None), body.graph) if g is not None]
    changed = False
    for graph in graphs:
        output = next(n for n in graph.nodes if n.op == "output")
        returned = set(output.all_input_nodes)
        for node in graph.nodes:
            if not node.args or node.args[0] not in returned:
                continue
            if node.op == "call_module":
                module = body.get_submodule(node.target)
                if getattr(module, "inplace", False):
                    module.inplace = False
            elif node.op == "call_function" and node.kwargs.get("inplace"):
                node.kwargs = {**node.kwargs, "inplace": False}
                changed = True
            elif (node.op == "call_method" and node.target.endswith("_")) or node.target in in_place_functions:
                _return_a_copy(graph, output, node.args[0])  # e.g. `out += identity` after a returned node
                changed = True
    if changed:
        body.recompile()


def _return_a_copy(graph, output, source) -> None:
    with graph.inserting_after(source):
        copy = graph.call_method("clone", (source,))
    returned = output.args[0]
    output.args = ({k: (copy if v is source else v) for k, v in returned.items()},) if isinstance(returned, dict) \
        else tuple(copy if v is source else v for v in output.args)


class LossNetwork(nn.Module):
    """A frozen backbone cut after its deepest extraction point.

    Maps an image batch (B, 3, H, W) in [0, 1] to an ordered dict ``{point: features}``,
    shallow to deep. It stays in eval mode even inside a parent that calls ``.train()``,
    never changes its input in place, never lets an in-place op overwrite a returned
    feature, and applies the normalisation its weights expect (``input_norm="auto"``);
    ``input_norm="none"`` feeds [0, 1] images as the Pihlgren training tasks did. Inputs of
    any floating dtype are cast to the network's dtype; features come out in float32 (or
    the network's dtype when it is wider).

    Args:
        arch: architecture name (see :func:`lossnet.list_architectures`), ``"timm:<name>"``,
            an :class:`ArchSpec`, or an ``nn.Module`` of one's own (a fine-tuned or custom
            backbone). A module is deep-copied (the object passed in is never changed); its
            extraction points are its torch.fx node names (:func:`extraction_points`).
        layers: a layer-set name (``"pihlgren"``, ``"lpips"``, ``"kumar"``, ``"all"``), a point
            name, or a list of point names. Default: the architecture's default set (a module
            has none: name its nodes).
        weights: ``"imagenet"`` (the default for names), ``"imagenet:<TAG>"``, ``"random"`` or
            a path to a state-dict file. For a module: None (its own weights) or a path,
            loaded strictly into the copy.
        input_norm: ``"auto"``, ``"imagenet"``, ``"none"``, ``"lpips"``, ``"lpips_v0.0"``,
            ``"half"`` or a ``(mean, std)`` pair. ``"auto"`` is what the weights' metadata
            says (:attr:`weights_info`), or the ``"lossnet"`` entry of a checkpoint file; a
            module without such a file needs an explicit choice.
        tokens: for transformers, ``"cls"`` (the class token, Kumar et al.), ``"mean"`` (the
            mean of the patch tokens) or ``"patches"`` (patch tokens as a spatial map). The
            class and register tokens are counted from the model (``num_prefix_tokens``).
        resize: how inputs reach the model's input size (recorded as :attr:`resize_policy`):
            ``"auto"`` (default: a fixed-size model, e.g. a ViT at 224, gets its size with the
            weights' interpolation; other models see inputs as they are), ``"none"`` (never
            resized: another size than a fixed-size model's is an error naming the size),
            ``"bilinear"``/``"bicubic"`` (the fixed size, with that interpolation), or a size
            ``N`` / ``(N, interpolation)`` (always N x N; for models that take any size, such
            as timm ViTs built with ``dynamic_img_size``). Patch models that take any size need
            sides that are multiples of the patch size unless they are resized.
        seed: seed of random weights.
        check_inputs: validate inputs (shape, range, NaN); turn off only for trusted inputs.

    Example:
        >>> net = LossNetwork("resnet18", "pihlgren", weights="random")
        >>> list(net(torch.rand(1, 3, 64, 64)))
        ['relu', 'layer1', 'layer2', 'layer4']
        >>> mine = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
        >>> own = LossNetwork(mine, layers=["1"], input_norm="imagenet")
        >>> tuple(own(torch.rand(1, 3, 32, 32))["1"].shape), own.spec.source
        ((1, 8, 30, 30), 'module')
    """

    def __init__(self, arch: ArchArg, layers: LayersArg = None, weights: WeightsArg | None = None,
                 input_norm: str | tuple = "auto", tokens: str | None = None, seed: int = 0,
                 check_inputs: bool = True, resize: ResizeArg = "auto") -> None:
        super().__init__()
        spec, module = _arch_of(arch)
        if module is not None:
            model, info = self._own_module(module, spec, weights)
            spec = with_overrides(spec, fixed_input_size=info.fixed_input_size)
            self.weights = "module" if weights is None else str(weights)
        else:
            weights = "imagenet" if weights is None else weights
            model, info = load_model_with_info(spec, weights, seed=seed)
            self.weights = str(weights)
        self.points = _resolve_layers(spec, layers, model if module is not None else None)
        self.check_inputs = check_inputs
        self._layout = token_layout(model)
        self.tokens = self._token_mode(tokens, spec, module is not None)
        self.input_norm = input_norm
        mean, std = _normalisation(input_norm, info)
        self.weights_info: WeightsInfo = info
        self.spec = with_overrides(spec, mean=tuple(info.mean) if info.mean else mean,
                                   std=tuple(info.std) if info.std else std,
                                   fixed_input_size=info.fixed_input_size, tokens=self.tokens)
        self.arch = self.spec.name
        self.resize = resize
        self._patch = _patch_multiple(model, self._layout)
        self.resize_plan = self.plan_for(resize)
        # a model that resizes its own inputs (DISTS's trunk) says how, in words, as ``input_rule``
        self._input_rule: str | None = getattr(model, "input_rule", None)
        self.register_buffer("scale", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.body = self._truncate(model)
        del model
        _protect_returned_features(self.body)
        self.body.requires_grad_(False)
        self._min_side: int | None | bool = False  # not probed yet
        super().train(False)

    @staticmethod
    def _own_module(module: nn.Module, spec: ArchSpec, weights: WeightsArg | None) -> tuple[nn.Module, WeightsInfo]:
        if isinstance(weights, str) and (weights == "random" or weights.startswith("imagenet")):
            raise WeightsError(
                f"weights={weights!r} names lossnet's weights of a registered architecture, but a module brings its "
                "own: drop weights (the module's weights are used), or pass the path of a state-dict file to load "
                "into (a copy of) it.")
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise WeightsError(f"unknown weights {weights!r}: for a module pass None (its own) or a state-dict path.")
        try:
            model = copy.deepcopy(module)
        except Exception as exc:  # noqa: BLE001 - deepcopy raises whatever the module's members raise
            raise LossnetError(f"could not copy the module {type(module).__name__} ({type(exc).__name__}: {exc}); "
                               "lossnet works on a copy so that your module is never changed.") from exc
        model.eval()
        fixed = fixed_input_size(model)
        if weights is None:
            check_finite(model, f"the module {type(module).__name__}")
            return model, module_info(spec.name, None, None, "none (a module carries no normalisation)", fixed)
        state, meta = read_checkpoint(weights)
        source = f"weights file {str(weights)!r}"
        load_state_dict_strict(model, state, spec, source=source)
        check_finite(model, source)
        if meta:
            norm = (meta["mean"], meta["std"], f"the checkpoint's 'lossnet' entry ({os.path.basename(str(weights))})")
        else:
            norm = (None, None, "none (the checkpoint has no 'lossnet' entry)")
        return model, module_info(spec.name, *norm, fixed, file=str(weights), sha256=file_sha256(weights))

    def _token_mode(self, tokens: str | None, spec: ArchSpec, is_module: bool) -> str | None:
        if tokens is not None and tokens not in TOKEN_MODES:
            raise unknown_name("tokens mode", str(tokens), TOKEN_MODES)
        layout = self._layout
        if layout is None:
            if tokens is not None:
                fix = ("set module.num_prefix_tokens (class + register tokens; 0 without a class token) on your "
                       "transformer" if is_module else "drop tokens=")
                raise LossnetError(f"tokens={tokens!r} applies to transformers, but {spec.name} has no token layout "
                                   f"lossnet can read: {fix}.")
            return spec.tokens
        mode = tokens or spec.tokens or ("cls" if layout.num_prefix_tokens > 0 else "mean")
        if mode == "cls" and layout.num_prefix_tokens == 0:
            raise LossnetError(f"{spec.name} has no class token (num_prefix_tokens=0): use tokens='mean' or 'patches'.")
        return mode

    def _truncate(self, model: nn.Module) -> nn.Module:
        _, create_feature_extractor = fx_helpers(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return create_feature_extractor(model.eval(), return_nodes={p: p for p in self.points})

    def train(self, mode: bool = True) -> "LossNetwork":
        """Kept in eval mode whatever ``mode`` is: BatchNorm statistics and dropout never change."""
        return super().train(False)

    @property
    def num_prefix_tokens(self) -> int | None:
        """Class + register tokens before the patch tokens (read from the model); None for CNNs."""
        return None if self._layout is None else self._layout.num_prefix_tokens

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in (inputs are cast to it)."""
        for t in (*self.body.parameters(), *self.body.buffers()):
            if t.is_floating_point():
                return t.dtype
        return self.scale.dtype

    @property
    def resize_policy(self) -> str:
        """What is done to input sizes, in words (``"resize to 224x224 (bicubic, antialias)"``,
        ``"none (inputs must be 224x224)"``, ``"none"``...): record it with results.

        Example:
            >>> LossNetwork("resnet18", ["layer1"], weights="random", resize="none").resize_policy
            'none'
        """
        policy = self.resize_plan.policy
        if self._input_rule is None:
            return policy
        return self._input_rule if policy == "none" else f"{policy}, then {self._input_rule}"

    def plan_for(self, resize: ResizeArg) -> ResizePlan:
        """The :class:`ResizePlan` that ``resize`` would give this network (an invalid value is an error).

        Example:
            >>> LossNetwork("vgg16", ["features.3"], weights="random").plan_for(64).policy
            'resize to 64x64 (bilinear, antialias)'
        """
        return _resize_plan(resize, self.arch, self.weights_info.fixed_input_size, self._patch, self.weights_info)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch in [0, 1] the way the backbone expects (a new tensor), resized as
        :attr:`resize_policy` says; a size the network cannot take is an :class:`InputError`."""
        scale = self.scale.to(device=x.device, dtype=x.dtype)
        shift = self.shift.to(device=x.device, dtype=x.dtype)
        x = (x - shift) / scale
        plan, (h, w) = self.resize_plan, x.shape[-2:]
        if plan.size is not None:
            if (h, w) != (plan.size, plan.size):
                x = F.interpolate(x, size=(plan.size, plan.size), mode=plan.interpolation, align_corners=False,
                                  antialias=True)
        elif plan.required is not None and (h, w) != (plan.required, plan.required):
            raise InputError(
                f"{self.arch} takes {plan.required}x{plan.required} images only, and resize='none' was chosen, but "
                f"the images are {h}x{w} px: resize them to {plan.required}x{plan.required} (e.g. "
                f"torch.nn.functional.interpolate(x, size=({plan.required}, {plan.required}), mode='bicubic', "
                "antialias=True)), or let lossnet do it with resize='auto' (or 'bilinear'/'bicubic').")
        elif plan.multiple is not None and (h % plan.multiple or w % plan.multiple):
            m = plan.multiple
            raise InputError(
                f"{self.arch} splits images into {m}x{m} patches, so both sides must be multiples of {m}, but the "
                f"images are {h}x{w} px: crop or resize them (e.g. to {max(m, h - h % m)}x{max(m, w - w % m)}), or "
                f"pass resize=N with N a multiple of {m} (e.g. resize={16 * m}).")
        return x

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.extract(x, check=self.check_inputs)

    def extract(self, x: torch.Tensor, check: bool = True) -> "OrderedDict[str, torch.Tensor]":
        """Features ``{point: (B, C, H, W)}``; ``check=False`` skips the value checks (shape,
        range, NaN), never the device check."""
        if check:
            x = check_images(x)
        elif not isinstance(x, torch.Tensor) or x.dim() != 4:
            x = check_images(x, check_values=False)
        self._check_device(x)
        dtype = self.dtype
        x = self.prepare(x.to(dtype))
        out = self._run(x)
        wide = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        return OrderedDict((p, self._as_map(out[p], x.shape[-2:]).to(wide)) for p in self.points)

    def _check_device(self, x: torch.Tensor) -> None:
        if x.is_meta:
            raise InputError("the input is on the meta device and has no values: pass a real tensor.")
        device = self.scale.device
        if x.device != device:
            raise InputError(f"the input is on {x.device} but the network is on {device}: move one of them, e.g. "
                             f"x.to({str(device)!r}) or network.to({str(x.device)!r}).")

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            out = self.body(x)
        except RuntimeError:
            error = self._too_small(x)
            if error is not None:
                raise error from None
            raise
        if any(out[p].numel() == 0 for p in self.points):
            error = self._too_small(x)
            raise error if error is not None else InputError(
                f"images of {x.shape[-2]}x{x.shape[-1]} px give empty features at "
                f"{[p for p in self.points if out[p].numel() == 0]}: use larger images.")
        return out

    def min_input_size(self) -> int | None:
        """The smallest square input side (px) the extraction points accept, or None if the
        network takes one size only or cannot be probed. Probed once on the meta device.

        Example:
            >>> LossNetwork("vgg16", ["features.29"], weights="random").min_input_size()
            16
        """
        if self._min_side is False:
            self._min_side = self._probe_min_side()
        return self._min_side  # type: ignore[return-value]

    def _probe_min_side(self) -> int | None:
        if self.spec.fixed_input_size is not None:
            return self.spec.fixed_input_size
        tensors = {**dict(self.body.named_parameters()), **dict(self.body.named_buffers())}
        fake = {k: torch.empty_like(v, device="meta") for k, v in tensors.items()}

        def works(side: int) -> bool:
            x = torch.empty(1, 3, side, side, device="meta", dtype=self.dtype)
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = torch.func.functional_call(self.body, fake, (x,))
            except Exception:  # noqa: BLE001 - any failure means "not this size"
                return False
            return all(out[p].numel() > 0 for p in self.points)

        hi = 1  # doubling, then bisection: few probes for the usual small minimum
        while not works(hi):
            if hi >= 4096:
                return None
            hi *= 2
        lo = hi // 2 + 1 if hi > 1 else 1
        while lo < hi:
            mid = (lo + hi) // 2
            if works(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _too_small(self, x: torch.Tensor) -> InputError | None:
        side = self.min_input_size()
        h, w = x.shape[-2:]
        if side is None or min(h, w) >= side or self.spec.fixed_input_size is not None:
            return None
        return InputError(
            f"images of {h}x{w} px are too small for the extraction points {self.points} of {self.arch}: they need "
            f"at least {side}x{side} px. Upsample or pad the images (e.g. torch.nn.functional.interpolate(x, "
            f"size=({max(h, side)}, {max(w, side)}))), or use shallower points.")

    def _as_map(self, feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.spec.channels_last_output and feature.dim() == 4:
            return feature.permute(0, 3, 1, 2)
        if feature.dim() == 3:  # (B, N, D) tokens
            return self._tokens_as_map(feature, size)
        if feature.dim() == 2:
            return feature[:, :, None, None]
        return feature

    def _tokens_as_map(self, feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        layout = self._layout
        if layout is None:
            raise LossnetError(
                f"an extraction point of {self.arch} gives tokens of shape {tuple(feature.shape)}, but the model has "
                "no token layout lossnet can read: set module.num_prefix_tokens (class + register tokens) on your "
                "transformer and pass tokens='cls', 'mean' or 'patches'.")
        if self.tokens == "cls":
            return feature[:, 0, :, None, None]
        patches = feature[:, layout.num_prefix_tokens:, :]
        if self.tokens == "mean":
            return patches.mean(dim=1)[:, :, None, None]
        n = patches.shape[1]
        grid = None
        if layout.patch_size is not None:
            grid = (size[0] // layout.patch_size[0], size[1] // layout.patch_size[1])
        if grid is None or grid[0] * grid[1] != n:
            side = int(round(n ** 0.5))
            grid = (side, side) if side * side == n else None
        if grid is None:
            raise LossnetError(f"{n} patch tokens of {self.arch} do not form a grid for a {size[0]}x{size[1]} input: "
                               "use tokens='cls' or 'mean'.")
        return patches.transpose(1, 2).reshape(feature.shape[0], feature.shape[2], *grid)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, points={self.points}, weights={self.weights!r}, input_norm={self.input_norm!r}, "
                f"resize={self.resize_policy!r}")
