"""The stateful metric: running float64 mean, reset, per-sample values, torch.distributed
reduction on 2 gloo processes (localhost) and the torchmetrics integration."""
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lossnet
from lossnet.errors import InputError, LossnetError
from lossnet.loss.stateful import PerceptualMetric, as_torchmetric


@pytest.fixture(scope="module")
def squeeze():
    """LPIPS-squeeze with random trunk weights, per-sample values."""
    return lossnet.loss.create_metric("lpips-squeeze", weights="random", reduction="none")


def _l2_metric():
    return lossnet.PerceptualLoss(distance="l2", reduction="none")


def _const(value: float, n: int) -> torch.Tensor:
    return torch.full((n, 3, 8, 8), value)


def test_running_mean_is_over_samples_not_batches():
    metric = PerceptualMetric(_l2_metric(), keep_values=True)
    metric.update(_const(0.0, 2), _const(0.5, 2))    # two samples of 0.25
    metric.update(_const(0.0, 1), _const(1.0, 1))    # one sample of 1
    assert metric.count == 3
    value = metric.compute()
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(1.5 / 3, abs=1e-12)  # not the mean of batch means (0.625)
    assert metric.values().tolist() == pytest.approx([0.25, 0.25, 1.0])
    metric.reset()
    assert metric.count == 0
    with pytest.raises(LossnetError, match="no samples"):
        metric.compute()


def test_forward_returns_the_batch_mean_and_accumulates():
    metric = PerceptualMetric(_l2_metric())
    assert metric(_const(0.0, 2), _const(0.5, 2)).item() == pytest.approx(0.25)
    assert metric(_const(0.0, 2), _const(1.0, 2)).item() == pytest.approx(1.0)
    assert metric.compute().item() == pytest.approx(0.625)


def test_network_metric_from_a_preset_name(photo_pairs, squeeze):
    x0, x1 = photo_pairs
    metric = PerceptualMetric("lpips-squeeze", weights="random", keep_values=True)
    metric.update(x0[:3], x1[:3])
    metric.update(x0[3:], x1[3:])
    with torch.no_grad():
        expected = squeeze(x0, x1).double()
    torch.testing.assert_close(metric.values(), expected)
    torch.testing.assert_close(metric.compute(), expected.mean())


def test_bad_metrics_get_clear_errors():
    with pytest.raises(LossnetError, match="reduction='none'"):
        PerceptualMetric(lossnet.PerceptualLoss(distance="l2"))
    with pytest.raises(LossnetError, match="already built"):
        PerceptualMetric(_l2_metric(), weights="random")
    with pytest.raises(LossnetError, match="keep_values=True"):
        PerceptualMetric(_l2_metric()).values()
    spatial = lossnet.PerceptualLoss("squeezenet1_1", layers=["features.1"], weights="random", reduction="none",
                                     spatial=True)
    with pytest.raises(InputError, match="one value per sample"):
        PerceptualMetric(spatial).update(_const(0.0, 2), _const(0.5, 2))
    with pytest.raises(InputError, match="values in"):
        PerceptualMetric(_l2_metric()).update(_const(2.0, 1), _const(0.5, 1))


def test_torchmetrics_integration(photo_pairs, squeeze):
    pytest.importorskip("torchmetrics")
    import torchmetrics

    x0, x1 = photo_pairs
    tm = as_torchmetric(squeeze)
    assert isinstance(tm, torchmetrics.Metric)
    ours = PerceptualMetric(squeeze)
    batch_value = tm(x0[:1], x1[:1])  # torchmetrics' forward: the batch's value, and accumulates
    tm.update(x0[1:], x1[1:])
    ours.update(x0, x1)
    with torch.no_grad():
        first = squeeze(x0[:1], x1[:1])
    torch.testing.assert_close(batch_value, first.double()[0])
    torch.testing.assert_close(tm.compute(), ours.compute())
    tm.reset()
    with warnings.catch_warnings(), pytest.raises(LossnetError, match="no samples"):
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        tm.compute()


# --- two processes, gloo, localhost ----------------------------------------------------------

SPLIT = {0: [0, 1, 2], 1: [3]}  # uneven on purpose: the mean of the two process means would be wrong


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, x0: torch.Tensor, x1: torch.Tensor, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        idx = SPLIT[rank]
        base = lossnet.loss.create_metric("lpips-squeeze", weights="random", reduction="none")
        metric = PerceptualMetric(base, keep_values=True)
        for i in idx:  # one sample per update
            metric.update(x0[i:i + 1], x1[i:i + 1])
        result = {"value": metric.compute(), "values": metric.values(), "local_count": metric.count}
        try:
            import torchmetrics  # noqa: F401
        except ImportError:
            pass
        else:
            tm = as_torchmetric(base)
            tm.update(x0[idx], x1[idx])
            result["torchmetrics"] = tm.compute()
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters import torch and lossnet (~5 s CPU each)
def test_state_reduces_across_two_gloo_processes(photo_pairs, squeeze, tmp_path):
    x0, x1 = photo_pairs
    single = PerceptualMetric(squeeze, keep_values=True)
    single.update(x0, x1)
    expected = single.compute()
    mp.spawn(_worker, args=(2, _free_port(), x0, x1, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["local_count"] == len(SPLIT[rank])  # the local state is not changed by compute
        torch.testing.assert_close(result["value"], expected, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(result["values"], single.values(), rtol=1e-6, atol=1e-9)
        if "torchmetrics" in result:
            torch.testing.assert_close(result["torchmetrics"], expected, rtol=1e-6, atol=1e-9)
    local_means = [single.values()[SPLIT[r]].mean() for r in (0, 1)]
    assert abs(float(sum(local_means) / 2 - expected)) > 1e-4  # the split really is uneven in value
