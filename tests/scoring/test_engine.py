"""The one-pass engine against PerceptualLoss applied triplet by triplet, for EVERY distance.

The engine prepares each image's features once and compares group views of one batch; the
loss computes each pair on its own. Equal numbers mean the engine adds no maths of its own.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lossnet
from lossnet.distances.functional import FEATURE_DISTANCES
from lossnet.scoring import DistanceEngine, score_2afc
from lossnet.scoring.engine import COMBINED

CASES = {
    "cnn": dict(arch="alexnet", layers=["features.1", "features.4", "features.11"], size=64),
    "vit": dict(arch="timm:vit_tiny_patch16_224", layers=["blocks.0", "blocks.5", "blocks.11"], size=224),
}


def _triplets(n: int, size: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, 3, size, size, generator=g)
    p0 = (ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    p1 = (ref + 0.3 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    judge = torch.rand(n, generator=g)
    return [{"ref": ref[i], "p0": p0[i], "p1": p1[i], "judge": float(judge[i])} for i in range(n)]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    spec = CASES[request.param]
    if spec["arch"].startswith("timm:"):
        pytest.importorskip("timm")
    net = lossnet.LossNetwork(spec["arch"], spec["layers"], weights="random", seed=3)
    return request.param, net, _triplets(5, spec["size"])


def test_every_distance_equals_perceptual_loss_triplet_by_triplet(case):
    _, net, items = case
    names = sorted(FEATURE_DISTANCES)
    result = score_2afc(lossnet.PerceptualLoss(network=net, distance=names[0]), items, batch_size=2,
                        distances=names, bootstrap=0, progress=False)
    for name in names:
        loss = lossnet.PerceptualLoss(network=net, distance=name, reduction="none")
        for i, item in enumerate(items):
            ref, p0, p1 = (item[k][None] for k in ("ref", "p0", "p1"))
            with torch.no_grad():
                want = {"d0": loss(ref, p0), "d1": loss(ref, p1)}
                layers = {"d0": loss.distance_per_layer(ref, p0), "d1": loss.distance_per_layer(ref, p1)}
            for side in ("d0", "d1"):
                got = getattr(result.triplets, side)[name]
                np.testing.assert_allclose(got[COMBINED][i], float(want[side]), rtol=2e-5, atol=1e-7,
                                           err_msg=f"{name} {side} combined, triplet {i}")
                for point, value in layers[side].items():
                    np.testing.assert_allclose(got[point][i], float(value), rtol=2e-5, atol=1e-7,
                                               err_msg=f"{name} {side} at {point}, triplet {i}")


def test_lin_and_layer_weights_equal_perceptual_loss(case):
    kind, net, items = case
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        channels = {p: f.shape[1] for p, f in net(items[0]["ref"][None]).items()}
    lin = {p: torch.rand(c, generator=g) for p, c in channels.items()}
    weights = [0.5, 2.0, 1.0]
    loss = lossnet.PerceptualLoss(network=net, distance="spatial", lin=lin, layer_weights=weights, reduction="none")
    result = score_2afc(loss, items, batch_size=3, bootstrap=0, progress=False)
    for i, item in enumerate(items):
        with torch.no_grad():
            want = loss(item["ref"][None], item["p1"][None])
        np.testing.assert_allclose(result.triplets.d1["spatial"][COMBINED][i], float(want), rtol=2e-5, atol=1e-7)


def test_engine_channel_terms_reproduce_the_lin_weighted_distance(case):
    _, net, items = case
    metric = lossnet.PerceptualLoss(network=net, distance="spatial", reduction="none")
    engine = DistanceEngine(metric)
    images = torch.cat([torch.stack([it[k] for it in items]) for k in ("ref", "p0", "p1")])
    with torch.no_grad():
        feats = engine.features(images)
        t0, t1 = engine.channel_terms(feats, 3, [(0, 1), (0, 2)])
        ones = engine(images, 3, [(0, 1), (0, 2)], feats)["spatial"][COMBINED]
    np.testing.assert_allclose(t0.sum(1).numpy(), ones[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(t1.sum(1).numpy(), ones[1].numpy(), rtol=1e-5)
