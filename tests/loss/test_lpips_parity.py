"""lossnet.lpips must reproduce the reference `lpips` package exactly, given the same trunk weights."""
import itertools

import pytest
import torch

import lossnet

lpips_ref = pytest.importorskip("lpips")

NETS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


@pytest.fixture(scope="module")
def trunk_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trunks")
    files = {}
    for net, arch in NETS.items():
        files[net] = folder / f"{arch}.pth"
        torch.save(lossnet.load_model(arch, weights="random", seed=11).state_dict(), files[net])
    return files


def _reference(net: str, version: str, path) -> "lpips_ref.LPIPS":
    ref = lpips_ref.LPIPS(net=net, version=version, pnet_rand=True, verbose=False)
    features = {k[len("features."):]: v for k, v in torch.load(path, weights_only=True).items()
                if k.startswith("features.")}
    trunk = {}
    for key in ref.net.state_dict():
        _slice, rest = key.split(".", 1)  # slice{k}.{index}.{param...}
        trunk[key] = features[rest]
    ref.net.load_state_dict(trunk, strict=True)
    return ref.eval()


@pytest.mark.parametrize("net,version", list(itertools.product(NETS, ["0.1", "0.0"])))
def test_lpips_parity(net, version, trunk_files, photo_pairs):
    x0, x1 = photo_pairs
    ref = _reference(net, version, trunk_files[net])
    base = lossnet.lpips(net, version=version, weights=trunk_files[net], reduction="none")
    for lin, spatial in itertools.product([True, False], [False, True]):
        ref.lpips, ref.spatial = lin, spatial
        ours = lossnet.PerceptualLoss(
            network=base.net, distance="spatial", lin=base.lin if lin else None, reduction="none", spatial=spatial)
        with torch.no_grad():
            expected = ref(x0, x1, normalize=True)
            got = ours(x0, x1)
        if not spatial:
            expected = expected.flatten()
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{net} v{version} lin={lin} spatial={spatial}: {m}")
        assert (got > 0).all()


def test_lpips_lin_weights_come_from_the_package(trunk_files):
    metric = lossnet.lpips("alex", weights=trunk_files["alex"])
    ref = lpips_ref.LPIPS(net="alex", pnet_rand=True, verbose=False)
    for k, w in enumerate(metric.lin.values()):
        torch.testing.assert_close(w, ref.lins[k].model[-1].weight.flatten())


def test_lpips_lin_none_is_the_baseline(trunk_files, photo_pairs):
    x0, x1 = photo_pairs
    ref = _reference("alex", "0.1", trunk_files["alex"])
    ref.lpips = False
    ours = lossnet.lpips("alex", weights=trunk_files["alex"], lin=None, reduction="none")
    with torch.no_grad():
        torch.testing.assert_close(ours(x0, x1), ref(x0, x1, normalize=True).flatten(), rtol=1e-5, atol=1e-5)


def test_lpips_inputs_in_minus_one_one(trunk_files, photo_pairs):
    x0, x1 = photo_pairs
    ref = _reference("alex", "0.1", trunk_files["alex"])
    ours = lossnet.lpips("alex", weights=trunk_files["alex"], reduction="none", input_range="-1,1")
    with torch.no_grad():
        torch.testing.assert_close(ours(2 * x0 - 1, 2 * x1 - 1), ref(2 * x0 - 1, 2 * x1 - 1).flatten(),
                                   rtol=1e-5, atol=1e-5)


def test_lpips_lin_file_round_trip(trunk_files, tmp_path, photo_pairs):
    from lossnet.distances import save_lin

    metric = lossnet.lpips("vgg", weights=trunk_files["vgg"], reduction="none")
    save_lin(metric.lin, tmp_path / "lin.pt")
    again = lossnet.lpips("vgg", weights=trunk_files["vgg"], lin=tmp_path / "lin.pt", reduction="none")
    with torch.no_grad():
        torch.testing.assert_close(again(*photo_pairs), metric(*photo_pairs))


def test_lin_file_for_another_network_is_refused(trunk_files):
    from lossnet.distances.lin import lpips_weights_file
    from lossnet.errors import WeightsError

    with pytest.raises(WeightsError, match="channels"):
        lossnet.lpips("alex", weights=trunk_files["alex"], lin=lpips_weights_file("vgg"))
    with pytest.raises(WeightsError, match="7 lin weight tensors for 5"):
        lossnet.lpips("alex", weights=trunk_files["alex"], lin=lpips_weights_file("squeeze"))


def test_negative_lin_weights_are_refused(trunk_files, tmp_path):
    from lossnet.errors import WeightsError

    metric = lossnet.lpips("alex", weights=trunk_files["alex"])
    bad = {p: -w for p, w in metric.lin.items()}
    torch.save(bad, tmp_path / "neg.pt")
    with pytest.raises(WeightsError, match=">= 0"):
        lossnet.lpips("alex", weights=trunk_files["alex"], lin=tmp_path / "neg.pt")


@pytest.mark.parametrize("version", ["0.1", "0.0"])
def test_factory_presets_equal_the_package(version, trunk_files, photo_pairs):
    from lossnet.loss import create_metric

    x0, x1 = photo_pairs
    ref = _reference("alex", version, trunk_files["alex"])
    suffix = "-v0.0" if version == "0.0" else ""
    norm = "lpips" if version == "0.1" else "lpips_v0.0"
    with torch.no_grad():
        for lin in (True, False):
            ref.lpips = lin
            expected = ref(x0, x1, normalize=True).flatten()
            names = [f"lpips-alex{suffix}" + ("" if lin else "-nolin")]
            metrics = [create_metric(names[0], weights=trunk_files["alex"], reduction="none")]
            if lin:
                metrics.append(create_metric("alex", lin="lpips", input_norm=norm, weights=trunk_files["alex"],
                                             reduction="none"))
            for metric in metrics:
                assert metric.preset == names[0]
                torch.testing.assert_close(metric(x0, x1), expected, rtol=1e-6, atol=1e-6)


def test_zero_feature_vectors_keep_the_packages_values():
    """Exactly-zero feature vectors: the package's normalize_tensor values, but finite gradients."""
    from lossnet.distances import functional as D

    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(2, 16, 6, 6, generator=g).relu(), torch.randn(2, 16, 6, 6, generator=g).relu()
    f0[:, :, :2] = 0.0
    f1[:, :, 1:3] = 0.0
    torch.testing.assert_close(D.normalize_channels(f0), lpips_ref.normalize_tensor(f0), rtol=1e-6, atol=1e-7)
    expected = lpips_ref.spatial_average((lpips_ref.normalize_tensor(f0) - lpips_ref.normalize_tensor(f1)) ** 2
                                         ).sum(1).flatten()
    a, b = f0.clone().requires_grad_(True), f1.clone().requires_grad_(True)
    got = D.spatial(a, b)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    got.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    r = f0.clone().requires_grad_(True)  # the package's own normalisation gives NaN here
    lpips_ref.normalize_tensor(r).sum().backward()
    assert torch.isnan(r.grad).any()
