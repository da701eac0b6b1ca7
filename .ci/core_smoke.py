"""Core smoke test, run by .ci/run in a fresh venv holding lossnet WITHOUT any extra.

`pip install lossnet` (no extras) must give a working core: import, list, LossNetwork,
PerceptualLoss (feature and pixel distances), the metric factory, feature_distance; optional
features must name the extra they need.
"""
import importlib.util
import sys

import torch

for extra_only in ("timm", "scipy", "skimage", "matplotlib", "sklearn", "lpips"):
    assert importlib.util.find_spec(extra_only) is None, f"{extra_only} is installed: this venv must have no extras"

import lossnet  # noqa: E402

assert "vgg16" in lossnet.list_architectures()
assert lossnet.extraction_points("resnet18")[:2] == ["conv1", "bn1"]
x, y = torch.rand(2, 3, 64, 64, requires_grad=True), torch.rand(2, 3, 64, 64)
loss = lossnet.PerceptualLoss("vgg16", layers=["features.8"], distance="mse", weights="random")(x, y)
loss.backward()
assert torch.isfinite(x.grad).all()
net = lossnet.LossNetwork("resnet18", "pihlgren", weights="random")
feats = net(torch.rand(1, 3, 64, 64))
d = lossnet.feature_distance(feats, net(torch.rand(1, 3, 64, 64)), "spatial")
assert d.shape == (1,) and float(d) > 0
assert float(lossnet.create_metric("l2")(x.detach(), y)) > 0
metric = lossnet.create_metric("alexnet", layers="lpips", distance="spatial", weights="random", reduction="none")
assert metric(x.detach(), y).shape == (2,)
# optional features say which extra they need
try:
    lossnet.LossNetwork("timm:resnet18", weights="random")
except lossnet.LossnetError as exc:
    assert "lossnet[timm]" in str(exc), exc
else:
    raise AssertionError("timm models must need the timm extra")
print("core smoke test: ok", file=sys.stderr)
