import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import lossnet
from lossnet.errors import WeightsError
from lossnet.networks import weights as weights_mod
from lossnet.utils import download as download_mod


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(lossnet.load_model("resnet18", weights="random", seed=7).state_dict(), path)
    return path


def test_state_dict_file_loads_exactly(resnet18_file):
    model = lossnet.load_model("resnet18", weights=resnet18_file)
    reference = torch.load(resnet18_file, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k


def test_missing_key_is_an_error(resnet18_file, tmp_path):
    sd = torch.load(resnet18_file, weights_only=True)
    del sd["layer1.0.conv1.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing keys \(e\.g\. layer1\.0\.conv1\.weight\)"):
        lossnet.LossNetwork("resnet18", "pihlgren", weights=tmp_path / "bad.pth")


def test_unexpected_and_renamed_keys_are_errors(resnet18_file, tmp_path):
    sd = torch.load(resnet18_file, weights_only=True)
    sd = {("module." + k): v for k, v in sd.items()}  # a DataParallel-style prefix
    torch.save(sd, tmp_path / "renamed.pth")
    with pytest.raises(WeightsError, match="unexpected keys") as err:
        lossnet.load_model("resnet18", weights=tmp_path / "renamed.pth")
    assert "missing keys" in str(err.value) and "resnet18" in str(err.value)


def test_state_dict_of_another_architecture(tmp_path):
    torch.save(lossnet.load_model("resnet34", weights="random").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightsError, match="does not fit architecture 'resnet18'"):
        lossnet.load_model("resnet18", weights=tmp_path / "r34.pth")


def test_wrong_shapes_are_an_error(tmp_path):
    model = lossnet.load_model("alexnet", weights="random")
    sd = model.state_dict()
    sd["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match="wrong shapes"):
        lossnet.load_model("alexnet", weights=tmp_path / "shape.pth")


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        lossnet.LossNetwork("resnet18", weights=tmp_path / "nope.pth")


def test_corrupt_file(tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x04not really a checkpoint" * 10)
    with pytest.raises(WeightsError, match="corrupt or not a PyTorch state dict"):
        lossnet.load_model("resnet18", weights=tmp_path / "corrupt.pth")


def test_truncated_file(resnet18_file, tmp_path):
    data = resnet18_file.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt"):
        lossnet.load_model("resnet18", weights=tmp_path / "truncated.pth")


def test_pickled_code_is_refused(tmp_path):
    torch.save({"x": np.dtype("float32"), "y": object}, tmp_path / "pickle.pth")
    with pytest.raises(WeightsError):
        lossnet.load_model("resnet18", weights=tmp_path / "pickle.pth")


def test_wrapped_checkpoints_are_unwrapped(resnet18_file, tmp_path):
    sd = torch.load(resnet18_file, weights_only=True)
    torch.save({"state_dict": sd}, tmp_path / "wrapped.pth")
    model = lossnet.load_model("resnet18", weights=tmp_path / "wrapped.pth")
    assert torch.equal(model.conv1.weight, sd["conv1.weight"])


def test_auxiliary_heads_are_optional(tmp_path):
    full = lossnet.load_model("googlenet", weights="random")
    sd = {k: v for k, v in full.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    torch.save(sd, tmp_path / "noaux.pth")
    model = lossnet.load_model("googlenet", weights=tmp_path / "noaux.pth")
    assert torch.equal(model.conv1.conv.weight, sd["conv1.conv.weight"])


def test_offline_imagenet_download_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)
    with pytest.raises(WeightsError) as err:
        lossnet.LossNetwork("resnet18", "pihlgren", weights="imagenet")
    msg = str(err.value)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(expected) in msg and "weights=<path" in msg


def test_genuine_file_placed_by_hand_in_the_cache_is_used(monkeypatch, tmp_path, resnet18_file):
    import hashlib

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    prefix = hashlib.sha256(resnet18_file.read_bytes()).hexdigest()[:8]
    url = f"https://download.pytorch.org/models/resnet18-{prefix}.pth"  # the name promises this file's hash
    dest = tmp_path / "hub" / "checkpoints" / f"resnet18-{prefix}.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(resnet18_file.read_bytes())
    monkeypatch.setattr(download_mod, "download_file", lambda *a, **k: pytest.fail("must not download"))
    state = weights_mod.download_checkpoint(url, what="test weights")
    assert torch.equal(state["conv1.weight"], torch.load(resnet18_file, weights_only=True)["conv1.weight"])


def test_cached_checkpoint_with_the_wrong_hash_is_refused_before_use(monkeypatch, tmp_path, resnet18_file):
    """A random ResNet-18 saved under the ImageNet file name is not taken as 'imagenet'."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    dest = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(resnet18_file.read_bytes())
    monkeypatch.setattr(download_mod, "download_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(WeightsError, match="SHA-256 does not start with 'f37072fd'") as err:
        lossnet.load_model("resnet18", weights="imagenet")
    assert "cached copy" in str(err.value) and str(dest) in str(err.value)
    assert dest.read_bytes() == resnet18_file.read_bytes()  # the file is left as it is


def test_download_with_bad_hash_is_refused(monkeypatch, tmp_path, resnet18_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def fake_download(url, dst, *args, **kwargs):
        with open(dst, "wb") as fh:
            fh.write(resnet18_file.read_bytes())  # not the official file: hash prefix differs

    monkeypatch.setattr(download_mod, "download_file", fake_download)
    with pytest.raises(WeightsError, match="SHA-256"):
        lossnet.load_model("resnet18", weights="imagenet")


def test_unknown_imagenet_tag():
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        lossnet.load_model("resnet18", weights="imagenet:NOPE")


def test_efficientnet_lite0_real_weights_classify_skimage_photos():
    from skimage import data

    from lossnet.networks import weights_info

    model = lossnet.load_model("efficientnet_lite0", weights="imagenet")
    info = weights_info("efficientnet_lite0")
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)

    def classify(name: str) -> int:
        image = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float()[None] / 255
        x = torch.nn.functional.interpolate(image, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1)
        with torch.no_grad():
            return int(model((x - mean) / std).argmax())

    assert 281 <= classify("chelsea") <= 285  # a cat
    assert classify("coffee") == 967  # espresso


def test_efficientnet_lite0_converter_checks_shapes():
    model = lossnet.load_model("efficientnet_lite0", weights="random")
    target = model.state_dict()
    source = {f"k{i}": v.clone() for i, v in enumerate(target.values())}
    source["k0"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="does not match"):
        weights_mod.convert_efficientnet_lite0(source, target)
    with pytest.raises(WeightsError, match="296"):
        weights_mod.convert_efficientnet_lite0(dict(list(source.items())[:10]), target)


# --- bad weights files (issue 9) -------------------------------------------------------------


def test_text_file_is_a_clear_error(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\nlr=0.1\n")
    with pytest.raises(WeightsError, match="is a text file, not a PyTorch checkpoint"):
        lossnet.load_model("resnet18", weights=tmp_path / "notes.pth")


def test_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"is empty \(0 bytes\)"):
        lossnet.load_model("resnet18", weights=tmp_path / "empty.pth")


def test_int64_state_dict_is_refused(resnet18_file, tmp_path):
    sd = torch.load(resnet18_file, weights_only=True)
    torch.save({k: v.long() for k, v in sd.items()}, tmp_path / "int.pth")
    with pytest.raises(WeightsError, match=r"dtype does not fit 'resnet18'.*conv1\.weight: torch\.int64 vs torch\.float32"):
        lossnet.load_model("resnet18", weights=tmp_path / "int.pth")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_precision_state_dict_is_cast_and_runs(resnet18_file, tmp_path, photos, dtype):
    sd = torch.load(resnet18_file, weights_only=True)
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "w.pth")
    net = lossnet.LossNetwork("resnet18", ["layer1"], weights=tmp_path / "w.pth")
    assert net.body.conv1.weight.dtype == torch.float32
    # the same as the float32 model holding the rounded weights
    rounded = {k: v.to(dtype).to(v.dtype) if v.is_floating_point() else v for k, v in sd.items()}
    torch.save(rounded, tmp_path / "rounded.pth")
    reference = lossnet.LossNetwork("resnet18", ["layer1"], weights=tmp_path / "rounded.pth")
    torch.testing.assert_close(net(photos[:1])["layer1"], reference(photos[:1])["layer1"])


def test_nan_weights_are_refused(resnet18_file, tmp_path):
    sd = torch.load(resnet18_file, weights_only=True)
    sd["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    sd["fc.bias"][:3] = float("inf")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match=r"NaN or Inf values in 2 tensors.*layer2\.0\.conv1\.weight \(1 values\)"):
        lossnet.LossNetwork("resnet18", ["layer1"], weights=tmp_path / "nan.pth")


def test_factory_architecture_has_no_imagenet_weights():
    spec = lossnet.networks.ArchSpec(name="f", source="factory", builder="f",
                                     factory=lambda: torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(WeightsError, match="has no ImageNet weights: pass weights='random'"):
        lossnet.load_model(spec, weights="imagenet")
