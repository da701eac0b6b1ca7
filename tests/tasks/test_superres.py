"""Johnson et al.'s super-resolution network, its degradation, evaluation and data loaders."""
from __future__ import annotations

import pytest
import torch

from lossnet.data import (
    BUILTIN_SR_EVAL,
    eval_set_images,
    load_superres_data,
    write_superres_fixture,
)
from lossnet.errors import DataError, LossnetError
from lossnet.tasks import superres as sr_mod
from lossnet.tasks.config import LossConfig
from lossnet.tasks.metrics import psnr_y
from lossnet.tasks.superres import (
    SuperresConfig,
    TransformNet,
    bicubic_upscale,
    build_lpips,
    degrade,
    evaluate_superres,
    gaussian_blur,
    sr_step,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale, n_up", [(4, 2), (8, 3)])
def test_network_shapes_and_layers(scale, n_up):
    net = TransformNet(scale=scale, width=8, blocks=4)
    out = net(torch.rand(2, 3, 12, 10))
    assert out.shape == (2, 3, 12 * scale, 10 * scale)
    assert 0 <= out.min() and out.max() <= 1
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)
    assert sum(isinstance(m, sr_mod.ResidualBlock) for m in net.body) == 4
    assert sum(isinstance(m, torch.nn.Upsample) for m in net.body) == n_up
    with pytest.raises(LossnetError, match="power of two"):
        TransformNet(scale=3)


def test_residual_variant_starts_at_bicubic():
    lr = torch.rand(1, 3, 10, 10)
    net = TransformNet(scale=4, width=8, residual=True)
    assert torch.allclose(net(lr), bicubic_upscale(lr, 4))


def test_degradation_blurs_then_downscales():
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)
    assert torch.allclose(degrade(flat, 4), torch.full((1, 3, 8, 8), 0.4), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 32, 32, generator=g)
    assert gaussian_blur(noise, 1.0).std() < 0.6 * noise.std()
    assert degrade(noise, 4).shape == (1, 3, 8, 8)
    with pytest.raises(LossnetError, match="multiple"):
        degrade(torch.rand(1, 3, 30, 32), 4)


def test_a_few_steps_lower_the_loss_on_builtin_photos(train_briefly):
    data = load_superres_data("builtin", scale=4, crop=32, train_length=16, photo_size=128, eval_size=64)
    hr = torch.stack([data.train[(i, 7)] for i in range(8)])
    torch.manual_seed(0)
    net = TransformNet(scale=4, width=16, blocks=2)
    step = sr_step(LossConfig("efficientnet_lite0", layers="blocks.0").build(), 4, 1.0)
    before, after = train_briefly(net, step, hr, lr=1e-3)
    assert after < 0.8 * before


def test_builtin_data_trains_on_some_photos_and_evaluates_on_others():
    data = load_superres_data("builtin", scale=4, crop=32, train_length=10, photo_size=96, eval_size=64)
    assert len(data.train) == 10
    a, b = data.train[(3, 1)], data.train[(3, 1)]
    assert torch.equal(a, b) and not torch.equal(a, data.train[(3, 2)])  # the key seed drives the crop
    assert data.eval_names["builtin"] == list(BUILTIN_SR_EVAL)
    assert all(x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0 for x in data.eval_sets["builtin"])


def test_loader_reads_the_official_layouts(tmp_path):
    write_superres_fixture(tmp_path, n_train=5, n_eval=2, size=40)
    data = load_superres_data(tmp_path, scale=4, crop=32)
    assert len(data.train) == 5 and data.train[0].shape == (3, 32, 32)
    assert sorted(data.eval_sets) == ["BSD100", "Set14", "Set5"]
    assert data.eval_names["Set5"] == ["img_001_SRF_4_HR.png", "img_002_SRF_4_HR.png"]  # not the _LR files
    assert eval_set_images(tmp_path / "Set14", 4)[1] == "HR/"
    assert eval_set_images(tmp_path / "BSD100", 4)[1] == "plain"
    for images in data.eval_sets.values():
        assert all(x.shape[-2:] == (40, 44) for x in images)  # 42x46 mod-cropped to multiples of 4
    # the three layouts hold the same pictures
    assert torch.equal(data.eval_sets["Set5"][0], data.eval_sets["BSD100"][0])
    only = load_superres_data(tmp_path / "train2014", scale=4, crop=32, eval_dirs=[tmp_path / "Set14"])
    assert list(only.eval_sets) == ["Set14"]


def test_bad_data_gives_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_superres_data(tmp_path / "missing")
    with pytest.raises(DataError, match="no training images"):
        load_superres_data(tmp_path)
    write_superres_fixture(tmp_path / "a", n_train=2, n_eval=1, size=32)
    with pytest.raises(DataError, match="--eval"):
        load_superres_data(tmp_path / "a" / "train2014", crop=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no HR images"):
        load_superres_data(tmp_path / "a", crop=32, eval_dirs=[tmp_path / "empty"])
    with pytest.raises(DataError, match="multiple of the scale"):
        load_superres_data("builtin", scale=4, crop=30)


def test_evaluation_of_bicubic_equals_the_baseline():
    data = load_superres_data("builtin", scale=4, crop=32, train_length=4, photo_size=96, eval_size=64)
    cfg = SuperresConfig.preset("mini", eval_size=64, scale=4)
    net = TransformNet(scale=4, width=8, residual=True)  # exactly bicubic before training
    res = evaluate_superres(net, data, cfg, torch.device("cpu"))["builtin"]
    assert res["psnr"] == pytest.approx(res["bicubic_psnr"], abs=1e-6)
    assert res["ssim"] == pytest.approx(res["bicubic_ssim"], abs=1e-6)
    hr = data.eval_sets["builtin"][0][None]
    expected = psnr_y(sr_mod.quantize_8bit(bicubic_upscale(degrade(hr, 4), 4)), hr, 4).item()
    per_image = [psnr_y(sr_mod.quantize_8bit(bicubic_upscale(degrade(x[None], 4), 4)), x[None], 4).item()
                 for x in data.eval_sets["builtin"]]
    assert expected == per_image[0] and res["bicubic_psnr"] == pytest.approx(sum(per_image) / len(per_image))


def test_lpips_is_optional_and_records_its_weights(monkeypatch):
    metric, info = build_lpips("none", "auto")
    assert metric is None and "off" in info["note"]
    monkeypatch.setattr(sr_mod, "_lpips_weights_on_disk", lambda net: False)
    metric, info = build_lpips("alex", "auto")
    assert metric is None and "not on disk" in info["note"]
    metric, info = build_lpips("alex", "random")
    assert metric is not None and info["weights"] == "random" and "NOT comparable" in info["note"]
    x = torch.rand(1, 3, 32, 32)
    assert metric(x, x).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(LossnetError, match="LPIPS net"):
        build_lpips("resnet", "random")
