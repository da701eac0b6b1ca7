"""Sweeps: grids from TOML specs, a results store that never loses a run, executors (in-process,
worker processes, Ray).

Example:
    >>> from lossnet.sweeps import run_sweep, sweep_status
    >>> run_sweep("mini", "runs/mini.sqlite")            # doctest: +SKIP
    >>> sweep_status("mini", "runs/mini.sqlite")["finished"]  # doctest: +SKIP
"""
from .runner import run_sweep, sweep_status
from .spec import RunConfig, SpecError, expand, list_specs, load_spec
from .store import ResultsStore

__all__ = ["ResultsStore", "RunConfig", "SpecError", "expand", "list_specs", "load_spec", "run_sweep", "sweep_status"]
