"""Pairing files across folders by file name without the extension (the stem), never by position.

Every folder-paired dataset (BAPPS ``ref/p0/p1/judge``, JND ``p0/p1/same``, road images and
masks) goes through :func:`pair_by_stem`: a name missing from one folder, or present in only
some, is a :class:`DataError` that lists the unmatched files, instead of a silent shift of
every later pair.

Example:
    >>> from pathlib import Path
    >>> names, paired = pair_by_stem({"p0/": [Path("a.png"), Path("b.png")],
    ...                               "p1/": [Path("b.png"), Path("a.png")]}, "example")
    >>> names, [p.name for p in paired["p1/"]]
    (['a', 'b'], ['a.png', 'b.png'])
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..errors import DataError

#: How many unmatched names an error message shows before "and N more".
SHOWN = 5


def _or_join(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _more(items: list[str], total: int) -> str:
    return ", ".join(items) + (f" and {total - len(items)} more" if total > len(items) else "")


def pair_by_stem(
    groups: Mapping[str, Sequence[Path]],
    where: str,
    nouns: Optional[Mapping[str, str]] = None,
    fix: str = "",
) -> tuple[list[str], dict[str, list[Path]]]:
    """Pair the files of several folders by stem: ``(sorted stems, {group: files in that order})``.

    ``groups`` maps a label shown in messages (such as ``"p0/"``) to that folder's files;
    ``nouns`` names what a group's file is (``"p0 image"``, ``"mask"``; default ``"<label> file"``);
    ``where`` and ``fix`` open and close the error message. Two files with one stem in a group,
    or a stem not in every group, raise :class:`DataError` listing the files (the first
    :data:`SHOWN`, and the count).

    Example:
        >>> pair_by_stem({"ref/": [Path("1.png")], "p0/": [Path("2.png")]}, "subset X")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lossnet.errors.DataError: subset X: 2 of 2 names do not pair up ...: ref/1.png has no p0/ file with ...
    """
    labels = list(groups)
    nouns = {g: (nouns or {}).get(g) or f"{g} file" for g in labels}
    tail = f" {fix}" if fix else ""
    by_stem: dict[str, dict[str, Path]] = {}
    for g in labels:
        seen: dict[str, Path] = {}
        clashes: list[str] = []
        for p in sorted(groups[g], key=lambda q: q.name):
            if p.stem in seen:
                clashes.append(f"{seen[p.stem].name} and {p.name}")
            seen[p.stem] = p
        if clashes:
            raise DataError(
                f"{where}: {g} holds {len(clashes)} pair(s) of files with the same name but another extension "
                f"({_more(clashes[:SHOWN], len(clashes))}); files pair by name without the extension, so keep "
                f"one of each.{tail}"
            )
        by_stem[g] = seen
    stems = sorted(set().union(*(set(v) for v in by_stem.values()))) if by_stem else []
    unmatched = [s for s in stems if any(s not in by_stem[g] for g in labels)]
    if unmatched:
        details = []
        for s in unmatched[:SHOWN]:
            have = [f"{g}{by_stem[g][s].name}" for g in labels if s in by_stem[g]]
            lack = [nouns[g] for g in labels if s not in by_stem[g]]
            verb = "has" if len(have) == 1 else "have"
            details.append(f"{', '.join(have)} {verb} no {_or_join(lack)} with the same name")
        more = f"; and {len(unmatched) - SHOWN} more" if len(unmatched) > SHOWN else ""
        raise DataError(
            f"{where}: {len(unmatched)} of {len(stems)} names do not pair up across {', '.join(labels)} (files "
            f"pair by name without the extension): {'; '.join(details)}{more}.{tail}"
        )
    return stems, {g: [by_stem[g][s] for s in stems] for g in labels}
