"""Extraction points and the frozen, truncated loss network.

Extraction points are named like torchvision's ``feature_extraction`` nodes (``features.8``,
``layer2``, ``encoder.layers.encoder_layer_3``). The network is traced with torch.fx, so the
model's own ``forward`` logic runs (inception's ``transform_input`` included), and
everything after the deepest requested point is removed: no computation and no parameters.

Example:
    >>> net = LossNetwork("vgg16", layers=["features.3", "features.8"], weights="random")
    >>> feats = net(torch.rand(2, 3, 64, 64))
    >>> [tuple(f.shape) for f in feats.values()]
    [(2, 64, 64, 64), (2, 128, 32, 32)]
"""
from __future__ import annotations

import functools
import re
import warnings
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LossnetError, unknown_name
from ..inputs import check_images
from .registry import HEAD_NAMES, LAYER_SET_NAMES, LPIPS_SCALE, LPIPS_SHIFT, ArchSpec, get_spec
from .weights import WeightsArg, load_model

LayersArg = str | Sequence[str] | None
# How inputs in [0,1] are prepared: "auto" = what the backbone's weights expect.
INPUT_NORMS = ("auto", "imagenet", "none", "lpips", "lpips_v0.0", "half")


def _meta_model(spec: ArchSpec) -> nn.Module:
    from .weights import _build

    with torch.device("meta"):
        return _build(spec)


def _graph_node_names(spec: ArchSpec, model: nn.Module) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.source == "torchvision":
            from torchvision.models.feature_extraction import get_graph_node_names
        else:
            from timm.models import get_graph_node_names
        _, eval_nodes = get_graph_node_names(model)
    return eval_nodes


@functools.lru_cache(maxsize=128)
def _points_and_nodes(arch: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    spec = get_spec(arch)
    model = _meta_model(spec)
    nodes = _graph_node_names(spec, model)
    module_names = {name for name, _ in model.named_modules()}
    last_index: dict[str, int] = {}
    for index, node in enumerate(nodes):
        point = _point_of(node, spec.points_roots, module_names)
        if point is not None:
            last_index[point] = index
    points = tuple(sorted(last_index, key=last_index.__getitem__))
    return points, tuple(nodes)


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


def extraction_points(arch: str) -> list[str]:
    """Every module-level extraction point of ``arch``, shallow to deep.

    Finer graph nodes (e.g. ``layer2.0.relu``) are accepted by :class:`LossNetwork` too.

    Example:
        >>> extraction_points("resnet18")[:5]
        ['conv1', 'bn1', 'relu', 'maxpool', 'layer1']
    """
    return list(_points_and_nodes(get_spec(arch).name)[0])


def layer_sets(arch: str) -> dict[str, list[str]]:
    """The named layer sets of ``arch`` (``"pihlgren"``, ``"lpips"``, ``"kumar"``, ``"all"``)."""
    spec = get_spec(arch)
    sets = {name: list(points) for name, points in spec.layer_sets.items()}
    if "kumar" not in sets and spec.source == "timm":
        sets["kumar"] = _timm_reduction_points(spec)
    sets["all"] = extraction_points(arch)
    return sets


def _timm_reduction_points(spec: ArchSpec) -> list[str]:
    model = _meta_model(spec)
    info = getattr(model, "feature_info", None)
    if not info:
        return extraction_points(spec.name)[-4:]
    modules = [entry["module"] for entry in info]
    if spec.tokens:  # transformers: every block
        return modules
    points = [entry["module"] for entry in info if entry.get("reduction", 1) >= 4]
    return points[-4:]


def resolve_layers(arch: str, layers: LayersArg = None) -> list[str]:
    """Turn a layer-set name, a point name or a list of point names into points, shallow to deep.

    Unknown names raise an error listing the valid points and close matches.
    """
    spec = get_spec(arch)
    if layers is None:
        layers = spec.default_layers
    if isinstance(layers, str):
        if layers in LAYER_SET_NAMES or layers in spec.layer_sets:
            sets = layer_sets(arch)
            if layers not in sets:
                raise unknown_name(f"layer set of {arch}", layers, list(sets),
                                   hint="Pass extraction point names instead (see lossnet.extraction_points).")
            return list(sets[layers])
        layers = [layers] if "," not in layers else [s.strip() for s in layers.split(",") if s.strip()]
    layers = list(layers)
    if not layers:
        raise LossnetError(f"no extraction points given for {arch}: pass at least one (see lossnet.extraction_points({arch!r})).")
    points, nodes = _points_and_nodes(spec.name)
    order = {p: i for i, p in enumerate(points)}
    node_order = {n: i for i, n in enumerate(nodes)}
    for layer in layers:
        if layer not in order and layer not in node_order and not any(
                re.match(rf"^{re.escape(layer)}(\.|$)", n) for n in nodes):
            raise unknown_name(f"extraction point of {arch}", layer, points,
                               hint="Named sets: " + ", ".join(layer_sets(arch)) + ".")
    if len(set(layers)) != len(layers):
        raise LossnetError(f"extraction points {layers} repeat a name: give each point once.")

    def depth(layer: str) -> int:
        if layer in node_order:
            return node_order[layer]
        return max(i for n, i in node_order.items() if n == layer or n.startswith(layer + "."))

    return sorted(layers, key=depth)


def _input_transform(spec: ArchSpec, input_norm: str | tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) such that the network sees (x - shift) / scale for x in [0, 1]."""
    if isinstance(input_norm, (tuple, list)):
        mean, std = input_norm
    elif input_norm == "auto":
        mean, std = spec.mean, spec.std
    elif input_norm == "imagenet":
        from .registry import IMAGENET_MEAN, IMAGENET_STD

        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif input_norm == "none":
        mean, std = (0.0,) * 3, (1.0,) * 3
    elif input_norm == "half":
        mean, std = (0.5,) * 3, (0.5,) * 3
    elif input_norm == "lpips":
        # LPIPS v0.1: y = 2x - 1 in [-1, 1], then (y - shift) / scale.
        mean = tuple((1 + s) / 2 for s in LPIPS_SHIFT)
        std = tuple(s / 2 for s in LPIPS_SCALE)
    elif input_norm == "lpips_v0.0":
        mean, std = (0.5,) * 3, (0.5,) * 3  # v0.0 fed [-1, 1] straight to the trunk
    else:
        raise unknown_name("input_norm", str(input_norm), INPUT_NORMS, hint="Or pass (mean, std).")
    return torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)


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
    never changes its input in place, and applies the normalisation its weights expect
    (``input_norm="auto"``); ``input_norm="none"`` feeds [0, 1] images as the Pihlgren
    training tasks did.

    Args:
        arch: architecture name (see :func:`lossnet.list_architectures`), or ``"timm:<name>"``.
        layers: a layer-set name (``"pihlgren"``, ``"lpips"``, ``"kumar"``, ``"all"``), a point
            name, or a list of point names. Default: the architecture's default set.
        weights: ``"imagenet"``, ``"random"`` or a path to a state-dict file.
        input_norm: ``"auto"``, ``"imagenet"``, ``"none"``, ``"lpips"``, ``"lpips_v0.0"``,
            ``"half"`` or a ``(mean, std)`` pair.
        tokens: for transformers, ``"cls"`` (the class token, Kumar et al.) or ``"patches"``
            (patch tokens as a spatial map).
        seed: seed of random weights.
        check_inputs: validate inputs (shape, range, NaN); turn off only for trusted inputs.

    Example:
        >>> net = LossNetwork("resnet18", "pihlgren", weights="random")
        >>> list(net(torch.rand(1, 3, 64, 64)))
        ['relu', 'layer1', 'layer2', 'layer4']
    """

    def __init__(self, arch: str, layers: LayersArg = None, weights: WeightsArg = "imagenet",
                 input_norm: str | tuple = "auto", tokens: str | None = None, seed: int = 0,
                 check_inputs: bool = True) -> None:
        super().__init__()
        spec = get_spec(arch)
        self.arch = spec.name
        self.spec = spec
        self.points = resolve_layers(spec.name, layers)
        self.weights = str(weights)
        self.check_inputs = check_inputs
        self.tokens = tokens or spec.tokens or "cls"
        if self.tokens not in ("cls", "patches"):
            raise unknown_name("tokens mode", self.tokens, ["cls", "patches"])
        self.input_norm = input_norm
        scale, shift = _input_transform(spec, input_norm)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        model = load_model(spec, weights, seed=seed)
        self.body = self._truncate(model)
        del model
        _protect_returned_features(self.body)
        self.body.requires_grad_(False)
        super().train(False)

    def _truncate(self, model: nn.Module) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.spec.source == "torchvision":
                from torchvision.models.feature_extraction import create_feature_extractor
            else:
                from timm.models import create_feature_extractor
            return create_feature_extractor(model.eval(), return_nodes={p: p for p in self.points})

    def train(self, mode: bool = True) -> "LossNetwork":
        """Kept in eval mode whatever ``mode`` is: BatchNorm statistics and dropout never change."""
        return super().train(False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch in [0, 1] the way the backbone expects (a new tensor)."""
        scale = self.scale.to(device=x.device, dtype=x.dtype)
        shift = self.shift.to(device=x.device, dtype=x.dtype)
        x = (x - shift) / scale
        size = self.spec.fixed_input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.extract(x, check=self.check_inputs)

    def extract(self, x: torch.Tensor, check: bool = True) -> "OrderedDict[str, torch.Tensor]":
        """Features ``{point: (B, C, H, W)}``; ``check=False`` skips input validation."""
        if check:
            x = check_images(x)
        out = self.body(self.prepare(x))
        return OrderedDict((p, self._as_map(out[p])) for p in self.points)

    def _as_map(self, feature: torch.Tensor) -> torch.Tensor:
        if self.spec.channels_last_output and feature.dim() == 4:
            return feature.permute(0, 3, 1, 2)
        if feature.dim() == 3:  # (B, N, D) tokens
            if self.tokens == "cls":
                return feature[:, 0, :, None, None]
            n_prefix = getattr(self.spec, "num_prefix_tokens", 1)
            patches = feature[:, n_prefix:, :]
            side = int(round(patches.shape[1] ** 0.5))
            return patches.transpose(1, 2).reshape(feature.shape[0], feature.shape[2], side, side)
        if feature.dim() == 2:
            return feature[:, :, None, None]
        return feature

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, points={self.points}, weights={self.weights!r}, input_norm={self.input_norm!r}"
