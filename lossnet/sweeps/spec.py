"""Sweep specs: a TOML grid of architectures x extraction points x distances x tasks x seeds.

A spec names one or more grid blocks; :func:`expand` turns it into :class:`RunConfig`\\ s in a
deterministic order, each with a stable id: a short hash of its resolved config (canonical
JSON of task, network, weights, the SHA-256 of a weights file's contents, points, distance,
seed, the torch thread count and the task's settings with their defaults filled in;
resources and device are left out since they do not change results). The same run in two
specs has the same id, so one results store serves both; a weights file whose contents
changed makes new runs.

Spec format (every key but ``grid`` is optional)::

    name = "my-sweep"
    description = "what it measures"
    imports = []                       # modules that register extra tasks (run in every worker)
    threads = 1                        # torch intra-op threads of every run (default 1): part of
                                       # what a run is, since the thread count changes the last
                                       # bits of CPU results; every executor sets it the same way

    [[grid]]                           # or [grid]; several [[grid]] blocks are united
    architectures = ["vgg16", "resnet18"]
    weights = ["imagenet", "random"]   # "imagenet", "imagenet:TAG", "random" or a state-dict path
    points = "pihlgren"                # a layer-set name: each of its points is its own run;
                                       # or explicit points ["features.3", "layer1"];
                                       # "combined" (all points of layer_set in ONE run),
                                       # "combined:kumar", or a list of lists [["p1", "p2"]]
    layer_set = "pihlgren"             # the set "combined" uses (default: pihlgren, else the arch's default)
    distances = ["spatial"]
    tasks = ["similarity", "superres"]
    seeds = [0]
    baselines = ["l2"]                 # pixel baselines (no network), for the same tasks and seeds
    settings = [{}, { epochs = 2 }]    # training-config overrides: each table is its own run (an
                                       # axis of the grid; {} = the config as it is). Merged over
                                       # the task's `overrides` setting, so they are part of each
                                       # run's id; only for tasks with an `overrides` setting
                                       # (training tasks); keys are checked against the task's
                                       # config fields (e.g. ClassifierConfig's).

    [tasks.similarity]                 # per-task settings (see lossnet.sweeps.tasks.TASKS)
    data = "builtin"                   # or a BAPPS folder
    n_per_subset = 100

    [tasks.superres]
    config = "mini"
    distances = ["mse"]                # a task may override the grid's distances, weights, seeds
    threads = 2                        # or threads
    overrides = { epochs = 1 }
    resources = { num_cpus = 2 }

    [resources]                        # what each run asks a Ray cluster for
    num_cpus = 1
    num_gpus = 0

``SPEC`` may be a file path or the name of a ready-made spec (``pihlgren``,
``kumar-out-of-the-box``, ``mini``; see :func:`list_specs`).

Example:
    >>> spec = load_spec("mini")
    >>> runs = expand(spec)
    >>> runs[0].id == expand(load_spec("mini"))[0].id
    True
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..errors import LossnetError, unknown_name
from .tasks import NON_RESULT_SETTINGS, canonical_task, get_task, import_plugins

SPECS_DIR = Path(__file__).parent / "specs"
TOP_KEYS = ("name", "description", "imports", "threads", "grid", "tasks", "resources", "defaults")
GRID_KEYS = ("architectures", "weights", "points", "layer_set", "distances", "tasks", "seeds", "baselines",
             "settings")
OVERRIDES_SETTING = "overrides"  # the task setting that a grid's `settings` are merged into
AXIS_OVERRIDES = ("distances", "weights", "seeds")  # grid axes a task's settings may override
RUN_KEYS = ("threads",)  # run settings (not the task adapter's) a task's table may set
DEFAULT_THREADS = 1
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
DEFAULT_RESOURCES = {"num_cpus": 1, "num_gpus": 0}
ID_LENGTH = 12


class SpecError(LossnetError):
    """A sweep spec is malformed: unknown keys, names, or an empty grid."""


@dataclass
class SweepSpec:
    """A parsed spec (see the module docstring for the format).

    Attributes:
        name: the spec's name.
        grids: the grid blocks (dicts with the keys of ``GRID_KEYS``).
        tasks: per-task settings as written (defaults are filled in by :func:`expand`).
        resources: default resources per run.
        imports: modules that register extra tasks.
        description: free text.
        source: the file it came from (or None).
        threads: torch intra-op threads of each run (a task's ``threads`` overrides it).
    """

    name: str
    grids: list[dict[str, Any]]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    imports: list[str] = field(default_factory=list)
    description: str = ""
    source: str | None = None
    threads: int = DEFAULT_THREADS

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "imports": list(self.imports),
                "threads": self.threads, "grid": copy.deepcopy(self.grids), "tasks": copy.deepcopy(self.tasks),
                "resources": dict(self.resources), "source": self.source}


@dataclass
class RunConfig:
    """One run of a sweep.

    ``identity()`` (everything that determines the results) is hashed into ``id``: with the
    task, network, points, distance, seed and settings also ``weights_sha256`` (the contents
    of a weights file; None for ``imagenet``/``random``) and ``threads`` (torch intra-op
    threads, set by every executor before the run). ``label`` (the point's name,
    ``combined`` or ``pixel``), ``slot`` (its position among the arch's points, for tables),
    ``layer_set`` and ``resources`` are metadata.

    Example:
        >>> rc = RunConfig("similarity", "vgg16", "imagenet", ("features.3",), "spatial", 0, {"data": "builtin"})
        >>> len(rc.id), rc.threads
        (12, 1)
        >>> rc.id == RunConfig("similarity", "vgg16", "imagenet", ("features.3",), "spatial", 0,
        ...                    {"data": "builtin"}, threads=2).id
        False
    """

    task: str
    arch: str | None
    weights: str | None
    points: tuple[str, ...] | None
    distance: str
    seed: int
    settings: dict[str, Any]
    label: str = ""
    slot: int = 0
    layer_set: str | None = None
    resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    threads: int = DEFAULT_THREADS
    weights_sha256: str | None = None

    def identity(self) -> dict[str, Any]:
        """The resolved config that the id hashes (settings that do not change results left out)."""
        return {
            "task": self.task, "arch": self.arch, "weights": self.weights, "weights_sha256": self.weights_sha256,
            "points": list(self.points) if self.points is not None else None,
            "distance": self.distance, "seed": int(self.seed), "threads": int(self.threads),
            "settings": {k: v for k, v in sorted(self.settings.items()) if k not in NON_RESULT_SETTINGS},
        }

    @property
    def id(self) -> str:
        return run_id(self.identity())

    @property
    def network_label(self) -> str:
        """``vgg16``, ``vgg16 (random)`` or ``pixel``: how tables name the network."""
        if self.arch is None:
            return "pixel"
        return self.arch if self.weights in (None, "imagenet") else f"{self.arch} ({self.weights})"

    def to_dict(self) -> dict[str, Any]:
        """The run as a JSON-ready dict (``id`` included); :meth:`from_dict` reads it back."""
        return {"id": self.id, **self.identity(), "settings": dict(self.settings), "label": self.label,
                "slot": self.slot, "layer_set": self.layer_set, "resources": dict(self.resources)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        return cls(task=d["task"], arch=d.get("arch"), weights=d.get("weights"),
                   points=tuple(d["points"]) if d.get("points") is not None else None,
                   distance=d["distance"], seed=int(d.get("seed", 0)), settings=dict(d.get("settings", {})),
                   label=d.get("label", ""), slot=int(d.get("slot", 0)), layer_set=d.get("layer_set"),
                   resources=dict(d.get("resources") or DEFAULT_RESOURCES),
                   threads=int(d.get("threads", DEFAULT_THREADS)), weights_sha256=d.get("weights_sha256"))


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ASCII: the same config always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_id(identity: Mapping[str, Any]) -> str:
    """A short (12 hex digits) SHA-256 of the canonical JSON of a resolved run config."""
    return hashlib.sha256(canonical_json(identity).encode("ascii")).hexdigest()[:ID_LENGTH]


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's contents, cached per process by (path, size, modification time):
    expanding a spec again, or checking a run's weights before it starts, reads the file once.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        ...     _ = f.write(b"abc"); f.flush()
        ...     file_sha256(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    return _sha256(real, st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------------------------
# Loading


def list_specs() -> list[str]:
    """The names of the ready-made specs.

    Example:
        >>> "mini" in list_specs()
        True
    """
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def spec_path(spec: str | os.PathLike) -> Path:
    """The file of ``spec``: an existing path, or a ready-made spec's name."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    named = SPECS_DIR / f"{spec}.toml"
    if isinstance(spec, str) and named.is_file():
        return named
    raise SpecError(f"no sweep spec {str(spec)!r}: not a file, and not a ready-made spec "
                    f"(those are: {', '.join(list_specs())}).")


def load_spec(spec: "str | os.PathLike | SweepSpec | Mapping[str, Any]",
              overrides: Mapping[str, Any] | Sequence[str] | None = None) -> SweepSpec:
    """Parse a spec from a path, a ready-made name, a TOML dict, or pass a :class:`SweepSpec` through.

    ``overrides`` change task settings: ``{"similarity.data": "/data/bapps"}`` or
    ``["similarity.data=/data/bapps"]`` (values are parsed as TOML when they parse).

    Example:
        >>> load_spec("mini", ["similarity.n_per_subset=20"]).tasks["similarity"]["n_per_subset"]
        20
    """
    if isinstance(spec, SweepSpec):
        parsed = copy.deepcopy(spec)
    elif isinstance(spec, Mapping):
        parsed = parse_spec(spec)
    else:
        path = spec_path(spec)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"sweep spec {str(path)!r} is not valid TOML: {exc}") from exc
        parsed = parse_spec(data, default_name=path.stem, source=str(path))
    if overrides:
        apply_overrides(parsed, overrides)
    return parsed


def _check_keys(where: str, data: Mapping[str, Any], valid: Sequence[str]) -> None:
    for key in data:
        if key not in valid:
            raise unknown_name(f"key in {where}", key, valid)


def _as_list(value: Any, what: str, kind: type | tuple[type, ...] = str) -> list:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool) and kind is not bool:
            raise SpecError(f"{what} must be a list of {getattr(kind, '__name__', kind)}s, got {value!r}.")
    return list(items)


@dataclass(frozen=True)
class SettingsFields:
    """What a task's training overrides (a grid's ``settings``) may set.

    Attributes:
        fields: returns the valid keys (e.g. the fields of the task's config dataclass).
        check: optional; raises a :class:`~lossnet.errors.LossnetError` for values that cannot work.
    """

    fields: Callable[[], Sequence[str]]
    check: Callable[[Mapping[str, Any]], Any] | None = None


SETTINGS_FIELDS: dict[str, SettingsFields] = {}


def register_settings_fields(task: str, fields: Callable[[], Sequence[str]],
                             check: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
    """Declare the keys a grid's ``settings`` may give ``task`` (and optionally a value check).

    Example:
        >>> register_settings_fields("noop", lambda: ["sleep"])
        >>> settings_fields("noop").fields()
        ['sleep']
        >>> del SETTINGS_FIELDS["noop"]
    """
    SETTINGS_FIELDS[canonical_task(task)] = SettingsFields(fields, check)


def settings_fields(task: str) -> SettingsFields | None:
    """The :class:`SettingsFields` of ``task``: registered ones, else the config dataclass of a
    :mod:`lossnet.tasks` trainer (autoencoder, superres, segmentation); None when unknown."""
    task = canonical_task(task)
    if task in SETTINGS_FIELDS:
        return SETTINGS_FIELDS[task]
    import dataclasses

    from ..tasks import CONFIGS

    config = CONFIGS.get(task)
    if config is None:
        return None
    return SettingsFields(lambda: [f.name for f in dataclasses.fields(config)],
                          lambda values: config().with_overrides(values))


def _parse_settings(value: Any, where: str, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """A grid's ``settings`` as a list of override tables, every key and value checked for
    every task of the block."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SpecError(f"'settings' of {where} is empty: give at least one table ({{}} = the config as it is).")
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise SpecError(f"'settings' of {where} must be a table or a list of tables of training-config "
                            f"overrides (e.g. settings = [{{}}, {{ weight_decay = 1e-5 }}]), got {item!r}.")
        out.append(dict(item))
    for task in tasks:
        adapter = get_task(task)
        if OVERRIDES_SETTING not in adapter.defaults:
            raise SpecError(f"{where} has 'settings', but task {task} takes no training overrides: 'settings' is for "
                            "training tasks (those with an 'overrides' setting, e.g. classifier, superres).")
        known = settings_fields(task)
        if known is None:
            continue  # a plugin task without declared fields: its trainer checks the overrides when it runs
        valid = list(known.fields())
        for item in out:
            for key in item:
                if key not in valid:
                    raise unknown_name(f"{task} config field", key, valid,
                                       hint=f"(In 'settings' of {where}: each key is a field of the {task} "
                                            "training config.)")
            if known.check is not None:
                try:
                    known.check(item)
                except LossnetError as exc:
                    raise SpecError(f"'settings' {item!r} of {where} cannot be used for task {task}: {exc}") from None
    return out


def parse_spec(data: Mapping[str, Any], default_name: str = "sweep", source: str | None = None) -> SweepSpec:
    """Check a TOML dict against the spec format and return a :class:`SweepSpec`."""
    _check_keys("the sweep spec", data, TOP_KEYS)
    imports = _as_list(data.get("imports", []), "imports")
    import_plugins(imports)
    grids_raw = data.get("grid")
    if grids_raw is None:
        raise SpecError("the sweep spec has no [grid] (or [[grid]]) table: nothing to run.")
    grids_raw = [grids_raw] if isinstance(grids_raw, Mapping) else grids_raw
    if not isinstance(grids_raw, list) or not grids_raw:
        raise SpecError("'grid' must be a table or a non-empty array of tables.")
    defaults = dict(data.get("defaults", {}))
    _check_keys("[defaults]", defaults, GRID_KEYS)
    grids = []
    for i, g in enumerate(grids_raw):
        if not isinstance(g, Mapping):
            raise SpecError(f"grid block {i + 1} must be a table, got {g!r}.")
        _check_keys(f"grid block {i + 1}", g, GRID_KEYS)
        grid = {**defaults, **dict(g)}
        if "settings" in grid:
            tasks_of_block = [canonical_task(t) for t in _as_list(grid.get("tasks", []), f"tasks of grid block {i + 1}")]
            grid["settings"] = _parse_settings(grid["settings"], f"grid block {i + 1}", tasks_of_block)
        grids.append(grid)
    tasks = {}
    for name, settings in dict(data.get("tasks", {})).items():
        if not isinstance(settings, Mapping):
            raise SpecError(f"[tasks.{name}] must be a table of settings, got {settings!r}.")
        tasks[canonical_task(name)] = dict(settings)
    for name, settings in tasks.items():
        adapter = get_task(name)
        valid = list(adapter.defaults) + list(AXIS_OVERRIDES) + list(RUN_KEYS) + ["resources"]
        _check_keys(f"[tasks.{name}]", settings, valid)
        if "threads" in settings:
            _check_threads(settings["threads"], f"[tasks.{name}] threads")
    resources = {**DEFAULT_RESOURCES, **dict(data.get("resources", {}))}
    _check_keys("[resources]", resources, RESOURCE_KEYS)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise SpecError(f"'name' must be a non-empty string, got {name!r}.")
    threads = _check_threads(data.get("threads", DEFAULT_THREADS), "'threads'")
    return SweepSpec(name=name, grids=grids, tasks=tasks, resources=resources, imports=imports,
                     description=str(data.get("description", "")), source=source, threads=threads)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(spec: SweepSpec, overrides: Mapping[str, Any] | Sequence[str]) -> SweepSpec:
    """Set task settings in place from ``{"task.key": value}`` or ``["task.key=value"]``."""
    if not isinstance(overrides, Mapping):
        parsed = {}
        for item in overrides:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise SpecError(f"--set expects TASK.KEY=VALUE, got {item!r} (e.g. similarity.data=/data/bapps).")
            parsed[key.strip()] = _parse_value(value.strip())
        overrides = parsed
    for key, value in overrides.items():
        task, dot, setting = key.partition(".")
        if not dot or not setting:
            raise SpecError(f"override {key!r} must be TASK.KEY (e.g. similarity.data).")
        task = canonical_task(task)
        adapter = get_task(task)
        valid = list(adapter.defaults) + list(AXIS_OVERRIDES) + list(RUN_KEYS)
        if setting not in valid:
            raise unknown_name(f"setting of task {task}", setting, valid)
        if setting == "threads":
            _check_threads(value, f"--set {key}")
        spec.tasks.setdefault(task, {})[setting] = value
    return spec


# ----------------------------------------------------------------------------------------------
# Expansion


def _check_weights(weights: str) -> tuple[str, str | None]:
    """``(weights, sha256 of the file or None)``."""
    if not isinstance(weights, str) or not weights:
        raise SpecError(f"weights must be strings ('imagenet', 'imagenet:TAG', 'random' or a path), got {weights!r}.")
    if weights in ("imagenet", "random") or weights.startswith("imagenet:"):
        return weights, None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SpecError(f"weights {weights!r} is neither 'imagenet', 'imagenet:TAG', 'random' nor an existing "
                        "state-dict file.")
    try:
        return weights, file_sha256(path)
    except OSError as exc:
        raise SpecError(f"cannot read the weights file {weights!r} ({exc}): check its permissions.") from exc


def _check_threads(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where} must be a whole number of torch threads, at least 1 (e.g. threads = 1), "
                        f"got {value!r}.")
    return int(value)


class _LazySets(dict):
    """An architecture's layer sets: the registry's static sets at once; tracing the model
    (for ``all`` and derived sets) only when such a set is asked for."""

    def __init__(self, arch: str, arch_spec: Any) -> None:
        from ..networks.registry import LAYER_SET_NAMES

        super().__init__({k: list(v) for k, v in arch_spec.layer_sets.items()})
        self.arch = arch
        self.full = False
        self.names = list(dict.fromkeys([*dict.keys(self), *LAYER_SET_NAMES]))

    def _load(self) -> None:
        if not self.full:
            from ..networks.extraction import layer_sets

            self.full = True
            self.update(layer_sets(self.arch))
            self.names = list(dict.keys(self))

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        if key in self.names:
            self._load()
        return dict.__contains__(self, key)

    def __getitem__(self, key: str) -> list[str]:
        if not dict.__contains__(self, key):
            self._load()
        return dict.__getitem__(self, key)

    def __iter__(self):
        self._load()
        return dict.__iter__(self)


def _point_groups(arch: str, arch_spec: Any, points: Any,
                  layer_set: str | None) -> list[tuple[tuple[str, ...], str, int, str | None]]:
    """``(points, label, slot, layer_set)`` for each run of ``arch`` (``arch_spec``: its resolved ArchSpec)."""
    from ..networks.extraction import resolve_layers

    sets = _LazySets(arch, arch_spec)
    items = points if isinstance(points, list) else [points]
    if not items:
        raise SpecError(f"'points' is empty for {arch}: name a layer set ({', '.join(sets)}), points, or 'combined'.")
    groups: list[tuple[tuple[str, ...], str, int, str | None]] = []
    explicit = 0
    for item in items:
        if isinstance(item, list):
            resolved = tuple(resolve_layers(arch, [str(p) for p in item]))
            groups.append((resolved, "+".join(resolved), 0, None))
        elif not isinstance(item, str):
            raise SpecError(f"'points' items must be strings or lists of strings, got {item!r}.")
        elif item == "combined" or item.startswith("combined:"):
            set_name = item.partition(":")[2] or layer_set or ("pihlgren" if "pihlgren" in sets else
                                                              arch_spec.default_layers)
            if set_name not in sets:
                raise unknown_name(f"layer set of {arch}", set_name, list(sets))
            groups.append((tuple(sets[set_name]), "combined", 0, set_name))
        elif item in sets:
            groups.extend(((p,), p, i + 1, item) for i, p in enumerate(sets[item]))
        else:
            try:
                (point,) = resolve_layers(arch, [item])
            except LossnetError as exc:
                raise SpecError(f"{exc} (In 'points': a layer-set name, an extraction point, 'combined' or "
                                f"'combined:<set>'; layer sets of {arch}: {', '.join(sets)}.)") from None
            explicit += 1
            groups.append(((point,), point, explicit, None))
    return groups


def _task_axes(grid: Mapping[str, Any], settings: Mapping[str, Any]
               ) -> tuple[list[str], list[tuple[str, str | None]], list[int]]:
    from ..distances.functional import canonical_distance

    distances = [canonical_distance(d) for d in _as_list(settings.get("distances", grid.get("distances", ["spatial"])),
                                                         "distances")]
    weights = [_check_weights(w) for w in _as_list(settings.get("weights", grid.get("weights", ["imagenet"])),
                                                   "weights")]
    seeds = _as_list(settings.get("seeds", grid.get("seeds", [0])), "seeds", int)
    return distances, weights, [int(s) for s in seeds]


def resolved_settings(spec: SweepSpec, task: str, adapter: Any = None) -> dict[str, Any]:
    """The task's settings: its registry defaults, overridden by the spec (``adapter``: the
    task's resolved adapter, looked up when not given)."""
    adapter = adapter if adapter is not None else get_task(task)
    given = {k: v for k, v in spec.tasks.get(task, {}).items()
             if k not in AXIS_OVERRIDES and k not in RUN_KEYS and k != "resources"}
    out = copy.deepcopy(adapter.defaults)
    out.update(copy.deepcopy(given))
    return out


def expand(spec: "SweepSpec | str | os.PathLike | Mapping[str, Any]") -> list[RunConfig]:
    """Every run of ``spec``, in a deterministic order, duplicates (same id) removed.

    Order: grid blocks as written; within a block tasks, then the block's ``settings`` tables
    (as written), architectures, weights, points (shallow to deep), distances, seeds; then the
    block's pixel baselines. Each name
    (task, architecture, distance, weights file) is resolved once.

    Example:
        >>> [r.label for r in expand("mini")][:3]  # doctest: +SKIP
        ['bn1', 'blocks.0', 'blocks.3']
    """
    from ..distances.functional import PIXEL_DISTANCES, canonical_distance
    from ..networks.registry import get_spec

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    runs: list[RunConfig] = []
    seen: set[str] = set()
    arch_specs: dict[str, Any] = {}

    def add(rc: RunConfig) -> None:
        if rc.id not in seen:
            seen.add(rc.id)
            runs.append(rc)

    for i, grid in enumerate(spec.grids):
        where = f"grid block {i + 1}"
        tasks = {canonical_task(t): None for t in _as_list(grid.get("tasks", []), f"tasks of {where}")}
        tasks = {t: get_task(t) for t in tasks}
        archs = _as_list(grid.get("architectures", []), f"architectures of {where}")
        baselines = [canonical_distance(b) for b in _as_list(grid.get("baselines", []), f"baselines of {where}")]
        if not tasks:
            raise SpecError(f"{where} names no tasks: add e.g. tasks = [\"similarity\"].")
        if not archs and not baselines and all(a.network for a in tasks.values()):
            raise SpecError(f"{where} names no architectures and no baselines: the grid is empty.")
        for b in baselines:
            if b not in PIXEL_DISTANCES:
                raise unknown_name("pixel baseline", b, list(PIXEL_DISTANCES))
        for arch in archs:
            if arch not in arch_specs:  # unknown architectures: an error listing the valid names
                arch_specs[arch] = get_spec(arch)
        points = grid.get("points", "pihlgren")
        layer_set = grid.get("layer_set")
        groups: dict[str, list] = {}  # arch -> its point groups, resolved once per block
        grid_settings = grid.get("settings") or [{}]
        for task, adapter in tasks.items():
            task_spec = spec.tasks.get(task, {})
            for values in grid_settings:
                _expand_task(spec, task, adapter, task_spec, grid, where, archs, arch_specs, points, layer_set,
                             groups, baselines, _with_overrides(resolved_settings(spec, task, adapter), values), add)
    if not runs:
        raise SpecError(f"sweep spec {spec.name!r} expands to no runs: the grid is empty.")
    return runs


def _with_overrides(settings: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with a grid's override table merged over its ``overrides`` (unchanged when empty)."""
    if not values:
        return settings
    out = dict(settings)
    out[OVERRIDES_SETTING] = {**dict(settings.get(OVERRIDES_SETTING) or {}), **copy.deepcopy(dict(values))}
    return out


def _expand_task(spec: SweepSpec, task: str, adapter: Any, task_spec: Mapping[str, Any], grid: Mapping[str, Any],
                 where: str, archs: list[str], arch_specs: dict[str, Any], points: Any, layer_set: str | None,
                 groups: dict[str, list], baselines: list[str], settings: dict[str, Any], add: Callable) -> None:
    """The runs of one task of one grid block with one table of its settings."""
    from ..distances.functional import PIXEL_DISTANCES

    resources = {**spec.resources, **dict(task_spec.get("resources", {}))}
    _check_keys(f"[tasks.{task}.resources]", resources, RESOURCE_KEYS)
    threads = _check_threads(task_spec.get("threads", spec.threads), f"[tasks.{task}] threads")
    distances, weights, seeds = _task_axes(grid, task_spec)
    if not seeds:
        raise SpecError(f"{where}: no seeds for task {task}.")
    if not adapter.network:  # tasks that ignore the network: one run per seed
        for seed in seeds:
            add(RunConfig(task, None, None, None, distances[0] if distances else "l2", seed,
                          copy.deepcopy(settings), "none", 0, None, dict(resources), threads))
        return
    feature_distances = [d for d in distances if d not in PIXEL_DISTANCES]
    if archs and not feature_distances:
        raise SpecError(f"{where}: task {task} has no feature distance for its networks "
                        f"(got {distances}); pixel distances go in 'baselines'.")
    for arch in archs:
        if arch not in groups:
            groups[arch] = _point_groups(arch, arch_specs[arch], points, layer_set)
        for w, sha in weights:
            for pts, label, slot, set_name in groups[arch]:
                for d in feature_distances:
                    for seed in seeds:
                        add(RunConfig(task, arch, w, pts, d, seed, copy.deepcopy(settings), label, slot,
                                      set_name, dict(resources), threads, sha))
    for b in baselines:
        for seed in seeds:
            add(RunConfig(task, None, None, None, b, seed, copy.deepcopy(settings), "pixel", 0, None,
                          dict(resources), threads))


__all__ = ["DEFAULT_THREADS", "RunConfig", "SETTINGS_FIELDS", "SettingsFields", "SpecError", "SweepSpec",
           "apply_overrides", "canonical_json", "expand", "file_sha256", "list_specs", "load_spec", "parse_spec",
           "register_settings_fields", "resolved_settings", "run_id", "settings_fields", "spec_path"]
