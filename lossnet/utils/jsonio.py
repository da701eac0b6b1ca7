"""The one JSON writer of lossnet, and atomic file writes.

Every result file goes through :func:`write_json`: NaN and infinity become ``null``, numpy
and torch scalars become numbers, paths become strings, and the file is replaced atomically
(a kill never leaves half a file).

Example:
    >>> import math
    >>> to_json_text({"ps": math.nan, "n": 3})
    '{\\n  "ps": null,\\n  "n": 3\\n}'
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import LossnetError

PathLike = str | os.PathLike


def clean_json(obj: Any) -> Any:
    """A JSON-safe copy: NaN/inf become None, tensors and numpy values become numbers or lists,
    paths become strings."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars, torch tensors
        return clean_json(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return clean_json(dataclasses.asdict(obj))
    return str(obj)  # e.g. datetimes, enums, torch.device: their readable form


def to_json_text(obj: Any, indent: int | None = 2) -> str:
    """The JSON text of ``obj`` after :func:`clean_json` (never NaN in the output)."""
    return json.dumps(clean_json(obj), indent=indent, allow_nan=False)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: PathLike | None, obj: Any, indent: int | None = 2) -> str:
    """Write ``obj`` as JSON to ``path`` atomically (parents created) and return the text.

    ``path=None`` only returns the text.
    """
    text = to_json_text(obj, indent)
    if path is not None:
        atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return text


def read_json(path: PathLike, fix: str = "delete it and run again") -> Any:
    """Read a JSON file written by lossnet; a missing, truncated or foreign file is a clear error.

    Example:
        >>> read_json("/nonexistent.json")
        Traceback (most recent call last):
        ...
        lossnet.errors.LossnetError: /nonexistent.json does not exist: delete it and run again.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LossnetError(f"{path} does not exist: {fix}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LossnetError(f"{path} cannot be read ({type(exc).__name__}: {exc}): {fix}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LossnetError(f"{path} is not valid JSON (truncated or edited? {exc.msg} at line {exc.lineno}): "
                           f"{fix}.") from None


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a kill never leaves a torn file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
