import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lossnet.cli.main import main


def test_list_all_architectures(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "features.3, features.8, features.15, features.29" in out and "timm:<name>" in out


def test_list_one_architecture_json(capsys):
    assert main(["list", "resnet18", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["extraction_points"][:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert info["layer_sets"]["pihlgren"] == ["relu", "layer1", "layer2", "layer4"]
    assert info["imagenet_top1"] == pytest.approx(69.758)


def test_list_unknown_architecture_is_a_clear_error(capsys):
    assert main(["list", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossnet: error: unknown architecture 'resnet19'") and "resnet18" in err


@pytest.fixture()
def image_files(tmp_path, photos):
    paths = []
    for i in (0, 1):
        array = (photos[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def test_distance_json_equals_python_api(image_files, capsys):
    import torch

    import lossnet
    from lossnet.data.images import load_image

    argv = [str(image_files[0]), str(image_files[1]), "--net", "efficientnet_lite0", "--layers", "blocks.1,blocks.2",
            "--distance", "mean_pool", "--json"]
    assert main(["distance", *argv]) == 0
    result = json.loads(capsys.readouterr().out)
    metric = lossnet.PerceptualLoss("efficientnet_lite0", ["blocks.1", "blocks.2"], "mean_pool", reduction="none")
    with torch.no_grad():
        expected = metric(load_image(image_files[0])[None], load_image(image_files[1])[None]).item()
    assert result["value"] == pytest.approx(expected, rel=1e-6)
    assert result["layers"] == ["blocks.1", "blocks.2"] and result["distance"] == "mean_pool"


def test_distance_pixel_baseline(image_files, capsys):
    assert main(["distance", str(image_files[0]), str(image_files[0]), "--net", "none", "--distance", "ssim"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(0.0, abs=1e-6)


def test_distance_missing_file(image_files, tmp_path, capsys):
    assert main(["distance", str(image_files[0]), str(tmp_path / "missing.png"), "--net", "none",
                 "--distance", "l2"]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_distance_offline_imagenet_weights_error(image_files, capsys, monkeypatch, tmp_path):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import urllib.request

    monkeypatch.setattr(urllib.request.OpenerDirector, "open",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    assert main(["distance", str(image_files[0]), str(image_files[1]), "--net", "alex"]) == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and "weights=<path" in err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "lossnet", "--help"], capture_output=True, text=True, check=True)
    for command in ("list", "distance", "demo"):
        assert command in out.stdout


@pytest.mark.parametrize("command", ["distance", "score"])
def test_lpips_lin_with_other_layers_or_distance_is_an_error_everywhere(image_files, capsys, command):
    """`--lin lpips` means LPIPS's learned weights for its layers and spatial distance: with other layers or
    another distance it is an error in every command, never a silent full LPIPS."""
    metric_flags = ["--net", "vgg", "--layers", "features.3", "--distance", "mse", "--lin", "lpips",
                    "--weights", "random"]
    argv = ([command, str(image_files[0]), str(image_files[1])] if command == "distance"
            else ["score", "2afc", "--data", "builtin", "--limit", "2", "--no-progress"]) + metric_flags
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "lin='lpips'" in err and "features.3" in err


@pytest.mark.parametrize("command", ["distance", "score"])
def test_net_none_without_a_pixel_distance_is_an_error_and_builds_nothing(image_files, capsys, monkeypatch,
                                                                          command):
    import lossnet.networks.weights as weights_mod

    monkeypatch.setattr(weights_mod, "load_model", lambda *a, **k: pytest.fail("no network may be built"))
    argv = ([command, str(image_files[0]), str(image_files[1])] if command == "distance"
            else ["score", "2afc", "--data", "builtin", "--limit", "2", "--no-progress"]) + ["--net", "none"]
    assert main(argv) == 2
    assert "--distance l2 or --distance ssim" in capsys.readouterr().err


def test_version_flag_without_an_lpips_metric_is_an_error(image_files, capsys):
    argv = ["distance", str(image_files[0]), str(image_files[1]), "--net", "resnet18", "--weights", "random",
            "--version", "0.0"]
    assert main(argv) == 2
    assert "--version 0.0 applies to the LPIPS metrics" in capsys.readouterr().err


# --- metric presets: their extra and resize policy; --resize ----------------------------------


def test_list_metrics_text_shows_the_extra_each_preset_needs(capsys):
    from lossnet.loss import METRIC_PRESETS

    assert main(["list", "--metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["preset", "needs", "description"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if line.split()[:1] and line.split()[0] in
            METRIC_PRESETS}
    assert set(rows) == set(METRIC_PRESETS)
    assert rows["vit-ti16-cls-cosine"] == rows["dinov2-vits14-cls-cosine"] == "lossnet[timm]"
    assert rows["lpips-alex"] == rows["ssim"] == "-"


def test_list_metrics_json_gives_extra_and_resize(capsys):
    from lossnet.loss import METRIC_PRESETS

    assert main(["list", "--metrics", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == set(METRIC_PRESETS)
    assert (data["dinov2-vits14-cls-cosine"]["extra"], data["dinov2-vits14-cls-cosine"]["resize"]) == ("timm", 224)
    assert (data["vit-ti16-cls-cosine"]["extra"], data["vit-ti16-cls-cosine"]["resize"]) == ("timm", "auto")
    assert (data["lpips-alex"]["extra"], data["lpips-alex"]["resize"]) == (None, "auto")
    assert data["lpips-alex"]["arch"] == "alexnet" and data["lpips-alex"]["distance"] == "spatial"


def test_distance_resize_flag_reaches_the_metric_and_is_recorded(image_files, capsys):
    import torch

    import lossnet
    from lossnet.data.images import load_image

    base = [str(image_files[0]), str(image_files[1]), "--net", "squeezenet1_1", "--layers", "features.2",
            "--distance", "mse", "--weights", "random", "--json"]
    assert main(["distance", *base, "--resize", "32:bilinear"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resize"] == result["preprocessing"]["resize"] == "resize to 32x32 (bilinear, antialias)"
    a, b = (torch.nn.functional.interpolate(load_image(p)[None], size=(32, 32), mode="bilinear", antialias=True)
            for p in image_files)
    plain = lossnet.create_metric("squeezenet1_1", layers=["features.2"], distance="mse", weights="random",
                                  reduction="none")
    with torch.no_grad():
        assert result["value"] == pytest.approx(plain(a, b).item(), rel=1e-5)
    assert main(["distance", *base]) == 0
    unresized = json.loads(capsys.readouterr().out)
    assert unresized["resize"] == "none" and unresized["value"] != pytest.approx(result["value"], rel=1e-3)


@pytest.mark.parametrize("argv,message", [
    (["--net", "squeezenet1_1", "--resize", "32x32"], "not a resize policy: use auto, none, bilinear, bicubic"),
    (["--net", "none", "--distance", "ssim", "--resize", "32"], "uses no network: drop resize"),
])
def test_distance_bad_resize_is_a_clear_error(image_files, capsys, argv, message):
    code = None
    try:
        code = main(["distance", str(image_files[0]), str(image_files[1]), *argv])
    except SystemExit as exit_:  # argparse refuses a bad value itself
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
