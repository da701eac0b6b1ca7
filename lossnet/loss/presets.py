"""Named metrics kept as data: each :class:`MetricPreset` fixes a network, its extraction
points, a distance and (for LPIPS) the learned lin weights and input scaling.

:func:`lossnet.loss.create_metric` builds any of them; other modules add theirs with
:func:`register_metric` (DISTS, foundation-model presets). The LPIPS presets come from
ONE table of LPIPS nets (:data:`lossnet.distances.lin.LPIPS_ARCHS`):

- ``lpips-alex``, ``lpips-vgg``, ``lpips-squeeze``: LPIPS v0.1 with its learned lin weights;
- ``...-v0.0``: the original release (no input scaling, the v0.0 lin weights);
- ``...-nolin`` (and ``...-v0.0-nolin``): LPIPS's ``lpips=False`` baseline, a plain sum over
  channels (give ``lin=FILE`` to use your own calibrated weights on those layers);
- ``l2``, ``ssim``: the pixel baselines (mean squared error, 1 - SSIM);
- foundation-model ViTs through timm (extra ``lossnet[timm]``, see ``docs/foundation-models.md``):
  ``dino-vits16``, ``dino-vitb16``, ``dinov2-vit{s,b}14`` (and ``-reg4``, with register tokens),
  ``clip-vitb16``, ``clip-vitb32``, ``siglip-vitb16``, ``vit-ti16``, ``vit-b16``, each as
  ``<family>-cls-cosine`` (the class token, 1 - cosine similarity, as DreamSim),
  ``<family>-mean-cosine`` (the mean patch token), ``<family>-patch-spatial`` and
  ``<family>-patch-meanpool`` (the patch tokens as a map), all at the output of the last block
  after the final norm (timm's ``forward_features``), with a recorded resize policy.

Example:
    >>> METRIC_PRESETS["lpips-vgg"].arch, METRIC_PRESETS["lpips-vgg"].layers
    ('vgg16', 'lpips')
    >>> list_metrics("lpips-alex*")
    ['lpips-alex', 'lpips-alex-nolin', 'lpips-alex-v0.0', 'lpips-alex-v0.0-nolin']
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from typing import Any, Callable

from ..distances.functional import PIXEL_DISTANCES, canonical_distance
from ..distances.lin import LPIPS_ARCHS, LPIPS_VERSIONS
from ..errors import LossnetError, WeightsError, unknown_name
from ..networks.extraction import LossNetwork, resize_plan
from ..networks.registry import timm_arch_name
from ..networks.weights_info import WeightsInfo, weights_info
from .perceptual import PerceptualLoss

LPIPS_REFERENCE = "Zhang et al. 2018, The Unreasonable Effectiveness of Deep Features as a Perceptual Metric (lpips 0.1.4)"


@dataclass(frozen=True)
class MetricPreset:
    """A named metric.

    Attributes:
        name: the preset name (``"lpips-alex"``).
        arch: architecture name (None for a pixel metric).
        layers: a layer-set name or a tuple of extraction points (None: pixel metric).
        distance: the distance name.
        weights: the default trunk weights (``"imagenet"``; a caller may give ``"random"`` or
            a file); None for pixel metrics.
        lin: ``"lpips"`` for LPIPS's learned weights, or None (no lin unless the caller gives
            a file of its own).
        input_norm: how [0, 1] images are normalised for the network.
        lpips_net, lpips_version: which LPIPS lin weights ``lin="lpips"`` means.
        description: one line shown by ``lossnet list --metrics``.
        reference: where the metric comes from.
        tokens: for transformers, ``"cls"`` or ``"patches"`` (None: the architecture's default).
        builder: for metrics that are not (network x points x distance): a callable
            ``builder(weights=..., reduction=..., seed=..., **loss_kwargs) -> PerceptualLoss``.
        resize: how inputs reach the network's input size (see :class:`lossnet.LossNetwork`):
            ``"auto"`` (a fixed-size model's size, with the weights' interpolation), ``"none"``,
            an interpolation, a size ``N`` or ``(N, interpolation)``. ``"auto"`` is a default
            the caller may replace (``resize="none"`` refuses other sizes instead of
            resizing); any other policy is fixed by the preset (the DINOv2 presets' 224).
        extra: the optional dependency the metric needs (``"timm"``: ``pip install 'lossnet[timm]'``).

    Fixed by the preset (a different value passed to ``create_metric`` is an error): arch,
    layers, distance, input_norm, tokens, lin when the preset has one, and resize when it is
    not ``"auto"``. ``weights`` is a default the caller may replace. A builder is passed
    ``resize=`` only when the caller asks for another policy than the preset's (and the
    metric it returns must then have it).
    """

    name: str
    arch: str | None
    layers: str | tuple[str, ...] | None
    distance: str
    weights: str | None = "imagenet"
    lin: str | None = None
    input_norm: str | tuple = "auto"
    lpips_net: str | None = None
    lpips_version: str | None = None
    description: str = ""
    reference: str = ""
    tokens: str | None = None
    builder: Callable[..., Any] | None = None
    resize: str | int | tuple = "auto"
    extra: str | None = None

    @property
    def pixel(self) -> bool:
        """True for the pixel baselines (no network)."""
        return self.distance in PIXEL_DISTANCES

    def describe(self) -> dict[str, Any]:
        """The preset as plain data (JSON-ready).

        Example:
            >>> METRIC_PRESETS["ssim"].describe()["distance"]
            'ssim'
        """
        layers = list(self.layers) if isinstance(self.layers, tuple) else self.layers
        return {"name": self.name, "arch": self.arch, "layers": layers, "distance": self.distance,
                "weights": self.weights, "lin": self.lin, "input_norm": self.input_norm if isinstance(
                    self.input_norm, str) else [list(v) for v in self.input_norm],
                "lpips_net": self.lpips_net, "lpips_version": self.lpips_version, "tokens": self.tokens,
                "resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize, "extra": self.extra,
                "description": self.description, "reference": self.reference}

    def preprocessing(self) -> dict[str, Any] | None:
        """What the network expects and the resize policy, read from its weights' metadata
        (timm's ``pretrained_cfg``, torchvision's weights enum) without downloading; None for
        pixel metrics and builder presets without an architecture.

        Example:
            >>> p = METRIC_PRESETS["lpips-vgg"].preprocessing()
            >>> p["input_size"], p["resize"]
            (224, 'none')
        """
        if self.arch is None:
            return None
        weights = self.weights or "imagenet"
        try:
            info = weights_info(self.arch, weights)
        except WeightsError:  # a factory without pretrained metadata: its defaults
            weights = "random"
            info = weights_info(self.arch, weights)
        return preprocessing_of(info, resize_plan(self.arch, self.resize, weights).policy)


def preprocessing_of(info: WeightsInfo, resize_policy: str) -> dict[str, Any]:
    """The preprocessing fields of a network's weights metadata and its resize policy (words),
    as recorded by :meth:`MetricPreset.preprocessing` and :func:`lossnet.loss.describe_metric`.

    Example:
        >>> preprocessing_of(weights_info("vgg16", "random"), "none")["input_size"]
        224
    """
    return {"mean": list(info.mean) if info.mean else None, "std": list(info.std) if info.std else None,
            "norm_source": info.norm_source, "input_size": info.input_size, "interpolation": info.interpolation,
            "crop_pct": info.crop_pct, "crop_mode": info.crop_mode, "resize_size": info.resize_size,
            "resize": resize_policy}


METRIC_PRESETS: dict[str, MetricPreset] = {}


def _reserved_names() -> set[str]:
    from ..networks.registry import list_architectures

    return set(list_architectures(include_torchvision=True)) | set(LPIPS_ARCHS)


def _validate(preset: MetricPreset) -> None:
    name = preset.name
    if not isinstance(name, str) or not name or name != name.strip():
        raise LossnetError(f"a metric preset needs a non-empty name without surrounding spaces, got {name!r}.")
    distance = canonical_distance(preset.distance)
    if distance != preset.distance:
        raise LossnetError(f"preset {name!r}: give the canonical distance name {distance!r}, not {preset.distance!r}.")
    if preset.pixel:
        if any(v is not None for v in (preset.arch, preset.layers, preset.weights, preset.lin, preset.tokens,
                                       preset.builder)) or preset.resize != "auto":
            raise LossnetError(f"preset {name!r} uses the pixel distance {distance!r}: arch, layers, weights, lin, "
                               "tokens and builder must all be None (and resize 'auto').")
        if name not in PIXEL_DISTANCES and name in _reserved_names():
            raise LossnetError(f"preset name {name!r} is an architecture name: choose another name.")
        return
    if preset.builder is None and (preset.arch is None or preset.layers is None):
        raise LossnetError(f"preset {name!r} with the feature distance {distance!r} needs an arch and layers "
                           "(or a builder).")
    if preset.lin not in (None, "lpips"):
        raise LossnetError(f"preset {name!r}: lin must be None or 'lpips' (a preset carries no file paths), "
                           f"got {preset.lin!r}.")
    if preset.lin == "lpips" and (preset.lpips_net not in LPIPS_ARCHS or preset.lpips_version not in LPIPS_VERSIONS):
        raise LossnetError(f"preset {name!r} has lin='lpips' and so needs lpips_net in {list(LPIPS_ARCHS)} and "
                           f"lpips_version in {list(LPIPS_VERSIONS)}.")
    if name in PIXEL_DISTANCES or name in _reserved_names():
        raise LossnetError(f"preset name {name!r} is already a pixel distance or an architecture name: choose "
                           "another name (e.g. with a '-' suffix naming the distance).")


def register_metric(preset: MetricPreset, *, replace: bool = False) -> None:
    """Add a preset, usable as ``create_metric(preset.name)`` and ``--metric NAME``.

    A name already registered is refused unless ``replace=True``.

    Example:
        >>> register_metric(MetricPreset("vgg16-relu2-mse", "vgg16", ("features.8",), "mse",
        ...                              description="VGG-16 relu2_2, mean squared error"))
        >>> "vgg16-relu2-mse" in list_metrics()
        True
        >>> del METRIC_PRESETS["vgg16-relu2-mse"]
    """
    if not isinstance(preset, MetricPreset):
        raise LossnetError(f"register_metric takes a lossnet.loss.MetricPreset, got {type(preset).__name__}.")
    _validate(preset)
    if preset.name in METRIC_PRESETS and not replace:
        raise LossnetError(f"a metric preset named {preset.name!r} is already registered: choose another name, or "
                           "pass replace=True to replace it.")
    METRIC_PRESETS[preset.name] = preset


def list_metrics(pattern: str | None = None) -> list[str]:
    """Names of the metric presets, sorted; ``pattern`` filters with shell wildcards.

    Example:
        >>> list_metrics("lpips-*-v0.0")
        ['lpips-alex-v0.0', 'lpips-squeeze-v0.0', 'lpips-vgg-v0.0']
    """
    names = sorted(METRIC_PRESETS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_preset(name: str) -> MetricPreset:
    """The preset called ``name``; unknown names list the valid ones."""
    if name not in METRIC_PRESETS:
        raise unknown_name("metric preset", str(name), list_metrics())
    return METRIC_PRESETS[name]


def lpips_preset_name(net: str, version: str = "0.1", lin: bool = True) -> str:
    """The name of the LPIPS preset for ``net`` (alex, vgg, squeeze), ``version`` and lin or not.

    Example:
        >>> lpips_preset_name("vgg", "0.0", lin=False)
        'lpips-vgg-v0.0-nolin'
    """
    if net not in LPIPS_ARCHS:
        raise unknown_name("LPIPS net", str(net), list(LPIPS_ARCHS))
    if version not in LPIPS_VERSIONS:
        raise unknown_name("LPIPS version", str(version), list(LPIPS_VERSIONS))
    return f"lpips-{net}" + ("-v0.0" if version == "0.0" else "") + ("" if lin else "-nolin")


def _register_builtin() -> None:
    for net, arch in LPIPS_ARCHS.items():
        for version in LPIPS_VERSIONS:
            for with_lin in (True, False):
                what = (f"LPIPS v{version} ({arch} trunk, learned lin weights)" if with_lin else
                        f"LPIPS v{version} without lin: sum over channels ({arch} trunk, lpips=False)")
                if version == "0.0":
                    what += "; no input scaling, as the original release"
                register_metric(MetricPreset(
                    lpips_preset_name(net, version, with_lin), arch, "lpips", "spatial",
                    lin="lpips" if with_lin else None,
                    input_norm="lpips" if version == "0.1" else "lpips_v0.0",
                    lpips_net=net, lpips_version=version, description=what, reference=LPIPS_REFERENCE))
    register_metric(MetricPreset("l2", None, None, "l2", weights=None,
                                 description="pixel baseline: mean squared error", reference="pixel baseline"))
    register_metric(MetricPreset("ssim", None, None, "ssim", weights=None,
                                 description="pixel baseline: 1 - SSIM (Gaussian window, sigma 1.5)",
                                 reference="Wang et al. 2004; equals skimage structural_similarity"))


# --- foundation-model ViTs through timm ------------------------------------------------------

DINO_REFERENCE = "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers (timm weights)"
DINOV2_REFERENCE = "Oquab et al. 2023, DINOv2; Darcet et al. 2023, Vision Transformers Need Registers (timm weights)"
CLIP_REFERENCE = "Radford et al. 2021, CLIP (OpenAI weights through timm)"
SIGLIP_REFERENCE = "Zhai et al. 2023, Sigmoid Loss for Language Image Pre-Training (timm weights)"
VIT_REFERENCE = "Dosovitskiy et al. 2021; Steiner et al. 2021, How to train your ViT (timm augreg weights)"
DREAMSIM_REFERENCE = "distance as DreamSim (Fu et al. 2023): 1 - cosine similarity of embeddings"

# The output of the last block after the final norm: what timm's forward_features returns.
VIT_LAST = ("norm",)
_DYNAMIC = {"dynamic_img_size": True}

# (preset prefix, timm model with its pretrained tag, create_model options, resize, class token?, what, reference)
TIMM_VIT_FAMILIES: tuple[tuple[str, str, dict, Any, bool, str, str], ...] = (
    ("dino-vits16", "vit_small_patch16_224.dino", {}, "auto", True, "DINO ViT-S/16", DINO_REFERENCE),
    ("dino-vitb16", "vit_base_patch16_224.dino", {}, "auto", True, "DINO ViT-B/16", DINO_REFERENCE),
    # DINOv2 is evaluated at 518 px; as DreamSim, compare at 224 px (16x16 patches of 14 px), timm
    # interpolating the position embeddings (dynamic_img_size).
    ("dinov2-vits14", "vit_small_patch14_dinov2.lvd142m", _DYNAMIC, 224, True, "DINOv2 ViT-S/14", DINOV2_REFERENCE),
    ("dinov2-vitb14", "vit_base_patch14_dinov2.lvd142m", _DYNAMIC, 224, True, "DINOv2 ViT-B/14", DINOV2_REFERENCE),
    ("dinov2-vits14-reg4", "vit_small_patch14_reg4_dinov2.lvd142m", _DYNAMIC, 224, True,
     "DINOv2 ViT-S/14 with 4 register tokens", DINOV2_REFERENCE),
    ("dinov2-vitb14-reg4", "vit_base_patch14_reg4_dinov2.lvd142m", _DYNAMIC, 224, True,
     "DINOv2 ViT-B/14 with 4 register tokens", DINOV2_REFERENCE),
    ("clip-vitb16", "vit_base_patch16_clip_224.openai", {}, "auto", True,
     "CLIP ViT-B/16 image tower (before the projection)", CLIP_REFERENCE),
    ("clip-vitb32", "vit_base_patch32_clip_224.openai", {}, "auto", True,
     "CLIP ViT-B/32 image tower (before the projection)", CLIP_REFERENCE),
    # SigLIP has no class token (its head pools with attention): mean and patch tokens only.
    ("siglip-vitb16", "vit_base_patch16_siglip_224.webli", {}, "auto", False, "SigLIP ViT-B/16", SIGLIP_REFERENCE),
    ("vit-ti16", "vit_tiny_patch16_224.augreg_in21k_ft_in1k", {}, "auto", True,
     "ViT-Ti/16 (ImageNet-21k, fine-tuned on 1k)", VIT_REFERENCE),
    ("vit-b16", "vit_base_patch16_224.augreg2_in21k_ft_in1k", {}, "auto", True,
     "ViT-B/16 (ImageNet-21k, fine-tuned on 1k)", VIT_REFERENCE),
)

# (preset suffix, tokens, distance, what)
TOKEN_VARIANTS: tuple[tuple[str, str, str, str], ...] = (
    ("cls-cosine", "cls", "cosine", "class token, 1 - cosine similarity (DreamSim-style)"),
    ("mean-cosine", "mean", "cosine", "mean patch token (register tokens excluded), 1 - cosine similarity"),
    ("patch-spatial", "patches", "spatial", "patch tokens as a map, spatial (LPIPS-style) distance"),
    ("patch-meanpool", "patches", "mean_pool", "patch tokens as a map, mean-pool distance"),
)


def build_network_metric(*, arch: str, layers: Any, distance: str, tokens: str | None, input_norm: Any,
                         resize: Any, weights: Any, seed: int, lin: Any = None, **loss_kwargs: Any) -> PerceptualLoss:
    """The builder of the timm ViT presets: a :class:`LossNetwork` with the preset's resize
    policy (``resize=`` from the caller replaces it) under the preset's distance."""
    network = LossNetwork(arch, list(layers), weights=weights, input_norm=input_norm, tokens=tokens, seed=seed,
                          resize=resize)
    return PerceptualLoss(network=network, distance=distance, lin=lin, **loss_kwargs)


def _register_timm_vits() -> None:
    for prefix, model, options, resize, has_cls, what, reference in TIMM_VIT_FAMILIES:
        arch = timm_arch_name(model, **options)
        size = f"inputs resized to {resize}x{resize}" if isinstance(resize, int) else \
            "inputs resized to the model's size"
        for suffix, tokens, distance, how in TOKEN_VARIANTS:
            if tokens == "cls" and not has_cls:
                continue
            name = f"{prefix}-{suffix}"
            register_metric(MetricPreset(
                name, arch, VIT_LAST, distance, tokens=tokens, resize=resize, extra="timm",
                builder=functools.partial(build_network_metric, arch=arch, layers=VIT_LAST, distance=distance,
                                          tokens=tokens, input_norm="auto", resize=resize),
                description=f"{what} (timm {model}), last block after the final norm: {how}; {size} "
                            "(needs lossnet[timm])",
                reference=f"{reference}; {DREAMSIM_REFERENCE}" if distance == "cosine" else reference))


_register_builtin()
_register_timm_vits()
