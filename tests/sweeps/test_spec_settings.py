"""Grid-level ``settings``: training-config overrides expand into runs whose ids include them;
bad keys and values are clear errors listing the valid fields; the ready-made knob sweeps."""
from __future__ import annotations

import pytest

from lossnet.errors import LossnetError
from lossnet.sweeps import classifier_task  # noqa: F401  (registers the task and its settings fields)
from lossnet.sweeps.spec import SpecError, expand, load_spec


def _spec(**grid) -> dict:
    block = {"architectures": ["kumar_resnet6", "kumar_resnet50"], "weights": ["random"], "points": "combined:kumar",
             "distances": ["spatial"], "tasks": ["classifier"], "seeds": [0], **grid}
    return {"name": "knobs", "imports": ["lossnet.sweeps.classifier_task"], "grid": [block],
            "tasks": {"classifier": {"config": "paper", "overrides": {"eval_points": 3}}}}


def test_settings_expand_into_runs_whose_ids_include_them():
    plain = expand(_spec())
    runs = expand(_spec(settings=[{}, {"weight_decay": 1e-5}, {"weight_decay": 1e-3, "label_smoothing": 0.1}]))
    assert len(plain) == 2 and len(runs) == 6
    # order: settings tables as written, then architectures
    assert [(r.arch, r.settings["overrides"]) for r in runs] == [
        ("kumar_resnet6", {"eval_points": 3}), ("kumar_resnet50", {"eval_points": 3}),
        ("kumar_resnet6", {"eval_points": 3, "weight_decay": 1e-5}),
        ("kumar_resnet50", {"eval_points": 3, "weight_decay": 1e-5}),
        ("kumar_resnet6", {"eval_points": 3, "weight_decay": 1e-3, "label_smoothing": 0.1}),
        ("kumar_resnet50", {"eval_points": 3, "weight_decay": 1e-3, "label_smoothing": 0.1})]
    assert len({r.id for r in runs}) == 6
    assert [r.id for r in runs[:2]] == [r.id for r in plain]  # {}: the same runs as without settings
    assert runs[2].identity()["settings"]["overrides"]["weight_decay"] == 1e-5
    # a single table is one value; a grid setting wins over the task's override of the same key
    one = expand(_spec(settings={"eval_points": 7}))
    assert [r.settings["overrides"] for r in one] == [{"eval_points": 7}] * 2
    assert {r.id for r in one}.isdisjoint(r.id for r in plain)


def test_settings_in_defaults_apply_to_every_block():
    spec = _spec()
    spec["defaults"] = {"settings": [{"dropout": 0.2}]}
    assert [r.settings["overrides"]["dropout"] for r in expand(spec)] == [0.2, 0.2]


@pytest.mark.parametrize("settings, message", [
    ({"wd": 1e-5}, r"unknown classifier config field 'wd'.*Valid classifier config fields: .*weight_decay"),
    ({"label_smothing": 0.1}, r"Did you mean 'label_smoothing'"),
    ({"epochs": 3}, r"unknown classifier config field 'epochs'"),  # the classifier counts steps
    ({"weight_decay": "lots"}, r"weight_decay.*is a number"),
    ({"crop": "centre"}, r"crop 'centre' is not one of pad, resized, center, none"),
    ([{}, 3], r"must be a table or a list of tables"),
    ([], r"'settings' of grid block 1 is empty"),
])
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(LossnetError, match=message):
        load_spec(_spec(settings=settings))


def test_settings_need_a_training_task():
    spec = {"name": "s", "grid": {"architectures": ["resnet18"], "points": ["layer1"], "tasks": ["similarity"],
                                  "settings": [{"n_per_subset": 3}]}}
    with pytest.raises(SpecError, match="task similarity takes no training overrides"):
        load_spec(spec)


def test_settings_of_pihlgren_training_tasks_are_checked_against_their_config():
    spec = {"name": "s", "grid": {"architectures": ["resnet18"], "points": ["layer1"], "tasks": ["superres"],
                                  "distances": ["spatial"], "settings": [{"epochs": 2}, {"eposh": 2}]}}
    with pytest.raises(LossnetError, match="unknown superres config field 'eposh'.*Did you mean 'epochs'"):
        load_spec(spec)


PAPER_MODELS = {"kumar_resnet6", "kumar_resnet50", "kumar_resnet200", "kumar_vit_b8", "kumar_vit_l4"}


def test_ready_made_knob_sweeps():
    defaults = {r.id: r for r in expand("kumar-defaults")}
    expected = {  # knob -> {arch: values besides the default}, REFERENCE.md section 7 / Figs. 5, 7-9
        "kumar-weight-decay": ("weight_decay", {**{a: [1e-6, 1e-5, 1e-3, 1e-2, 1e-1, 1.0] for a in
                                                   ("kumar_resnet6", "kumar_resnet50", "kumar_resnet200")},
                                                "kumar_vit_b8": [0.01, 0.03, 0.1, 1.0]}),
        "kumar-label-smoothing": ("label_smoothing", {a: [round(0.1 * i, 1) for i in range(1 if "resnet" in a else 2,
                                                                                          10)] for a in PAPER_MODELS}),
        "kumar-dropout": ("dropout", {a: [round(0.1 * i, 1) for i in range(1 if "resnet" in a else 2, 10)]
                                      for a in PAPER_MODELS}),
        "kumar-crop": ("crop", {a: ["center"] for a in PAPER_MODELS}),
        "kumar-train-steps": ("train_steps", {**{a: [1251, 2502, 6256, 12511, 25023, 56301] for a in
                                                 ("kumar_resnet6", "kumar_resnet50", "kumar_resnet200")},
                                              **{a: [12511, 18767, 31278, 46918, 62557] for a in
                                                 ("kumar_vit_b8", "kumar_vit_l4")}}),
    }
    for name, (knob, values) in expected.items():
        runs = expand(name)
        got: dict[str, list] = {}
        for r in runs:
            overrides = r.settings.get("overrides") or {}
            assert set(overrides) <= {knob} and r.settings["config"] == "paper"
            if overrides:
                got.setdefault(r.arch, []).append(overrides[knob])
            else:  # the default recipe: the very run (same id) of kumar-defaults
                assert r.id in defaults and defaults[r.id].seed == 0
        assert got == values, name
        assert {r.arch for r in runs if not r.settings.get("overrides")} == set(values)
