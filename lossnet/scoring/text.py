"""Pieces shared by the result tables of 2AFC, JND and MOS."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..utils.tables import text_table


def grid(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """An aligned text table as a list of lines."""
    return text_table(header, rows).splitlines()


def metric_line(metric: Mapping[str, Any], distance: str, name: str | None) -> str:
    """One line that says which metric a result belongs to."""
    if metric.get("arch") is None:
        desc = f"pixel {distance}"
    else:
        desc = (f"{metric['arch']} [{', '.join(metric.get('points', []))}], distance {distance}, "
                f"weights {metric.get('weights')}" + (", lin" if metric.get("lin") else ""))
    if metric.get("preset"):
        desc = f"{metric['preset']}: {desc}"
    return f"metric: {name + ' = ' if name else ''}{desc}"
