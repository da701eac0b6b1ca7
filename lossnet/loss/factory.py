"""The one metric factory: :func:`create_metric` builds every metric lossnet knows.

A metric is named by a preset (``lpips-alex``, ``ssim``, ... see :func:`list_metrics`), by
any architecture (a lossnet, torchvision or ``timm:`` name, or LPIPS's short names
``alex``/``vgg``/``squeeze``), by your own ``nn.Module``, or by a ready
:class:`lossnet.LossNetwork`. No argument is ever silently ignored: one that contradicts
the preset or the network it names is an error that says what to do instead.

Example:
    >>> metric = create_metric("lpips-alex", weights="random", reduction="none")
    >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
    torch.Size([2])
    >>> describe_metric(create_metric("vgg16", layers=["features.8"], distance="mse", weights="random"))["points"]
    ['features.8']
    >>> create_metric(distance="ssim").pixel
    True
"""
from __future__ import annotations

import os
from typing import Any

import torch  # noqa: F401  (used by the doctests)
from torch import nn

from ..distances.functional import PIXEL_DISTANCES, canonical_distance, layer_weight_map
from ..distances.lin import LPIPS_ARCHS
from ..errors import LossnetError, UnknownNameError, WeightsError, unknown_name
from ..inputs import InputRange
from ..networks.extraction import LossNetwork, ResizeArg, resize_plan, resolve_layers
from ..networks.registry import get_spec, list_architectures
from ..networks.weights import WeightsArg
from .perceptual import PerceptualLoss, Reduction, resize_policy_for
from .presets import (
    METRIC_PRESETS,
    MetricPreset,
    get_preset,
    list_metrics,
    lpips_preset_name,
    preprocessing_of,
    register_metric,
)

LOSS_KWARGS = ("layer_weights", "input_range", "spatial", "expand_grayscale", "tokens")
_LPIPS_NET_OF_ARCH = {arch: net for net, arch in LPIPS_ARCHS.items()}
_LPIPS_VERSION_OF_NORM = {"lpips": "0.1", "lpips_v0.0": "0.0"}


def create_metric(
    name: str | nn.Module | None = None,
    *,
    layers: Any = None,
    distance: str | None = None,
    weights: WeightsArg | None = None,
    lin: Any = None,
    input_norm: str | tuple | None = None,
    reduction: Reduction = "mean",
    seed: int | None = None,
    resize: ResizeArg | None = None,
    **loss_kwargs: Any,
) -> PerceptualLoss:
    """A :class:`PerceptualLoss` from a preset, an architecture, a module or a LossNetwork.

    Args:
        name: a preset (:func:`list_metrics`); an architecture (:func:`lossnet.list_architectures`,
            any torchvision classification model, ``"timm:<name>"``; ``alex``/``vgg``/``squeeze``
            are alexnet/vgg16/squeezenet1_1 at their LPIPS layers unless ``layers`` says
            otherwise); an ``nn.Module`` (``layers`` names its nodes); a :class:`lossnet.LossNetwork`;
            or None for a pixel baseline (``distance="l2"`` or ``"ssim"``).
        layers, distance, input_norm: fixed by a preset (a different value is an error); for
            an architecture, the extraction points (default: its default set), the distance
            (default ``"spatial"``) and the input normalisation (default ``"auto"``).
        weights: ``"imagenet"`` (default), ``"random"`` or a state-dict file.
        lin: per-channel lin weights: a file, ``{point: (C,)}``, or ``"lpips"`` (LPIPS's learned
            weights: only for the LPIPS trunks at their LPIPS layers with the spatial distance).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        seed: seed of ``weights="random"`` (default 0).
        resize: how inputs reach the network's input size (:class:`lossnet.LossNetwork`'s
            ``resize``: ``"auto"``, ``"none"``, ``"bilinear"``/``"bicubic"``, ``N``,
            ``(N, interpolation)``). Default: the preset's policy (``"auto"`` for an
            architecture). A preset whose policy is not ``"auto"`` fixes it; pixel metrics never
            resize (an error).
        **loss_kwargs: ``layer_weights``, ``input_range``, ``spatial``, ``expand_grayscale``,
            ``tokens`` (see :class:`PerceptualLoss`).

    Example:
        >>> create_metric("alex", lin="lpips", weights="random").preset
        'lpips-alex'
        >>> create_metric("lpips-vgg", distance="mse")
        Traceback (most recent call last):
        ...
        lossnet.errors.LossnetError: preset 'lpips-vgg' fixes distance='spatial', but distance='mse' was given. ...
        >>> create_metric("vgg16", layers=["features.3"], weights="random", resize=32).resize_policy
        'resize to 32x32 (bilinear, antialias)'
    """
    unknown = sorted(set(loss_kwargs) - set(LOSS_KWARGS))
    if unknown:
        raise LossnetError(f"create_metric got unknown arguments {unknown}; it takes name, layers, distance, weights, "
                           f"lin, input_norm, reduction, seed, resize and {', '.join(LOSS_KWARGS)}.")
    if isinstance(lin, os.PathLike):
        lin = str(lin)
    args = {"layers": layers, "distance": distance, "weights": weights, "lin": lin, "input_norm": input_norm,
            "resize": resize}
    common = {"reduction": reduction, **loss_kwargs}
    if isinstance(name, PerceptualLoss):
        given = [k for k, v in {**args, "seed": seed, **loss_kwargs}.items() if v is not None] + (
            ["reduction"] if reduction != "mean" else [])
        if given:
            raise LossnetError(f"name is already a PerceptualLoss, which fixes {', '.join(given)}: use it as it is, "
                               "or create a new metric from a preset or an architecture name.")
        return name
    if isinstance(name, LossNetwork):
        return _from_network(name, args, seed, common)
    if isinstance(name, nn.Module):
        return PerceptualLoss(name, layers=layers, distance=_feature_distance(distance, type(name).__name__),
                              weights=weights, lin=lin, input_norm=input_norm, seed=0 if seed is None else seed,
                              resize=resize, **common)
    if name is None:
        return _pixel_metric(args, common)
    if not isinstance(name, str):
        raise LossnetError(f"name must be a preset or architecture name, an nn.Module or a LossNetwork, got "
                           f"{type(name).__name__}.")
    if name in METRIC_PRESETS:
        return _from_preset(METRIC_PRESETS[name], args, seed, common)
    return _from_arch(name, args, seed, common)


def _feature_distance(distance: str | None, what: str) -> str:
    name = "spatial" if distance is None else canonical_distance(distance)
    if name in PIXEL_DISTANCES:
        raise LossnetError(f"distance {name!r} is a pixel baseline and uses no network, but {what} was named: "
                           f"use create_metric({name!r}) (or distance={name!r} without a network), or a feature "
                           "distance (spatial, mean_pool, style, mse, l1, cosine).")
    return name


def _pixel_metric(args: dict, common: dict) -> PerceptualLoss:
    distance = args["distance"]
    if distance is None or canonical_distance(distance) not in PIXEL_DISTANCES:
        what = "no distance" if distance is None else f"the feature distance {canonical_distance(distance)!r}"
        raise LossnetError(
            f"name a network or a preset: create_metric(None) with {what} has nothing to compute features with. "
            "Use a preset (e.g. create_metric('lpips-alex'); all: lossnet.list_metrics()), an architecture "
            "(e.g. create_metric('vgg16', layers='pihlgren', distance='mse')), or a pixel baseline "
            "(create_metric(distance='l2') or distance='ssim').")
    rest = {k: v for k, v in args.items() if k != "distance"}
    return PerceptualLoss(distance=canonical_distance(distance), **rest, **common)


def _from_preset(preset: MetricPreset, args: dict, seed: int | None, common: dict) -> PerceptualLoss:
    if preset.pixel:
        extra = [k for k in ("layers", "weights", "lin", "input_norm", "resize") if args[k] is not None]
        extra += [k for k in ("layer_weights", "tokens") if common.get(k) is not None]
        if extra:
            raise LossnetError(f"preset {preset.name!r} is a pixel baseline and uses no network (and never resizes): "
                               f"drop {', '.join(extra)} (or name a network instead).")
    conflicts: list[tuple[str, Any, Any]] = []  # (field, given, fixed by the preset)
    if args["distance"] is not None and canonical_distance(args["distance"]) != preset.distance:
        conflicts.append(("distance", args["distance"], preset.distance))
    if args["layers"] is not None and not preset.pixel and not _same_layers(preset, args["layers"]):
        conflicts.append(("layers", args["layers"], preset.layers))
    if args["input_norm"] is not None and args["input_norm"] != preset.input_norm:
        conflicts.append(("input_norm", args["input_norm"], preset.input_norm))
    tokens = common.get("tokens")
    if tokens is not None and preset.tokens is not None and tokens != preset.tokens:
        conflicts.append(("tokens", tokens, preset.tokens))
    lin = args["lin"]
    if preset.lin is not None and lin is not None and not (isinstance(lin, str) and lin == preset.lin):
        conflicts.append(("lin", lin, preset.lin))
    resize = args["resize"]
    if resize is not None and not _same_resize(preset, resize, args["weights"]):
        conflicts.append(("resize", resize, preset.resize))
    if conflicts:
        fixed = ", ".join(f"{f}={v!r}" for f, _, v in conflicts)
        given = ", ".join(f"{f}={v!r}" for f, v, _ in conflicts)
        names = ", ".join(f"{f}=" for f, _, _ in conflicts)
        own = (f"create_metric({preset.arch!r}, layers=..., distance=..., ...)" if preset.arch else
               "create_metric('<architecture>', ...)")
        fix = f"Drop {names}, or build your own metric with {own}."
        if any(f == "lin" for f, _, _ in conflicts) and preset.lpips_net:
            nolin = lpips_preset_name(preset.lpips_net, preset.lpips_version or "0.1", lin=False)
            fix += f" For your own lin weights on the same layers use create_metric({nolin!r}, lin=...)."
        raise LossnetError(f"preset {preset.name!r} fixes {fixed}, but {given} was given. {fix}")
    if preset.pixel:
        metric = PerceptualLoss(distance=preset.distance, **common)
    elif preset.builder is not None:
        kwargs = {k: v for k, v in common.items() if k != "tokens" or v is not None}
        if lin is not None:
            kwargs["lin"] = lin
        weights = args["weights"] or preset.weights
        if resize is not None and (preset.arch is None or _resize_policy(preset, resize, weights)
                                   != _resize_policy(preset, preset.resize, weights)):
            kwargs["resize"] = resize  # a builder is asked for another policy only when there is one to ask for
        metric = preset.builder(weights=weights, seed=0 if seed is None else seed, **kwargs)
        if not isinstance(metric, PerceptualLoss):
            raise LossnetError(f"the builder of preset {preset.name!r} returned {type(metric).__name__}, not a "
                               "PerceptualLoss.")
        wanted = None if resize is None or metric.pixel else resize_policy_for(metric.net, resize)
        if wanted is not None and metric.resize_policy != wanted:
            raise LossnetError(
                f"preset {preset.name!r} builds its own network, which does not apply resize={resize!r} ({wanted!r}; "
                f"it does {metric.resize_policy!r}): drop resize= and resize the images beforehand, or build your own "
                f"metric with create_metric('<architecture>', resize=..., ...).")
    else:
        kwargs = dict(common)
        kwargs["tokens"] = preset.tokens if preset.tokens is not None else tokens
        metric = PerceptualLoss(
            preset.arch, layers=preset.layers, distance=preset.distance, weights=args["weights"] or preset.weights,
            lin=lin if lin is not None else preset.lin, input_norm=preset.input_norm,
            seed=0 if seed is None else seed, resize=preset.resize if resize is None else resize,
            _lpips_net=preset.lpips_net, _lpips_version=preset.lpips_version or "0.1", **kwargs)
    metric.preset = preset.name
    return metric


def _resize_policy(preset: MetricPreset, resize: Any, weights: Any) -> str | None:
    """The policy (in words) ``resize`` gives the preset's network; None without a known architecture."""
    if preset.arch is None:
        return None
    named = isinstance(weights, str) and (weights == "random" or weights.startswith("imagenet"))
    try:  # the interpolation of "auto" comes from the weights' metadata; a file has the architecture's defaults
        return resize_plan(preset.arch, resize, weights if named else "random").policy
    except WeightsError:  # a factory without pretrained metadata
        return resize_plan(preset.arch, resize, "random").policy


def _same_resize(preset: MetricPreset, resize: Any, weights: Any) -> bool:
    """True when ``resize`` is allowed with the preset: its policy is ``"auto"`` (a default the
    caller may replace), or ``resize`` means the same policy as the preset's."""
    if preset.pixel or (isinstance(preset.resize, str) and preset.resize == "auto") or resize == preset.resize:
        return True
    weights = weights or preset.weights
    try:
        fixed = _resize_policy(preset, preset.resize, weights)
        return fixed is not None and _resize_policy(preset, resize, weights) == fixed
    except LossnetError:  # not a valid policy for this network: a conflict
        return False


def _same_layers(preset: MetricPreset, layers: Any) -> bool:
    if preset.arch is None or preset.builder is not None:  # the builder's network: compare the names
        as_list = [layers] if isinstance(layers, str) else list(layers)
        fixed = [preset.layers] if isinstance(preset.layers, str) else list(preset.layers or ())
        return as_list == fixed
    return resolve_layers(preset.arch, layers) == resolve_layers(preset.arch, preset.layers)


def _from_arch(name: str, args: dict, seed: int | None, common: dict) -> PerceptualLoss:
    arch_name = LPIPS_ARCHS.get(name, name)
    try:
        spec = get_spec(arch_name)
    except UnknownNameError:
        if arch_name.startswith("timm:"):
            raise
        raise unknown_name(
            "metric", name, list_metrics() + list_architectures(),
            hint="A metric is a preset (lossnet.list_metrics()) or any architecture: lossnet.list_architectures(), "
                 "any torchvision classification model name, or 'timm:<name>' for a timm model.") from None
    layers = args["layers"]
    if layers is None and name in LPIPS_ARCHS:
        layers = "lpips"  # LPIPS's short names mean its trunks at the LPIPS layers
    lin = args["lin"]
    if isinstance(lin, str) and lin == "lpips":
        net, version = _lpips_target(spec.name, name, layers, args["distance"], args["input_norm"])
        rest = {**args, "layers": None, "distance": None, "lin": None, "input_norm": None}
        return _from_preset(get_preset(lpips_preset_name(net, version)), rest, seed, common)
    return PerceptualLoss(spec.name, layers=layers, distance=_feature_distance(args["distance"], repr(name)),
                          weights=args["weights"], lin=lin, input_norm=args["input_norm"],
                          seed=0 if seed is None else seed, resize=args["resize"], **common)


def _lpips_target(arch: str, name: str, layers: Any, distance: str | None, input_norm: Any) -> tuple[str, str]:
    """(LPIPS net, version) that ``lin='lpips'`` means here, or an error saying why there is none."""
    net = _LPIPS_NET_OF_ARCH.get(arch)
    if net is None:
        raise LossnetError(
            f"lin='lpips' means LPIPS's learned weights, which exist only for {', '.join(LPIPS_ARCHS.values())} "
            f"({'/'.join(LPIPS_ARCHS)}) at their LPIPS layers with the spatial distance, not for {name!r}: "
            "calibrate your own (lossnet calibrate) and pass lin=<file>.")
    expected = resolve_layers(arch, "lpips")
    if layers is not None and resolve_layers(arch, layers) != expected:
        raise LossnetError(
            f"lin='lpips' holds weights for the LPIPS layers of {arch} {expected}, but layers={layers!r} was given: "
            f"drop layers (that is preset {lpips_preset_name(net)!r}), or drop lin='lpips' (or calibrate lin "
            "weights for your layers with lossnet calibrate).")
    if distance is not None and canonical_distance(distance) != "spatial":
        raise LossnetError(
            f"lin='lpips' holds weights for the spatial (LPIPS) distance, but distance={distance!r} was given: "
            "drop distance, or drop lin='lpips'.")
    if input_norm is None:
        return net, "0.1"
    if not isinstance(input_norm, str) or input_norm not in _LPIPS_VERSION_OF_NORM:
        raise LossnetError(
            f"lin='lpips' was learned on LPIPS's input scaling, but input_norm={input_norm!r} was given: drop "
            "input_norm (v0.1), or pass input_norm='lpips_v0.0' for the v0.0 weights.")
    return net, _LPIPS_VERSION_OF_NORM[input_norm]


def _from_network(net: LossNetwork, args: dict, seed: int | None, common: dict) -> PerceptualLoss:
    fixed = [k for k in ("layers", "weights", "input_norm") if args[k] is not None]
    fixed += ["tokens"] if common.get("tokens") is not None else []
    fixed += ["seed"] if seed not in (None, 0) else []
    if fixed:
        raise LossnetError(f"the LossNetwork given already fixes {', '.join(fixed)}: drop them, or build the "
                           "LossNetwork with them.")
    common = {k: v for k, v in common.items() if k != "tokens"}
    distance = _feature_distance(args["distance"], "a LossNetwork")
    lin = args["lin"]
    lpips_net, version = None, "0.1"
    if isinstance(lin, str) and lin == "lpips":
        lpips_net, version = _lpips_target(net.arch, net.arch, list(net.points), distance, net.input_norm)
    return PerceptualLoss(network=net, distance=distance, lin=lin, _lpips_net=lpips_net, _lpips_version=version,
                          resize=args["resize"], **common)


def lpips(
    net: str = "alex",
    version: str = "0.1",
    weights: WeightsArg = "imagenet",
    lin: object = "lpips",
    reduction: Reduction = "mean",
    spatial: bool = False,
    input_range: InputRange = "0,1",
) -> PerceptualLoss:
    """Exactly the LPIPS metric (Zhang et al. 2018), with inputs in [0, 1]: presets ``lpips-<net>``.

    ``lin="lpips"`` takes the learned weights shipped in the ``lpips`` package; ``lin=None`` is
    LPIPS's ``lpips=False`` baseline; a path loads a lin file. ``version="0.0"`` reproduces
    the original release, which skipped the input scaling.

    Example:
        >>> metric = lpips("alex", weights="random", reduction="none")
        >>> metric(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
    """
    with_lin = isinstance(lin, str) and lin == "lpips"
    return create_metric(lpips_preset_name(net, version, lin=with_lin), weights=weights,
                         lin=None if with_lin else lin, reduction=reduction, spatial=spatial, input_range=input_range)


def describe_metric(metric: PerceptualLoss) -> dict[str, Any]:
    """Metadata of a metric: preset, arch, points, distance, weights, lin, layer weights, input
    norm, the resize policy in words (``"resize"``) and the ``"preprocessing"`` of its network
    (the mean/std applied, the weights' input size, interpolation and crop; None for pixel
    metrics, whose ``"resize"`` is ``"none"``). Every score, JND and MOS result records it.

    Example:
        >>> d = describe_metric(create_metric("lpips-squeeze", weights="random"))
        >>> d["preset"], d["arch"], d["lin"], d["lin_source"], d["resize"]
        ('lpips-squeeze', 'squeezenet1_1', True, 'lpips v0.1 (squeeze)', 'none')
    """
    if not isinstance(metric, PerceptualLoss):
        raise LossnetError(f"describe_metric takes a lossnet.PerceptualLoss, got {type(metric).__name__}.")
    if metric.pixel:
        return {"preset": metric.preset, "arch": None, "points": [], "distance": metric.distance, "weights": None,
                "lin": False, "lin_source": None, "layer_weights": None, "input_norm": None,
                "resize": metric.resize_policy, "preprocessing": None}
    points = list(metric.net.points)
    lw = metric.layer_weights
    return {
        "preset": metric.preset,
        "arch": getattr(metric.net, "arch", type(metric.net).__name__),
        "points": points, "distance": metric.distance,
        "weights": str(getattr(metric.net, "weights", None)),
        "lin": metric.lin is not None, "lin_source": metric.lin_source,
        "layer_weights": None if lw is None else layer_weight_map(points, lw),
        "input_norm": str(metric.net.input_norm),
        "resize": metric.resize_policy,
        "preprocessing": _network_preprocessing(metric.net, metric.resize_policy),
    }


def _network_preprocessing(net: Any, policy: str) -> dict[str, Any] | None:
    """What the network does to [0, 1] inputs: the mean/std it applies and its weights' metadata."""
    info = getattr(net, "weights_info", None)
    if info is None:
        return None
    applied = {"mean": [round(float(v), 6) for v in net.shift.flatten()],
               "std": [round(float(v), 6) for v in net.scale.flatten()]}
    return {**preprocessing_of(info, policy), **applied}


__all__ = ["LOSS_KWARGS", "METRIC_PRESETS", "MetricPreset", "create_metric", "describe_metric", "list_metrics",
           "lpips", "register_metric"]
