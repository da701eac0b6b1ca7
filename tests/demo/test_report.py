"""The demo report as a user meets it: run the whole demo pipeline on a tiny configuration,
then check that every figure and link of ``report.html`` exists and decodes, and that the
numbers on the page are those of ``report.json``."""
import html
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from lossnet.demo import DemoSettings, run_demo
from lossnet.demo.report import cell
from lossnet.demo.similarity import point_scores
from lossnet.demo.tasks import TASK_METRICS, _plateau, segmentation_baseline
from lossnet.scoring.twoafc import TripletDistances

TINY_TASKS = {
    "superres": {"epochs": 2, "train_length": 16, "eval_size": 32, "photo_size": 64, "lpips_net": "none"},
    "autoencoder": {"epochs": 2, "max_train": 64, "probe_epochs": 2, "probe_hidden": [[]]},
    "segmentation": {"epochs": 2, "n_train": 16, "n_test": 4, "batch_size": 8},
}


def tiny_settings(**changes):
    return DemoSettings(**{"n_per_subset": 4, "bootstrap": 20, "tasks": TINY_TASKS, "points": ("blocks.0",),
                           "workers": 1, **changes})


class _Page(HTMLParser):
    """Images, links and tables (by the id of their wrapper) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.tables = [], [], {}
        self._table, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "div" and a.get("class") == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "div" and self._table:
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, settings=tiny_settings())
    return out, result


def test_every_figure_and_link_exists_and_decodes(demo):
    out, result = demo
    assert Path(result["html"]) == out / "report.html"
    page = _parse(out / "report.html")
    # the 2AFC plot, the three tasks' pictures and the loss curves
    assert {Path(p).name for p in page.images} >= {"builtin_2afc.png", "superres.png", "autoencoder.png",
                                                   "segmentation.png", "curves.png"}
    pages = [out / "report.html"]
    for link in page.links:
        target = out / link
        assert target.is_file(), link
        pages.append(target)
    assert any(p.name == "report.html" and p.parent.name == "report" for p in pages[1:])  # the study report
    for html_file in pages:
        for src in _parse(html_file).images:
            with Image.open(html_file.parent / src) as img:
                img.load()
                assert min(img.size) > 50, src


def test_numbers_on_the_page_are_those_of_the_json(demo):
    out, _ = demo
    data = json.loads((out / "report.json").read_text())
    page = _parse(out / "report.html")
    text = (out / "report.html").read_text(encoding="utf-8")
    sim = data["similarity"]
    rows = page.tables["table-2afc"][1:]
    assert len(rows) == len(sim["rows"])
    for shown, row in zip(rows, sim["rows"]):
        assert shown[:5] == [row["metric"], row["point"], cell("PS", row["mean"]), cell("ci_low", row["ci_low"]),
                             cell("ci_high", row["ci_high"])]
        assert shown[5:] == [cell("PS", row["subsets"][s]["score"]) for s in sim["subsets"]]
    for task, t in data["tasks"].items():
        shown_keys = TASK_METRICS[task][2]
        table = page.tables[f"table-{task}"]
        by_loss = {r[0]: r for r in table[1:]}
        assert len(t["runs"]) == 3  # ImageNet, untrained, pixel
        for run in t["runs"]:
            assert run["status"] == "finished", run
            assert by_loss[run["loss"]][1:1 + len(shown_keys)] == [cell(k, run["metrics"].get(k)) for k in shown_keys]
            assert by_loss[run["loss"]][-2] == cell("steps", run["steps"])
        for name, values in t["baselines"].items():
            assert by_loss[f"baseline: {name}"][1:1 + len(shown_keys)] == [cell(k, values.get(k)) for k in shown_keys]
    for sentence in data["answer"]:
        assert html.escape(sentence) in text


def test_rerun_reuses_finished_runs_and_restart_discards_them(demo, capsys):
    out, first = demo
    again = run_demo(out, settings=tiny_settings())
    assert again["data"]["tasks"] == first["data"]["tasks"]  # nothing retrained: same numbers
    assert "0 to run" in capsys.readouterr().err
    discarded = run_demo(out, restart=True, settings=tiny_settings(train=False))
    assert not (out / "sweep" / "results.sqlite").exists()
    assert all(r["status"] == "not run" for t in discarded["data"]["tasks"].values() for r in t["runs"])


def test_point_scores_by_hand():
    # 4 triplets in one subset: distances to p0 and p1, judge = fraction preferring p1
    t = TripletDistances(subsets=["s"], subset_index=torch.zeros(4, dtype=torch.long).numpy(),
                         judges=torch.tensor([1.0, 0.0, 1.0, 0.5]).numpy(),
                         d0={"spatial": {"x": torch.tensor([2.0, 1.0, 1.0, 3.0]).numpy()}},
                         d1={"spatial": {"x": torch.tensor([1.0, 2.0, 2.0, 3.0]).numpy()}})
    # triplet 1: p1 closer and judged closer (1); 2: p0 closer, judged p0 (1); 3: p0 closer but judged p1 (0);
    # 4: a tie counts one half
    s = point_scores(t, "spatial", "x", bootstrap=50, seed=0)
    assert s["mean"] == pytest.approx(100 * 2.5 / 4)
    assert 0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 100


def test_plateau_check():
    # 8 epochs: last quarter = last 2 epochs. Decrease 1.0 -> 0.28; the last 2 brought (0.2845-0.28385)/0.72
    flat = _plateau([1.0, 0.5, 0.3, 0.29, 0.285, 0.284, 0.2839, 0.2838])
    assert flat["plateaued"] and flat["last_share"] == pytest.approx((0.2845 - 0.28385) / (1.0 - 0.28385))
    steady = _plateau([1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])  # (0.25 - 0.075) / 0.925 = 19%
    assert not steady["plateaued"] and steady["last_share"] == pytest.approx(0.175 / 0.925)
    assert not _plateau([1.0, 0.9, 0.8, 0.7])["plateaued"]  # too short to tell


def test_segmentation_baselines_by_hand():
    from lossnet.data.roads import load_segmentation_data

    config = {"crop": 48, "n_train": 2, "n_val": 0, "n_test": 3, "tile_size": 64, "threshold": 0.3, "buffer": 0}
    masks = torch.stack([load_segmentation_data("builtin", crop=48, n_train=2, n_val=0, n_test=3).test[i][1]
                         for i in range(3)])
    base = segmentation_baseline(config)
    road = float(masks.mean())
    assert base["all road"]["completeness"] == pytest.approx(1.0)
    assert base["all road"]["quality"] == pytest.approx(road, rel=1e-6)  # TP / (TP + FP) with every pixel road
    assert base["no road"]["quality"] == 0.0
