"""Exceptions raised by lossnet. Every message names the problem and the fix."""
from __future__ import annotations

import difflib
from typing import Iterable


class LossnetError(ValueError):
    """Base class of lossnet's errors (a ``ValueError``, so generic handlers still catch it)."""


class InputError(LossnetError):
    """An image batch has the wrong shape, channels, dtype, range or values."""


class UnknownNameError(LossnetError, KeyError):
    """An architecture, layer, distance or other name is not known."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(LossnetError):
    """Weights are missing, corrupt, unreachable or do not fit the architecture."""


class DataError(LossnetError):
    """A dataset is missing, incomplete or malformed.

    Example:
        >>> from lossnet.data import load_2afc
        >>> try:
        ...     load_2afc("/nonexistent")
        ... except DataError as e:
        ...     print("lossnet download bapps" in str(e))
        True
    """


class DownloadError(DataError):
    """A download or an archive extraction failed; the message says how to place the file by hand."""


def unknown_name(kind: str, name: str, valid: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build an error for an unknown ``name`` that lists close matches and the valid names.

    Example:
        >>> print(unknown_name("architecture", "vgg61", ["vgg16", "vgg19"]))
        unknown architecture 'vgg61'. Did you mean 'vgg19', 'vgg16'? Valid architectures: vgg16, vgg19.
    """
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    msg = f"unknown {kind} {name!r}."
    if close:
        msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
    shown = valid if len(valid) <= 60 else valid[:60] + [f"... ({len(valid) - 60} more)"]
    msg += f" Valid {kind}s: {', '.join(shown)}."
    if hint:
        msg += " " + hint
    return UnknownNameError(msg)
