"""2AFC scoring: exact formula, independent LPIPS reference distances, one pass, layer-wise PS, CIs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import lossnet
from lossnet.data import builtin_2afc, load_2afc, write_bapps_fixture
from lossnet.scoring import (
    ScoringError,
    TwoAFCResult,
    format_table,
    score_2afc,
    twoafc_scores,
)

lpips_ref = pytest.importorskip("lpips")

N = 12  # triplets per subset; item 9 of "traditional" has identical p0 and p1 files
JUDGES = {
    "traditional": [0.0, 1.0, 0.2, 0.8, 0.6, 0.4, 1.0, 0.0, 0.5, 0.5, 1.0, 0.0],
    "cnn": [1.0, 0.0, 0.0, 1.0, 0.8, 0.2, 0.6, 1.0, 0.4, 0.0, 1.0, 0.7],
}
CNN_TIES = (2, 7)  # made exact ties by copying p0 over p1


def expected_ps(d0, d1, judge) -> float:
    """Section 3 of REFERENCE.md, written out per triplet (independent of lossnet's code)."""
    total = 0.0
    for a, b, j in zip(d0, d1, judge):
        if a < b:
            total += 1.0 - j
        elif b < a:
            total += j
        else:
            total += 0.5
    return 100.0 * total / len(judge)


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    root = write_bapps_fixture(tmp_path_factory.mktemp("bapps"), n=N, judges=JUDGES)
    cnn = root / "2afc" / "val" / "cnn"
    for i in CNN_TIES:
        shutil.copy(cnn / "p0" / f"{i:06d}.png", cnn / "p1" / f"{i:06d}.png")
    return root


@pytest.fixture(scope="module")
def sets(bapps):
    return load_2afc(bapps)


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("trunk") / "alexnet_seed1.pth"
    torch.save(lossnet.load_model("alexnet", weights="random", seed=1).state_dict(), path)
    return path


def lpips_reference(path, lin: bool = True):
    """The lpips package's own LPIPS with lossnet's random AlexNet trunk copied in."""
    ref = lpips_ref.LPIPS(net="alex", pnet_rand=True, lpips=lin, verbose=False)
    state = torch.load(path, weights_only=True)
    with torch.no_grad():
        for name, param in ref.net.named_parameters():  # slice{k}.{i}.{param} <- features.{i}.{param}
            _, i, kind = name.split(".")
            param.copy_(state[f"features.{i}.{kind}"])
    return ref.eval()


def reference_distances(ref, ds):
    """d0, d1 (combined and per layer) and judges the way lpips's evaluation does it: two calls per batch."""
    items = [ds[i] for i in range(len(ds))]
    r, p0, p1 = (torch.stack([it[k] for it in items]) for k in ("ref", "p0", "p1"))
    with torch.no_grad():
        v0, per0 = ref(r, p0, retPerLayer=True, normalize=True)
        v1, per1 = ref(r, p1, retPerLayer=True, normalize=True)
    layers0 = np.stack([t.flatten().double().numpy() for t in per0], axis=1)
    layers1 = np.stack([t.flatten().double().numpy() for t in per1], axis=1)
    judge = np.array([float(it["judge"]) for it in items])
    return v0.flatten().double().numpy(), v1.flatten().double().numpy(), layers0, layers1, judge


@pytest.mark.parametrize("lin", [True, False], ids=["lpips-lin", "no-lin"])
def test_scores_equal_formula_on_independent_lpips_distances(sets, alex_file, lin):
    metric = lossnet.lpips("alex", weights=alex_file, lin="lpips" if lin else None)
    result = score_2afc(metric, sets, batch_size=5, bootstrap=100, progress=False)
    ref = lpips_reference(alex_file, lin)
    points = metric.points
    means = []
    for name, ds in sets.items():
        d0, d1, l0, l1, judge = reference_distances(ref, ds)
        np.testing.assert_allclose(judge, JUDGES[name], atol=1e-7)  # stored as float32 .npy
        m = result.triplets.mask(name)
        # float32 sums in another order (NHWC, one batch of 3B): a few 1e-6 relative, more on tiny distances
        np.testing.assert_allclose(result.triplets.d0["spatial"]["combined"][m], d0, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(result.triplets.d1["spatial"]["combined"][m], d1, rtol=1e-4, atol=1e-9)
        assert result.subsets[name]["n"] == N
        assert result.subsets[name]["score"] == pytest.approx(expected_ps(d0, d1, judge), abs=1e-9)
        # layer-wise PS equals the formula on lpips's own per-layer distances
        for k, p in enumerate(points):
            assert result.layers[p][name] == pytest.approx(expected_ps(l0[:, k], l1[:, k], judge), abs=1e-9)
        means.append(expected_ps(d0, d1, judge))
    assert result.mean == pytest.approx(np.mean(means), abs=1e-9)
    assert result.layers["combined"] == {k: v["score"] for k, v in result.subsets.items()}


def test_exact_ties_count_one_half(sets, alex_file):
    result = score_2afc(lossnet.lpips("alex", weights=alex_file), sets, bootstrap=0, progress=False)
    t = result.triplets
    ties = {"traditional": [9], "cnn": list(CNN_TIES)}
    for name, idx in ties.items():
        m = np.flatnonzero(t.mask(name))[idx]
        for key in t.d0["spatial"]:
            assert np.array_equal(t.d0["spatial"][key][m], t.d1["spatial"][key][m]), (name, key)
        s = twoafc_scores(t.d0["spatial"]["combined"][m], t.d1["spatial"]["combined"][m], t.judges[m])
        assert s.tolist() == [0.5] * len(idx)
    # a judge of 0 or 1 on a tie still scores 0.5 (cnn item 7 has judge 1.0, item 2 judge 0.0)
    assert {JUDGES["cnn"][i] for i in CNN_TIES} == {0.0, 1.0}


def test_formula_on_hand_made_triplets():
    """p0 == ref gives d0 = 0 < d1: score 1 - judge; p1 == ref: judge; p0 == p1: 0.5."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 64, 64, generator=g)
    far = torch.rand(3, 64, 64, generator=g)
    items = [
        {"ref": ref, "p0": ref, "p1": far, "judge": torch.tensor(0.2)},   # 0.8
        {"ref": ref, "p0": far, "p1": ref, "judge": torch.tensor(0.6)},   # 0.6
        {"ref": ref, "p0": far, "p1": far, "judge": torch.tensor(1.0)},   # 0.5
        {"ref": ref, "p0": ref, "p1": far, "judge": torch.tensor(0.0)},   # 1.0
    ]
    for metric in (lossnet.PerceptualLoss("alexnet", layers=["features.1"], weights="random"),
                   lossnet.PerceptualLoss(distance="l2"), lossnet.PerceptualLoss(distance="ssim")):
        r = score_2afc(metric, {"hand": items}, batch_size=3, bootstrap=0, progress=False)
        assert r.subsets["hand"]["score"] == pytest.approx(100 * (0.8 + 0.6 + 0.5 + 1.0) / 4)


def test_layer_weights_shape_the_combined_distance(sets, alex_file):
    pts = ["features.1", "features.11"]
    plain = score_2afc(lossnet.PerceptualLoss("alexnet", layers=pts, weights=alex_file), sets,
                       bootstrap=0, progress=False)
    weighted = score_2afc(lossnet.PerceptualLoss("alexnet", layers=pts, weights=alex_file, layer_weights=[2.0, 0.5]),
                          sets, bootstrap=0, progress=False)
    t, w = plain.triplets, weighted.triplets
    np.testing.assert_allclose(w.d0["spatial"]["combined"],
                               2.0 * t.d0["spatial"][pts[0]] + 0.5 * t.d0["spatial"][pts[1]], rtol=1e-6)
    np.testing.assert_allclose(w.d0["spatial"][pts[0]], t.d0["spatial"][pts[0]])  # per point: unweighted


def test_bootstrap_ci_contains_score_and_is_deterministic(sets, alex_file):
    metric = lossnet.PerceptualLoss("alexnet", layers=["features.4"], weights=alex_file)
    a = score_2afc(metric, sets, bootstrap=500, seed=3, progress=False)
    b = score_2afc(metric, sets, bootstrap=500, seed=3, progress=False)
    c = score_2afc(metric, sets, bootstrap=500, seed=4, progress=False)
    assert a.subsets == b.subsets and (a.mean_ci_low, a.mean_ci_high) == (b.mean_ci_low, b.mean_ci_high)
    assert any(a.subsets[k]["ci_low"] != c.subsets[k]["ci_low"] or a.subsets[k]["ci_high"] != c.subsets[k]["ci_high"]
               for k in a.subsets)
    for v in a.subsets.values():
        assert 0.0 <= v["ci_low"] <= v["score"] <= v["ci_high"] <= 100.0
        assert v["ci_high"] - v["ci_low"] > 0
    assert a.mean_ci_low <= a.mean <= a.mean_ci_high
    none = score_2afc(metric, sets, bootstrap=0, progress=False)
    assert none.subsets["cnn"]["ci_low"] is None and none.subsets["cnn"]["score"] == a.subsets["cnn"]["score"]


def test_reference_goes_through_the_network_once(sets, alex_file):
    metric = lossnet.lpips("alex", weights=alex_file)
    seen = []
    handle = metric.net.body.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        score_2afc(metric, sets, batch_size=5, bootstrap=0, progress=False)
    finally:
        handle.remove()
    # per subset of 12: batches of 5, 5, 2 -> one forward call each with 3B images
    assert seen == [15, 15, 6] * 2
    assert sum(seen) == 3 * 2 * N  # lpips's evaluation would push 4 images per triplet


def test_pixel_baselines_match_independent_computation(sets):
    from skimage.metrics import structural_similarity

    l2 = score_2afc(lossnet.PerceptualLoss(distance="l2"), sets, distances=["l2", "ssim"], bootstrap=0,
                    progress=False)
    assert l2.layers.keys() == {"combined"} and l2.metric["arch"] is None
    for name, ds in sets.items():
        d = {"l2": ([], []), "ssim": ([], [])}
        for i in range(len(ds)):
            item = ds[i]
            r = item["ref"].numpy().astype(np.float64)
            for k, key in enumerate(("p0", "p1")):
                x = item[key].numpy().astype(np.float64)
                d["l2"][k].append(float(((r - x) ** 2).mean()))
                d["ssim"][k].append(1.0 - structural_similarity(r, x, data_range=1.0, channel_axis=0,
                                                                gaussian_weights=True, sigma=1.5,
                                                                use_sample_covariance=False))
        m = l2.triplets.mask(name)
        for dist in ("l2", "ssim"):
            # float32 (lossnet) vs float64 (here): 1 - SSIM near 0 keeps about 1e-7 absolute accuracy
            np.testing.assert_allclose(l2.triplets.d0[dist]["combined"][m], d[dist][0], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(l2.triplets.d1[dist]["combined"][m], d[dist][1], rtol=1e-4, atol=1e-6)
            expected = expected_ps(d[dist][0], d[dist][1], l2.triplets.judges[m])
            assert l2.distances[dist]["subsets"][name]["score"] == pytest.approx(expected)
    ssim_alone = score_2afc("ssim", sets, bootstrap=0, progress=False)
    assert ssim_alone.subsets == l2.distances["ssim"]["subsets"]


def test_result_json_schema(sets, alex_file, tmp_path):
    result = score_2afc(lossnet.lpips("alex", weights=alex_file), sets, distances=["spatial", "mean_pool"],
                        bootstrap=50, progress=False, name="lpips-alex")
    assert isinstance(result, TwoAFCResult)
    path = tmp_path / "out" / "ps.json"
    result.to_json(path)
    d = json.loads(path.read_text())
    assert set(d["subsets"]) == {"traditional", "cnn"}
    for v in d["subsets"].values():
        assert set(v) >= {"score", "n", "ci_low", "ci_high"} and 0 <= v["score"] <= 100
    assert d["mean"] == pytest.approx(np.mean([v["score"] for v in d["subsets"].values()]))
    assert set(d["layers"]) == set(result.points) | {"combined"}
    assert set(d["layers"]["features.1"]) == {"traditional", "cnn"}
    assert set(d["distances"]) == {"spatial", "mean_pool"}
    assert d["arch"] == "alexnet" and d["points"] == result.points and d["lin"] is True
    assert d["synthetic"] is False and d["n"] == 2 * N and d["distance"] == "spatial"
    table = format_table(result)
    assert "traditional" in table and "mean" in table and "Layer-wise PS" in table and "95% CI" in table


def test_builtin_is_labelled_synthetic():
    r = score_2afc("l2", builtin_2afc(n_per_subset=4), bootstrap=0, progress=False)
    assert r.synthetic is True
    assert "SYNTHETIC" in r.to_dict()["note"] and "SYNTHETIC" in format_table(r)


def test_bad_inputs_give_clear_errors():
    ok = {"ref": torch.rand(3, 64, 64), "p0": torch.rand(3, 64, 64), "p1": torch.rand(3, 64, 64),
          "judge": torch.tensor(0.5)}
    with pytest.raises(ScoringError, match=r"\[0, 1\]"):
        score_2afc("l2", [{**ok, "judge": torch.tensor(1.5)}], progress=False)
    with pytest.raises(ScoringError, match="same size"):
        score_2afc("l2", [{**ok, "p1": torch.rand(3, 32, 32)}], progress=False)
    with pytest.raises(ScoringError, match="key 'judge'|keys"):
        score_2afc("l2", [{k: v for k, v in ok.items() if k != "judge"}], progress=False)
    with pytest.raises(ScoringError, match="no network"):
        score_2afc("l2", [ok], distances=["spatial"], progress=False)
    with pytest.raises(lossnet.InputError):
        score_2afc("l2", [{**ok, "p0": ok["p0"] * 255}], progress=False)
    with pytest.raises(ScoringError, match="load it first"):
        score_2afc("l2", "/some/folder", progress=False)


def test_efficientnet_lite0_imagenet_is_above_chance_on_builtin(lite0_builtin):
    real, _ = lite0_builtin
    assert real.mean > 50
    assert all(v["score"] > 50 for v in real.subsets.values())


def test_efficientnet_lite0_imagenet_beats_untrained_copy_on_builtin(lite0_builtin):
    real, untrained = lite0_builtin
    assert real.mean > untrained.mean
    # the subset where structure matters more than appearance separates them clearly
    sva = "structure-vs-appearance"
    assert real.subsets[sva]["score"] > untrained.subsets[sva]["score"] + 20


@pytest.fixture(scope="module")
def lite0_builtin():
    sets = builtin_2afc(n_per_subset=20)
    real = score_2afc(lossnet.PerceptualLoss("efficientnet_lite0", weights="imagenet"), sets, bootstrap=0,
                      progress=False)
    untrained = score_2afc(lossnet.PerceptualLoss("efficientnet_lite0", weights="random"), sets, bootstrap=0,
                           progress=False)
    return real, untrained
