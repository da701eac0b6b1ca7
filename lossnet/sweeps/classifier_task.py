"""The ``classifier`` sweep task: train one Kumar et al. classifier per run and record its
evaluations along training (importing this module registers the task and the study's networks).

A run's ``arch`` is the network to train (a :mod:`lossnet.networks.classifiers` name), its
``weights`` must be ``"random"`` (trained from scratch), its ``points`` the ``kumar`` set
(``points = "combined:kumar"``) and its ``distance`` the headline perceptual function (the
other Kumar functions are scored from the same pass). Settings:

- ``config``: a :class:`~lossnet.tasks.classifier.ClassifierConfig` preset (``mini``,
  ``paper``, ``kumar-resnet``, ...); ``overrides``: config fields (``{ weight_decay = 1e-5 }``);
- ``data``: ``builtin`` or ``imagenet64:DIR``; ``device``, ``amp``.

The metrics hold the headline numbers (final ``top1`` and ``ps``, ``best_ps`` with its step
and accuracy: "early stopping for PS") and ``evaluations``: one row per evaluated checkpoint
(step, epoch, top-1/top-5, PS of each function, per-subset and layer-wise PS, distortion
sensitivity, and entropy / spatial-frequency results when configured). The results store
writes these as rows of its evaluations table (run id + step) in the transaction that records
the run finished; the report draws curves, best checkpoints and the Pareto frontier from them.

A grid's ``settings`` (training-knob sweeps: ``settings = [{}, { weight_decay = 1e-5 }]``) are
merged over ``overrides``; their keys must be fields of the ClassifierConfig
(:func:`settings_fields`). The run's work folder keeps the checkpoints, so
a killed run resumes where it stopped.

Example:
    >>> from lossnet.sweeps.tasks import TASKS
    >>> TASKS["classifier"].headline
    'best_ps'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..networks.classifiers import (
    ensure_registered,
    is_classifier_name,
    register_catalogue,
)
from .spec import register_settings_fields
from .tasks import TaskError, _work_dir, register_task

DEFAULTS = {"config": "mini", "data": "builtin", "overrides": {}, "device": "auto", "amp": False}
# Per-evaluation keys kept in the store (the bulky checkpoint paths stay in the run folder).
ROW_KEYS = ("step", "epoch", "lr", "top1", "top5", "train_loss", "ps", "ps_subsets", "layerwise", "sensitivity",
            "entropy", "frequency", "synthetic")


def run_classifier(run: Mapping[str, Any], work_dir: Path | None) -> dict:
    """Train ``run["arch"]`` with the run's settings and return its metrics and evaluations."""
    from ..distances.functional import canonical_distance
    from ..tasks.classifier import train_classifier
    from ..tasks.run import RunOptions

    arch = run.get("arch")
    if not is_classifier_name(arch):
        raise TaskError(f"the classifier task trains Kumar et al. networks (kumar_resnet..., kumar_vit..., "
                        f"kumar_efficientnet...), not {arch!r}.")
    if run.get("weights") not in (None, "random"):
        raise TaskError(f"the classifier task trains from scratch: set weights = [\"random\"], not {run['weights']!r}.")
    s = dict(run.get("settings", {}))
    overrides = dict(s.get("overrides") or {})
    head = canonical_distance(run.get("distance") or "spatial")
    distances = list(overrides.get("ps_distances") or ["spatial", "mean_pool", "style"])
    overrides["ps_distances"] = [head] + [d for d in distances if d != head]
    data = str(s.get("data", "builtin"))
    if data.startswith("imagenet64:"):
        data = "imagenet64:" + str(Path(data[len("imagenet64:"):]).expanduser())
    options = RunOptions(out_dir=_work_dir(work_dir), seed=int(run.get("seed", 0)), device=s.get("device", "auto"),
                         amp=s.get("amp", False), progress=False)
    result = train_classifier(ensure_registered(arch), s.get("config", "mini"), data, options, overrides)
    metrics = dict(result["metrics"])
    metrics.pop("best_ps_checkpoint", None)
    metrics["arch_trained"] = result["arch"]
    metrics["synthetic"] = result["synthetic_ps"]
    metrics["evaluations"] = [{k: row[k] for k in ROW_KEYS if k in row} for row in result["evaluations"]]
    return metrics


def settings_fields() -> list[str]:
    """The keys a grid's ``settings`` (and ``overrides``) may set: the fields of
    :class:`~lossnet.tasks.classifier.ClassifierConfig` but those the classifier does not use.

    Example:
        >>> "weight_decay" in settings_fields(), "epochs" in settings_fields()
        (True, False)
    """
    import dataclasses

    from ..tasks.classifier import UNUSED_FIELDS, ClassifierConfig

    return [f.name for f in dataclasses.fields(ClassifierConfig) if f.name not in UNUSED_FIELDS]


def check_settings(values: Mapping[str, Any]) -> None:
    """Clear errors for override values of the wrong type or an unknown ``crop``.

    Example:
        >>> check_settings({"crop": "centre"})
        Traceback (most recent call last):
        ...
        lossnet.errors.LossnetError: crop 'centre' is not one of pad, resized, center, none.
    """
    from ..data.imagenet64 import CROPS
    from ..errors import LossnetError
    from ..tasks.classifier import ClassifierConfig

    cfg = ClassifierConfig().with_overrides(dict(values))
    if cfg.crop not in CROPS:
        raise LossnetError(f"crop {cfg.crop!r} is not one of {', '.join(CROPS)}.")


register_catalogue()
register_settings_fields("classifier", settings_fields, check_settings)
register_task("classifier", run_classifier, defaults=DEFAULTS, headline="best_ps",
              description="train a Kumar et al. ImageNet-64 classifier; PS along training (best-PS checkpoint)")

__all__ = ["DEFAULTS", "check_settings", "run_classifier", "settings_fields"]
