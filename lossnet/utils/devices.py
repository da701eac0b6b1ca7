"""The one device chooser of lossnet.

Example:
    >>> select_device("cpu")
    device(type='cpu')
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import LossnetError

DEVICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; a named device that is absent is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name).lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise LossnetError(f"unknown device {name!r}: use one of {', '.join(DEVICES)} (or cuda:N).")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LossnetError(f"device {name!r} asked for but CUDA is not available here: use --device cpu or auto.")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise LossnetError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here.")
    if name == "mps" and not mps_available():
        raise LossnetError("device 'mps' asked for but Apple MPS is not available here: use --device cpu or auto.")
    return torch.device(name)


@contextlib.contextmanager
def run_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count for a piece of work (a sweep run, say), and restore it after.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with run_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
