"""A user's own nn.Module as a loss network: every guarantee of the name path holds."""
import pytest
import torch
import torchvision
from torch import nn

import lossnet
from lossnet.errors import LossnetError, WeightsError
from lossnet.networks import LossNetwork, extraction_points


class Backbone(nn.Module):
    """A small custom CNN with an in-place ReLU after a point, BatchNorm, dropout and a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 1000)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.down(self.drop(x))
        return self.head(x.mean((2, 3)))


def _snapshot(module: nn.Module):
    return ({k: v.clone() for k, v in module.state_dict().items()},
            [(n, m.training) for n, m in module.named_modules()],
            [(n, p.requires_grad) for n, p in module.named_parameters()],
            [(n, m.inplace) for n, m in module.named_modules() if hasattr(m, "inplace")])


@pytest.fixture
def backbone():
    torch.manual_seed(0)
    model = Backbone()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.1, 0.1)
    return model.train()


def test_module_points_equal_forward_hooks(backbone, photos):
    net = LossNetwork(backbone, layers=["down", "bn"], input_norm="none")
    assert net.points == ["bn", "down"]  # shallow to deep
    seen = {}
    reference = Backbone()
    reference.load_state_dict(backbone.state_dict())
    reference.eval()
    handles = [getattr(reference, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.clone()))
               for n in ("bn", "down")]
    with torch.no_grad():
        reference(photos)
    for h in handles:
        h.remove()
    feats = net(photos)
    for p in ("bn", "down"):
        torch.testing.assert_close(feats[p], seen[p])
    # the in-place ReLU after "bn" did not overwrite the returned feature
    assert (feats["bn"] < 0).any()


def test_the_users_module_is_never_changed(backbone, photos):
    before = _snapshot(backbone)
    net = LossNetwork(backbone, layers=["bn", "down"], input_norm="imagenet")
    nn.Sequential(net).train()
    net(photos)
    extraction_points(backbone)
    after = _snapshot(backbone)
    assert before[1:] == after[1:]  # modes, requires_grad, in-place flags
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert backbone.training and backbone.act.inplace and backbone.conv.weight.requires_grad


def test_module_network_is_frozen_in_eval_mode_and_truncated(backbone, photos):
    net = LossNetwork(backbone, layers=["bn"], input_norm="none")
    parent = nn.Sequential(nn.Conv2d(3, 3, 1), net)
    parent.train()
    assert not net.training and not net.body.bn.training
    running = net.body.bn.running_mean.clone()
    x = photos.clone().requires_grad_(True)
    net(x)["bn"].sum().backward()
    torch.testing.assert_close(net.body.bn.running_mean, running)  # statistics did not move
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in net.parameters())
    # only conv and bn survive: nothing after the deepest point
    kept = sum(p.numel() for p in net.parameters())
    assert kept == sum(p.numel() for p in (*backbone.conv.parameters(), *backbone.bn.parameters()))
    assert not hasattr(net.body, "head")


def test_module_input_is_untouched(photos):
    class InPlaceFirst(nn.Module):
        def forward(self, x):
            x.mul_(2)  # an in-place op on its input
            return x

    x = photos.clone()
    LossNetwork(InPlaceFirst(), layers=["mul_"], input_norm="none")(x)
    torch.testing.assert_close(x, photos)


def test_module_spec_and_weights_info(backbone):
    net = LossNetwork(backbone, layers=["down"], input_norm=(0.5, 0.5))
    assert net.spec.source == "module" and net.spec.name == "module:Backbone"
    assert net.spec.builder.endswith("test_module.Backbone")
    assert net.spec.mean == (0.5, 0.5, 0.5) and net.spec.std == (0.5, 0.5, 0.5)
    assert net.weights_info.source == "module" and net.weights_info.mean is None
    assert net.weights == "module"


def test_torchvision_model_as_a_module_equals_its_name(photos):
    model = lossnet.load_model("resnet18", weights="random", seed=4)
    by_module = LossNetwork(model, layers=["layer1", "layer3"], input_norm="imagenet")
    by_name = LossNetwork("resnet18", layers=["layer1", "layer3"], weights="random", seed=4)
    assert extraction_points(model) == lossnet.extraction_points("resnet18")
    theirs = by_module(photos[:2])
    for p, f in by_name(photos[:2]).items():
        torch.testing.assert_close(theirs[p], f)


def test_module_auto_normalisation_needs_a_source(backbone):
    with pytest.raises(LossnetError, match="carries no input normalisation.*input_norm=\\(mean, std\\)"):
        LossNetwork(backbone, layers=["bn"])


def test_module_without_layers_names_its_points(backbone):
    with pytest.raises(LossnetError, match="pass layers=.*'conv', 'bn', 'act'"):
        LossNetwork(backbone, input_norm="none")


def test_unknown_module_node_lists_the_valid_ones(backbone):
    with pytest.raises(lossnet.UnknownNameError, match="'dwon'.*Did you mean 'down'"):
        LossNetwork(backbone, layers=["dwon"], input_norm="none")


def test_state_dict_file_with_normalisation_loads_into_a_copy(backbone, tmp_path, photos):
    trained = Backbone()
    torch.save({"state_dict": trained.state_dict(), "lossnet": {"mean": [0.2] * 3, "std": [0.4] * 3}},
               tmp_path / "ft.pth")
    before = _snapshot(backbone)
    net = LossNetwork(backbone, layers=["conv"], weights=tmp_path / "ft.pth")  # input_norm="auto"
    assert torch.equal(net.body.conv.weight, trained.conv.weight)
    assert all(torch.equal(before[0][k], v) for k, v in backbone.state_dict().items())  # the original kept its own
    torch.testing.assert_close(net.prepare(photos), (photos - 0.2) / 0.4)
    assert net.weights_info.file == str(tmp_path / "ft.pth") and net.weights_info.sha256


def test_module_rejects_lossnet_weight_names(backbone):
    for weights in ("imagenet", "random"):
        with pytest.raises(WeightsError, match="a module brings its own"):
            LossNetwork(backbone, layers=["bn"], weights=weights, input_norm="none")


def test_module_with_nan_weights_is_refused(backbone):
    with torch.no_grad():
        backbone.down.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(WeightsError, match="NaN or Inf values in 1 tensors.*down.weight"):
        LossNetwork(backbone, layers=["bn"], input_norm="none")


def test_wrapped_backbone_points_are_its_children():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torchvision.models.squeezenet1_1().features
            self.head = nn.Linear(512, 2)

        def forward(self, x):
            return self.head(self.backbone(x).mean((2, 3)))

    with torch.device("meta"):  # listing points needs no weights
        wrapper = Wrapper()
    points = extraction_points(wrapper)
    assert points == [f"backbone.{i}" for i in range(13)]


def test_untraceable_module_is_a_clear_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(LossnetError, match="cannot be traced by torch.fx"):
        extraction_points(DataDependent())
