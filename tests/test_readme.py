"""The README as a user runs it: every Python snippet and every command of its fenced blocks.

Offline substitutions (nothing else is changed):

- torchvision's ImageNet weights cannot be downloaded here, so ONE function is patched: the
  ``"torchvision"`` entry of ``lossnet.networks.weights._LOADERS`` (the loader of
  ``weights="imagenet"`` for torchvision backbones) fills the model with seeded random weights
  instead. EfficientNet-Lite0's real ImageNet weights come from their package as usual.
- ``HOME`` is a temporary folder holding generated fixtures in the official layouts, so paths
  such as ``~/data/bapps`` (BAPPS 2AFC + JND), ``~/data/tid2013`` and ``~/data/mass_roads``
  exist; commands run in a temporary working folder holding ``a.png``, ``b.png`` and the results
  store ``runs/p.sqlite`` that ``lossnet sweep run pihlgren`` starts (its first runs pending).

Every command shown must be in :data:`COMMANDS`: run, parsed only (the real argument parser
checks every flag; for jobs of minutes to hours, tested elsewhere on tiny configs) or skipped
(downloads, the set-up commands), each with its reason. A new README command fails
:func:`test_every_readme_command_is_classified` until it is added there.
"""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"

RUN = "run"
PARSE = "parse only"
SKIP = "skip"

COMMANDS: dict[str, tuple[str, str]] = {
    # set-up
    "make demo": (SKIP, "builds the environment and runs the full demo (minutes); tests/demo runs the demo "
                        "pipeline on a tiny config and `lossnet demo --quick` runs below"),
    "make test": (SKIP, "runs this test suite"),
    "make bench": (SKIP, "the benchmarks (minutes; they write benchmarks/results/, not a test)"),
    # demo
    "lossnet demo": (PARSE, "the full demo (minutes); tests/demo/test_report.py runs its pipeline on a tiny config"),
    "lossnet demo --quick --out lossnet-out/demo": (RUN, ""),
    # networks and distances
    "lossnet list": (RUN, ""),
    "lossnet list vgg16": (RUN, ""),
    "lossnet distance a.png b.png --net alex": (RUN, ""),
    "lossnet distance a.png b.png --net efficientnet_lite0 --layers pihlgren --distance style --json": (RUN, ""),
    "lossnet distance a.png b.png --net none --distance ssim": (RUN, ""),
    # perceptual similarity
    "lossnet download bapps --to ~/data/bapps --parts twoafc_val jnd": (SKIP, "downloads BAPPS (needs the network)"),
    "lossnet score 2afc --data ~/data/bapps --net alex --lin lpips --json ps.json": (RUN, ""),
    "lossnet score 2afc --data builtin --net efficientnet_lite0 --layers kumar --distance spatial mean_pool style "
    "--analyses --limit 30": (RUN, ""),
    "lossnet score jnd --data ~/data/bapps --net vgg16 --layers lpips": (RUN, ""),
    "lossnet score mos --dataset tid2013 --data ~/data/tid2013 --net resnet50 --layers kumar": (RUN, ""),
    "lossnet calibrate --data ~/data/bapps --net resnet18 --layers kumar --out resnet18_lin.pt": (RUN, ""),
    # training tasks
    "lossnet train superres --data builtin --net efficientnet_lite0 --layers blocks.0 --distance mse --config mini "
    "--out runs/sr": (PARSE, "half a minute of training per run; tests/tasks train every task on tiny configs"),
    "lossnet train autoencoder --data builtin --net vgg16 --layers features.8 --config mini":
        (PARSE, "a minute of training; tests/tasks train every task on tiny configs"),
    "lossnet train segmentation --data ~/data/mass_roads --net vgg16 --layers features.8 --config paper":
        (PARSE, "the study's schedule (hours)"),
    "lossnet train superres --data builtin --net none --distance l2": (PARSE, "half a minute of training"),
    # sweeps
    "lossnet sweep run mini --db runs/mini.sqlite": (PARSE, "minutes; tests/sweeps run sweeps of tiny specs"),
    "lossnet sweep run pihlgren --db runs/p.sqlite --executor ray --address auto":
        (PARSE, "the full study on a Ray cluster (days)"),
    "lossnet sweep status pihlgren --db runs/p.sqlite --json": (RUN, ""),
    "lossnet sweep report pihlgren --db runs/p.sqlite --out runs/report": (RUN, ""),
    "lossnet sweep export --db runs/p.sqlite --csv runs/p.csv --parquet runs/p.parquet": (RUN, ""),
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).strip()


def readme_commands() -> list[str]:
    cmds = []
    for lang, body in fenced_blocks(README.read_text(encoding="utf-8")):
        if lang in ("bash", "sh", "console"):
            cmds += [c for c in (" ".join(_strip_comment(line).split()) for line in body.splitlines()) if c]
    return cmds


def python_snippets() -> list[str]:
    return [body for lang, body in fenced_blocks(README.read_text(encoding="utf-8")) if lang == "python"]


@pytest.fixture(scope="module")
def offline_data(tmp_path_factory):
    """Generated once: HOME with the datasets, and a working folder's starting contents."""
    from lossnet.data.fixtures import (write_bapps_fixture, write_jnd_fixture, write_massachusetts_fixture,
                                       write_tid2013_fixture)
    from lossnet.sweeps.spec import expand
    from lossnet.sweeps.store import ResultsStore

    root = tmp_path_factory.mktemp("readme")
    home, work = root / "home", root / "work"
    work.mkdir()
    write_bapps_fixture(home / "data" / "bapps", n=6)
    write_bapps_fixture(home / "data" / "bapps", n=6, split="train")  # lossnet calibrate trains on it
    write_jnd_fixture(home / "data" / "bapps", n=6)
    write_tid2013_fixture(home / "data" / "tid2013")
    write_massachusetts_fixture(home / "data" / "mass_roads")
    for name, value in (("a.png", 60), ("b.png", 140)):
        Image.new("RGB", (48, 48), (value, 90, 200 - value)).save(work / name)
    # the results store that `lossnet sweep run pihlgren --db runs/p.sqlite` starts (first runs pending)
    with ResultsStore(work / "runs" / "p.sqlite") as store:
        store.add_runs(expand("pihlgren")[:4], sweep="pihlgren")
    return home, work


@pytest.fixture()
def offline_home(offline_data, tmp_path, monkeypatch):
    """HOME with the generated data, a fresh working folder, torchvision ImageNet weights seeded random."""
    from lossnet.networks import weights

    home, base = offline_data
    work = tmp_path / "work"
    shutil.copytree(base, work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)

    def seeded_random_imagenet(model, spec, tag):
        weights.load_state_dict_strict(model, weights._random_model(spec, seed=0).state_dict(), spec)

    monkeypatch.setitem(weights._LOADERS, "torchvision", seeded_random_imagenet)
    return work


def test_every_readme_command_is_classified():
    unknown = [c for c in readme_commands() if c not in COMMANDS]
    assert not unknown, f"README commands neither run nor classified in tests/test_readme.py: {unknown}"
    stale = [c for c in COMMANDS if c not in readme_commands()]
    assert not stale, f"commands classified here but no longer in the README: {stale}"
    assert all(reason for kind, reason in COMMANDS.values() if kind != RUN)


@pytest.mark.parametrize("command", [c for c, (kind, _) in COMMANDS.items() if kind == RUN])
def test_readme_command_runs(command, offline_home, capsys):
    from lossnet.cli.main import main

    argv = shlex.split(command)
    assert argv[0] == "lossnet"
    code = main(argv[1:])
    out = capsys.readouterr()
    assert code == 0, f"{command!r} exited {code}:\n{out.err[-2000:]}"


@pytest.mark.parametrize("command", [c for c, (kind, _) in COMMANDS.items() if kind == PARSE])
def test_readme_command_parses(command):
    from lossnet.cli.main import build_parser

    argv = shlex.split(command)
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)


def test_readme_python_snippets_run(offline_home):
    snippets = python_snippets()
    assert snippets
    for i, code in enumerate(snippets):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})


def test_every_local_link_and_image_of_the_readme_exists():
    text = README.read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if t and not (README.parent / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    for t in targets:
        if t.endswith(".png"):
            with Image.open(README.parent / t) as im:
                im.verify()
