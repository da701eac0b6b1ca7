"""The L2-pooling VGG-16 trunk of DISTS (Ding et al. 2020).

torchvision's ``vgg16.features[:30]`` with every max-pool replaced by :class:`L2Pooling`
(square, depthwise blur with a normalised 3x3 Hann window, stride 2, padding 1,
``sqrt(. + 1e-12)``). The pools sit at the same indices as torchvision's max-pools, so the
convolutions keep torchvision's key names (``features.0.weight`` ...) and torchvision's
VGG-16 ImageNet weights load unchanged. ImageNet mean/std normalisation happens inside the
model, after the ``image`` stage, so the DISTS stage 0 is the raw [0, 1] image.

Stages (extraction points, layer set ``"dists"``): ``image`` (the input), ``features.3``
(relu1_2), ``features.8`` (relu2_2), ``features.15`` (relu3_3), ``features.22`` (relu4_3),
``features.29`` (relu5_3).

Registered as the architecture ``"dists_vgg16"`` (source ``"factory"``; inputs are fed
unnormalised, as the model normalises them itself), so ``LossNetwork("dists_vgg16",
weights="random" | <VGG-16 state-dict file>)`` and every distance work on it; a full
torchvision VGG-16 state dict loads (its ``classifier.*`` keys are ignored). The DISTS metric
itself is :func:`lossnet.loss.dists.dists`.

Example:
    >>> from lossnet.networks.extraction import LossNetwork
    >>> net = LossNetwork("dists_vgg16", weights="random")
    >>> [tuple(f.shape) for f in net(torch.rand(1, 3, 32, 32)).values()]
    [(1, 3, 32, 32), (1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 512, 2, 2)]
"""
from __future__ import annotations

import os
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LossnetError, WeightsError
from .registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, register_architecture
from .weights import download_checkpoint, load_model, load_state_dict_strict

DISTS_POINTS = ("image", "features.3", "features.8", "features.15", "features.22", "features.29")
# The stages: the input, then relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
# torchvision's VGG-16 configuration "D" up to relu5_3 ("P" = the pooling layer).
_VGG16_CONFIG = (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512)
# The last torchvision max-pool (features.30) comes after relu5_3 and is not part of DISTS.
TORCHVISION_VGG16_WEIGHTS = "IMAGENET1K_V1"
RESIZE_SHORTER_SIDE = 256


class L2Pooling(nn.Module):
    """L2 pooling: ``sqrt(hann3x3 * x^2 + 1e-12)`` per channel, stride 2 (DISTS's ``L2pooling``).

    Example:
        >>> L2Pooling(4)(torch.ones(1, 4, 8, 8)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(self, channels: int, filter_size: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.padding = (filter_size - 2) // 2
        # np.hanning(5)[1:-1] == [0.5, 1, 0.5]; the outer product normalised to sum 1.
        a = torch.hann_window(filter_size, periodic=False, dtype=torch.float64)[1:-1]
        g = (a[:, None] * a[None, :]).float()
        g = g / g.sum()
        # Not persistent: the state dict stays torchvision's VGG-16 feature keys.
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x.pow(2), self.filter.to(x.dtype), stride=self.stride, padding=self.padding,
                       groups=self.channels)
        return (out + 1e-12).sqrt()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, stride={self.stride}, padding={self.padding}"


def resize_shorter_side(x: torch.Tensor, size: int = RESIZE_SHORTER_SIDE) -> torch.Tensor:
    """DISTS's input rule: images whose shorter side is larger than ``size`` are resized so that
    it is ``size`` (aspect kept, longer side truncated as torchvision does), bilinear with
    antialiasing; smaller images are returned as they are.

    (The reference ``DISTS_pytorch.prepare_image(img, resize=True)`` does this to PIL images
    before converting them to tensors; here it acts on the float batch.)

    Example:
        >>> tuple(resize_shorter_side(torch.rand(1, 3, 300, 400)).shape[-2:])
        (256, 341)
        >>> tuple(resize_shorter_side(torch.rand(1, 3, 200, 900)).shape[-2:])
        (200, 900)
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    short, long = min(h, w), max(h, w)
    if short <= size:
        return x
    new_long = int(size * long / short)
    out = (size, new_long) if h <= w else (new_long, size)
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=True)


# A leaf of torch.fx graphs: the shape test inside cannot be traced symbolically.
torch.fx.wrap("resize_shorter_side")


def _checked_resize(resize: object) -> bool:
    if not isinstance(resize, bool):
        raise LossnetError(f"resize must be True (the reference's rule: shorter side > {RESIZE_SHORTER_SIDE} -> "
                           f"{RESIZE_SHORTER_SIDE}) or False (inputs at their own size), got {resize!r}.")
    return resize


class DistsVGG16(nn.Module):
    """VGG-16 features up to relu5_3 with L2 pooling; input in [0, 1], ImageNet mean/std inside.

    ``forward`` returns relu5_3; the DISTS stages are its nodes :data:`DISTS_POINTS`. With
    ``resize=True`` inputs first go through :func:`resize_shorter_side` (256), and the
    ``image`` stage is the resized image.
    """

    def __init__(self, resize: bool = False) -> None:
        super().__init__()
        self.resize = _checked_resize(resize)
        self.image = nn.Identity()  # stage 0: the raw input, a named extraction point
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        layers: list[nn.Module] = []
        channels = 3
        for v in _VGG16_CONFIG:
            if v == "P":
                layers.append(L2Pooling(channels))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        for m in self.features:
            if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def input_rule(self) -> str | None:
        """What the model does to its inputs' size itself, in words (None: nothing)."""
        if not self.resize:
            return None
        return (f"shorter side > {RESIZE_SHORTER_SIDE} resized to {RESIZE_SHORTER_SIDE} (bilinear, antialias), "
                "as DISTS_pytorch's prepare_image(resize=True)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            x = resize_shorter_side(x)
        x = self.image(x)
        return self.features((x - self.mean) / self.std)


def vgg16_feature_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision VGG-16 state dict (its classifier dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}


def load_torchvision_vgg16(model: DistsVGG16, tag: str | None = None) -> None:
    """Load torchvision's VGG-16 ImageNet weights (``VGG16_Weights.<tag>``, default ``IMAGENET1K_V1``,
    from the torch hub cache or downloaded) into ``model``, strictly, by torchvision's key names."""
    import torchvision

    tag = tag or TORCHVISION_VGG16_WEIGHTS
    enum = torchvision.models.VGG16_Weights
    if tag not in enum.__members__:
        raise WeightsError(f"vgg16 has no weights {tag!r}; available: {', '.join(enum.__members__)}.")
    state = download_checkpoint(enum[tag].url, what=f"VGG-16 ImageNet weights ({enum.__name__}.{tag}) for DISTS")
    load_state_dict_strict(model, vgg16_feature_state(state), DISTS_VGG16_SPEC, source=f"{enum.__name__}.{tag}")


def dists_vgg16(weights: str | os.PathLike = "imagenet", seed: int = 0, resize: bool = False) -> DistsVGG16:
    """The DISTS trunk, in eval mode, with ``weights``: ``"imagenet"`` (torchvision's VGG-16
    ``IMAGENET1K_V1``, as DISTS), ``"imagenet:<TAG>"``, ``"random"`` (seeded) or a VGG-16
    state-dict file (a full torchvision VGG-16 file works: its classifier is ignored).

    ``resize=True`` applies DISTS's input rule (:func:`resize_shorter_side`) inside.

    Example:
        >>> dists_vgg16(weights="random", seed=1).features[4]
        L2Pooling(channels=64, stride=2, padding=1)
    """
    if isinstance(weights, str) and weights.startswith("imagenet"):
        model = DistsVGG16()
        load_torchvision_vgg16(model, weights.partition(":")[2] or None)
    else:
        model = load_model(DISTS_VGG16_SPEC, weights, seed=seed)
    model.resize = _checked_resize(resize)
    return model.eval()


DISTS_VGG16_SPEC = register_architecture(ArchSpec(
    name="dists_vgg16", source="factory", builder="DistsVGG16", factory=DistsVGG16,
    points_roots=("", "features"), layer_sets={"dists": DISTS_POINTS}, default_layers="dists",
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),  # ImageNet mean/std are applied inside the model
    imagenet_weights=None, optional_prefixes=("classifier.",), family="vgg",
), replace=True)
