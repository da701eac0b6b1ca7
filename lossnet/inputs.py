"""Validation of image batches at the public entry points of lossnet."""
from __future__ import annotations

from typing import Literal

import torch

from .errors import InputError

InputRange = Literal["0,1", "-1,1"]
# Values this close outside [0, 1] come from rounding (resizing, colour conversion): clamp them.
ROUNDING_SLACK = 1e-3


def check_images(
    x: object,
    name: str = "input",
    input_range: InputRange = "0,1",
    expand_grayscale: bool = False,
    check_values: bool = True,
) -> torch.Tensor:
    """Check an image batch and return it as a (B, 3, H, W) floating tensor in [0, 1].

    Raises :class:`InputError` naming the problem and the fix for: a non-tensor, a tensor
    on the meta device, a tensor that is not 4-D, channel counts other than 3 (1 is expanded
    only with ``expand_grayscale=True``), integer or complex dtypes, NaN/Inf, values outside
    the declared range. Any floating dtype (float16, bfloat16, float32, float64) is accepted
    and kept: a :class:`lossnet.LossNetwork` casts its input to its own dtype.
    ``input_range="-1,1"`` accepts LPIPS-style inputs and maps them to [0, 1].

    Example:
        >>> check_images(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
        >>> try:
        ...     check_images(torch.full((1, 3, 8, 8), -1e-6))
        ... except InputError as e:
        ...     print("clamp" in str(e))
        True
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}.")
    if x.is_meta:
        raise InputError(f"{name} is on the meta device and has no values: pass a real tensor.")
    if x.dim() == 3:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}: a batch of shape (B, 3, H, W) is expected. "
            f"For a single image use {name}.unsqueeze(0)."
        )
    if x.dim() != 4:
        raise InputError(f"{name} has shape {tuple(x.shape)}: a 4-D batch of shape (B, 3, H, W) is expected.")
    if not x.is_floating_point():
        fix = "take the real part or the magnitude first" if x.is_complex() else \
            f"for 8-bit images use {name}.float() / 255"
        raise InputError(f"{name} has dtype {x.dtype}: a floating tensor in [0, 1] is expected; {fix}.")
    channels = x.shape[1]
    if channels != 3:
        if channels == 1 and expand_grayscale:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 1:
            raise InputError(
                f"{name} has 1 channel: RGB (3 channels) is expected. Pass expand_grayscale=True "
                f"to repeat a grayscale channel, or call {name}.expand(-1, 3, -1, -1)."
            )
        elif channels == 4:
            raise InputError(f"{name} has 4 channels (RGBA?): drop the alpha channel with {name}[:, :3].")
        else:
            raise InputError(
                f"{name} has {channels} channels in dimension 1 (shape {tuple(x.shape)}): (B, 3, H, W) is "
                "expected. Channels-last data needs .permute(0, 3, 1, 2)."
            )
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise InputError(f"{name} is empty (shape {tuple(x.shape)}).")
    if check_values:
        with torch.no_grad():
            if not torch.isfinite(x).all():
                n_bad = int((~torch.isfinite(x)).sum())
                raise InputError(f"{name} contains {n_bad} NaN or Inf values: check the image source or the model producing it.")
            lo, hi = float(x.min()), float(x.max())
        if input_range == "0,1":
            if lo < 0.0 or hi > 1.0:
                fix = (
                    "divide by 255" if hi > 1.5 and lo >= 0.0 else
                    f"the values are a rounding error outside [0, 1]: clamp them with {name}.clamp(0, 1)"
                    if lo >= -ROUNDING_SLACK and hi <= 1.0 + ROUNDING_SLACK else
                    "pass input_range='-1,1' for images in [-1, 1] (or clamp them if they are [0, 1] images "
                    "slightly out of range)" if lo >= -1.0 and hi <= 1.0 else
                    "clamp or rescale the images to [0, 1]"
                )
                raise InputError(f"{name} has values in [{lo:.4g}, {hi:.4g}] but [0, 1] is expected: {fix}.")
        elif input_range == "-1,1":
            if lo < -1.0 or hi > 1.0:
                raise InputError(
                    f"{name} has values in [{lo:.4g}, {hi:.4g}] but input_range='-1,1' expects [-1, 1]: "
                    "rescale the images, or use input_range='0,1' for images in [0, 1]."
                )
        else:
            raise InputError(f"unknown input_range {input_range!r}: use '0,1' or '-1,1'.")
    if input_range == "-1,1":
        x = (x + 1) / 2
    return x


def check_pair(x0: object, x1: object, input_range: InputRange = "0,1", expand_grayscale: bool = False,
               names: tuple[str, str] = ("input", "target")) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two image batches that are compared with each other (same shape required)."""
    a = check_images(x0, names[0], input_range, expand_grayscale)
    b = check_images(x1, names[1], input_range, expand_grayscale)
    if a.shape != b.shape:
        raise InputError(
            f"{names[0]} and {names[1]} have different shapes {tuple(a.shape)} and {tuple(b.shape)}: "
            "resize or crop them to the same size first (e.g. torch.nn.functional.interpolate)."
        )
    if a.device != b.device:
        raise InputError(f"{names[0]} is on {a.device} but {names[1]} is on {b.device}: move both to one device.")
    return a, b
