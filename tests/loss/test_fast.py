"""The GPU fast path, checked on CPU: channels-last, bf16/fp16 autocast, torch.compile."""
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import lossnet
from lossnet.errors import InputError, LossnetError, UnknownNameError
from lossnet.loss import fast
from lossnet.loss.fast import (
    TOLERANCE,
    AcceleratedTrunk,
    accelerate,
    acceleration,
    tolerance,
)

DISTANCES = ("spatial", "mse", "style")
SIZE = 40  # just above alexnet's smallest input for the LPIPS points (31 px): half precision is slow on CPU


@pytest.fixture(scope="module")
def pairs(photo_pairs):
    """Real photos and distorted versions, downsized to SIZE px."""
    return tuple(F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
                 for x in photo_pairs)


@pytest.fixture(scope="module")
def net():
    return lossnet.LossNetwork("alexnet", "lpips", weights="random")


@pytest.fixture
def metrics(net):
    """Per-sample metrics of three distances sharing one trunk; the trunk is plain again afterwards."""
    yield {d: lossnet.PerceptualLoss(network=net, distance=d, reduction="none") for d in DISTANCES}
    accelerate(net, channels_last=False)


@pytest.fixture(scope="module")
def reference(net, pairs):
    """Float32 values of the plain trunk."""
    with torch.no_grad():
        return {d: lossnet.PerceptualLoss(network=net, distance=d, reduction="none")(*pairs) for d in DISTANCES}


def _rel(a, b):
    return float(((a - b).abs() / b.abs()).max())


def test_channels_last_equals_float32(net, metrics, reference, pairs):
    seen = []
    accelerate(metrics["spatial"])  # channels_last=True by default
    body = net.body
    assert isinstance(body, AcceleratedTrunk)
    handle = body.body.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            for d in DISTANCES:
                assert _rel(metrics[d](*pairs), reference[d]) <= TOLERANCE["channels_last"], d
    finally:
        handle.remove()
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_within_stated_tolerance(net, metrics, reference, pairs, precision):
    accelerate(metrics["spatial"], autocast=precision)
    with torch.no_grad():
        trunk_out = net.body(net.prepare(pairs[0]))
        assert {f.dtype for f in trunk_out.values()} == {fast.AUTOCAST_DTYPES[precision]}
        for d in DISTANCES:
            value = metrics[d](*pairs)
            assert value.dtype == torch.float32
            err = _rel(value, reference[d])
            assert 0 < err <= tolerance(precision, d), (d, err)  # > 0: the trunk really ran in half precision


def test_distances_are_float32_on_half_precision_features(net, metrics, pairs):
    """The metric equals the float32 distance of the promoted bf16 trunk features: no distance op ran in bf16."""
    accelerate(metrics["style"], autocast="bf16")
    x0, x1 = pairs
    with torch.no_grad():
        f0 = {p: f.float() for p, f in net.body(net.prepare(x0)).items()}
        f1 = {p: f.float() for p, f in net.body(net.prepare(x1)).items()}
        for d in DISTANCES:
            torch.testing.assert_close(metrics[d](x0, x1), lossnet.feature_distance(f0, f1, d), rtol=1e-6, atol=0)


def test_training_gradient_under_bf16(net, metrics, pairs):
    x0, x1 = pairs
    grads = {}
    for precision in (None, "bf16"):
        accelerate(metrics["spatial"], autocast=precision)
        x = x0.clone().requires_grad_(True)
        metrics["spatial"](x, x1).sum().backward()
        grads[precision] = x.grad.flatten()
    assert torch.isfinite(grads["bf16"]).all()
    assert torch.nn.functional.cosine_similarity(grads["bf16"], grads[None], dim=0) > 0.99
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_keys_unchanged_and_interchangeable(net, metrics):
    metric = metrics["spatial"]
    plain = {k: v.clone() for k, v in metric.state_dict().items()}
    accelerate(metric, autocast="bf16")
    fast_state = metric.state_dict()
    assert list(fast_state) == list(plain)
    # a plain checkpoint loads strictly into the accelerated metric, and the other way round
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in plain.items()}
    metric.load_state_dict(changed, strict=True)
    torch.testing.assert_close(metric.state_dict()["net.body.features.0.weight"], changed["net.body.features.0.weight"])
    other = lossnet.PerceptualLoss("alexnet", layers="lpips", weights="random")
    other.load_state_dict(metric.state_dict(), strict=True)
    metric.load_state_dict(plain, strict=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        metric.load_state_dict({k: v for k, v in plain.items() if k != "net.body.features.0.weight"}, strict=True)


def test_reaccelerate_replaces_and_plain_restores(net, metrics, reference, pairs):
    original = net.body
    accelerate(metrics["spatial"], autocast="bf16")
    accelerate(metrics["spatial"], autocast="fp16")
    assert isinstance(net.body, AcceleratedTrunk) and net.body.body is original  # never wrapped twice
    assert acceleration(metrics["mse"]) == {"channels_last": True, "autocast": "fp16", "compile": False}
    accelerate(metrics["spatial"], channels_last=False)
    assert net.body is original and acceleration(metrics["spatial"]) is None
    assert all(p.is_contiguous() for p in net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(metrics["spatial"](*pairs), reference["spatial"], rtol=0, atol=0)


def test_small_input_diagnosis_still_works(net):
    """LossNetwork probes its smallest input on the meta device, through the accelerated trunk too."""
    fast_net = accelerate(lossnet.LossNetwork("alexnet", "lpips", weights="random"), autocast="bf16")
    assert fast_net.min_input_size() == net.min_input_size()  # `net` is plain here
    with pytest.raises(InputError, match=str(net.min_input_size())):
        fast_net(torch.rand(1, 3, 16, 16))


def test_every_loss_network_inside_a_module_is_accelerated(net, metrics, reference, pairs):
    """E.g. DISTS, or a user's sum of two perceptual losses: every trunk gets the fast path."""
    other = lossnet.LossNetwork("alexnet", ["features.1"], weights="random")
    both = torch.nn.ModuleDict({"a": metrics["spatial"], "b": lossnet.PerceptualLoss(network=other, distance="mse")})
    accelerate(both, autocast="bf16")
    assert isinstance(net.body, AcceleratedTrunk) and isinstance(other.body, AcceleratedTrunk)
    assert acceleration(both) == {"channels_last": True, "autocast": "bf16", "compile": False}
    accelerate(other, channels_last=False)
    assert acceleration(both) == {"trunks": [{"channels_last": True, "autocast": "bf16", "compile": False}, None]}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"autocast": "fp8"}, UnknownNameError, "bf16"),
    ({"autocast": torch.float32}, LossnetError, "autocast=None"),
    ({"compile": "no-such-backend"}, UnknownNameError, "inductor"),
    ({"compile": 1.5}, LossnetError, "backend name"),
    ({"channels_last": "yes"}, LossnetError, "True or False"),
])
def test_bad_options_are_errors(metrics, kwargs, error, match):
    with pytest.raises(error, match=match):
        accelerate(metrics["spatial"], **kwargs)


def test_metric_without_network_is_an_error():
    with pytest.raises(LossnetError, match="nothing to accelerate"):
        accelerate(lossnet.PerceptualLoss(distance="l2"), autocast="bf16")
    with pytest.raises(LossnetError, match="metric module"):
        accelerate("vgg16")


def test_device_that_cannot_autocast_is_an_error(metrics, pairs, monkeypatch):
    """torch itself only warns and silently runs float32; the fast path refuses."""
    real = torch.autocast

    def refusing(device_type, dtype=None, **kw):
        warnings.warn("In CPU autocast, but the target dtype is not supported. Disabling autocast.")
        ctx = real(device_type, dtype=dtype, **kw)
        ctx._enabled = False
        return ctx

    monkeypatch.setattr(fast, "_checked_autocast", set())
    monkeypatch.setattr(torch, "autocast", refusing)
    accelerate(metrics["spatial"], autocast="fp16")
    with pytest.raises(LossnetError, match="not supported on device 'cpu'.*autocast='bf16'"):
        metrics["spatial"](*pairs)


def test_compile_traces_the_trunk(net, metrics, reference, pairs):
    """Dynamo traces the wrapper (layout change and autocast inside); the 'eager' backend keeps it fast here."""
    pytest.importorskip("torch._dynamo")
    accelerate(metrics["spatial"], autocast="bf16", compile="eager")
    assert acceleration(metrics["spatial"])["compile"] == "eager"
    with torch.no_grad():
        err = _rel(metrics["spatial"](*pairs), reference["spatial"])
    assert 0 < err <= tolerance("bf16", "spatial")


@pytest.mark.skipif(not os.environ.get("LOSSNET_TEST_INDUCTOR"),
                    reason="inductor compiles C++ for minutes on a 2-core CPU (147 s for one alexnet conv here); "
                           "set LOSSNET_TEST_INDUCTOR=1 to run it")
def test_compile_with_inductor(net, metrics, reference, pairs):
    accelerate(metrics["spatial"], compile=True)
    with torch.no_grad():
        assert _rel(metrics["spatial"](*pairs), reference["spatial"]) <= 1e-4
