"""The built-in 2AFC and JND sets: SYNTHETIC, rule-based judgements, not human ones.

Generated deterministically (for a given ``seed``) from the scikit-image photographs of
:func:`lossnet.data.builtin_photos`, so that scoring works with no download. They let you
check that a metric orders distortions sensibly; they are not a substitute for BAPPS.

Reference patches: a random square crop (side between ``size`` and ``3 * size`` pixels,
seeded; crops with a pixel standard deviation below 0.05, i.e. flat sky or background,
are redrawn) resized to ``size x size`` with bicubic interpolation. Distorted patches apply
families of :data:`lossnet.data.distortions.DISTORTIONS` (the BAPPS "traditional" kind).

2AFC rule. ``judge`` is, as in BAPPS, the fraction of (virtual) observers choosing ``p1``
as closer to ``ref``: 1.0 means p1 is closer, 0.0 means p0 is closer, 0.5 is a tie.

* ``same-family``: p0 and p1 are the same family at two levels from the grid
  0.1, 0.2, ..., 1.0 that differ by at least 0.3; the stronger one is farther, so
  ``judge = 1.0`` if ``level0 > level1`` else ``0.0``. Every 10th item (index % 10 == 9)
  is a tie with equal levels and ``judge = 0.5``: on even tens the two patches are
  identical (same seed: exact distance ties), on odd tens they differ only in the
  random draw (noise pattern, direction).
* ``mixed-family``: p0 and p1 are two different families, one "weak" (level 0.1 or 0.2)
  and one "strong" (level 0.7, 0.8, 0.9 or 1.0), in random order; the strong one is
  farther: ``judge = 1.0`` if p0 is the strong one else ``0.0``. The levels are a
  pixel-independent severity: across families they are only roughly comparable, which
  is why the weak/strong gap is large. No ties.

How far the rule is from a plain pixel measure (default set, ``seed=0``, 500 items per
subset): pixel MSE orders 99.8% of the non-tied same-family items as the rule does, and
90.8% of the mixed-family items (disagreements are mostly a weak salt-and-pepper,
brightness or shift change, which moves many pixel values, against a strong distortion
that moves few). The same-family subset is thus mostly a sanity check; the mixed-family
subset is where metrics differ.

* ``structure-vs-appearance``: one distortion that damages local structure (noise, impulse
  noise, blur, pixelation, JPEG, quantisation, ghosting) against one that changes global
  appearance or position (brightness, contrast, saturation, hue, colour cast, a small
  shift), both at a moderate level (0.4, 0.5 or 0.6); the structural damage is farther.
  This encodes a well-documented property of human vision (the premise of SSIM, and why
  pixel L2 fails on BAPPS): observers tolerate global photometric changes and small
  translations far more than loss of structure. Pixel L2 disagrees with this rule on most
  items, so this subset separates perceptual metrics from pixel ones. No ties.

JND rule (``synthetic`` subset): p0 is the reference patch, p1 a distortion of it.
``same = 1.0`` when p1 is identical (level 0) or a barely visible distortion (level 0.02,
a mean absolute change of at most about 4 grey levels of 255, e.g. JPEG quality 93 or a
0.2-pixel shift; impulse noise and pixelation, visible even then, are excluded);
``same = 0.0`` for levels 0.5 .. 1.0. A third of the pairs are "same".

Example:
    >>> from lossnet.data import builtin_2afc
    >>> sets = builtin_2afc(n_per_subset=20, seed=0)
    >>> ds = sets["same-family"]
    >>> ds.synthetic, len(ds), sorted(ds[0])
    (True, 20, ['index', 'judge', 'p0', 'p1', 'ref', 'subset'])
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lossnet.errors import unknown_name

from .distortions import DISTORTIONS, apply_distortion
from .images import pil_to_tensor
from .photos import photo_array, photo_names

SAME_FAMILY = "same-family"
MIXED_FAMILY = "mixed-family"
JND_SUBSET = "synthetic"
STRUCTURE_VS_APPEARANCE = "structure-vs-appearance"
SUBSETS_2AFC: tuple[str, ...] = (SAME_FAMILY, MIXED_FAMILY, STRUCTURE_VS_APPEARANCE)
# Families that damage local structure, and families that change global appearance or position.
STRUCTURAL_FAMILIES: tuple[str, ...] = (
    "gaussian_noise", "salt_pepper", "gaussian_blur", "pixelate", "jpeg", "quantize", "ghosting")
APPEARANCE_FAMILIES: tuple[str, ...] = ("brightness", "contrast", "saturation", "hue_shift", "color_cast", "shift")
SVA_LEVELS: tuple[float, ...] = (0.4, 0.5, 0.6)

LEVEL_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
MIN_LEVEL_GAP = 0.3
WEAK_LEVELS: tuple[float, ...] = (0.1, 0.2)
STRONG_LEVELS: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
JND_TINY_LEVEL = 0.02
JND_DIFFERENT_LEVELS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
JND_TINY_EXCLUDED = ("salt_pepper", "pixelate")
MIN_PATCH_STD = 0.05

_SUBSET_IDS = {SAME_FAMILY: 1, MIXED_FAMILY: 2, JND_SUBSET: 3, STRUCTURE_VS_APPEARANCE: 4}

DESCRIPTION_2AFC = (
    "SYNTHETIC 2AFC set generated from scikit-image photos: judgements are rule-based, not human. "
    "same-family: of two levels of one distortion family, the stronger is farther (ties at equal levels "
    "get 0.5); mixed-family: of a weak (0.1-0.2) and a strong (0.7-1.0) distortion of two different "
    "families, the strong one is farther; structure-vs-appearance: of a structural distortion (noise, blur, "
    "JPEG, ...) and a global appearance change (brightness, colour, contrast, small shift) at moderate "
    "levels, the structural one is farther. judge = fraction choosing p1 as closer."
)
DESCRIPTION_JND = (
    "SYNTHETIC JND set generated from scikit-image photos: labels are rule-based, not human. "
    "same = 1 for an identical or barely distorted (level 0.02) pair, 0 for a level 0.5-1.0 distortion."
)


@dataclass(frozen=True)
class PatchSpec:
    """Where a reference patch comes from: a square crop of a bundled photo."""

    photo: str
    top: int
    left: int
    side: int


@dataclass(frozen=True)
class TripletSpec:
    """One synthetic 2AFC item: the patch, both distortions, and the rule's judgement."""

    patch: PatchSpec
    family0: str
    level0: float
    seed0: int
    family1: str
    level1: float
    seed1: int
    judge: float


@dataclass(frozen=True)
class PairSpec:
    """One synthetic JND item: p0 is the reference patch, p1 its distortion."""

    patch: PatchSpec
    family: str
    level: float
    seed: int
    same: float


def _render_patch(spec: PatchSpec, size: int) -> torch.Tensor:
    arr = photo_array(spec.photo)[spec.top : spec.top + spec.side, spec.left : spec.left + spec.side]
    img = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    if spec.side != size:
        img = img.resize((size, size), Image.BICUBIC)
    return pil_to_tensor(img)


def _draw_patch(rng: np.random.Generator, photos: Sequence[str], size: int) -> PatchSpec:
    spec = None
    for _ in range(50):
        name = photos[int(rng.integers(len(photos)))]
        h, w = photo_array(name).shape[:2]
        side = int(rng.integers(size, max(size, min(3 * size, h, w)) + 1))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        spec = PatchSpec(name, top, left, side)
        if float(_render_patch(spec, size).std()) >= MIN_PATCH_STD:
            return spec
    return spec  # pragma: no cover - every photo has textured regions


def _rng(seed: int, subset: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SUBSET_IDS[subset]])


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def synthetic_protocol(size: int) -> str:
    """How the synthetic sets make their images, in words (their ``protocol``; no files are read).

    Example:
        >>> synthetic_protocol(64)
        'synthetic: photo crops resized to 64x64 (PIL bicubic), distorted as tensors; no files read'
    """
    return f"synthetic: photo crops resized to {size}x{size} (PIL bicubic), distorted as tensors; no files read"


class SyntheticTwoAFC(Dataset):
    """A synthetic 2AFC subset (rule-based judgements); same item format as :class:`TwoAFCDataset`.

    Items are dicts ``{"ref", "p0", "p1": float32 (3, size, size) in [0, 1], "judge": float32
    0-dim tensor, "subset": str, "index": int}``, rendered on access (memory stays flat).
    ``specs[i]`` says how item ``i`` was made; ``judges`` holds all judgements.

    Example:
        >>> ds = builtin_2afc(n_per_subset=10)["mixed-family"]
        >>> ds.specs[0].family0 != ds.specs[0].family1
        True
    """

    synthetic = True

    def __init__(self, subset: str, specs: Sequence[TripletSpec], size: int, description: str = DESCRIPTION_2AFC):
        self.subset = subset
        self.specs = list(specs)
        self.size = size
        self.split = "synthetic"
        self.description = description
        self.protocol = synthetic_protocol(size)
        self.judges = torch.tensor([s.judge for s in self.specs], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a subset of {len(self)} triplets")
        s = self.specs[index]
        ref = _render_patch(s.patch, self.size)
        p0 = apply_distortion(ref, s.family0, s.level0, torch.Generator().manual_seed(s.seed0))
        p1 = apply_distortion(ref, s.family1, s.level1, torch.Generator().manual_seed(s.seed1))
        return {"ref": ref, "p0": p0, "p1": p1, "judge": self.judges[index].clone(), "subset": self.subset, "index": index}

    def spec_dict(self, index: int) -> dict:
        """``specs[index]`` as a plain dict (for reports)."""
        return asdict(self.specs[index])

    def __repr__(self) -> str:
        return f"SyntheticTwoAFC(subset={self.subset!r}, n={len(self)}, size={self.size}, synthetic=True)"


class SyntheticJND(Dataset):
    """A synthetic JND subset (rule-based labels); same item format as :class:`JNDDataset`.

    Items are dicts ``{"p0", "p1": float32 (3, size, size), "same": float32 0-dim tensor,
    "subset": str, "index": int}``.
    """

    synthetic = True

    def __init__(self, subset: str, specs: Sequence[PairSpec], size: int, description: str = DESCRIPTION_JND):
        self.subset = subset
        self.specs = list(specs)
        self.size = size
        self.description = description
        self.protocol = synthetic_protocol(size)
        self.same = torch.tensor([s.same for s in self.specs], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a subset of {len(self)} pairs")
        s = self.specs[index]
        ref = _render_patch(s.patch, self.size)
        p1 = apply_distortion(ref, s.family, s.level, torch.Generator().manual_seed(s.seed))
        return {"p0": ref, "p1": p1, "same": self.same[index].clone(), "subset": self.subset, "index": index}

    def __repr__(self) -> str:
        return f"SyntheticJND(subset={self.subset!r}, n={len(self)}, size={self.size}, synthetic=True)"


def _same_family_specs(n: int, seed: int, size: int, families: Sequence[str], photos: Sequence[str]) -> list[TripletSpec]:
    rng = _rng(seed, SAME_FAMILY)
    specs = []
    for i in range(n):
        patch = _draw_patch(rng, photos, size)
        family = families[int(rng.integers(len(families)))]
        seed0, seed1 = _seed(rng), _seed(rng)
        if i % 10 == 9:  # tie: equal levels
            level0 = level1 = LEVEL_GRID[int(rng.integers(len(LEVEL_GRID)))]
            if (i // 10) % 2 == 0:
                seed1 = seed0  # identical patches
            judge = 0.5
        else:
            while True:
                level0 = LEVEL_GRID[int(rng.integers(len(LEVEL_GRID)))]
                level1 = LEVEL_GRID[int(rng.integers(len(LEVEL_GRID)))]
                if abs(level0 - level1) >= MIN_LEVEL_GAP - 1e-9:
                    break
            judge = 1.0 if level0 > level1 else 0.0
        specs.append(TripletSpec(patch, family, level0, seed0, family, level1, seed1, judge))
    return specs


def _mixed_family_specs(n: int, seed: int, size: int, families: Sequence[str], photos: Sequence[str]) -> list[TripletSpec]:
    if len(families) < 2:
        raise ValueError("the mixed-family subset needs at least two distortion families")
    rng = _rng(seed, MIXED_FAMILY)
    specs = []
    for _ in range(n):
        patch = _draw_patch(rng, photos, size)
        i, j = rng.choice(len(families), size=2, replace=False)
        weak = (families[int(i)], WEAK_LEVELS[int(rng.integers(len(WEAK_LEVELS)))], _seed(rng))
        strong = (families[int(j)], STRONG_LEVELS[int(rng.integers(len(STRONG_LEVELS)))], _seed(rng))
        if rng.random() < 0.5:
            (f0, l0, s0), (f1, l1, s1), judge = strong, weak, 1.0
        else:
            (f0, l0, s0), (f1, l1, s1), judge = weak, strong, 0.0
        specs.append(TripletSpec(patch, f0, l0, s0, f1, l1, s1, judge))
    return specs


def _structure_vs_appearance_specs(n: int, seed: int, size: int, families: Sequence[str],
                                   photos: Sequence[str]) -> list[TripletSpec]:
    structural = [f for f in STRUCTURAL_FAMILIES if f in families]
    appearance = [f for f in APPEARANCE_FAMILIES if f in families]
    if not structural or not appearance:
        return []
    rng = _rng(seed, STRUCTURE_VS_APPEARANCE)
    specs = []
    for _ in range(n):
        patch = _draw_patch(rng, photos, size)
        damage = (structural[int(rng.integers(len(structural)))], SVA_LEVELS[int(rng.integers(len(SVA_LEVELS)))], _seed(rng))
        change = (appearance[int(rng.integers(len(appearance)))], SVA_LEVELS[int(rng.integers(len(SVA_LEVELS)))], _seed(rng))
        if rng.random() < 0.5:
            (f0, l0, s0), (f1, l1, s1), judge = damage, change, 1.0
        else:
            (f0, l0, s0), (f1, l1, s1), judge = change, damage, 0.0
        specs.append(TripletSpec(patch, f0, l0, s0, f1, l1, s1, judge))
    return specs


def _check_families(families: Optional[Sequence[str]]) -> list[str]:
    chosen = list(DISTORTIONS) if families is None else list(families)
    for f in chosen:
        if f not in DISTORTIONS:
            raise unknown_name("distortion family", f, list(DISTORTIONS))
    if not chosen:
        raise ValueError("families must name at least one distortion family")
    return chosen


def builtin_2afc(
    n_per_subset: int = 500,
    seed: int = 0,
    size: int = 64,
    families: Optional[Sequence[str]] = None,
) -> dict[str, SyntheticTwoAFC]:
    """The built-in SYNTHETIC 2AFC set: ``{"same-family", "mixed-family", "structure-vs-appearance"}``.

    Deterministic for a given ``seed`` (the same seed gives identical tensors). Judgements
    follow the rule in this module's docstring (rule-based, not human); every dataset has
    ``synthetic = True`` and a ``description`` saying so. ``families`` restricts the
    distortion families (default: all of ``DISTORTIONS``).

    Example:
        >>> sets = builtin_2afc(n_per_subset=10, seed=0)
        >>> float(sets["same-family"].judges[9])  # every 10th item is a tie
        0.5
    """
    if n_per_subset < 1:
        raise ValueError(f"n_per_subset must be at least 1, got {n_per_subset}")
    fams = _check_families(families)
    photos = photo_names()
    sets = {
        SAME_FAMILY: SyntheticTwoAFC(SAME_FAMILY, _same_family_specs(n_per_subset, seed, size, fams, photos), size),
        MIXED_FAMILY: SyntheticTwoAFC(MIXED_FAMILY, _mixed_family_specs(n_per_subset, seed, size, fams, photos), size),
    }
    sva = _structure_vs_appearance_specs(n_per_subset, seed, size, fams, photos)
    if sva:  # needs at least one structural and one appearance family
        sets[STRUCTURE_VS_APPEARANCE] = SyntheticTwoAFC(STRUCTURE_VS_APPEARANCE, sva, size)
    return sets


def builtin_jnd(
    n: int = 300,
    seed: int = 0,
    size: int = 64,
    families: Optional[Sequence[str]] = None,
) -> dict[str, SyntheticJND]:
    """The built-in SYNTHETIC JND set: ``{"synthetic": ...}`` (rule-based ``same`` labels).

    Items with ``index % 3 == 0`` are "same" (``same = 1``: level 0, or level 0.02 of a
    subtle family, alternately); the others are level 0.5 .. 1.0 (``same = 0``).

    Example:
        >>> ds = builtin_jnd(n=6)["synthetic"]
        >>> ds.same.tolist()
        [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    fams = _check_families(families)
    subtle = [f for f in fams if f not in JND_TINY_EXCLUDED] or fams
    photos = photo_names()
    rng = _rng(seed, JND_SUBSET)
    specs = []
    for i in range(n):
        patch = _draw_patch(rng, photos, size)
        s = _seed(rng)
        if i % 3 == 0:
            family = subtle[int(rng.integers(len(subtle)))]
            level = 0.0 if (i // 3) % 2 == 0 else JND_TINY_LEVEL
            same = 1.0
        else:
            family = fams[int(rng.integers(len(fams)))]
            level = JND_DIFFERENT_LEVELS[int(rng.integers(len(JND_DIFFERENT_LEVELS)))]
            same = 0.0
        specs.append(PairSpec(patch, family, level, s, same))
    return {JND_SUBSET: SyntheticJND(JND_SUBSET, specs, size)}
