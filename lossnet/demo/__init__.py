"""``lossnet demo``: the main job on built-in data, in one place.

Steps: graded distortions of real photos (:mod:`.distortions`), the built-in 2AFC table
(:mod:`.similarity`), mini training runs (:mod:`.tasks`), the mini sweep and its report
(:mod:`.sweep`); :func:`run_demo` runs them and writes ``summary.json``.

Example:
    >>> summary = run_demo("lossnet-out/demo", quick=True)  # doctest: +SKIP
"""
from .main import DEMO_STEPS, run_demo

__all__ = ["DEMO_STEPS", "run_demo"]
