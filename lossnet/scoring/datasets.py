"""What the scorers accept as data, and turning batches of items into tensors.

A dataset is anything with ``len`` and ``__getitem__`` returning item dicts (the loaders of
:mod:`lossnet.data`, a ``torch.utils.data.Subset`` of one, or a plain list of dicts); a
mapping ``{subset name: dataset}`` scores several subsets in one pass.

Example:
    >>> items = [{"p0": torch.zeros(3, 8, 8), "p1": torch.ones(3, 8, 8), "same": 1.0}]
    >>> list(as_datasets(items))
    ['data']
    >>> read_labels(items, "same", "JND").tolist()
    [1.0]
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import LossnetError

DatasetsArg = Any  # a Dataset, a list of item dicts, or {subset name: dataset}


class ScoringError(LossnetError):
    """A dataset or metric cannot be scored (wrong item format, mixed image sizes, ...)."""


def as_datasets(data: DatasetsArg, default_name: str = "data") -> dict[str, Any]:
    """``{subset name: dataset}`` from a dict of datasets, one dataset, or a list of item dicts."""
    if isinstance(data, Mapping):
        if not data:
            raise ScoringError("no datasets given: the dict of subsets is empty.")
        return {str(k): v for k, v in data.items()}
    if isinstance(data, (str, os.PathLike)):
        raise ScoringError(
            f"got the path {str(data)!r}: load it first, e.g. lossnet.data.load_2afc({str(data)!r}), "
            "and pass the datasets."
        )
    name = find_attr(data, "subset") or default_name
    return {str(name): data}


def find_attr(dataset: Any, attr: str, default: Any = None) -> Any:
    """An attribute of a dataset, looking through wrappers such as ``Subset`` (``.dataset``)."""
    while dataset is not None:
        value = getattr(dataset, attr, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return default


def is_synthetic(dataset: Any) -> bool:
    """True for the built-in synthetic sets (also through ``torch.utils.data.Subset``)."""
    return bool(find_attr(dataset, "synthetic", False))


def describe_dataset(dataset: Any) -> str:
    """The dataset's description and loading protocol, as recorded by its loader."""
    parts = [str(find_attr(dataset, "description", "") or ""), str(find_attr(dataset, "protocol", "") or "")]
    return "; ".join(p for p in parts if p)


def _as_list(items: list) -> list:
    return items


def iter_batches(dataset: Any, batch_size: int, num_workers: int = 0) -> Iterator[list[dict]]:
    """Batches of items (lists of dicts) in dataset order; works for Datasets and plain lists.

    With ``num_workers > 0`` image decoding runs in worker processes, overlapped with compute.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ScoringError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ScoringError(f"num_workers must be an integer >= 0, got {num_workers!r}.")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_as_list, prefetch_factor=4 if num_workers else None,
                        persistent_workers=False)
    yield from loader


def stack_images(items: Sequence[Mapping], key: str, what: str) -> torch.Tensor:
    """``item[key]`` of every item as one (N, C, H, W) float batch; one shape required."""
    try:
        tensors = [torch.as_tensor(item[key]) for item in items]
    except KeyError:
        raise ScoringError(f"{what} items must have the key {key!r}; got keys {sorted(items[0])}.") from None
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ScoringError(f"{what}: images {key!r} of one batch have different shapes {sorted(shapes)}.")
    return torch.stack(tensors).float()


def same_size_runs(items: Sequence[Mapping], keys: Sequence[str], what: str) -> Iterator[list[Mapping]]:
    """Consecutive runs of items whose images all have one shape (order kept).

    Every image of an item must have the same shape (e.g. ref, p0 and p1); items of
    different sizes (MOS sets of mixed resolutions) go through the network in separate runs.
    """
    run: list[Mapping] = []
    run_shape = None
    for item in items:
        try:
            shapes = [tuple(torch.as_tensor(item[k]).shape) for k in keys]
        except KeyError as exc:
            raise ScoringError(f"{what} items must have the keys {list(keys)}; got keys {sorted(item)}.") from exc
        if len(set(shapes)) != 1:
            detail = ", ".join(f"{k} {sh}" for k, sh in zip(keys, shapes))
            raise ScoringError(f"{what}: item {item.get('index', item.get('name', '?'))} has images of different "
                               f"sizes ({detail}); they must have the same size.")
        if run and shapes[0] != run_shape:
            yield run
            run = []
        run.append(item)
        run_shape = shapes[0]
    if run:
        yield run


def _label_value(value: Any, key: str, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise ScoringError(f"{what}: label {key!r} is a bool ({value!r}); a number is expected.")
    if isinstance(value, (str, bytes)):
        raise ScoringError(f"{what}: label {key!r} is the text {value!r}; a number is expected.")
    try:
        t = torch.as_tensor(value).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ScoringError(f"{what}: label {key!r} is a {type(value).__name__}, not a number.") from None
    if t.numel() != 1 or not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.int16,
                                                                   torch.int8, torch.uint8)):
        raise ScoringError(f"{what}: label {key!r} must be one number, got {t.numel()} values of {t.dtype}.")
    return float(t[0])


def read_labels(items: Sequence[Mapping], key: str, what: str, low: float | None = None,
                high: float | None = None) -> np.ndarray:
    """``item[key]`` of every item as a float64 array; each must be one finite number, in
    ``[low, high]`` when given."""
    try:
        values = np.array([_label_value(item[key], key, what) for item in items], dtype=np.float64)
    except KeyError:
        raise ScoringError(f"{what} items must have the key {key!r}; got keys {sorted(items[0])}.") from None
    bad = ~np.isfinite(values)
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        where = [str(items[i].get("name", items[i].get("index", i))) for i in np.flatnonzero(bad)[:5]]
        rng = "" if low is None else f" in [{low:g}, {high:g}]"
        raise ScoringError(f"{what}: {int(bad.sum())} labels {key!r} are not finite numbers{rng} "
                           f"(e.g. items {', '.join(where)}: {values[bad][:5].tolist()}).")
    return values


def check_positive_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum``; a clear error otherwise (bools are refused)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ScoringError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


__all__ = ["DatasetsArg", "ScoringError", "as_datasets", "check_positive_int", "describe_dataset", "find_attr",
           "is_synthetic", "iter_batches", "read_labels", "same_size_runs", "stack_images"]
