"""Small shared helpers for the lossnet benchmarks: timing, machine info, result files.

Every benchmark script in this folder can import it (``from common import ...`` when run as
``python benchmarks/<script>.py``, or ``from benchmarks.common import ...`` from the repo root).

- :func:`time_interleaved` times several callables that do the same job, alternating their
  order on every repeat, after warm-up calls; it reports the median (and min) of the repeats.
  Alternating matters on a shared machine: a burst of load from another process then hits
  both sides instead of biasing one of them.
- :func:`machine_info` records what the numbers depend on: CPU model, core counts, load
  average, torch/torchvision versions and thread counts.
- :func:`write_results` writes ``benchmarks/results/<name>.json`` and ``<name>.md``
  atomically, through lossnet's one JSON writer (:func:`lossnet.utils.jsonio.write_json`).

Example:
    >>> t = time_interleaved({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))},
    ...                      warmup=1, repeats=3)
    >>> sorted(t)
    ['a', 'b']
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def set_threads(n: int) -> None:
    """Fix torch's intra-op thread count (and inter-op, when it is still settable)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work
        pass


def _summary(times: Sequence[float], cpu_times: Sequence[float]) -> dict:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": [round(t, 6) for t in times],
        "cpu_median_s": statistics.median(cpu_times),
        "cpu_times_s": [round(t, 6) for t in cpu_times],
    }


def time_call(fn: Callable[[], object], warmup: int = 1, repeats: int = 5,
              warmup_fn: Callable[[], object] | None = None) -> dict:
    """Time ``fn()``: ``warmup`` untimed calls (of ``warmup_fn`` if given), then ``repeats`` timed ones.

    Returns ``{"median_s", "min_s", "max_s", "times_s", "cpu_median_s", "cpu_times_s", "last"}``
    (wall-clock seconds, plus this process's CPU seconds); ``last`` is what the final timed call returned.
    """
    return time_interleaved({"_": fn}, warmup, repeats, {"_": warmup_fn} if warmup_fn else None)["_"]


def time_interleaved(fns: Mapping[str, Callable[[], object]], warmup: int = 1, repeats: int = 5,
                     warmup_fns: Mapping[str, Callable[[], object]] | None = None) -> dict[str, dict]:
    """Time callables that do the same job, interleaved: repeat i runs them in rotated order.

    ``warmup_fns`` (default: the timed callables) are called ``warmup`` times each first,
    e.g. a smaller batch of the same shape when one full call already takes many seconds.
    Returns ``{name: {"median_s", "min_s", "max_s", "times_s", "cpu_median_s", "cpu_times_s", "last"}}``;
    ``times_s[i]`` of every name belong to the same repeat i, so paired ratios can be formed.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    names = list(fns)
    warm = warmup_fns or fns
    for _ in range(warmup):
        for name in names:
            warm[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, object] = {}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            c0, t0 = time.process_time(), time.perf_counter()
            last[name] = fns[name]()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {n: {**_summary(times[n], cpu[n]), "last": last[n]} for n in names}


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> dict:
    """Per-repeat ratios num[i] / den[i] of interleaved timings: their median and all of them.

    Calls of one repeat run back to back, so they share the machine's load at that moment;
    the median of these ratios is less sensitive to load from other processes.
    """
    ratios = [a / b for a, b in zip(num, den)]
    return {"median": statistics.median(ratios), "all": [round(r, 4) for r in ratios]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            pairs = set()
            phys = core = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core is not None:
                        pairs.add((phys, core))
                    phys = core = None
            if core is not None:
                pairs.add((phys, core))
            return len(pairs) or None
    except OSError:
        return None


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (other work on the machine skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict:
    """CPU model, core counts, load, library versions and thread settings, plus the date (UTC)."""
    import torch

    info = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "load_average_at_start": load_average(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def machine_markdown(info: Mapping[str, object]) -> str:
    """Machine info as a bullet list for the Markdown report."""
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def _jsonable(obj: object) -> object:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    try:
        return float(obj)  # 0-d tensors, numpy scalars
    except (TypeError, ValueError):
        return str(obj)


def write_results(name: str, payload: Mapping[str, object], markdown: str,
                  out_dir: Path | str = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.json`` (NaN and infinity as null) and ``<out_dir>/<name>.md``
    atomically; returns both paths. Values JSON cannot hold (tensors, results objects) become
    numbers where they convert, else their ``str``."""
    from lossnet.utils.jsonio import atomic_write_bytes, write_json

    out = Path(out_dir)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    write_json(json_path, _jsonable(payload))
    atomic_write_bytes(md_path, (markdown.rstrip() + "\n").encode("utf-8"))
    return json_path, md_path
