"""A fast path for losses and metrics: channels-last trunks, autocast, optional ``torch.compile``.

:func:`accelerate` changes every :class:`~lossnet.networks.extraction.LossNetwork` inside a
metric in place (like ``Module.to``) and returns the metric:

- ``channels_last=True``: the trunk's 4-D weights and its input are channels-last (NHWC),
  the layout cuDNN's tensor-core kernels and oneDNN prefer.
- ``autocast="bf16"`` / ``"fp16"``: only the trunk runs under ``torch.autocast``; its features
  come out in half precision and every distance promotes them to float32 before normalising,
  summing or building Gram matrices, so the distance arithmetic stays float32.
- ``compile=True`` (inductor) or a backend name: ``torch.compile`` of the truncated trunk.

State-dict keys do not change, so checkpoints of accelerated and plain metrics are
interchangeable. Calling :func:`accelerate` again replaces the settings;
``accelerate(metric, channels_last=False)`` gives back the plain trunk.

Agreement with float32 (per-sample values on real photos, see :func:`tolerance` and
``tests/loss/test_fast.py``): channels-last alone to 1e-5 relative; bf16 to 3e-2 (style: 0.3,
so prefer fp16 or float32 for style); fp16 to 5e-3 (style: 5e-2).

Example:
    >>> import torch
    >>> from lossnet.loss import PerceptualLoss
    >>> from lossnet.networks import LossNetwork
    >>> trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    >>> metric = PerceptualLoss(network=LossNetwork(trunk, layers=["1"], input_norm="none"), distance="mse")
    >>> metric = accelerate(metric, autocast="bf16")
    >>> metric(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)).dtype  # bf16 trunk, float32 distance
    torch.float32
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..errors import LossnetError, unknown_name
from ..networks.extraction import LossNetwork

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
# Largest relative difference of a per-sample value from its float32 value that the tests accept.
# Measured worst cases (real photos at 40 and 64 px; alexnet, vgg16, efficientnet_lite0, DISTS; every
# distance): bf16 1.1e-2 (style 0.20, DISTS 5.3e-2), fp16 1.2e-3 (style 2.0e-2). The relative error is largest for
# the closest pairs and the smallest images; style compares Gram matrices, small differences of large
# sums, and suffers most: use fp16 or float32 for style.
TOLERANCE: dict[str, Any] = {
    "channels_last": 1e-5,
    "bf16": {"style": 0.3, "dists": 0.1, "other": 3e-2},
    "fp16": {"style": 5e-2, "dists": 1e-2, "other": 5e-3},
}
_SHORT = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def tolerance(precision: str | None, distance: str) -> float:
    """The stated relative tolerance of a per-sample value against float32 (``precision`` None: channels-last only).

    Example:
        >>> tolerance("bf16", "spatial")
        0.03
    """
    if precision is None:
        return TOLERANCE["channels_last"]
    table = TOLERANCE[_SHORT[_autocast_dtype(precision)]]
    return table.get(distance, table["other"])


def _autocast_dtype(autocast: object) -> torch.dtype | None:
    if autocast is None or autocast is False:
        return None
    if isinstance(autocast, torch.dtype):
        if autocast in _SHORT:
            return autocast
        raise LossnetError(f"autocast={autocast} is not a half-precision type: use autocast='bf16' or 'fp16', "
                          "or autocast=None to run the trunk in float32.")
    if isinstance(autocast, str) and autocast.lower() in AUTOCAST_DTYPES:
        return AUTOCAST_DTYPES[autocast.lower()]
    raise unknown_name("autocast precision", str(autocast), ["bf16", "fp16"],
                       hint="Pass autocast=None to run the trunk in float32.")


def _compile_backend(compile: object) -> str | None:
    if compile is False or compile is None:
        return None
    if compile is True:
        return "inductor"
    if isinstance(compile, str):
        backends = torch.compiler.list_backends(exclude_tags=())
        if compile not in backends:
            raise unknown_name("torch.compile backend", compile, backends, hint="compile=True uses 'inductor'.")
        return compile
    raise LossnetError(f"compile must be True, False or a torch.compile backend name, got {compile!r}.")


_checked_autocast: set[tuple[str, torch.dtype]] = set()


def _check_autocast(device_type: str, dtype: torch.dtype) -> None:
    """torch only warns and runs float32 when a device cannot autocast to ``dtype``: make that an error."""
    if (device_type, dtype) in _checked_autocast:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ctx = torch.autocast(device_type=device_type, dtype=dtype)
        except RuntimeError as exc:
            ctx, caught = None, [exc]
    if ctx is None or not getattr(ctx, "_enabled", True) or any("isabling autocast" in str(getattr(w, "message", w))
                                                                for w in caught):
        raise LossnetError(f"autocast to {_SHORT[dtype]} is not supported on device {device_type!r} here: "
                           f"use accelerate(..., autocast={'bf16' if dtype is torch.float16 else 'fp16'!r}) or "
                           "autocast=None (float32).")
    _checked_autocast.add((device_type, dtype))


class AcceleratedTrunk(nn.Module):
    """A truncated trunk run channels-last and/or under autocast and/or compiled.

    It replaces ``LossNetwork.body``; the wrapped trunk stays reachable as ``.body`` and
    the state-dict keys are those of the trunk alone.
    """

    def __init__(self, body: nn.Module, channels_last: bool, dtype: torch.dtype | None,
                 backend: str | None) -> None:
        super().__init__()
        self.body = body
        self.channels_last = channels_last
        self.dtype = dtype
        self.backend = backend
        body.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        # Not a submodule: torch.compile's wrapper would add a second copy of every key to the state dict.
        object.__setattr__(self, "_run", torch.compile(self._trunk, backend=backend) if backend else self._trunk)
        self._register_load_state_dict_pre_hook(self._add_body_prefix)

    @property
    def settings(self) -> dict[str, Any]:
        return {"channels_last": self.channels_last, "autocast": _SHORT.get(self.dtype),
                "compile": self.backend or False}

    def _trunk(self, x: torch.Tensor):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return self.body(x)
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.body(x)

    def forward(self, x: torch.Tensor):
        if x.is_meta:  # shape probes (LossNetwork.min_input_size): layout and precision change no shape
            return self.body(x)
        if self.dtype is not None:
            _check_autocast(x.device.type, self.dtype)
        return self._run(x)

    # State-dict keys of the trunk alone ("features.0.weight", not "body.features.0.weight").
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False):
        return self.body.state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)

    def _add_body_prefix(self, state_dict, prefix, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            state_dict[prefix + "body." + key[len(prefix):]] = state_dict.pop(key)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())


def _loss_networks(metric: nn.Module) -> list[LossNetwork]:
    if not isinstance(metric, nn.Module):
        raise LossnetError(f"accelerate takes a metric module (e.g. lossnet.PerceptualLoss), got {type(metric).__name__}.")
    nets = [m for m in metric.modules() if isinstance(m, LossNetwork)]
    if not nets:
        raise LossnetError(f"{type(metric).__name__} has no loss network (a pixel distance such as 'l2' or 'ssim'?): "
                           "there is nothing to accelerate; use the metric as it is.")
    return nets


def accelerate(metric: nn.Module, channels_last: bool = True, autocast: str | torch.dtype | None = None,
               compile: bool | str = False) -> nn.Module:
    """Run the trunk(s) of ``metric`` channels-last, under autocast, compiled: in place; returns ``metric``.

    Args:
        metric: a :class:`lossnet.PerceptualLoss` (DISTS included), a :class:`LossNetwork`, or any
            module holding them.
        channels_last: NHWC weights and inputs for the trunk.
        autocast: ``"bf16"``, ``"fp16"`` or None (float32). Distances are computed in float32.
        compile: ``True`` for ``torch.compile`` with inductor, or a backend name (``"aot_eager"``...).
            The first call of each input shape compiles (seconds to minutes).

    Raises:
        LossnetError: the metric has no loss network, or an option is unknown; at the first call,
            when the device cannot autocast to the requested precision.

    Example:
        >>> from torch import nn
        >>> from lossnet.networks import LossNetwork
        >>> net = LossNetwork(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), layers=["1"], input_norm="none")
        >>> acceleration(accelerate(net, autocast="fp16"))
        {'channels_last': True, 'autocast': 'fp16', 'compile': False}
        >>> acceleration(accelerate(net, channels_last=False)) is None  # back to the plain trunk
        True
    """
    if not isinstance(channels_last, bool):
        raise LossnetError(f"channels_last must be True or False, got {channels_last!r}.")
    dtype = _autocast_dtype(autocast)
    backend = _compile_backend(compile)
    for net in _loss_networks(metric):
        body = net.body.body if isinstance(net.body, AcceleratedTrunk) else net.body
        if channels_last or dtype is not None or backend is not None:
            net.body = AcceleratedTrunk(body, channels_last, dtype, backend)
        else:
            net.body = body.to(memory_format=torch.contiguous_format)
    return metric


def acceleration(metric: nn.Module) -> dict[str, Any] | None:
    """The fast-path settings of a metric's trunk(s), e.g. to record with results.

    None when every trunk is plain; ``{"trunks": [settings or None, ...]}`` when they differ.

    Example:
        >>> from torch import nn
        >>> from lossnet.networks import LossNetwork
        >>> acceleration(LossNetwork(nn.Sequential(nn.Conv2d(3, 8, 3)), layers=["0"], input_norm="none")) is None
        True
    """
    settings = [net.body.settings if isinstance(net.body, AcceleratedTrunk) else None for net in _loss_networks(metric)]
    if all(s is None for s in settings):
        return None
    return settings[0] if all(s == settings[0] for s in settings) else {"trunks": settings}
