"""The classifier families of Kumar et al. (2022), trained at 64x64 and used as loss networks.

Every network here is registered as a loss-network architecture, so a checkpoint trained by
``lossnet train classifier`` is a perceptual metric in one line::

    lossnet.PerceptualLoss("kumar_resnet6", layers="kumar", weights="run/ckpt/step-000500.pt")

Names (all lower case; ``_c{N}`` sets the number of classes, default 1000):

- ``kumar_resnet{D}[_w{W}][_noskip][_c{N}]``: a ResNet of depth ``D`` (2..200), width
  multiplier ``W`` (default 1), optionally without any skip connection.
- ``kumar_efficientnet_b{0..5}[_c{N}]``: torchvision's EfficientNet-B0..B5 builders.
- ``kumar_vit_b8``, ``kumar_vit_b4``, ``kumar_vit_l8``, ``kumar_vit_l4`` (ViT-Base/Large,
  patch 8 or 4 at 64x64) and any ViT as ``kumar_vit_p{P}_w{hidden}_d{blocks}_h{heads}_m{mlp}``,
  each with an optional ``_c{N}``; torchvision's ``VisionTransformer`` with ``image_size=64``.

Common names are registered when this module is imported; any other valid name is
registered by :func:`ensure_registered` (the training task, the sweep adapter and the
report call it on every name they see).

Extraction points (layer set ``"kumar"``): the outputs of the four reduction stages,
``layer1..layer4`` for ResNets and ``features.2, .3, .5, .7`` for EfficientNets (16x16, 8x8,
4x4 and 2x2 at 64x64 input), and the CLS token after every encoder block of a ViT.

ResNet layout. The stem is ImageNet's (7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max
pool), so a 64x64 image reaches the stages at 16x16; stage ``i`` has ``round(64 * W * 2**i)``
planes and strides 1, 2, 2, 2. The depth counts the stem convolution, the classifier and the
convolutions of the residual branches (projection shortcuts are not counted, as in He et al.):

- The depths of He et al. use their layouts: 18 and 34 basic blocks (2 convolutions),
  50, 101, 152 and 200 bottleneck blocks (3 convolutions), blocks per stage
  (2,2,2,2), (3,4,6,3), (3,4,6,3), (3,4,23,3), (3,8,36,3), (3,24,36,3). At width 1 these have
  exactly torchvision's parameters and state-dict keys.
- Any other depth ``D``: basic blocks below 50, bottleneck blocks from 50. ``D - 2``
  convolutions make ``(D - 2) // c`` full blocks; a remainder ``r`` adds one short block at
  the end that keeps the last ``r`` convolutions of a full block (ResNet-3: one block with a
  single 3x3 convolution). Blocks are dealt to the stages as evenly as possible, earlier
  stages first below depth 18 (ResNet-6: stages (1, 1, 0, 0); ResNet-10: (1, 1, 1, 1)), and
  in proportion to (3, 4, 6, 3) above it (largest remainders first).
- A stage without blocks keeps only what a first block of the stage has on its shortcut
  path: nothing in stage 1 (an identity), a 1x1 stride-2 convolution with BN followed by the
  ReLU elsewhere. So ResNet-2 is the stem, three strided 1x1 projections and the classifier.
- ``_noskip`` removes every shortcut (blocks compute ``relu(branch(x))``; the projections
  of empty stages stay, being the only path there).

A dropout layer (``p=dropout``, default 0) sits before the classifier of every family; it has
no parameters, so checkpoints with any dropout load into the same name.

Example:
    >>> net = build_classifier("kumar_resnet6_w0.25", seed=0)
    >>> [tuple(f.shape[1:]) for f in stage_outputs(net, torch.rand(1, 3, 64, 64))]
    [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import LossnetError, UnknownNameError

FAMILY_RESNET = "kumar_resnet"
FAMILY_EFFICIENTNET = "kumar_efficientnet"
FAMILY_VIT = "kumar_vit"
MIN_DEPTH, MAX_DEPTH = 2, 200
IMAGE_SIZE = 64

# He et al.'s layouts: depth -> (block type, blocks per stage).
STANDARD_RESNETS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3)), 200: ("bottleneck", (3, 24, 36, 3)),
}
CONVS_PER_BLOCK = {"basic": 2, "bottleneck": 3}
EXPANSION = {"basic": 1, "bottleneck": 4}

# ViT presets (Appendix M; ViT-L uses 16 heads: the 12 of Table 5 do not divide its width 1024).
VIT_PRESETS: dict[str, dict[str, int]] = {
    "b8": dict(patch=8, hidden=768, depth=12, heads=12, mlp=3072),
    "b4": dict(patch=4, hidden=768, depth=12, heads=12, mlp=3072),
    "l8": dict(patch=8, hidden=1024, depth=24, heads=16, mlp=4096),
    "l4": dict(patch=4, hidden=1024, depth=24, heads=16, mlp=4096),
}
EFFICIENTNET_VARIANTS = tuple(range(6))
# Torchvision's classifier dropout of EfficientNet-B0..B5 (Tan & Le's defaults).
EFFICIENTNET_DROPOUT = {0: 0.2, 1: 0.2, 2: 0.3, 3: 0.3, 4: 0.4, 5: 0.4}


class ClassifierNameError(UnknownNameError):
    """A Kumar classifier name does not parse or is out of range."""


# --------------------------------------------------------------------------------------------
# ResNets


def resnet_layout(depth: int) -> tuple[str, list[list[int]]]:
    """The block type and, per stage, the number of convolutions of each block.

    Example:
        >>> resnet_layout(6)
        ('basic', [[2], [2], [], []])
        >>> resnet_layout(3)
        ('basic', [[1], [], [], []])
        >>> resnet_layout(18)[1]
        [[2, 2], [2, 2], [2, 2], [2, 2]]
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ClassifierNameError(f"ResNet depth must be an integer from {MIN_DEPTH} to {MAX_DEPTH}, got {depth!r}.")
    if depth in STANDARD_RESNETS:
        kind, counts = STANDARD_RESNETS[depth]
        c = CONVS_PER_BLOCK[kind]
        return kind, [[c] * n for n in counts]
    kind = "basic" if depth < 50 else "bottleneck"
    c = CONVS_PER_BLOCK[kind]
    full, rest = divmod(depth - 2, c)
    blocks = [c] * full + ([rest] if rest else [])
    weights = (1, 1, 1, 1) if depth < 18 else (3, 4, 6, 3)
    counts = _apportion(len(blocks), weights)
    stages, i = [], 0
    for n in counts:
        stages.append(blocks[i:i + n])
        i += n
    return kind, stages


def _apportion(n: int, weights: tuple[int, ...]) -> list[int]:
    """``n`` items over ``len(weights)`` slots in proportion (largest remainders; ties: earlier slots)."""
    total = sum(weights)
    quotas = [n * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class ResidualBlock(nn.Module):
    """A basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1) block; a short block keeps the last
    ``convs`` convolutions of the full one. Modules are named as torchvision's (``conv1``,
    ``bn1``, ..., ``downsample``). The stride sits on the 3x3 convolution (ResNet v1.5)."""

    def __init__(self, kind: str, inplanes: int, planes: int, stride: int, convs: int, skip: bool = True) -> None:
        super().__init__()
        out = planes * EXPANSION[kind]
        if kind == "basic":
            full = [(3, planes, stride), (3, planes, 1)]
        else:
            full = [(1, planes, 1), (3, planes, stride), (1, out, 1)]
        kept = full[len(full) - convs:]
        if all(s == 1 for _, _, s in kept) and stride != 1:  # a short block that lost its strided conv
            k, c, _ = kept[0]
            kept[0] = (k, c, stride)
        cin = inplanes
        self.n_convs = len(kept)
        for i, (k, c, s) in enumerate(kept, start=1):
            c = out if i == len(kept) else c
            setattr(self, f"conv{i}", _conv(cin, c, k, s))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c))
            cin = c
        self.relu = nn.ReLU(inplace=True)
        self.skip = skip
        self.downsample = None
        if skip and (stride != 1 or inplanes != out):
            self.downsample = nn.Sequential(_conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, self.n_convs + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.n_convs:
                out = self.relu(out)
        if self.skip:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ProjectionStage(nn.Module):
    """A stage without blocks: only the shortcut of its first block (1x1 strided conv + BN), then ReLU."""

    def __init__(self, inplanes: int, out: int, stride: int) -> None:
        super().__init__()
        self.downsample = nn.Sequential(_conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.downsample(x))


class KumarResNet(nn.Module):
    """A ResNet of any depth (2..200) and width with an ImageNet stem (see the module docstring).

    Example:
        >>> net = KumarResNet(18)
        >>> sum(p.numel() for p in net.parameters())  # torchvision's resnet18
        11689512
    """

    def __init__(self, depth: int, width: float = 1.0, skip: bool = True, num_classes: int = 1000,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not width > 0:
            raise ClassifierNameError(f"ResNet width multiplier must be positive, got {width!r}.")
        _check_classes(num_classes)
        kind, stages = resnet_layout(depth)
        self.depth, self.width, self.kind, self.layout = depth, width, kind, stages
        stem = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem
        for i, blocks in enumerate(stages):
            planes = max(1, round(64 * width * 2 ** i))
            stride = 1 if i == 0 else 2
            out = planes * EXPANSION[kind]
            if not blocks:
                stage: nn.Module = nn.Identity() if (stride == 1 and inplanes == out) else \
                    nn.Sequential(ProjectionStage(inplanes, out, stride))
            else:
                mods = []
                for j, convs in enumerate(blocks):
                    mods.append(ResidualBlock(kind, inplanes, planes, stride if j == 0 else 1, convs, skip))
                    inplanes = out
                stage = nn.Sequential(*mods)
            inplanes = out
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# --------------------------------------------------------------------------------------------
# EfficientNets and ViTs (torchvision's implementations)


def efficientnet(variant: int, num_classes: int = 1000, dropout: float | None = None) -> nn.Module:
    """Torchvision's EfficientNet-B``variant`` with ``num_classes`` outputs (dropout: its default)."""
    import torchvision

    if variant not in EFFICIENTNET_VARIANTS:
        raise ClassifierNameError(f"EfficientNet variant must be B0..B5, got B{variant}.")
    _check_classes(num_classes)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if dropout is not None:
        kwargs["dropout"] = dropout
    return torchvision.models.get_model(f"efficientnet_b{variant}", weights=None, **kwargs)


def vision_transformer(patch: int, hidden: int, depth: int, heads: int, mlp: int, num_classes: int = 1000,
                       dropout: float = 0.0, attention_dropout: float = 0.0) -> nn.Module:
    """Torchvision's ``VisionTransformer`` at 64x64 with a ``patch`` x ``patch`` patch embedding."""
    from torchvision.models.vision_transformer import VisionTransformer

    check_vit(patch, hidden, depth, heads, mlp)
    _check_classes(num_classes)
    return VisionTransformer(image_size=IMAGE_SIZE, patch_size=patch, num_layers=depth, num_heads=heads,
                             hidden_dim=hidden, mlp_dim=mlp, dropout=dropout, attention_dropout=attention_dropout,
                             num_classes=num_classes)


def check_vit(patch: int, hidden: int, depth: int, heads: int, mlp: int) -> None:
    if patch <= 0 or IMAGE_SIZE % patch:
        raise ClassifierNameError(f"ViT patch size must divide {IMAGE_SIZE} (use 8 or 4), got {patch}.")
    if min(hidden, depth, heads, mlp) <= 0:
        raise ClassifierNameError(f"ViT sizes must be positive: hidden {hidden}, depth {depth}, heads {heads}, "
                                  f"mlp {mlp}.")
    if hidden % heads:
        raise ClassifierNameError(f"ViT hidden size {hidden} is not divisible by its {heads} heads: pick a "
                                  "number of heads that divides it.")


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ClassifierNameError(f"a classifier needs at least 2 classes, got {num_classes!r}.")


# --------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class ClassifierName:
    """A parsed Kumar classifier name: its family and the builder's keyword arguments."""

    name: str
    family: str
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def build_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)


_NUM = r"(\d+(?:\.\d+)?)"
_RESNET_RE = re.compile(rf"^kumar_resnet(\d+)(?:_w{_NUM})?(_noskip)?(?:_c(\d+))?$")
_EFF_RE = re.compile(r"^kumar_efficientnet_b(\d+)(?:_c(\d+))?$")
_VIT_PRESET_RE = re.compile(r"^kumar_vit_([bl])(\d+)(?:_c(\d+))?$")
_VIT_RE = re.compile(r"^kumar_vit_p(\d+)_w(\d+)_d(\d+)_h(\d+)_m(\d+)(?:_c(\d+))?$")
NAME_FORMS = ("kumar_resnet{D}[_w{W}][_noskip][_c{N}]", "kumar_efficientnet_b{0..5}[_c{N}]",
              "kumar_vit_{b|l}{8|4}[_c{N}]", "kumar_vit_p{P}_w{hidden}_d{blocks}_h{heads}_m{mlp}[_c{N}]")


def _fmt_width(width: float) -> str:
    return f"{float(width):g}"


def resnet_name(depth: int, width: float = 1.0, skip: bool = True, num_classes: int = 1000) -> str:
    """The name of a ResNet: ``resnet_name(6, 0.5)`` is ``"kumar_resnet6_w0.5"``.

    Example:
        >>> resnet_name(50, skip=False, num_classes=100)
        'kumar_resnet50_noskip_c100'
    """
    name = f"kumar_resnet{int(depth)}"
    if float(width) != 1.0:
        name += f"_w{_fmt_width(width)}"
    if not skip:
        name += "_noskip"
    if num_classes != 1000:
        name += f"_c{int(num_classes)}"
    return name


def vit_name(patch: int, hidden: int, depth: int, heads: int, mlp: int, num_classes: int = 1000) -> str:
    """The name of a ViT (a preset's short name when the sizes are a preset's).

    Example:
        >>> vit_name(8, 768, 12, 12, 3072)
        'kumar_vit_b8'
        >>> vit_name(8, 192, 2, 3, 768)
        'kumar_vit_p8_w192_d2_h3_m768'
    """
    sizes = dict(patch=patch, hidden=hidden, depth=depth, heads=heads, mlp=mlp)
    suffix = "" if num_classes == 1000 else f"_c{int(num_classes)}"
    for key, preset in VIT_PRESETS.items():
        if preset == sizes:
            return f"kumar_vit_{key}{suffix}"
    return f"kumar_vit_p{patch}_w{hidden}_d{depth}_h{heads}_m{mlp}{suffix}"


def with_classes(name: str, num_classes: int) -> str:
    """``name`` with its number of classes set (for class-subset experiments).

    Example:
        >>> with_classes("kumar_resnet6_w0.5", 100)
        'kumar_resnet6_w0.5_c100'
    """
    base = re.sub(r"_c\d+$", "", parse_name(name).name)
    return base if num_classes == 1000 else f"{base}_c{int(num_classes)}"


def parse_name(name: str) -> ClassifierName:
    """Parse a Kumar classifier name into its family and builder arguments (errors name the forms).

    Example:
        >>> parse_name("kumar_resnet10_w0.5").build_kwargs
        {'depth': 10, 'width': 0.5, 'skip': True, 'num_classes': 1000}
    """
    if not isinstance(name, str):
        raise ClassifierNameError(f"a classifier name must be a string, got {name!r}.")
    m = _RESNET_RE.match(name)
    if m:
        depth, width = int(m.group(1)), float(m.group(2)) if m.group(2) else 1.0
        resnet_layout(depth)
        if not width > 0:
            raise ClassifierNameError(f"{name!r}: the width multiplier must be positive.")
        kw = dict(depth=depth, width=width, skip=not m.group(3), num_classes=int(m.group(4) or 1000))
        _check_classes(kw["num_classes"])
        return ClassifierName(resnet_name(**kw), FAMILY_RESNET, tuple(kw.items()))
    m = _EFF_RE.match(name)
    if m:
        kw = dict(variant=int(m.group(1)), num_classes=int(m.group(2) or 1000))
        if kw["variant"] not in EFFICIENTNET_VARIANTS:
            raise ClassifierNameError(f"{name!r}: EfficientNet variants are B0..B5.")
        _check_classes(kw["num_classes"])
        suffix = "" if kw["num_classes"] == 1000 else f"_c{kw['num_classes']}"
        return ClassifierName(f"kumar_efficientnet_b{kw['variant']}{suffix}", FAMILY_EFFICIENTNET, tuple(kw.items()))
    m = _VIT_PRESET_RE.match(name)
    if m:
        key = f"{m.group(1)}{m.group(2)}"
        if key not in VIT_PRESETS:
            raise ClassifierNameError(f"{name!r}: the ViT presets are {', '.join('kumar_vit_' + k for k in VIT_PRESETS)}.")
        kw = dict(VIT_PRESETS[key], num_classes=int(m.group(3) or 1000))
    else:
        m = _VIT_RE.match(name)
        if not m:
            raise ClassifierNameError(f"unknown Kumar classifier {name!r}. Names have the forms: {'; '.join(NAME_FORMS)} "
                                      "(e.g. kumar_resnet6, kumar_resnet50_w0.25, kumar_vit_b8).")
        p, w, d, h, mlp, c = (int(g) if g else None for g in m.groups())
        kw = dict(patch=p, hidden=w, depth=d, heads=h, mlp=mlp, num_classes=c or 1000)
    check_vit(kw["patch"], kw["hidden"], kw["depth"], kw["heads"], kw["mlp"])
    _check_classes(kw["num_classes"])
    sizes = {k: kw[k] for k in ("patch", "hidden", "depth", "heads", "mlp")}
    return ClassifierName(vit_name(**sizes, num_classes=kw["num_classes"]), FAMILY_VIT, tuple(kw.items()))


def is_classifier_name(name: Any) -> bool:
    """True for names of the form ``kumar_resnet...``, ``kumar_efficientnet...``, ``kumar_vit...``."""
    return isinstance(name, str) and name.startswith((FAMILY_RESNET, FAMILY_EFFICIENTNET, FAMILY_VIT))


def _build_resnet(depth: int, width: float, skip: bool, num_classes: int, dropout: float = 0.0) -> nn.Module:
    return KumarResNet(depth, width, skip, num_classes, dropout)


def _build_efficientnet(variant: int, num_classes: int, dropout: float | None = None) -> nn.Module:
    return efficientnet(variant, num_classes, dropout)


def _build_vit(patch: int, hidden: int, depth: int, heads: int, mlp: int, num_classes: int,
               dropout: float = 0.0) -> nn.Module:
    return vision_transformer(patch, hidden, depth, heads, mlp, num_classes, dropout)


_FACTORIES = {FAMILY_RESNET: _build_resnet, FAMILY_EFFICIENTNET: _build_efficientnet, FAMILY_VIT: _build_vit}


def kumar_layers(parsed: ClassifierName) -> tuple[str, ...]:
    """The ``"kumar"`` layer set of a parsed name."""
    if parsed.family == FAMILY_RESNET:
        return ("layer1", "layer2", "layer3", "layer4")
    if parsed.family == FAMILY_EFFICIENTNET:
        return ("features.2", "features.3", "features.5", "features.7")
    return tuple(f"encoder.layers.encoder_layer_{i}" for i in range(parsed.build_kwargs["depth"]))


def arch_spec(name: str):
    """The :class:`~lossnet.networks.registry.ArchSpec` of a Kumar classifier name (not registered)."""
    from .registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec

    parsed = parse_name(name)
    family = parsed.family
    extra: dict[str, Any] = {}
    if family == FAMILY_VIT:
        extra.update(tokens="cls", fixed_input_size=IMAGE_SIZE)
    roots = {FAMILY_RESNET: ("",), FAMILY_EFFICIENTNET: ("features",), FAMILY_VIT: ("encoder.layers",)}[family]
    return ArchSpec(name=parsed.name, source="factory", builder=parsed.name, factory=_FACTORIES[family],
                    build_kwargs=parsed.build_kwargs, layer_sets={"kumar": kumar_layers(parsed)},
                    default_layers="kumar", points_roots=roots, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    imagenet_weights=None, family=family, **extra)


def ensure_registered(name: str) -> str:
    """Register the Kumar classifier ``name`` as a loss-network architecture (if not yet) and
    return its canonical name.

    Example:
        >>> ensure_registered("kumar_resnet7_w0.3")
        'kumar_resnet7_w0.3'
    """
    from .registry import ARCHITECTURES, register_architecture

    parsed = parse_name(name)
    if parsed.name not in ARCHITECTURES:
        register_architecture(arch_spec(parsed.name))
    return parsed.name


def build_classifier(name: str, seed: int | None = None, dropout: float | None = None,
                     bn_momentum: float | None = None) -> nn.Module:
    """A freshly initialised classifier ``name`` (in train mode).

    Args:
        seed: initialise under this seed without touching the global RNG (None: the global RNG).
        dropout: dropout before the classifier (ViTs: also in the MLPs and after the position
            embedding, torchvision's ``dropout``); None keeps the family default (0 for
            ResNets and ViTs, Tan & Le's for EfficientNets).
        bn_momentum: BatchNorm momentum in the TensorFlow convention of the paper (0.9 means
            ``running = 0.9 * running + 0.1 * batch``, PyTorch's ``momentum=0.1``).
    """
    parsed = parse_name(name)
    kwargs = parsed.build_kwargs
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise LossnetError(f"dropout must be in [0, 1), got {dropout!r}.")
        kwargs["dropout"] = float(dropout)
    factory = _FACTORIES[parsed.family]
    if seed is None:
        model = factory(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(**kwargs)
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set every BatchNorm's momentum from the TensorFlow-convention ``momentum`` (returns the count)."""
    if not 0.0 <= momentum < 1.0:
        raise LossnetError(f"BatchNorm momentum (TensorFlow convention) must be in [0, 1), got {momentum!r}.")
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0 - momentum
            n += 1
    return n


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The four reduction-stage outputs of a :class:`KumarResNet` (a plain forward, for checks)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for i in range(1, 5):
        x = getattr(model, f"layer{i}")(x)
        out.append(x)
    return out


# The 1-D sweeps around ViT-B/8 and ViT-L/4 (width: hidden size with MLP = 4 x hidden; depth: blocks).
VIT_WIDTHS = {"b8": (48, 96, 192, 384, 576), "l4": (64, 128, 256, 512, 768)}
VIT_DEPTHS = {"b8": (2, 4, 6, 8, 10), "l4": (2, 4, 8, 12, 16, 20)}
MINI_NETWORKS = ("kumar_resnet2_w0.25", "kumar_resnet4_w0.25", "kumar_resnet6_w0.25", "kumar_resnet6_w0.25_noskip",
                 "kumar_vit_p8_w64_d2_h4_m128")


def _vit_variants() -> list[str]:
    out = []
    for key in VIT_PRESETS:
        if key not in VIT_WIDTHS:
            continue
        p = VIT_PRESETS[key]
        out += [vit_name(p["patch"], w, p["depth"], p["heads"], 4 * w) for w in VIT_WIDTHS[key]]
        out += [vit_name(p["patch"], p["hidden"], d, p["heads"], p["mlp"]) for d in VIT_DEPTHS[key]]
    return out


# The study's networks, registered at import (others on demand through ensure_registered).
CATALOGUE: tuple[str, ...] = (
    *(resnet_name(d) for d in (*range(2, 11), 12, 14, 16, 18, 26, 34, 50, 101, 152, 200)),
    *(resnet_name(d, w) for d in (6, 50, 200) for w in (0.25, 0.5, 0.75, 1.5, 2.0, 2.5)),
    *(resnet_name(d, skip=False) for d in (6, 10, 18, 34, 50)),
    *(resnet_name(d, num_classes=c) for d in (6, 200) for c in (50, 100, 200, 300, 400, 500, 600, 700, 800, 900)),
    *(f"kumar_efficientnet_b{i}" for i in EFFICIENTNET_VARIANTS),
    *(f"kumar_vit_{k}" for k in VIT_PRESETS),
    *_vit_variants(),
    *(n for n in MINI_NETWORKS if n not in ("kumar_resnet6_w0.25",)),
    *(f"{n}_c14" for n in MINI_NETWORKS),  # as trained on the 14 classes of the built-in patches
)


@functools.lru_cache(maxsize=1)
def register_catalogue() -> int:
    """Register :data:`CATALOGUE` (once); returns how many names it holds."""
    for name in CATALOGUE:
        ensure_registered(name)
    return len(CATALOGUE)


__all__ = [
    "CATALOGUE", "MINI_NETWORKS", "VIT_DEPTHS", "VIT_WIDTHS", "ClassifierName", "ClassifierNameError", "KumarResNet", "NAME_FORMS", "ProjectionStage",
    "ResidualBlock", "STANDARD_RESNETS", "VIT_PRESETS", "arch_spec", "build_classifier", "efficientnet",
    "ensure_registered", "is_classifier_name", "parse_name", "register_catalogue", "resnet_layout", "resnet_name",
    "set_bn_momentum", "stage_outputs", "vision_transformer", "vit_name", "with_classes",
]

register_catalogue()
