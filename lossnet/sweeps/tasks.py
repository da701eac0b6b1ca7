"""The tasks a sweep can run: a registry ``task name -> adapter``.

An adapter is called as ``adapter(run_config, work_dir)`` with the run's resolved config (a
dict: ``task``, ``arch``, ``weights``, ``points``, ``distance``, ``seed``, ``settings``) and a
private folder for its files (checkpoints: a training run killed half way resumes there); it
returns a JSON-ready dict of metrics. The task modules are imported lazily, inside the
adapters, so importing this registry is cheap (the spec parser and every worker import it).

Built in: ``similarity`` (BAPPS 2AFC Perceptual Score, builtin or a BAPPS folder),
``autoencoder``, ``superres``, ``segmentation`` (the training tasks of Pihlgren et al.) and
``noop`` (returns at once; for measuring scheduling overhead and smoke-testing a cluster).

A task may also score several runs from ONE pass (:class:`SharedPass`): ``similarity`` runs
that differ only in extraction points and distance (same network, weights, data, input size,
device, seed) are scored together from one forward pass per batch, every point and distance
at once, and each run still gets exactly the metrics it gets alone.
More tasks are added with :func:`register_task`; a spec's ``imports = ["my.module"]`` makes
every worker import modules that register theirs.

Example:
    >>> from lossnet.sweeps.tasks import TASKS, register_task
    >>> def double(run, work_dir):
    ...     return {"score": 2.0 * run["seed"]}
    >>> _ = register_task("double", double, headline="score")
    >>> TASKS["double"]({"seed": 3, "settings": {}}, None)
    {'score': 6.0}
"""
from __future__ import annotations

import functools
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import LossnetError
from ..utils.devices import select_device

AdapterFn = Callable[[Mapping[str, Any], Path], dict]
SharedFn = Callable[[Sequence[Mapping[str, Any]], Sequence["Path | None"]], list]

# Settings that never change a run's results: left out of the run id.
NON_RESULT_SETTINGS = frozenset({"device", "num_workers", "progress", "resources"})


class TaskError(LossnetError):
    """A task cannot be run (missing entry point, bad settings)."""


@dataclass(frozen=True)
class SharedPass:
    """How runs of one task are computed together from one pass over the data.

    Attributes:
        key: ``key(run_config) -> str | None``: runs with the same key (within a task, thread
            count and resources) are computed together; None: this run is never shared.
        fn: ``fn(run_configs, work_dirs) -> [metrics of each run, in order]``: the same metrics
            each run's own adapter call returns.

    Example:
        >>> shared = SharedPass(lambda run: "all", lambda runs, dirs: [{"score": r["seed"]} for r in runs])
        >>> shared.fn([{"seed": 1}, {"seed": 2}], [None, None])
        [{'score': 1}, {'score': 2}]
    """

    key: Callable[[Mapping[str, Any]], "str | None"]
    fn: SharedFn


@dataclass
class TaskAdapter:
    """One task of the registry.

    Attributes:
        name: the task name used in specs.
        fn: ``fn(run_config, work_dir) -> metrics``.
        defaults: the task's settings and their defaults; a spec may set only these keys.
        headline: the metric that reports rank by (higher is better unless ``higher_is_better``).
        higher_is_better: the direction of ``headline``.
        network: False for tasks that ignore the loss network (``noop``).
        description: one line for listings.
        shared: how several runs are computed from one pass (None: each run alone).
    """

    name: str
    fn: AdapterFn
    defaults: dict[str, Any] = field(default_factory=dict)
    headline: str = "score"
    higher_is_better: bool = True
    network: bool = True
    description: str = ""
    shared: SharedPass | None = None

    def __call__(self, run_config: Mapping[str, Any], work_dir: Path | None) -> dict:
        return self.fn(run_config, work_dir)


TASKS: dict[str, TaskAdapter] = {}
ALIASES = {"autoencoding": "autoencoder", "super-resolution": "superres", "superresolution": "superres",
           "2afc": "similarity", "bapps": "similarity"}


def register_task(name: str, fn: AdapterFn, defaults: Mapping[str, Any] | None = None, headline: str = "score",
                  higher_is_better: bool = True, network: bool = True, description: str = "",
                  shared: SharedPass | None = None) -> TaskAdapter:
    """Add (or replace) a task in the registry and return its :class:`TaskAdapter`.

    Example:
        >>> _ = register_task("const", lambda run, wd: {"score": 1.0}, defaults={"sleep": 0.0})
    """
    adapter = TaskAdapter(name, fn, dict(defaults or {}), headline, higher_is_better, network, description, shared)
    TASKS[name] = adapter
    return adapter


def canonical_task(name: str) -> str:
    """The registry name of ``name`` (aliases such as ``autoencoding`` accepted)."""
    return ALIASES.get(name, name)


def get_task(name: str) -> TaskAdapter:
    """The adapter of ``name``; unknown names raise an error listing the registered tasks."""
    from ..errors import unknown_name

    name = canonical_task(name)
    if name not in TASKS:
        raise unknown_name("task", name, sorted(TASKS),
                           hint="Tasks of other modules are registered by listing them in the spec's imports.")
    return TASKS[name]


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import modules that register extra tasks (a spec's ``imports``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"cannot import {module!r} listed in the spec's imports ({exc}). Is it on the "
                            "Python path of every worker?") from exc


# ----------------------------------------------------------------------------------------------
# Adapters


def _work_dir(work_dir: Path | None) -> Path:
    if work_dir is None:
        raise TaskError("this task writes files: it needs a work_dir.")
    path = Path(work_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _noop(run: Mapping[str, Any], work_dir: Path | None) -> dict:
    """Returns at once (after ``sleep`` seconds): a score derived from the run's seed."""
    settings = run.get("settings", {})
    if settings.get("sleep"):
        time.sleep(float(settings["sleep"]))
    return {"score": float(run.get("seed", 0))}


def _similarity_sets(s: Mapping[str, Any]) -> Any:
    """The 2AFC data a similarity run's settings name (the built-in set or a BAPPS folder)."""
    from ..data import load_2afc

    data = str(s.get("data", "builtin"))
    subsets = s.get("subsets") or None
    if data == "builtin":
        sets = _builtin_sets(int(s.get("n_per_subset", 500)), int(s.get("data_seed", 0)), int(s.get("size", 64)))
        if subsets:
            sets = {k: v for k, v in sets.items() if k in subsets}
        return sets
    return load_2afc(Path(data).expanduser(), split=str(s.get("split", "val")), subsets=subsets,
                     size=int(s.get("size", 64)))


def _similarity_metric(run: Mapping[str, Any], points: Sequence[str] | None, distance: str) -> Any:
    from ..loss.factory import create_metric

    s = run.get("settings", {})
    if run.get("arch") is None:
        return create_metric(None, distance=distance)
    return create_metric(run["arch"], layers=list(points or ()), distance=distance,
                         weights=run.get("weights") or "imagenet", input_norm=s.get("input_norm", "auto"),
                         lin=s.get("lin"), seed=int(run.get("seed", 0)))


def _similarity_metrics(d: Mapping[str, Any]) -> dict:
    return {"mean": d["mean"], "mean_ci_low": d.get("mean_ci_low"), "mean_ci_high": d.get("mean_ci_high"),
            "subsets": d["subsets"], "layers": d["layers"], "layer_means": d.get("layer_means", {}),
            "n": d["n"], "synthetic": d["synthetic"], "distance": d["distance"], "seconds": d["seconds"]}


def _similarity(run: Mapping[str, Any], work_dir: Path | None) -> dict:
    """2AFC Perceptual Score on the built-in set or a BAPPS folder: PS per subset, mean, layer-wise."""
    from ..scoring import score_2afc

    s = run.get("settings", {})
    sets = _similarity_sets(s)
    metric = _similarity_metric(run, run.get("points"), run["distance"])
    result = score_2afc(metric, sets, batch_size=int(s.get("batch_size", 50)), bootstrap=int(s.get("bootstrap", 1000)),
                        seed=int(run.get("seed", 0)), progress=False, device=select_device(s.get("device", "auto")))
    return _similarity_metrics(result.to_dict())


def _similarity_share_key(run: Mapping[str, Any]) -> str | None:
    """Runs that see the same features: same network, weights (and their file's contents), seed
    (random weights), data, input size, device and every other setting; they differ only in
    points and distance. Runs with lin weights are not shared (lin applies to one distance
    and its own points)."""
    s = run.get("settings", {})
    if s.get("lin") is not None:
        return None
    return json.dumps({"arch": run.get("arch"), "weights": run.get("weights"),
                       "weights_sha256": run.get("weights_sha256"), "seed": int(run.get("seed", 0)),
                       "settings": dict(s)}, sort_keys=True, default=str)


def _similarity_shared(runs: Sequence[Mapping[str, Any]], work_dirs: Sequence[Path | None]) -> list[dict]:
    """Score every run of ``runs`` (one share key) from ONE 2AFC pass: the network extracts the
    union of their points once per batch, the engine computes every distance they ask for, and
    each run is summarised from its own points and distance. The combined distance of a run is
    the sum of its points' distances in float32, in network order, as the engine sums it, so a
    run's metrics equal those of the run alone exactly."""
    import numpy as np
    import torch

    from ..scoring.datasets import check_positive_int
    from ..scoring.engine import COMBINED
    from ..scoring.twoafc import TripletDistances, run_2afc, summarize_2afc

    first = runs[0]
    s = first.get("settings", {})
    bootstrap = int(s.get("bootstrap", 1000))
    check_positive_int(bootstrap, "bootstrap", minimum=0)
    distances = list(dict.fromkeys(str(r["distance"]) for r in runs))
    points = list(dict.fromkeys(p for r in runs for p in (r.get("points") or ())))
    sets = _similarity_sets(s)
    metric = _similarity_metric(first, points, distances[0])
    start = time.perf_counter()
    triplets, engine, info = run_2afc(metric, sets, int(s.get("batch_size", 50)), distances, progress=False,
                                      device=select_device(s.get("device", "auto")))
    seconds = time.perf_counter() - start
    depth = {p: i for i, p in enumerate(engine.points)}

    def combined(per_point: Mapping[str, np.ndarray], pts: Sequence[str]) -> np.ndarray:
        total = None
        for p in pts:  # float32 sums in network order, exactly as DistanceEngine sums them
            term = torch.from_numpy(per_point[p]).to(torch.float32)
            total = term if total is None else total + term
        return total.to(torch.float64).numpy()

    out = []
    for run in runs:
        d = str(run["distance"])
        if run.get("arch") is None:
            d0, d1 = {COMBINED: triplets.d0[d][COMBINED]}, {COMBINED: triplets.d1[d][COMBINED]}
        else:
            pts = sorted(run["points"], key=depth.__getitem__)
            d0 = {p: triplets.d0[d][p] for p in pts}
            d1 = {p: triplets.d1[d][p] for p in pts}
            d0[COMBINED], d1[COMBINED] = combined(d0, pts), combined(d1, pts)
        view = TripletDistances(subsets=triplets.subsets, subset_index=triplets.subset_index,
                                judges=triplets.judges, d0={d: d0}, d1={d: d1})
        summary = summarize_2afc(view, d, bootstrap, int(run.get("seed", 0)))
        out.append(_similarity_metrics({**summary, "n": info["n"], "synthetic": info["synthetic"], "distance": d,
                                        "seconds": seconds}))
    return out


# The built-in set renders its patches on access; a sweep scores the same set many times, so
# small sets are rendered once per process (at most this many triplets: ~150 MB at 64x64).
_MATERIALIZE_LIMIT = 1000


def _builtin_sets(n_per_subset: int, seed: int, size: int) -> dict[str, Any]:
    from ..data import builtin_2afc

    if 2 * n_per_subset > _MATERIALIZE_LIMIT:
        return builtin_2afc(n_per_subset=n_per_subset, seed=seed, size=size)
    return _materialized_builtin(n_per_subset, seed, size)


@functools.lru_cache(maxsize=2)
def _materialized_builtin(n_per_subset: int, seed: int, size: int) -> dict[str, Any]:
    from torch.utils.data import Dataset

    from ..data import builtin_2afc

    class Rendered(Dataset):
        """A built-in subset with its items rendered once (same attributes: synthetic, judges, ...)."""

        def __init__(self, source: Any) -> None:
            self.items = [source[i] for i in range(len(source))]
            for attr in ("synthetic", "subset", "description", "split", "judges", "size"):
                setattr(self, attr, getattr(source, attr))

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> dict:
            return self.items[index]

    return {name: Rendered(ds) for name, ds in builtin_2afc(n_per_subset=n_per_subset, seed=seed, size=size).items()}


def _training(task: str) -> AdapterFn:
    def adapter(run: Mapping[str, Any], work_dir: Path | None) -> dict:
        try:
            from ..tasks import TASKS as TRAINERS
            from ..tasks.config import LossConfig
            from ..tasks.run import RunOptions
        except ImportError as exc:  # pragma: no cover - depends on the task modules being present
            raise TaskError(f"the {task} task needs lossnet.tasks (train_{task}): {exc}") from exc
        if task not in TRAINERS:  # pragma: no cover
            raise TaskError(f"lossnet.tasks has no entry point for {task!r} (have: {', '.join(TRAINERS)}).")
        s = dict(run.get("settings", {}))
        if run.get("arch") is None:
            loss = LossConfig(net=None, distance=run["distance"])
        else:
            loss = LossConfig(net=run["arch"], layers=list(run["points"]), distance=run["distance"],
                              weights=run.get("weights") or "imagenet", input_norm=s.get("input_norm", "none"))
        options = RunOptions(out_dir=_work_dir(work_dir), seed=int(run.get("seed", 0)),
                             device=s.get("device", "auto"), amp=s.get("amp", False), progress=False)
        kwargs: dict[str, Any] = dict(s.get("overrides") or {})
        if task == "autoencoder":
            kwargs.update(dataset=s.get("dataset", "auto"))
        if task == "superres":
            if s.get("eval_dirs"):
                kwargs["eval_dirs"] = [str(Path(p).expanduser()) for p in s["eval_dirs"]]
            if s.get("scale"):
                kwargs["scale"] = int(s["scale"])
        data = str(s.get("data", "builtin"))
        data = data if data == "builtin" else str(Path(data).expanduser())
        result = TRAINERS[task](s.get("config", "mini"), loss, data=data, options=options, **kwargs)
        metrics = dict(result.get("metrics", {}))
        train = result.get("train") or {}
        for key, name in (("train_seconds", "train_seconds"), ("steps", "train_steps"), ("epochs", "train_epochs"),
                          ("last_loss", "train_last_loss")):
            if train.get(key) is not None and name not in metrics:
                metrics[name] = train[key]
        return metrics

    adapter.__name__ = f"_train_{task}"
    adapter.__doc__ = f"Train the {task} task with the run's loss network and return its metrics JSON."
    return adapter


_TRAIN_DEFAULTS = {"config": "mini", "data": "builtin", "input_norm": "none", "overrides": {}, "device": "auto",
                   "amp": False}

register_task("noop", _noop, defaults={"sleep": 0.0}, headline="score", network=False,
              description="returns at once (scheduling overhead, cluster smoke tests)")
register_task("similarity", _similarity,
              defaults={"data": "builtin", "n_per_subset": 500, "data_seed": 0, "split": "val", "subsets": [],
                        "size": 64, "batch_size": 50, "bootstrap": 1000, "input_norm": "auto", "lin": None,
                        "device": "auto"},
              headline="mean", description="2AFC Perceptual Score (BAPPS or the built-in synthetic set)",
              shared=SharedPass(_similarity_share_key, _similarity_shared))
register_task("autoencoder", _training("autoencoder"), defaults={**_TRAIN_DEFAULTS, "dataset": "auto"},
              headline="accuracy", description="VAE + MLP probes: probe accuracy")
register_task("superres", _training("superres"), defaults={**_TRAIN_DEFAULTS, "eval_dirs": [], "scale": 0},
              headline="psnr", description="x4 super-resolution: PSNR/SSIM on the Y channel")
register_task("segmentation", _training("segmentation"), defaults=dict(_TRAIN_DEFAULTS),
              headline="quality", description="road segmentation: completeness, correctness, quality")

__all__ = ["ALIASES", "NON_RESULT_SETTINGS", "TASKS", "SharedPass", "TaskAdapter", "TaskError", "canonical_task", "get_task",
           "import_plugins", "register_task"]
