"""The one progress helper: a tqdm bar on stderr that a flag switches off.

Example:
    >>> with progress_bar(total=3, desc="demo", enabled=False) as bar:
    ...     bar.update(3)
"""
from __future__ import annotations

import sys


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "it", initial: int = 0,
                 leave: bool = False, byte_units: bool = False):
    """A tqdm bar (``disable=not enabled``) writing to stderr, cleared when closed unless ``leave``;
    ``byte_units`` shows KiB/MiB for downloads."""
    from tqdm.auto import tqdm

    units = {"unit_scale": True, "unit_divisor": 1024} if byte_units else {}
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                leave=leave, dynamic_ncols=True, **units)
