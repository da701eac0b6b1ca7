"""Sweep specs: grid expansion, deterministic order, stable ids, ready-made specs, clear errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lossnet.errors import LossnetError
from lossnet.sweeps.spec import (
    RunConfig,
    SpecError,
    expand,
    list_specs,
    load_spec,
    run_id,
)

GRID_TOML = """
name = "grid"
[[grid]]
architectures = ["alexnet", "resnet18"]
weights = ["imagenet", "random"]
points = "pihlgren"
distances = ["spatial", "mse"]
tasks = ["similarity", "superres"]
seeds = [0, 1]

[[grid]]
architectures = ["vgg16"]
points = ["combined", ["features.3", "features.8"], "features.15"]
tasks = ["similarity"]
baselines = ["l2", "ssim"]

[tasks.similarity]
data = "builtin"
n_per_subset = 10

[tasks.superres]
distances = ["mse"]
overrides = { epochs = 1 }
"""

PIHLGREN_POINTS = {  # REFERENCE.md section 1
    "alexnet": ["features.1", "features.4", "features.7", "features.11"],
    "vgg16": ["features.3", "features.8", "features.15", "features.29"],
    "vgg19": ["features.3", "features.8", "features.17", "features.35"],
    "resnet50": ["relu", "layer1", "layer2", "layer4"],
    "densenet121": ["features.relu0", "features.denseblock1", "features.denseblock2", "features.denseblock4"],
    "inception_v3": ["Conv2d_2b_3x3", "Mixed_5b", "Mixed_5d", "Mixed_6e"],
    "efficientnet_b7": ["features.0", "features.1", "features.4", "features.7"],
}


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expansion_counts_order_and_axes(tmp_path):
    runs = expand(_write(tmp_path, GRID_TOML))
    block1 = [r for r in runs if r.arch in ("alexnet", "resnet18")]
    # similarity: 2 archs x 2 weights x 4 points x 2 distances x 2 seeds; superres: its own distance (mse) only
    assert len([r for r in block1 if r.task == "similarity"]) == 2 * 2 * 4 * 2 * 2
    assert len([r for r in block1 if r.task == "superres"]) == 2 * 2 * 4 * 1 * 2
    assert {r.distance for r in block1 if r.task == "superres"} == {"mse"}
    # the layer-set name expands to each point as its own run, shallow to deep, with slots 1..4
    alex = [r for r in block1 if r.task == "similarity" and r.arch == "alexnet" and r.weights == "imagenet"
            and r.distance == "spatial" and r.seed == 0]
    assert [r.points for r in alex] == [(p,) for p in PIHLGREN_POINTS["alexnet"]]
    assert [r.slot for r in alex] == [1, 2, 3, 4] and [r.layer_set for r in alex] == ["pihlgren"] * 4
    # deterministic order: tasks, then archs, weights, points, distances, seeds
    first = block1[:4]
    assert [(r.task, r.arch, r.weights, r.points[0], r.distance, r.seed) for r in first] == [
        ("similarity", "alexnet", "imagenet", "features.1", "spatial", 0),
        ("similarity", "alexnet", "imagenet", "features.1", "spatial", 1),
        ("similarity", "alexnet", "imagenet", "features.1", "mse", 0),
        ("similarity", "alexnet", "imagenet", "features.1", "mse", 1)]
    vgg = [r for r in runs if r.arch == "vgg16"]
    assert [(r.label, r.points) for r in vgg] == [
        ("combined", tuple(PIHLGREN_POINTS["vgg16"])),
        ("features.3+features.8", ("features.3", "features.8")),
        ("features.15", ("features.15",))]
    pixel = [r for r in runs if r.arch is None]
    assert [(r.task, r.distance, r.points, r.weights) for r in pixel] == [
        ("similarity", "l2", None, None), ("similarity", "ssim", None, None)]
    # settings: registry defaults filled in, spec values applied
    sim = runs[0].settings
    assert sim["n_per_subset"] == 10 and sim["data"] == "builtin" and sim["bootstrap"] == 1000
    assert [r for r in runs if r.task == "superres"][0].settings["overrides"] == {"epochs": 1}
    assert len({r.id for r in runs}) == len(runs)


def test_ids_are_stable_hashes_of_the_resolved_config(tmp_path):
    a = expand(_write(tmp_path, GRID_TOML))
    b = expand(load_spec(_write(tmp_path, GRID_TOML, "again.toml")))
    assert [r.id for r in a] == [r.id for r in b]
    # the id is the short SHA-256 of the canonical JSON of the resolved config, computed independently here
    r = a[0]
    identity = {"task": r.task, "arch": r.arch, "weights": r.weights, "weights_sha256": None,
                "points": list(r.points), "distance": r.distance, "seed": r.seed, "threads": 1,
                "settings": {k: v for k, v in r.settings.items() if k != "device"}}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert r.id == hashlib.sha256(text.encode()).hexdigest()[:12] == run_id(identity)
    # key order in the file, resources, device and the spec's name do not change ids
    reordered = GRID_TOML.replace('name = "grid"', 'name = "other"\n[resources]\nnum_cpus = 3') \
        .replace('data = "builtin"\nn_per_subset = 10', 'n_per_subset = 10\ndata = "builtin"\ndevice = "cpu"')
    c = expand(_write(tmp_path, reordered, "reordered.toml"))
    assert [r.id for r in c] == [r.id for r in a]
    assert c[0].resources["num_cpus"] == 3
    # a setting that changes results changes the id; the same run in another spec keeps its id
    changed = expand(_write(tmp_path, GRID_TOML.replace("n_per_subset = 10", "n_per_subset = 11"), "changed.toml"))
    assert all(x.id != y.id for x, y in zip(changed, a) if x.task == "similarity")
    assert [x.id for x in changed if x.task == "superres"] == [y.id for y in a if y.task == "superres"]
    # RunConfig round-trips through its dict (what workers receive)
    assert RunConfig.from_dict(r.to_dict()).id == r.id


def test_overrides_change_settings_and_ids(tmp_path):
    path = _write(tmp_path, GRID_TOML)
    base = expand(path)
    over = expand(load_spec(path, ["similarity.data=/data/bapps", "similarity.n_per_subset=3"]))
    sims = [r for r in over if r.task == "similarity"]
    assert sims[0].settings["data"] == "/data/bapps" and sims[0].settings["n_per_subset"] == 3
    assert sims[0].id != base[0].id
    with pytest.raises(LossnetError, match="setting of task similarity"):
        load_spec(path, ["similarity.nope=1"])
    with pytest.raises(SpecError, match="TASK.KEY=VALUE"):
        load_spec(path, ["similarity.data"])


def test_ready_made_specs():
    assert {"pihlgren", "kumar-out-of-the-box", "mini"} <= set(list_specs())
    pihlgren = expand("pihlgren")
    archs = list(dict.fromkeys(r.arch for r in pihlgren))
    assert len(archs) == 14 and len(pihlgren) == 14 * 4 * 4
    assert {r.task for r in pihlgren} == {"similarity", "autoencoder", "superres", "segmentation"}
    for arch, points in PIHLGREN_POINTS.items():
        assert [r.points[0] for r in pihlgren if r.arch == arch and r.task == "superres"] == points
    assert {r.distance for r in pihlgren if r.task != "similarity"} == {"mse"}
    assert {r.settings["config"] for r in pihlgren if r.task != "similarity"} == {"paper"}
    assert {r.settings["input_norm"] for r in pihlgren if r.task != "similarity"} == {"none"}

    kumar = expand("kumar-out-of-the-box")
    nets = [r for r in kumar if r.arch is not None]
    assert {r.distance for r in nets} == {"spatial", "mean_pool", "style"}
    assert all(r.label == "combined" and r.task == "similarity" for r in nets)
    assert {r.arch.split("_")[0] for r in nets} >= {"resnet18", "efficientnet", "vit"}
    vit = next(r for r in nets if r.arch == "vit_b_16")
    assert len(vit.points) == 12  # every encoder block (CLS token)

    mini = expand("mini")
    assert all(r.settings.get("data") == "builtin" for r in mini)
    assert {r.weights for r in mini if r.arch} == {"imagenet", "random"}
    assert any(r.arch is None for r in mini)


@pytest.mark.parametrize("text, message", [
    ('name = "x"\nbogus = 1\n[grid]\ntasks = ["noop"]', "unknown key in the sweep spec 'bogus'"),
    ('[grid]\narchitectures = ["vgg16"]\ntask = ["similarity"]', "Did you mean 'tasks'"),
    ('[grid]\narchitectures = ["vgg61"]\ntasks = ["similarity"]', "unknown architecture 'vgg61'.*vgg16"),
    ('[grid]\narchitectures = ["vgg16"]\npoints = ["features.99"]\ntasks = ["similarity"]',
     "unknown extraction point of vgg16 'features.99'.*features.3"),
    ('[grid]\narchitectures = ["vgg16"]\npoints = "kumar"\ntasks = ["similarity"]', "kumar"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarty"]', "unknown task 'similarty'.*'similarity'"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarity"]\n[tasks.similarity]\ndatta = "x"',
     "Did you mean 'data'"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarity"]\ndistances = ["chebyshev9"]', "unknown distance 'chebyshev9'"),
    ('[grid]\ntasks = ["similarity"]', "no architectures and no baselines"),
    ('[grid]\narchitectures = ["vgg16"]', "names no tasks"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarity"]\npoints = []', "'points' is empty"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarity"]\nweights = ["missing.pt"]', "neither 'imagenet'"),
    ('[grid]\nbaselines = ["spatial"]\ntasks = ["similarity"]', "unknown pixel baseline"),
    ('[grid]\narchitectures = ["vgg16"]\ntasks = ["similarity"]\nseeds = []', "no seeds"),
    ('name = "x"', "no \\[grid\\]"),
    ('[grid\n', "not valid TOML"),
    ('imports = ["no_such_module_xyz"]\n[grid]\ntasks = ["noop"]', "cannot import 'no_such_module_xyz'"),
])
def test_bad_specs_give_clear_errors(tmp_path, text, message):
    with pytest.raises(LossnetError, match=message):
        expand(_write(tmp_path, text))


def test_unknown_spec_name_lists_the_ready_made_ones():
    with pytest.raises(SpecError, match="ready-made spec.*mini"):
        load_spec("no-such-spec")


def test_network_free_tasks_and_dict_specs():
    runs = expand({"name": "n", "grid": {"tasks": ["noop"], "seeds": [2, 0, 1]}})
    assert [r.seed for r in runs] == [2, 0, 1] and all(r.arch is None for r in runs)
    # duplicates (the same resolved run twice) are dropped, keeping the first
    twice = expand({"grid": [{"tasks": ["noop"], "seeds": [0]}, {"tasks": ["noop"], "seeds": [0, 1]}]})
    assert [r.seed for r in twice] == [0, 1]


def test_weights_file_contents_are_part_of_the_run_id(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"first contents")
    text = f'[grid]\narchitectures = ["resnet18"]\nweights = ["{weights}", "random"]\npoints = ["layer1"]\n' \
           'tasks = ["similarity"]\n'
    first = expand(_write(tmp_path, text))
    by_weights = {r.weights: r for r in first}
    assert by_weights[str(weights)].weights_sha256 == hashlib.sha256(b"first contents").hexdigest()
    assert by_weights["random"].weights_sha256 is None
    assert by_weights[str(weights)].to_dict()["weights_sha256"] == by_weights[str(weights)].weights_sha256
    assert expand(_write(tmp_path, text))[0].id == first[0].id  # same contents: same id
    weights.write_bytes(b"other contents, other size")  # the same path with other weights
    second = {r.weights: r for r in expand(_write(tmp_path, text))}
    assert second[str(weights)].id != by_weights[str(weights)].id
    assert second[str(weights)].weights_sha256 == hashlib.sha256(b"other contents, other size").hexdigest()
    assert second["random"].id == by_weights["random"].id


def test_threads_are_a_run_setting_in_the_id(tmp_path):
    base = '[grid]\ntasks = ["noop"]\nseeds = [0]\n'
    default = expand(_write(tmp_path, base))[0]
    two = expand(_write(tmp_path, "threads = 2\n" + base, "two.toml"))[0]
    per_task = expand(_write(tmp_path, base + "[tasks.noop]\nthreads = 3\n", "three.toml"))[0]
    assert (default.threads, two.threads, per_task.threads) == (1, 2, 3)
    assert len({default.id, two.id, per_task.id}) == 3
    assert RunConfig.from_dict(two.to_dict()).threads == 2 and RunConfig.from_dict(two.to_dict()).id == two.id
    assert expand(load_spec(_write(tmp_path, base, "set.toml"), ["noop.threads=2"]))[0].id == two.id
    for bad in ("threads = 0\n", "threads = -1\n", "threads = 1.5\n", 'threads = "auto"\n'):
        with pytest.raises(SpecError, match="at least 1"):
            expand(_write(tmp_path, bad + base, "bad.toml"))
    with pytest.raises(SpecError, match="at least 1"):
        load_spec(_write(tmp_path, base, "bad2.toml"), ["noop.threads=0"])
