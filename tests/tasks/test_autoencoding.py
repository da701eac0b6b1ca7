"""The study's VAE, probes, and the STL-10 / SVHN / digits loaders."""
from __future__ import annotations

import functools

import pytest
import torch

from lossnet.data import digit_images as _digit_images
from lossnet.data import (
    load_autoencoding_data,
    load_builtin_digits,
    write_stl10_fixture,
    write_svhn_fixture,
)
from lossnet.errors import DataError, LossnetError
from lossnet.tasks.autoencoding import ConvVAE, decoder_kernels, train_probe, vae_step
from lossnet.tasks.config import LossConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=None)
def lite0_loss() -> torch.nn.Module:
    return LossConfig("efficientnet_lite0", layers="blocks.0", distance="mse").build()


@pytest.mark.parametrize("size", [32, 64, 96])
def test_vae_shapes(size):
    vae = ConvVAE(image_size=size)
    recon, mu, logvar = vae(torch.rand(2, 3, size, size))
    assert recon.shape == (2, 3, size, size) and mu.shape == (2, 64) and logvar.shape == (2, 64)
    assert 0 <= recon.min() and recon.max() <= 1
    convs = [m for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256] and all(c.stride == (2, 2) for c in convs)
    assert vae.fc_dec.out_features == 1024
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in vae.decoder) == 4


def test_decoder_of_64_is_world_models_and_bad_sizes_fail():
    assert decoder_kernels(64) == (5, 5, 6, 6)
    with pytest.raises(LossnetError, match="multiple of 16"):
        ConvVAE(image_size=40)


def test_eval_mode_uses_the_mean_and_training_samples():
    vae = ConvVAE(image_size=32)
    x = torch.rand(3, 3, 32, 32)
    vae.eval()
    assert torch.equal(vae(x)[0], vae(x)[0])
    vae.train()
    torch.manual_seed(0)
    a = vae(x)[0]
    torch.manual_seed(1)
    assert not torch.equal(a, vae(x)[0])
    plain = ConvVAE(32, sample=False).train()  # an autoencoder: z = mu even in training
    assert torch.equal(plain(x)[0], plain(x)[0])


def test_a_few_steps_lower_the_perceptual_loss_on_digits():
    data = load_builtin_digits()
    x = torch.stack([data.train[i] for i in range(32)])
    torch.manual_seed(0)
    vae = ConvVAE(image_size=32, sample=False)
    step = vae_step(lite0_loss(), kl_weight=0.0)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    with torch.no_grad():
        before = float(step(vae.eval(), x))
    vae.train()
    for _ in range(12):
        loss = step(vae, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(step(vae.eval(), x))
    assert after < 0.8 * before


def test_probe_learns_separable_codes_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    centres = torch.randn(3, 8, generator=g) * 4
    z = centres[y] + torch.randn(300, 8, generator=g)
    acc = train_probe(z[:200], y[:200], z[200:], y[200:], [16], classes=3, epochs=20, batch=50, seed=1)
    assert acc > 0.9
    assert acc == train_probe(z[:200], y[:200], z[200:], y[200:], [16], classes=3, epochs=20, batch=50, seed=1)
    shuffled = y[torch.randperm(300, generator=g)]
    chance = train_probe(z[:200], shuffled[:200], z[200:], shuffled[200:], [], classes=3, epochs=20, seed=1)
    assert chance < 0.6


def test_builtin_digits_split():
    d = load_builtin_digits(val_fraction=0.1)
    assert d.image_size == 32 and d.num_classes == 10
    assert len(d.probe_train) + len(d.probe_test) == 1797
    assert len(d.train) + len(d.val) == len(d.probe_train)
    labels = [d.probe_test.label(i) for i in range(len(d.probe_test))]
    assert sorted(set(labels)) == list(range(10))  # stratified


def test_stl10_fixture_round_trips(tmp_path):
    write_stl10_fixture(tmp_path, n_unlabeled=12, n_train=10, n_test=6, seed=3)
    assert (tmp_path / "stl10_binary" / "unlabeled_X.bin").stat().st_size == 12 * 3 * 96 * 96
    d = load_autoencoding_data(tmp_path, val_fraction=0.25)
    assert d.name == "stl10" and d.image_size == 96
    assert len(d.train) == 9 and len(d.val) == 3 and len(d.probe_train) == 10 and len(d.probe_test) == 6
    images, labels = _digit_images(10, 96, 3 * 10 + 1)  # what the writer stored for "train"
    assert torch.equal(d.probe_train.image(4), torch.from_numpy(images[4]).float() / 255)
    assert [d.probe_train.label(i) for i in range(10)] == labels.tolist()


def test_svhn_fixture_maps_label_10_and_pads(tmp_path):
    write_svhn_fixture(tmp_path, n_extra=8, n_train=30, n_test=6, seed=0)
    d = load_autoencoding_data(tmp_path, dataset="svhn", pad_to=64, val_fraction=0)
    assert d.name == "svhn" and d.image_size == 64 and d.val is None and len(d.train) == 8
    images, labels = _digit_images(30, 32, 1)
    assert [d.probe_train.label(i) for i in range(30)] == labels.tolist()
    assert 0 in labels  # stored as 10 in the file, read back as 0
    x = d.probe_train.image(0)
    assert x.shape == (3, 64, 64) and x[:, :16].abs().sum() == 0
    assert torch.equal(x[:, 16:48, 16:48], torch.from_numpy(images[0]).float() / 255)


def test_missing_and_bad_data_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_autoencoding_data(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_autoencoding_data(tmp_path / "nope")
    with pytest.raises(DataError, match="--dataset"):
        load_autoencoding_data(tmp_path, download=True)
    with pytest.raises(DataError, match="digits, not stl10"):
        load_autoencoding_data("builtin", dataset="stl10")
    write_stl10_fixture(tmp_path, n_unlabeled=4, n_train=4, n_test=4)
    (tmp_path / "stl10_binary" / "test_y.bin").unlink()
    with pytest.raises(DataError, match="test_y.bin"):
        load_autoencoding_data(tmp_path)
    write_stl10_fixture(tmp_path, n_unlabeled=4, n_train=4, n_test=4)
    with open(tmp_path / "stl10_binary" / "train_X.bin", "ab") as f:
        f.write(b"\0" * 100)  # a torn file
    with pytest.raises(DataError, match="truncated"):
        load_autoencoding_data(tmp_path)
    bad = tmp_path / "svhn"
    bad.mkdir()
    for name in ("train", "test", "extra"):
        (bad / f"{name}_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="MATLAB"):
        load_autoencoding_data(bad, dataset="svhn")
