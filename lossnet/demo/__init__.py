"""``lossnet demo``: which loss network should I use? Answered on built-in data, in one report.

Steps (:data:`DEMO_STEPS`): the loss networks at hand as a perceptual metric on the built-in
2AFC set (:mod:`.similarity`), as training losses of three mini tasks (:mod:`.tasks`),
pictures of what each loss produces (:mod:`.pictures`), the study-style report of those runs
and the classifier study when present (:mod:`.sweep`); :func:`run_demo` runs them and writes
``report.html`` and ``report.json`` (:mod:`.report`).

Example:
    >>> result = run_demo("lossnet-out/demo", quick=True)  # doctest: +SKIP
    >>> result["html"]  # doctest: +SKIP
    'lossnet-out/demo/report.html'
"""
from .main import DEMO_STEPS, DemoSettings, run_demo

__all__ = ["DEMO_STEPS", "DemoSettings", "run_demo"]
