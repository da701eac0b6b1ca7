"""Sample keys of the training datasets: ``(index, seed)``, where the seed drives that sample's
augmentation, so batches do not depend on worker processes or on resuming.

Example:
    >>> split_key((3, 7)), split_key(3)
    ((3, 7), (3, 0))
    >>> int(sample_rng(5).integers(100)) == int(sample_rng(5).integers(100))
    True
"""
from __future__ import annotations

from typing import Union

import numpy as np

#: A dataset key: an index, or ``(index, seed)``.
Key = Union[int, tuple[int, int]]


def split_key(key: Key) -> tuple[int, int]:
    """``(index, seed)`` of a key (a plain index has seed 0)."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), 0


def sample_rng(seed: int) -> np.random.Generator:
    """The random generator of one sample's augmentation (any int seed, negative ones too)."""
    return np.random.default_rng(seed & 0x7FFF_FFFF_FFFF_FFFF)
