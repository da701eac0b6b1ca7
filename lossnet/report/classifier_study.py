"""The report of a Kumar et al. classifier study, drawn from the results store.

From the finished ``classifier`` runs of a spec and their rows in the store's evaluations
table (one per evaluated checkpoint: every curve, final point, best-PS checkpoint and the
Pareto frontier come from those rows; seeds averaged, standard errors shown):

- the networks table: final top-1 and PS of every perceptual function, the best-PS checkpoint
  (its step and accuracy: early stopping for PS), and the same per run;
- PS against each training knob a sweep varied (weight decay, label smoothing, dropout,
  train steps, central crop, width, depth; Figs. 5-9);
- Fig. 1: accuracy vs PS of every network with the global Pareto frontier;
- PS (each function), top-1 and distortion sensitivity along training (Figs. 11, 12), and the
  accuracy/PS trajectory of every network (Fig. 5);
- Table 1: per default network, the PS gain of each knob varied around it in the sweep
  (width, depth, classes, skip connections, training overrides) and of early stopping
  ("train steps": the best checkpoint along training), and the best PS;
- layer-wise PS at the final and best checkpoints (Fig. 13), PS vs number of classes
  (Fig. 14), activation entropy along training (Fig. 15) and normalised accuracy vs low-pass
  filter size (Fig. 17) when the runs measured them.

Markdown, HTML, JSON and PNG figures, like the sweep reports (:mod:`lossnet.report.study`).

Example:
    >>> build_classifier_report("kumar-mini", "out/results.sqlite", "out/report")   # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..networks import classifiers as nets
from ..utils.jsonio import write_json
from . import tables
from .study import to_html, to_markdown

TASK = "classifier"
# Config fields that do not change what is trained (not knobs of the sweep).
NOT_KNOBS = frozenset({"eval_points", "eval_first", "eval_at_init", "eval_steps", "eval_batch", "val_limit", "ps_data",
                       "ps_n_per_subset", "ps_distances", "eval_entropy", "eval_lowpass", "checkpoint_every",
                       "num_workers", "channels_last"})
KNOB_LABELS = {"width": "Width", "depth": "Depth", "classes": "Classes", "skip": "Skip connections",
               "weight_decay": "Weight decay", "crop": "Central crop", "label_smoothing": "Label smoothing",
               "dropout": "Dropout", "train_steps": "Train steps"}
FAMILY_COLOURS = {nets.FAMILY_RESNET: "#1f77b4", nets.FAMILY_EFFICIENTNET: "#2ca02c", nets.FAMILY_VIT: "#d62728"}


def _mean_sem(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = float(np.mean(vals))
    return mean, (float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else None)


def knobs(arch: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sweep knobs of a trained network: its model group and the values that can vary.

    Example:
        >>> knobs("kumar_resnet50_w0.5_c100")
        {'model': 'ResNet-50', 'width': 0.5, 'skip': True, 'classes': 100}
        >>> knobs("kumar_vit_p8_w96_d12_h12_m384")["model"], knobs("kumar_vit_b8")["width"]
        ('ViT/8', 768)
    """
    kw = nets.parse_name(arch).build_kwargs
    family = nets.parse_name(arch).family
    if family == nets.FAMILY_RESNET:
        out: dict[str, Any] = {"model": f"ResNet-{kw['depth']}", "width": kw["width"], "skip": kw["skip"]}
    elif family == nets.FAMILY_VIT:
        out = {"model": f"ViT/{kw['patch']}", "width": kw["hidden"], "depth": kw["depth"]}
    else:
        out = {"model": f"EfficientNet-B{kw['variant']}"}
    out["classes"] = kw["num_classes"]
    for key, value in sorted((overrides or {}).items()):
        if key not in NOT_KNOBS:
            out[key] = value
    return out


def _default_value(knob: str, model: str) -> Any:
    if knob == "width":
        return 1.0 if model.startswith("ResNet") else (768 if model == "ViT/8" else 1024)
    if knob == "depth":
        return 12 if model == "ViT/8" else 24
    return {"skip": True, "classes": 1000}.get(knob)


def display_name(arch: str, overrides: Mapping[str, Any] | None = None) -> str:
    """A short readable name: ``ResNet-6 w0.25 no-skip``, ``ViT-B/8``, ``ViT/8 d768 L2 ...``."""
    parsed = nets.parse_name(arch)
    kw = parsed.build_kwargs
    if parsed.family == nets.FAMILY_RESNET:
        name = f"ResNet-{kw['depth']}" + (f" w{kw['width']:g}" if kw["width"] != 1 else "") + \
            ("" if kw["skip"] else " no-skip")
    elif parsed.family == nets.FAMILY_VIT:
        preset = next((k for k, v in nets.VIT_PRESETS.items()
                       if v == {x: kw[x] for x in ("patch", "hidden", "depth", "heads", "mlp")}), None)
        name = f"ViT-{preset[0].upper()}/{preset[1:]}" if preset else \
            f"ViT/{kw['patch']} d{kw['hidden']} L{kw['depth']}"
    else:
        name = f"EfficientNet-B{kw['variant']}"
    if kw["num_classes"] != 1000:
        name += f" c{kw['num_classes']}"
    extra = {k: v for k, v in sorted((overrides or {}).items()) if k not in NOT_KNOBS}
    if extra:
        name += " " + " ".join(f"{k}={v}" for k, v in extra.items())
    return name


# --------------------------------------------------------------------------------------------
# Collecting networks from the store


def summarize_evaluations(rows: Sequence[Mapping[str, Any]], head: str) -> dict[str, Any]:
    """A run's headline numbers from its evaluation rows: the final checkpoint's top-1/top-5 and
    PS of each function, the best-PS checkpoint over all rows (``best_ps``...) and over the
    trained ones (step > 0: early stopping, ``best_trained_ps``...), the best top-1.

    Example:
        >>> rows = [{"step": 0, "top1": 7.0, "ps": {"spatial": 66.0}}, {"step": 5, "top1": 20.0, "ps": {"spatial": 65.0}},
        ...         {"step": 9, "top1": 30.0, "ps": {"spatial": 64.0}}]
        >>> s = summarize_evaluations(rows, "spatial")
        >>> s["ps_spatial"], s["best_ps_step"], s["best_trained_ps_step"], s["best_trained_ps_top1"]
        (64.0, 0, 5, 20.0)
    """
    rows = sorted(rows, key=lambda r: r["step"])
    if not rows:
        return {}
    final = rows[-1]

    def best(items: Sequence[Mapping[str, Any]], value) -> Mapping[str, Any] | None:
        scored = [r for r in items if value(r) is not None]
        return max(scored, key=value) if scored else None  # max keeps the first of equal values

    ps_of = lambda r: (r.get("ps") or {}).get(head)  # noqa: E731
    out: dict[str, Any] = {"top1": final.get("top1"), "top5": final.get("top5"), "ps": ps_of(final)}
    for d, v in (final.get("ps") or {}).items():
        out[f"ps_{d}"] = v
    for prefix, items in (("best", rows), ("best_trained", [r for r in rows if r["step"] > 0])):
        b = best(items, ps_of)
        out[f"{prefix}_ps"] = ps_of(b) if b else None
        out[f"{prefix}_ps_step"] = b["step"] if b else None
        out[f"{prefix}_ps_top1"] = b.get("top1") if b else None
    b = best(rows, lambda r: r.get("top1"))
    out["best_top1"] = b.get("top1") if b else None
    return out


def collect_networks(records: Sequence[Any],
                     evaluations: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """One entry per trained network (runs that differ only in their seed are averaged).

    ``records`` are finished :class:`~lossnet.sweeps.store.RunRecord` of the classifier task;
    ``evaluations`` their rows of the store's evaluations table (``{run id: [row, ...]}``, see
    :meth:`~lossnet.sweeps.store.ResultsStore.evaluations`): final points, best checkpoints and
    curves come from them (a run without rows falls back to its metrics JSON).
    """
    evaluations = evaluations or {}
    groups: dict[tuple, list[tuple[Any, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for rec in records:
        rows = list(evaluations.get(rec.id) or (rec.metrics or {}).get("evaluations") or [])
        m = {**(rec.metrics or {}), "evaluations": rows}
        if rows:
            m.update(summarize_evaluations(rows, rec.distance or "spatial"))
        arch = m.get("arch_trained") or rec.arch
        overrides = dict((rec.config.get("settings") or {}).get("overrides") or {})
        key = (arch, tuple(sorted((k, repr(v)) for k, v in overrides.items() if k not in NOT_KNOBS)),
               (rec.config.get("settings") or {}).get("config"), rec.distance)
        groups[key].append((rec, m, overrides))
    out = []
    for (arch, _, config, distance), items in groups.items():
        runs = [r for r, _, _ in items]
        overrides = items[0][2]
        ms = [m for _, m, _ in items]
        functions = list(ms[0]["evaluations"][0]["ps"]) if ms[0].get("evaluations") else [distance]
        entry: dict[str, Any] = {
            "arch": arch, "name": display_name(arch, overrides), "family": nets.parse_name(arch).family,
            "knobs": knobs(arch, overrides), "config": config, "distance": distance, "functions": functions,
            "seeds": sorted(int(r.seed) for r in runs), "run_ids": [r.id for r in runs],
            "synthetic": any(m.get("synthetic") for m in ms),
        }
        for key in ("top1", "top5", "best_ps", "best_ps_top1", "best_ps_step", "best_top1", "best_trained_ps",
                    "best_trained_ps_step", "best_trained_ps_top1"):
            entry[key], entry[key + "_sem"] = _mean_sem([m.get(key) for m in ms])
        entry["ps"], entry["ps_sem"] = {}, {}
        for d in functions:
            entry["ps"][d], entry["ps_sem"][d] = _mean_sem([m.get(f"ps_{d}") for m in ms])
        entry["curve"] = _mean_curve([m.get("evaluations") or [] for m in ms], functions)
        entry["recipe"] = _recipe(config, arch, overrides)
        entry["runs"] = [{"run_id": r.id, "seed": int(r.seed), "evaluations": len(m["evaluations"]),
                          **{k: m.get(k) for k in RUN_KEYS}} for r, m, _ in items]
        out.append(entry)
    out.sort(key=lambda e: (e["family"], e["knobs"]["model"], e["name"]))
    return out


def _recipe(config: str | None, arch: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The training config a network was trained with (its preset and overrides), or {} when it
    cannot be resolved (a preset of another lossnet version)."""
    from ..errors import LossnetError
    from ..tasks.classifier import ClassifierConfig

    try:
        return ClassifierConfig.for_arch(config or "mini", arch, **dict(overrides)).to_dict()
    except (LossnetError, TypeError):
        return {}


RUN_KEYS = ("top1", "ps", "best_ps", "best_ps_step", "best_trained_ps", "best_trained_ps_step", "best_trained_ps_top1")


def run_table(networks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The best-PS checkpoint of every run ("early stopping for PS", from its evaluation rows):
    one dict per run with its network's name, seed, run id, final top-1 and PS, best PS over
    the trained checkpoints with its step and top-1.

    Example:
        >>> run_table([{"name": "ResNet-6", "runs": [{"run_id": "ab", "seed": 0, "best_trained_ps": 69.1}]}])
        [{'network': 'ResNet-6', 'run_id': 'ab', 'seed': 0, 'best_trained_ps': 69.1}]
    """
    return [{"network": n["name"], **run} for n in networks for run in n["runs"]]


def knob_sweeps(networks: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """PS against each knob a sweep varied (Figs. 5-9): ``{knob: [series, ...]}``, one series per
    group of networks that differ in that knob only (each series: ``model``, ``points`` as
    ``(value, top1, PS)`` sorted by value, the default's value included), series with at
    least two values only.

    Example:
        >>> nets = [{"knobs": {"model": "ResNet-6", "width": 1.0}, "top1": 30.0, "ps": {"spatial": 69.1},
        ...          "distance": "spatial"},
        ...         {"knobs": {"model": "ResNet-6", "width": 1.0, "weight_decay": 1e-5}, "top1": 28.0,
        ...          "ps": {"spatial": 69.4}, "distance": "spatial"}]
        >>> knob_sweeps(nets)["weight_decay"][0]["points"]
        [(1e-05, 28.0, 69.4), ('default', 30.0, 69.1)]
    """
    head = networks[0]["distance"] if networks else "spatial"
    series: dict[tuple, dict[Any, tuple]] = defaultdict(dict)
    all_knobs = sorted({k for n in networks for k in n["knobs"] if k != "model"})
    for knob in all_knobs:
        for n in networks:
            if n["ps"].get(head) is None:
                continue
            rest = tuple(sorted((k, repr(v)) for k, v in n["knobs"].items() if k != knob))
            value = n["knobs"].get(knob, (n.get("recipe") or {}).get(knob, "default"))
            series[(knob, rest)][repr(value)] = (value, n["top1"], n["ps"][head])
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (knob, rest), points in series.items():
        if len(points) < 2:
            continue
        pts = sorted(points.values(), key=lambda p: (isinstance(p[0], str), p[0] if not isinstance(p[0], str)
                                                     else 0, str(p[0])))
        out[knob].append({"model": dict(rest)["model"].strip("'"), "points": pts})
    return {k: out[k] for k in [k for k in KNOB_LABELS if k in out] + sorted(set(out) - set(KNOB_LABELS))}


def _mean_curve(per_seed: Sequence[Sequence[Mapping[str, Any]]], functions: Sequence[str]) -> list[dict[str, Any]]:
    """Evaluations averaged over seeds at the steps every seed evaluated."""
    if not per_seed:
        return []
    common = set.intersection(*[{r["step"] for r in rows} for rows in per_seed]) if per_seed else set()
    out = []
    for step in sorted(common):
        rows = [next(r for r in rows if r["step"] == step) for rows in per_seed]
        point: dict[str, Any] = {"step": step, "epoch": rows[0].get("epoch")}
        point["top1"] = _mean_sem([r.get("top1") for r in rows])[0]
        point["ps"] = {d: _mean_sem([(r.get("ps") or {}).get(d) for r in rows])[0] for d in functions}
        point["sensitivity"] = {d: _mean_sem([((r.get("sensitivity") or {}).get(d) or {}).get("margin")
                                              for r in rows])[0] for d in functions}
        layers = (rows[0].get("layerwise") or {}).get(functions[0]) or {}
        point["layerwise"] = {p: _mean_sem([((r.get("layerwise") or {}).get(functions[0]) or {}).get(p)
                                            for r in rows])[0] for p in layers}
        if rows[0].get("entropy"):
            point["entropy"] = _mean_sem([(r.get("entropy") or {}).get("mean") for r in rows])[0]
        if rows[0].get("frequency"):
            sizes = rows[0]["frequency"]["sizes"]
            point["frequency"] = {k: _mean_sem([r["frequency"]["sizes"][k]["normalized"] for r in rows])[0]
                                  for k in sizes}
        out.append(point)
    return out


# --------------------------------------------------------------------------------------------
# Table 1 and the frontier


def knob_table(networks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Table 1: for each default network, the PS gain of every knob varied around it.

    A network is a default when no other network of its model differs from it in one knob
    only and holds that knob's default value. A knob's gain is the best final PS of the
    networks that differ from the default in that knob only, minus the default's; "train
    steps" is the default's best checkpoint along training minus its final PS.
    """
    def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
        keys = set(a) | set(b)
        return [k for k in keys if a.get(k) != b.get(k)]

    head = networks[0]["distance"] if networks else "spatial"
    rows, knobs_seen = [], []
    for n in networks:
        kn = n["knobs"]
        neighbours = [(m, diff(kn, m["knobs"])) for m in networks
                      if m is not n and m["knobs"]["model"] == kn["model"] and len(diff(kn, m["knobs"])) == 1]
        if any(_is_variant(kn, m["knobs"], k) for m, (k,) in neighbours):
            continue  # a variant of another network, not a default
        default = n["ps"].get(head)
        if default is None:
            continue
        gains: dict[str, float | None] = {}
        for m, (k,) in neighbours:
            v = m["ps"].get(head)
            if v is not None:
                gains[k] = max(gains.get(k, -math.inf), v - default)
        best_along = max((p["ps"].get(head) for p in n["curve"] if p["step"] > 0 and p["ps"].get(head) is not None),
                         default=None)  # early stopping: a trained checkpoint, not the initialisation
        if best_along is not None:  # runs of other lengths (a train_steps sweep) compete with early stopping
            gains["train_steps"] = max(gains.get("train_steps", -math.inf), best_along - default)
        for k in gains:
            if k not in knobs_seen:
                knobs_seen.append(k)
        rows.append({"network": n["name"], "default": default, "gains": gains,
                     "best": default + max([0.0, *[g for g in gains.values() if g is not None]])})
    order = [k for k in KNOB_LABELS if k in knobs_seen] + [k for k in knobs_seen if k not in KNOB_LABELS]
    return {"distance": head, "knobs": order, "rows": rows}


def _is_variant(n: Mapping[str, Any], m: Mapping[str, Any], knob: str) -> bool:
    """True when ``n`` differs from ``m`` only in ``knob`` and ``m`` holds the default of that knob."""
    if knob not in m:  # a training override that m does not set
        return True
    default = _default_value(knob, n["model"])
    return default is not None and m.get(knob) == default and n.get(knob) != default


def frontier(networks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The global accuracy/PS Pareto frontier over every network's final point."""
    head = networks[0]["distance"] if networks else "spatial"
    pts = [{"network": n["name"], "family": n["family"], "top1": n["top1"], "score": n["ps"].get(head),
            "top1_sem": n["top1_sem"], "score_sem": n["ps_sem"].get(head)}
           for n in networks if n["top1"] is not None and n["ps"].get(head) is not None]
    return {"distance": head, "points": pts,
            "frontier": tables.pareto_frontier([(p["top1"], p["score"]) for p in pts])}


def study_data(spec: Any, db: Any, overrides: Sequence[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every table of the classifier report as JSON-ready data (no files written)."""
    from ..sweeps.spec import expand, load_spec
    from ..sweeps.store import ResultsStore

    parsed = load_spec(spec, overrides)
    runs = [r for r in expand(parsed) if r.task == TASK]
    path = None if isinstance(db, ResultsStore) else Path(db).expanduser()
    store = db if isinstance(db, ResultsStore) else (ResultsStore(path) if path.exists() else None)
    records = store.records([r.id for r in runs]) if store is not None else []
    finished = [r for r in records if r.status == "finished" and r.metrics is not None]
    evaluations = store.evaluations([r.id for r in finished]) if store is not None and finished else {}
    networks = collect_networks(finished, evaluations)
    return {
        "spec": parsed.name, "description": parsed.description, "db": str(db),
        "runs": {"total": len(runs), "finished": len(finished),
                 "failed": sum(r.status == "failed" for r in records)},
        "synthetic": any(n["synthetic"] for n in networks),
        "networks": networks, "pareto": frontier(networks), "table1": knob_table(networks),
        "run_table": run_table(networks), "knob_sweeps": knob_sweeps(networks),
        "evaluations": sum(len(v) for v in evaluations.values()),
    }


# --------------------------------------------------------------------------------------------
# Figures


def _plt():
    from .figures import _plt as plt

    return plt()


def _save(fig, path: Path) -> Path:
    from .figures import _save as save

    return save(fig, path)


def pareto_figure(pareto: Mapping[str, Any], path: Path) -> Path:
    """Fig. 1: every network's accuracy vs PS (error bars: standard errors), the frontier in black."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    pts, on = pareto["points"], set(pareto["frontier"])
    for family, colour in FAMILY_COLOURS.items():
        sel = [p for p in pts if p["family"] == family]
        if sel:
            ax.errorbar([p["top1"] for p in sel], [p["score"] for p in sel],
                        xerr=[p["top1_sem"] or 0 for p in sel], yerr=[p["score_sem"] or 0 for p in sel],
                        fmt="o", color=colour, label=family.replace("kumar_", ""), ms=5, capsize=2)
    if on:
        idx = list(pareto["frontier"])
        ax.plot([pts[i]["top1"] for i in idx], [pts[i]["score"] for i in idx], "k--", lw=1, label="Pareto frontier")
        for i in idx:
            ax.annotate(pts[i]["network"], (pts[i]["top1"], pts[i]["score"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_ylabel(f"Perceptual Score ({pareto['distance']})")
    ax.set_title("Accuracy vs Perceptual Score", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def along_training_figure(networks: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Figs. 11-12: PS of every function, top-1 and distortion sensitivity against the step."""
    plt = _plt()
    functions = networks[0]["functions"]
    fig, axes = plt.subplots(1, len(functions) + 2, figsize=(3.2 * (len(functions) + 2), 3.2))
    for n in networks:
        steps = [max(p["step"], 0.5) for p in n["curve"]]
        for ax, d in zip(axes, functions):
            ax.plot(steps, [p["ps"].get(d) for p in n["curve"]], marker=".", label=n["name"])
        axes[-2].plot(steps, [p["top1"] for p in n["curve"]], marker=".")
        axes[-1].plot(steps, [p["sensitivity"].get(functions[0]) for p in n["curve"]], marker=".")
    for ax, title in zip(axes, [f"PS ({d})" for d in functions] + ["top-1 (%)", f"sensitivity ({functions[0]})"]):
        ax.set_xscale("log")
        ax.set_xlabel("step (0 at 0.5)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    return _save(fig, path)


def trajectory_figure(networks: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Accuracy vs PS along training: one line per network from its first to its last checkpoint."""
    plt = _plt()
    head = networks[0]["distance"]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for n in networks:
        xs = [p["top1"] for p in n["curve"]]
        ys = [p["ps"].get(head) for p in n["curve"]]
        ax.plot(xs, ys, marker="o", ms=3, label=n["name"])
        if xs:
            ax.annotate("end", (xs[-1], ys[-1]), fontsize=6)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_ylabel(f"Perceptual Score ({head})")
    ax.set_title("Along training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _save(fig, path)


def layerwise_figure(networks: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Fig. 13: PS of each extraction point alone, at the final checkpoint (solid) and the best (dashed)."""
    plt = _plt()
    head = networks[0]["distance"]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for n in networks:
        if not n["curve"]:
            continue
        final = n["curve"][-1]["layerwise"]
        best = max(n["curve"], key=lambda p: p["ps"].get(head) or -1)["layerwise"]
        line, = ax.plot(range(1, len(final) + 1), list(final.values()), marker="o", label=n["name"])
        ax.plot(range(1, len(best) + 1), list(best.values()), ls="--", color=line.get_color())
    ax.set_xlabel("extraction point (shallow to deep)")
    ax.set_ylabel(f"layer-wise PS ({head})")
    ax.set_title("Layer-wise PS: final (solid), best checkpoint (dashed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _save(fig, path)


def knob_sweep_figure(sweeps: Mapping[str, Sequence[Mapping[str, Any]]], head: str, path: Path) -> Path | None:
    """Figs. 5-9: PS against each knob a sweep varied (top row) and against accuracy (bottom row),
    one line per model; numeric knobs spanning more than a factor 20 on a log axis."""
    knobs_ = [k for k in sweeps if k != "classes"]  # classes: its own figure (Fig. 14)
    if not knobs_:
        return None
    plt = _plt()
    fig, axes = plt.subplots(2, len(knobs_), figsize=(3.4 * len(knobs_), 6.2), squeeze=False)
    for col, knob in enumerate(knobs_):
        top, bottom = axes[0][col], axes[1][col]
        numeric = all(isinstance(p[0], (int, float)) and not isinstance(p[0], bool)
                      for series in sweeps[knob] for p in series["points"])
        for series in sweeps[knob]:
            pts = series["points"]
            xs = [p[0] if numeric else str(p[0]) for p in pts]
            line, = top.plot(xs, [p[2] for p in pts], marker="o", label=series["model"])
            bottom.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", color=line.get_color())
        if numeric:
            values = [p[0] for series in sweeps[knob] for p in series["points"] if p[0] > 0]
            if values and max(values) / min(values) > 20:
                top.set_xscale("log")
        top.set_title(KNOB_LABELS.get(knob, knob), fontsize=9)
        top.set_xlabel(knob)
        bottom.set_xlabel("top-1 accuracy (%)")
        for ax in (top, bottom):
            ax.set_ylabel(f"PS ({head})")
            ax.grid(alpha=0.3)
        top.legend(fontsize=6)
    return _save(fig, path)


def classes_figure(networks: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Fig. 14: PS against the number of classes, per model."""
    head = networks[0]["distance"]
    by_model: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for n in networks:
        others = {k: v for k, v in n["knobs"].items() if k not in ("classes",)}
        if n["ps"].get(head) is not None:
            by_model[repr(sorted(others.items()))].append((n["knobs"]["classes"], n["ps"][head], n["knobs"]["model"]))
    series = {k: sorted(v) for k, v in by_model.items() if len({c for c, _, _ in v}) > 1}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for values in series.values():
        ax.plot([c for c, _, _ in values], [p for _, p, _ in values], marker="o", label=values[0][2])
    ax.set_xlabel("number of classes")
    ax.set_ylabel(f"Perceptual Score ({head})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def optional_curve_figure(networks: Sequence[Mapping[str, Any]], key: str, ylabel: str, path: Path) -> Path | None:
    """Entropy along training (Fig. 15) when the runs measured it."""
    series = [(n["name"], [(max(p["step"], 0.5), p[key]) for p in n["curve"] if p.get(key) is not None])
              for n in networks]
    series = [(name, pts) for name, pts in series if pts]
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, pts in series:
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("step (0 at 0.5)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _save(fig, path)


def frequency_figure(networks: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Fig. 17: normalised accuracy against the low-pass square side, final (solid) and best-PS (dashed)."""
    head = networks[0]["distance"]
    items = [n for n in networks if n["curve"] and n["curve"][-1].get("frequency")]
    if not items:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for n in items:
        final = n["curve"][-1]["frequency"]
        line, = ax.plot([int(k) for k in final], list(final.values()), marker="o", label=n["name"])
        best = max(n["curve"], key=lambda p: p["ps"].get(head) or -1).get("frequency")
        if best:
            ax.plot([int(k) for k in best], list(best.values()), ls="--", color=line.get_color())
    ax.set_xlabel("low-pass square side r")
    ax.set_ylabel("normalised accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# The report


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:+.{digits}f}" if digits < 0 else f"{v:.{digits}f}"
    return str(v)


def _gain(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def build_classifier_report(spec: Any, db: Any, out_dir: str | os.PathLike,
                            overrides: Sequence[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/*.png`` into ``out_dir``."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    data = study_data(spec, db, overrides)
    nets_ = data["networks"]
    blocks: list[tuple] = [("h1", f"Classifier study: {data['spec']}")]
    if data["description"]:
        blocks.append(("p", data["description"]))
    r = data["runs"]
    blocks.append(("p", f"Results store {data['db']}: {r['finished']}/{r['total']} classifier runs finished, "
                        f"{r['failed']} failed. Values are means over seeds (± standard error where there are "
                        "several); PS is the 2AFC Perceptual Score (0-100)."))
    if data["synthetic"]:
        blocks.append(("note", "PS here comes from the built-in SYNTHETIC 2AFC set (rule-based judgements), not "
                               "BAPPS: compare networks with each other, not with the paper's numbers."))
    figs: list[str] = []

    def img(path: Path | None, alt: str) -> None:
        if path is not None:
            figs.append(str(path))
            blocks.append(("img", os.path.relpath(path, out), alt))

    if not nets_:
        blocks.append(("p", "No finished classifier runs yet: run `lossnet sweep run` first."))
    else:
        functions = nets_[0]["functions"]
        blocks.append(("h2", "Networks"))
        header = ["network", "seeds", "top-1", *[f"PS {d}" for d in functions], "PS at init",
                  "best PS in training", "at step", "top-1 there"]
        rows = [[n["name"], len(n["seeds"]), _pm(n["top1"], n["top1_sem"]),
                 *[_pm(n["ps"].get(d), n["ps_sem"].get(d)) for d in functions],
                 _f(n["curve"][0]["ps"].get(n["distance"])) if n["curve"] and n["curve"][0]["step"] == 0 else "-",
                 _f(n["best_trained_ps"]),
                 _f(n["best_trained_ps_step"], 0) if n["best_trained_ps_step"] is not None else "-",
                 _f(n["best_trained_ps_top1"], 1)] for n in nets_]
        blocks.append(("table", header, rows, ()))
        blocks.append(("p", "Best PS in training: the best checkpoint after the initialisation (early stopping "
                            "for PS); PS at init: the untrained network."))
        blocks.append(("h2", "Best-PS checkpoint of every run"))
        blocks.append(("p", f"From the {data['evaluations']} evaluation rows of the store (one per evaluated "
                            "checkpoint): the final checkpoint and the best trained one (early stopping for PS)."))
        blocks.append(("table", ["network", "seed", "run", "evaluations", "top-1", "PS", "best PS", "at step",
                                 "top-1 there"],
                       [[row["network"], row["seed"], row["run_id"], row["evaluations"], _f(row["top1"], 1),
                         _f(row["ps"]), _f(row["best_trained_ps"]),
                         _f(row["best_trained_ps_step"], 0) if row["best_trained_ps_step"] is not None else "-",
                         _f(row["best_trained_ps_top1"], 1)] for row in data["run_table"]], ()))
        blocks.append(("h2", "Accuracy vs Perceptual Score (Fig. 1)"))
        p = data["pareto"]
        on = [p["points"][i]["network"] for i in p["frontier"]]
        blocks.append(("p", f"The global Pareto frontier ({p['distance']}): {', '.join(on) or '-'}."))
        img(pareto_figure(p, fig_dir / "fig1_pareto.png"), "accuracy vs PS with the Pareto frontier")
        t = data["table1"]
        blocks.append(("h2", "PS gained by scaling down (Table 1)"))
        blocks.append(("p", "Default: the final PS of each default network; each column: the best PS of the "
                            "networks that differ from it in that knob only, minus the default (train steps: its "
                            "best checkpoint along training, early stopping)."))
        blocks.append(("table", ["network", "default", *[KNOB_LABELS.get(k, k) for k in t["knobs"]], "best"],
                       [[row["network"], _f(row["default"]), *[_gain(row["gains"].get(k)) for k in t["knobs"]],
                         _f(row["best"])] for row in t["rows"]], ()))
        sweeps = {k: v for k, v in data["knob_sweeps"].items() if k != "classes"}
        if sweeps:
            blocks.append(("h2", "PS against each swept knob (Figs. 5-9)"))
            blocks.append(("p", "Each line: networks that differ in that knob only ('default': the recipe's value "
                                "when it cannot be resolved)."))
            img(knob_sweep_figure(sweeps, p["distance"], fig_dir / "knob_sweeps.png"), "PS vs each swept knob")
        blocks.append(("h2", "Along training (Figs. 5, 11, 12)"))
        img(along_training_figure(nets_, fig_dir / "along_training.png"), "PS, accuracy and sensitivity vs step")
        img(trajectory_figure(nets_, fig_dir / "trajectories.png"), "accuracy vs PS along training")
        blocks.append(("h2", "Layer-wise PS (Fig. 13)"))
        img(layerwise_figure(nets_, fig_dir / "layerwise.png"), "layer-wise PS")
        extra = [(classes_figure(nets_, fig_dir / "classes.png"), "PS vs number of classes (Fig. 14)"),
                 (optional_curve_figure(nets_, "entropy", "mean normalised activation entropy",
                                        fig_dir / "entropy.png"), "activation entropy along training (Fig. 15)"),
                 (frequency_figure(nets_, fig_dir / "frequency.png"), "normalised accuracy vs filter size (Fig. 17)")]
        for path, title in extra:
            if path is not None:
                blocks.append(("h2", title[0].upper() + title[1:]))
                img(path, title)
    md, page, js = out / "report.md", out / "report.html", out / "report.json"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, f"Classifier study: {data['spec']}"), encoding="utf-8")
    write_json(js, data)
    return {"markdown": str(md), "html": str(page), "json": str(js), "figures": figs, "data": data}


def _pm(mean: float | None, sem: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" ± {sem:.2f}" if sem is not None else "")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lossnet.report.classifier_study SPEC DB OUT``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m lossnet.report.classifier_study SPEC DB OUT_DIR", file=sys.stderr)
        return 2
    result = build_classifier_report(*args)
    print(result["markdown"])
    return 0


__all__ = ["build_classifier_report", "collect_networks", "display_name", "frontier", "knob_sweeps", "knob_table",
           "knobs", "run_table", "study_data", "summarize_evaluations"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
