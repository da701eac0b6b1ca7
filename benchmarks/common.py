"""Small shared helpers for the lossnet benchmarks: timing, machine info, result files.

Every benchmark script in this folder imports it (``import common as bench`` when run as
``python benchmarks/<script>.py``, after putting this folder on ``sys.path``; importing it puts the
repo root there too, so ``lossnet`` is this checkout's).

- :func:`time_interleaved` times several callables that do the same job, alternating their
  order on every repeat, after warm-up calls; it reports the median (and min) of the repeats.
  Alternating matters on a shared machine: a burst of load from another process then hits
  both sides instead of biasing one of them.
- :func:`machine_info` records what the numbers depend on: CPU model, core counts, load
  average, torch/torchvision versions and thread counts.
- :func:`write_results` writes ``benchmarks/results/<name>.json`` and ``<name>.md``
  atomically, through lossnet's one JSON writer (:func:`lossnet.utils.jsonio.write_json`).
- Two-sided comparisons on real photos (lossnet against a peer package, e.g. ``bench_dists.py``):
  :func:`comparison_parser` (their flags), :func:`start_comparison`, :func:`photo_pair`,
  :func:`check_values`, :func:`time_sides`, :func:`comparison_cell` (one mode's timings and
  :func:`speed_ratios`), :func:`comparison_settings` and :func:`write_comparison`.

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
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/<script>.py` benchmarks this checkout's lossnet
    sys.path.insert(1, str(REPO_ROOT))

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def set_threads(n: int) -> None:
    """Fix torch's intra-op thread count (and inter-op, when it is still settable)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work
        pass


def comparison_parser(description: str, name: str, repeats: int, batch: int, size: int) -> argparse.ArgumentParser:
    """The flags of a two-sided comparison on photos: ``--repeats --batch --size --threads --device
    --out-dir --name --no-write`` (``name`` is the default results file name).

    Example:
        >>> comparison_parser("x", "dists", 3, 8, 256).parse_args(["--no-write"]).name
        'dists'
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=name, help=f"results file name (default {name})")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser


def start_comparison(args: argparse.Namespace):
    """Start a :func:`comparison_parser` run: torch threads set; returns ``(device, sync, start time,
    uptime line, machine info)`` (``sync`` from :func:`device_sync`, the time from ``perf_counter``)."""
    import torch

    set_threads(args.threads)
    device = torch.device(args.device)
    return device, device_sync(device), time.perf_counter(), uptime(), machine_info()


def device_sync(device: object) -> Callable[[], None]:
    """What a timed call runs last so that its time includes the device's queued work (CUDA only)."""
    import torch

    device = torch.device(device)
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def photo_pair(batch: int, size: int, photos: Sequence[str] = PHOTOS, noise: float = 0.08, seed: int = 0):
    """``batch`` real photos at ``size`` x ``size`` in [0, 1] (the scikit-image ``photos`` and their
    mirror images, cycled), and targets = photos + ``noise`` * seeded Gaussian noise, clamped.

    Example:
        >>> x, y = photo_pair(3, 16)
        >>> tuple(x.shape), bool(0 <= y.min() and y.max() <= 1)
        ((3, 3, 16, 16), True)
    """
    import numpy as np
    import torch
    from skimage import data

    images = []
    for name in photos:
        t = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1).float() / 255
        t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True)[0]
        images += [t, t.flip(-1)]
    x = torch.stack([images[i % len(images)] for i in range(batch)]).clamp(0, 1)
    g = torch.Generator().manual_seed(seed)
    return x, (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)


def comparison_settings(args: argparse.Namespace, device: object, rtol: float, atol: float) -> dict:
    """The settings of a :func:`comparison_parser` run on :func:`photo_pair` photos, for its results file."""
    return {"batch": args.batch, "size": args.size, "threads": args.threads, "device": str(device),
            "dtype": "float32", "repeats": args.repeats, "rtol": rtol, "atol": atol, "photos": list(PHOTOS)}


def write_comparison(args: argparse.Namespace, result: Mapping[str, object], markdown: str) -> None:
    """:func:`write_results` of a :func:`comparison_parser` run, under ``--name`` in ``--out-dir``
    (nothing with ``--no-write``)."""
    if not args.no_write:
        j, m = write_results(args.name, result, markdown, args.out_dir)
        print(f"wrote {j} and {m}")


def time_sides(make_calls: Callable[[object, object], Mapping[str, Callable[[], object]]], x, y, repeats: int,
               warmup_batch: int = 2) -> dict[str, dict]:
    """:func:`time_interleaved` of the callables ``make_calls(x, y)``, after one warm-up call of each
    made on the first ``warmup_batch`` items (the same shapes in less time)."""
    return time_interleaved(make_calls(x, y), warmup=1, repeats=repeats,
                            warmup_fns=make_calls(x[:warmup_batch], y[:warmup_batch]))


def _value_error(got, expected, error: str) -> float:
    diff = (got - expected).abs()
    return float((diff / expected.abs() if error == "rel" else diff).max())


def check_values(got, expected, peer: str, tolerances: tuple, error: str, note: str) -> None:
    """Stop the run unless lossnet's values ``got`` agree with the ``peer``'s ``expected`` to
    ``tolerances`` (rtol, atol); prints the max ``error`` ("rel" or "abs") and ``note``."""
    import torch

    if not torch.allclose(got, expected, rtol=tolerances[0], atol=tolerances[1]):
        raise SystemExit(f"values disagree: lossnet {got.tolist()} vs {peer} {expected.tolist()}")
    print(f"values agree (max {error} err {_value_error(got, expected, error):.1e}); {note}", flush=True)


def comparison_cell(mode: str, t: Mapping[str, Mapping], peer: str, args: argparse.Namespace, tolerances: tuple,
                    error: str, lossnet_over_peer: bool, t_start: float, digits: int) -> dict:
    """One mode of a two-sided comparison, from its :func:`time_sides` timings ``t`` (sides ``"lossnet"``
    and ``peer``): the values the last timed calls returned must agree to ``tolerances`` (rtol, atol;
    reported as ``max_rel_err`` or ``max_abs_err``, as ``error`` is ``"rel"`` or ``"abs"``), then the
    timings and the :func:`speed_ratios` (lossnet / peer or peer / lossnet). Prints a line."""
    import torch

    a, b = t["lossnet"], t[peer]
    err = _value_error(a["last"], b["last"], error)
    if not torch.allclose(a["last"], b["last"], rtol=tolerances[0], atol=tolerances[1]):
        raise SystemExit(f"{mode}: values disagree during timing ({error} err {err:.1e})")
    ratios = speed_ratios(a, b) if lossnet_over_peer else speed_ratios(b, a)
    cell = {"mode": mode, "repeats": args.repeats, f"max_{error}_err": err, "lossnet": timings(a),
            "peer": timings(b), **ratios, "load_average": load_average()}
    label, d = f"lossnet/{peer}" if lossnet_over_peer else "ratio", digits
    print(f"[{time.perf_counter() - t_start:5.0f}s] {mode:<16} lossnet {a['median_s']:7.3f}s  {peer} "
          f"{b['median_s']:7.3f}s  {label} {cell['ratio']:.{d}f} (paired {cell['ratio_paired']['median']:.{d}f}, "
          f"mins {cell['ratio_of_mins']:.{d}f}, cpu {cell['ratio_cpu']:.{d}f})", flush=True)
    return cell


def timings(t: Mapping[str, object]) -> dict:
    """One side's :func:`time_interleaved` entry without ``last`` (what the call returned)."""
    return {k: v for k, v in t.items() if k != "last"}


def speed_ratios(num: Mapping[str, object], den: Mapping[str, object]) -> dict:
    """``num`` / ``den`` time of two interleaved sides: of the medians (``ratio``), of the fastest calls
    (``ratio_of_mins``), per repeat (``ratio_paired``, :func:`paired_ratios`) and of the CPU seconds
    (``ratio_cpu``).

    Example:
        >>> t = {"median_s": 2.0, "min_s": 1.0, "times_s": [2.0, 4.0], "cpu_median_s": 1.0}
        >>> u = {"median_s": 1.0, "min_s": 1.0, "times_s": [1.0, 1.0], "cpu_median_s": 1.0}
        >>> speed_ratios(t, u)["ratio"], speed_ratios(t, u)["ratio_paired"]["median"]
        (2.0, 3.0)
    """
    return {"ratio": num["median_s"] / den["median_s"], "ratio_of_mins": num["min_s"] / den["min_s"],
            "ratio_paired": paired_ratios(num["times_s"], den["times_s"]),
            "ratio_cpu": num["cpu_median_s"] / den["cpu_median_s"]}


def _summary(times: Sequence[float], cpu_times: Sequence[float]) -> dict:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": [round(t, 6) for t in times],
        "cpu_median_s": statistics.median(cpu_times),
        "cpu_times_s": [round(t, 6) for t in cpu_times],
    }


def trunk_alone(metric, batches: Sequence[object]):
    """The trunk alone as ``score_2afc`` runs it on the CPU: ``metric.net.body`` over ``batches``
    (each (N, 3, H, W) in [0, 1]), normalised and made channels-last in advance, under
    ``torch.inference_mode``. Returns (a callable that runs it, the layout, the ready inputs)."""
    import torch

    from lossnet.scoring.engine import ChannelsLast

    net = metric.net
    layout = ChannelsLast(metric, torch.device("cpu"), True)
    with layout, torch.inference_mode():
        ready = [layout.input(net.prepare(b)) for b in batches]

    def run() -> None:
        with layout, torch.inference_mode():
            for x in ready:
                net.body(x)

    return run, layout, ready


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


def uptime() -> str:
    """The ``uptime`` line (load on the machine), or the load averages where there is no ``uptime``."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {load_average()}"


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
