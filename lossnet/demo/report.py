"""The demo's one report: ``report.html`` and ``report.json`` holding the same numbers.

:func:`report_data` turns the steps' results into JSON-ready data (figure and link paths
relative to the report's folder) with the answer to "which loss network should I use?"
written out; :func:`render_html` draws that data and nothing else, so every number on the
page is a number of ``report.json``, formatted with :data:`DIGITS`.

Example:
    >>> cell("psnr", 27.4567), cell("accuracy", 0.93333), cell("loss", "pixel l2")
    ('27.46', '0.933', 'pixel l2')
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Mapping

from ..utils.jsonio import write_json
from ..utils.tables import fmt, html_table
from .similarity import best_rows
from .tasks import TASK_METRICS, TASK_TITLES

QUESTION = "Which loss network should I use?"
#: Decimals of each number on the page (anything else: 2).
DIGITS = {"psnr": 2, "ssim": 3, "lpips": 3, "accuracy": 3, "linear_accuracy": 3, "pixel_mse": 4, "quality": 3,
          "f1": 3, "completeness": 3, "correctness": 3, "relaxed_quality": 3, "PS": 1, "ci_low": 1, "ci_high": 1,
          "gain": 2, "seconds": 0, "share": 2}


def cell(key: str, value: Any) -> str:
    """A number (or text) as the report shows it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "–" if value is None else ("yes" if value is True else "no" if value is False else value)
    return fmt(float(value) if isinstance(value, (int, float)) and key != "steps" else value, DIGITS.get(key, 2))


# ------------------------------------------------------------------------------------------------
# Data


def _rel(path: str | os.PathLike | None, root: Path) -> str | None:
    return None if path is None else os.path.relpath(Path(path), root)


def task_table(task: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """The rows of a task's table: each loss (finished or not), then the trivial baselines."""
    headline, _, shown, _ = TASK_METRICS[task]
    header = ["loss", *shown, "gain over baseline", "beats baseline", "last quarter's share of the loss decrease",
              "loss flattened", "steps", "train seconds"]
    keys = ["loss", *shown, "gain", "beats", "share", "plateaued", "steps", "seconds"]
    rows = []
    for r in section["runs"]:
        if "metrics" not in r:
            rows.append([r["loss"], *([None] * (len(keys) - 1))])
            continue
        rows.append([r["loss"], *(r["metrics"].get(k) for k in shown), r.get("gain_over_baseline"),
                     r.get("beats_baseline"), r.get("last_share"), r.get("plateaued"), r.get("steps"),
                     r.get("seconds")])
    for name, values in section.get("baselines", {}).items():
        rows.append([f"baseline: {name}", *(values.get(k) for k in shown), *([None] * (len(keys) - 1 - len(shown)))])
    return {"id": f"table-{task}", "header": header, "keys": keys, "rows": rows}


def similarity_table(sim: Mapping[str, Any]) -> dict[str, Any]:
    subsets = sim["subsets"]
    header = ["metric", "point", "PS", "95% CI low", "95% CI high", *subsets]
    keys = ["metric", "point", "PS", "ci_low", "ci_high", *(["PS"] * len(subsets))]
    rows = [[r["metric"], r["point"], r["mean"], r["ci_low"], r["ci_high"],
             *(r["subsets"][s]["score"] for s in subsets)] for r in sim["rows"]]
    return {"id": "table-2afc", "header": header, "keys": keys, "rows": rows}


def _fmt_ci(row: Mapping[str, Any]) -> str:
    return f"{cell('PS', row['mean'])} [{cell('PS', row['ci_low'])}, {cell('PS', row['ci_high'])}]"


def answer(sim: Mapping[str, Any] | None, tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The demo's answer, one sentence per part, from the numbers."""
    out = []
    if sim:
        best = best_rows(sim)
        top = best[0]
        pixel = [r for r in best if r["point"] == "-"]
        where = f" at {top['point']}" if top["point"] not in ("-",) else ""
        text = (f"As a perceptual metric (built-in synthetic 2AFC, PS with 95% CI): {top['metric']}{where} scores "
                f"{_fmt_ci(top)}")
        others = [r for r in best[1:]]
        if others:
            text += "; then " + "; ".join(
                f"{r['metric']}{'' if r['point'] == '-' else ' at ' + r['point']} {_fmt_ci(r)}" for r in others)
        overlap = pixel and top["ci_low"] is not None and pixel[0]["ci_high"] is not None and \
            top["ci_low"] <= pixel[0]["ci_high"]
        text += ". " + ("Its interval overlaps the best pixel metric's." if overlap else
                        "Its interval is clear of the pixel metrics'." if pixel else "")
        out.append(text.strip())
        split = "structure-vs-appearance"
        if split in sim["subsets"]:
            def best_on(metric: str) -> Mapping[str, Any]:
                return max((r for r in sim["rows"] if r["metric"] == metric), key=lambda r: r["subsets"][split]["score"])
            parts = []
            for metric in dict.fromkeys(r["metric"] for r in sim["rows"]):
                r = best_on(metric)
                sub = r["subsets"][split]
                at = "" if r["point"] == "-" else f" at {r['point']}"
                parts.append(f"{metric}{at} {cell('PS', sub['score'])} [{cell('PS', sub['ci_low'])}, "
                             f"{cell('PS', sub['ci_high'])}]")
            out.append(f"Where pixel and perceptual metrics disagree (the {split} subset), best per metric: "
                       + "; ".join(parts) + ".")
    for task, t in tasks.items():
        headline = TASK_METRICS[task][0]
        done = [r for r in t["runs"] if "metrics" in r and r["metrics"].get(headline) is not None]
        if not done:
            out.append(f"{TASK_TITLES[task]}: not run yet.")
            continue
        ranked = sorted(done, key=lambda r: -r["metrics"][headline])
        order = ", ".join(f"{r['loss']} {cell(headline, r['metrics'][headline])}" for r in ranked)
        base = ", ".join(f"{name} {cell(headline, v.get(headline))}" for name, v in t.get("baselines", {}).items())
        beaten = sum(bool(r.get("beats_baseline")) for r in done)
        flat = sum(bool(r.get("plateaued")) for r in done)
        text = (f"As a training loss for {TASK_TITLES[task].lower()}, by {headline}: {order}; trivial "
                f"baseline {base}. {beaten}/{len(done)} runs beat the baseline, "
                f"{flat}/{len(done)} trained until the loss flattened out.")
        second = TASK_METRICS[task][2][1]
        for r in done:
            if r.get("beats_baseline"):
                continue
            text += f" {r['loss']} is below the baseline on {headline}"
            text += " although its loss flattened out: a finding, not a short schedule" if r.get("plateaued") else \
                " and its loss was still falling"
            other = [(name, v.get(second)) for name, v in t.get("baselines", {}).items() if v.get(second) is not None]
            mine = r["metrics"].get(second)
            if other and mine is not None:
                name, value = max(other, key=lambda nv: nv[1])
                relation = "above" if mine > value else "below"
                text += f"; on {second} it is {relation} {name} ({cell(second, mine)} vs {cell(second, value)})"
            text += "."
        out.append(text)
    return out


def report_data(out_dir: str | os.PathLike, similarity: Mapping[str, Any] | None,
                tasks: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Any], study: Mapping[str, Any] | None,
                kumar: Mapping[str, Any] | None, timing: Mapping[str, Any], settings: Mapping[str, Any]
                ) -> dict[str, Any]:
    """Everything the report shows, JSON-ready; paths relative to ``out_dir``."""
    root = Path(out_dir)
    data: dict[str, Any] = {"title": f"lossnet demo: {QUESTION}", "question": QUESTION,
                            "answer": answer(similarity, tasks), "settings": dict(settings), "timing": dict(timing)}
    if similarity is not None:
        data["similarity"] = {**{k: v for k, v in similarity.items() if k not in ("figure", "json")},
                              "figure": _rel(similarity.get("figure"), root),
                              "table": similarity_table(similarity)}
    data["tasks"] = {}
    for task, t in tasks.items():
        headline, hib, shown, judged_by = TASK_METRICS[task]
        data["tasks"][task] = {**t, "title": TASK_TITLES[task], "headline": headline, "judged_by": judged_by,
                               "figure": _rel(figures.get(task), root), "table": task_table(task, t)}
    data["curves_figure"] = _rel(figures.get("curves"), root)
    if study is not None:
        data["study"] = {**study, "html": _rel(study.get("html"), root), "markdown": _rel(study.get("markdown"), root),
                         "json": _rel(study.get("json"), root)}
    if kumar is not None:
        data["kumar"] = dict(kumar)
        if kumar.get("html"):
            data["kumar"]["html"] = _rel(kumar["html"], root)
        if kumar.get("networks"):
            functions = list((kumar["networks"][0].get("ps") or {}).keys())
            data["kumar"]["table"] = {
                "id": "table-kumar", "header": ["network", "top-1", *[f"PS {f}" for f in functions], "best PS"],
                "keys": ["network", "accuracy", *(["PS"] * len(functions)), "PS"],
                "rows": [[n["name"], n.get("top1"), *((n.get("ps") or {}).get(f) for f in functions), n.get("best_ps")]
                         for n in kumar["networks"]]}
    return data


# ------------------------------------------------------------------------------------------------
# HTML

_CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.85em}th,td{border:1px solid #ccc;padding:2px 7px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;
margin:0.4em 0;border:1px solid #eee}.note{background:#fff6d5;border-left:4px solid #e0b000;padding:0.4em 1em}
.answer{background:#eef6ff;border-left:4px solid #3a7bd5;padding:0.4em 1em}h2{margin-top:1.6em}"""


def _table_html(table: Mapping[str, Any]) -> str:
    keys = table["keys"]
    rows = [[cell(k, v) for k, v in zip(keys, row)] for row in table["rows"]]
    return f"<div class='table' id='{html.escape(table['id'])}'>{html_table(table['header'], rows)}</div>"


def _img(path: str | None, alt: str) -> str:
    return "" if path is None else f"<img src='{html.escape(path)}' alt='{html.escape(alt)}'>"


def _p(text: str, cls: str | None = None) -> str:
    return f"<p{f' class={chr(39)}{cls}{chr(39)}' if cls else ''}>{html.escape(text)}</p>"


def render_html(data: Mapping[str, Any]) -> str:
    """The report page of :func:`report_data`'s output."""
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(data['title'])}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(data['title'])}</h1>"]
    t = data["timing"]
    out.append(_p(f"Built-in data only (scikit-image photos, scikit-learn digits, generated road tiles, a synthetic "
                  f"2AFC set). Loss networks at hand offline: EfficientNet-Lite0 with its real ImageNet weights, an "
                  f"untrained copy of it, and the pixel baselines. Ran in {cell('seconds', t.get('seconds'))} s "
                  f"({cell('seconds', t.get('cpu_seconds'))} CPU seconds) on {t.get('cpus')} CPU cores, load average "
                  f"{t.get('load_average')} at the start and {t.get('load_average_end')} at the end."))
    out.append("<h2 id='answer'>The answer</h2><div class='answer'>" + "".join(_p(a) for a in data["answer"]) + "</div>")
    sim = data.get("similarity")
    if sim:
        out.append("<h2 id='metric'>As a perceptual metric: built-in 2AFC</h2>")
        out.append(_p(f"{sim['what']}. {sim['n']} triplets ({sim['n_per_subset']} per subset); bootstrap "
                      f"{sim['bootstrap']} resamples per subset; distance '{sim['distance']}' at each extraction "
                      "point alone and at all points combined. The structure-vs-appearance subset is where pixel "
                      "metrics and perceptual ones disagree."))
        out.append(_p(sim["note"], "note"))
        out.append(_img(sim.get("figure"), "2AFC Perceptual Score per extraction point with 95% intervals"))
        out.append(_table_html(sim["table"]))
    for task, s in data["tasks"].items():
        out.append(f"<h2 id='{html.escape(task)}'>As a training loss: {html.escape(s['title'])}</h2>")
        out.append(_p(f"Judged by {s['judged_by']} (not a training loss of any run); headline '{s['headline']}'. "
                      f"Every run uses the task's mini config; the pixel-loss run must beat the trivial baseline"
                      f"{' by 0.5 dB' if task == 'superres' else ''}; a loss has flattened out when the last quarter of "
                      "its epochs brought less than a tenth of its whole decrease."))
        out.append(_table_html(s["table"]))
        failed = [r for r in s["runs"] if r.get("error")]
        for r in failed:
            out.append(_p(f"{r['loss']} failed: {r['error']}", "note"))
        out.append(_img(s.get("figure"), f"{task} outputs per loss"))
    if data.get("curves_figure"):
        out.append("<h2 id='curves'>Training curves</h2>")
        out.append(_p("Each run's loss per epoch (validation loss for the autoencoder) relative to its first epoch."))
        out.append(_img(data["curves_figure"], "loss curves"))
    study = data.get("study")
    if study:
        out.append("<h2 id='study'>Study-style report of these runs</h2>")
        st = study["status"]
        out.append(f"<p>The training runs above are a sweep in a results store; its study-style report (every network x "
                   f"extraction point, best point per network, ranks across tasks): "
                   f"<a href='{html.escape(study['html'])}'>{html.escape(study['html'])}</a> "
                   f"({st['finished']}/{st['total']} runs finished).</p>")
    kumar = data.get("kumar")
    if kumar:
        out.append("<h2 id='kumar'>Classifier study (kumar-mini): accuracy and PS along training</h2>")
        if kumar.get("html"):
            out.append(f"<p>{kumar['finished']}/{kumar['total']} runs finished; report: "
                       f"<a href='{html.escape(kumar['html'])}'>{html.escape(kumar['html'])}</a></p>")
            if kumar.get("table"):
                out.append(_table_html(kumar["table"]))
        else:
            out.append(_p(kumar.get("note", "")))
    out.append("</body></html>")
    return "\n".join(o for o in out if o) + "\n"


def write_report(out_dir: str | os.PathLike, data: Mapping[str, Any]) -> dict[str, str]:
    """Write ``report.html`` and ``report.json`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    page, js = out / "report.html", out / "report.json"
    write_json(js, data)
    page.write_text(render_html(data), encoding="utf-8")
    return {"html": str(page), "json": str(js)}


__all__ = ["DIGITS", "QUESTION", "answer", "cell", "render_html", "report_data", "similarity_table", "task_table",
           "write_report"]
