"""Plain-text, Markdown and HTML tables: the one table renderer of lossnet.

Example:
    >>> print(text_table(["metric", "PS"], [["l2", fmt(73.666)]]))
    metric     PS
    ------  -----
    l2      73.67
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence


def fmt(v: Any, digits: int = 2) -> str:
    """A table cell: numbers with ``digits`` decimals, None as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table: the first column left-aligned, the others right-aligned.

    Example:
        >>> print(text_table(["metric", "PS"], [["l2", "73.67"]]))
        metric     PS
        ------  -----
        l2      73.67
    """
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table.

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 2.0]]))
        | a | b |
        |---|---|
        | 1 | 2.00 |
    """
    def cell(v: Any) -> str:
        return fmt(v, digits).replace("|", "\\|")

    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2,
               highlight: Iterable[tuple[int, int]] = ()) -> str:
    """An HTML table (cells escaped); ``highlight`` marks (row, column) cells in bold."""
    marks = set(highlight)
    parts = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>",
             "<tbody>"]
    for i, r in enumerate(rows):
        cells = []
        for j, v in enumerate(r):
            text = html.escape(fmt(v, digits))
            cells.append(f"<td><b>{text}</b></td>" if (i, j) in marks else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)
