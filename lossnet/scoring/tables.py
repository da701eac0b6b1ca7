"""Readable text tables of 2AFC, JND and MOS results.

Example:
    >>> print(format_table(result))  # doctest: +SKIP
"""
from __future__ import annotations

from .datasets import ScoringError
from .jnd import JNDResult
from .mos import MOSResult
from .twoafc import TwoAFCResult

_RESULTS = (TwoAFCResult, JNDResult, MOSResult)


def format_table(result: TwoAFCResult | JNDResult | MOSResult) -> str:
    """A readable text table of a 2AFC, JND or MOS result (each result's own ``table()``)."""
    if isinstance(result, _RESULTS):
        return result.table()
    raise ScoringError(f"no table format for {type(result).__name__}.")


__all__ = ["format_table"]
