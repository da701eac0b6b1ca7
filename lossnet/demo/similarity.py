"""The built-in (SYNTHETIC) 2AFC table of the networks at hand offline.

Example:
    >>> summary = builtin_table("lossnet-out/demo")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any

from ..data.synthetic import builtin_2afc
from ..errors import LossnetError
from ..loss.factory import create_metric
from ..scoring.twoafc import SYNTHETIC_NOTE, score_2afc
from ..utils.jsonio import write_json
from ..utils.tables import fmt, text_table


def builtin_table(out_dir: str | os.PathLike | None = None, seed: int = 0, n_per_subset: int = 50,
                  progress: bool = False) -> dict[str, Any]:
    """The real ImageNet EfficientNet-Lite0, an untrained copy, and the l2 / ssim pixel baselines
    on the built-in SYNTHETIC 2AFC set.

    Prints the table, writes ``builtin_2afc.json`` to ``out_dir`` when given, and returns
    ``{"json": path or None, "rows": {name: {subset: PS, "mean": PS}}}``.
    """
    sets = builtin_2afc(n_per_subset=n_per_subset, seed=seed)
    metrics = {
        "efficientnet_lite0 (ImageNet)": lambda: create_metric("efficientnet_lite0", weights="imagenet"),
        "efficientnet_lite0 (untrained)": lambda: create_metric("efficientnet_lite0", weights="random", seed=seed),
        "pixel l2": lambda: create_metric("l2"),
        "pixel ssim": lambda: create_metric("ssim"),
    }
    rows: dict[str, dict[str, float]] = {}
    results = {}
    for name, make in metrics.items():
        try:
            metric = make()
        except LossnetError as exc:  # e.g. weights not available
            print(f"skipped {name}: {exc}")
            continue
        r = score_2afc(metric, sets, bootstrap=0, progress=progress, name=name)
        rows[name] = {**{s: v["score"] for s, v in r.subsets.items()}, "mean": r.mean}
        results[name] = r.to_dict()
    subsets = list(sets)
    print("Built-in 2AFC (SYNTHETIC, rule-based judgements; PS 0-100, combined distance)")
    print(text_table(["metric", *subsets, "mean"], [[n, *(fmt(v[s]) for s in subsets), fmt(v["mean"])]
                                                    for n, v in rows.items()]))
    path = None
    if out_dir is not None:
        path = os.path.join(os.fspath(out_dir), "builtin_2afc.json")
        write_json(path, {"note": SYNTHETIC_NOTE, "rows": rows, "results": results})
    return {"json": path, "rows": rows}
