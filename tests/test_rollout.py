"""Tests of kdstgcn.evaluation.rollout: masked metrics by hand, and the 9-step rollout that feeds predictions back
(in batches, in CPU chunks, streaming or recomputing each window)."""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import ring_model
from kdstgcn.data.graph import chebyshev_polynomials
from kdstgcn.data.samples import Scaler
from kdstgcn.evaluation import rollout as rollout_module
from kdstgcn.runtime import sizes
from kdstgcn.evaluation.rollout import denormalise, horizon_metrics, rollout
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN

pytestmark = pytest.mark.usefixtures("single_thread")


def test_horizon_metrics_by_hand():
    # [windows=2, steps=2, nodes=3]
    truth = np.array([[[10.0, 20.0, 0.0], [50.0, 50.0, 50.0]],
                      [[40.0, 10.0, 5.0], [60.0, 0.0, 20.0]]])
    pred = np.array([[[12.0, 17.0, 1.0], [50.0, 55.0, 40.0]],
                     [[40.0, 14.0, 5.0], [66.0, 2.0, 20.0]]])
    table = horizon_metrics(pred, truth, horizons=[1, 2], step_minutes=5)
    assert table["horizon_min"].tolist() == [5, 10]

    e1 = np.array([2, -3, 1, 0, 4, 0], float)           # horizon 1 errors, truth 0 in entry 3
    t1 = np.array([10, 20, 0, 40, 10, 5], float)
    e2 = np.array([0, 5, -10, 6, 2, 0], float)
    t2 = np.array([50, 50, 50, 60, 0, 20], float)
    for row, e, t in ((0, e1, t1), (1, e2, t2)):
        assert table.loc[row, "MAE"] == pytest.approx(np.abs(e).mean())       # zeros count for MAE ...
        assert table.loc[row, "RMSE"] == pytest.approx(np.sqrt((e ** 2).mean()))  # ... and RMSE
        keep = t > 0                                                           # ... not for MAPE
        assert table.loc[row, "MAPE"] == pytest.approx(100 * np.abs(e[keep] / t[keep]).mean())
    assert table.loc[0, "MAE"] == pytest.approx(10 / 6)
    assert table.loc[0, "MAPE"] == pytest.approx(100 * (0.2 + 0.15 + 0 + 0.4 + 0) / 5)


def test_station_mask_removes_stations_from_every_metric():
    rng = np.random.default_rng(0)
    truth = rng.uniform(20, 70, size=(4, 3, 5))
    pred = truth + rng.normal(0, 2, size=truth.shape)
    pred[..., 2] += 1000.0  # a dead station with absurd predictions
    truth[0, :, 2] = 0.0
    mask = np.array([True, True, False, True, True])
    masked = horizon_metrics(pred, truth, [1, 3], 5, station_mask=mask)
    reference = horizon_metrics(pred[..., mask], truth[..., mask], [1, 3], 5)
    np.testing.assert_allclose(masked[["MAE", "RMSE", "MAPE"]].to_numpy(),
                               reference[["MAE", "RMSE", "MAPE"]].to_numpy())
    assert (masked["MAE"] < 5).all()
    unmasked = horizon_metrics(pred, truth, [1, 3], 5)
    assert (unmasked["MAE"] > 100).all()


def test_mape_is_nan_when_no_truth_is_positive():
    table = horizon_metrics(np.ones((2, 1, 2)), np.zeros((2, 1, 2)), [1], 5)
    assert table.loc[0, "MAE"] == 1.0 and np.isnan(table.loc[0, "MAPE"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(6, 6))
    w = np.triu(a, 1) * (np.triu(a, 1) > 0.5)
    m = STGCN(Architecture(6, ((1, 4, 8), (8, 4, 16))), chebyshev_polynomials(w + w.T, 3))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_rollout_feeds_predictions_back(model):
    inputs = torch.randn(7, 12, 6)
    out = rollout(model, inputs, steps=4)
    assert tuple(out.shape) == (7, 4, 6)
    window, manual = inputs.clone(), []
    with torch.no_grad():
        for _ in range(4):
            y = model(window)
            manual.append(y)
            window = torch.cat([window[:, 1:], y[:, None]], dim=1)
    torch.testing.assert_close(out, torch.stack(manual, dim=1), rtol=0, atol=1e-6)
    # step 1 is the plain forward; later steps do depend on the fed-back predictions
    torch.testing.assert_close(out[:, 0], model(inputs).detach(), rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 1], model(torch.cat([inputs[:, 1:], inputs[:, -1:]], 1)).detach())


def test_rollout_batch_size_does_not_change_results(model):
    inputs = torch.randn(11, 12, 6)
    full = rollout(model, inputs, steps=3, batch_size=1140)
    for batch_size in (1, 4, 11):
        torch.testing.assert_close(rollout(model, inputs, steps=3, batch_size=batch_size), full,
                                   rtol=1e-5, atol=1e-5)


def test_streaming_rollout_in_batches_and_for_one_step():
    m = ring_model(16, ((1, 4, 8), (8, 4, 16)))
    inputs = torch.randn(7, 12, 16)
    torch.testing.assert_close(rollout(m, inputs, 4, batch_size=3), rollout(m, inputs, 4, mode="full"),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rollout(m, inputs, 1)[:, 0], m(inputs).detach(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="rollout mode 'fast'"):
        rollout(m, inputs, 2, mode="fast")


class LargestOutput(TorchDispatchMode):
    """Records the largest number of elements of any new tensor (not a view) an op returns whose leading axis
    is the batch (tensors made from the weights alone, e.g. the folded conv weights, do not grow with it)."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.numel = batch, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if all(r.alias_info is None for r in func._schema.returns):
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == self.batch:
                    self.numel = max(self.numel, t.numel())
        return out


def largest_tensor_of_one_window(model) -> int:
    batch = 7  # no other axis of these models has this length
    with torch.no_grad(), LargestOutput(batch) as recorder:
        model(torch.randn(batch, 12, model.arch.n_nodes))
    return recorder.numel // batch


@pytest.mark.parametrize("blocks", [((1, 4, 8), (8, 4, 16)), ((1, 1, 8), (8, 1, 16)), ((1, 32, 64), (64, 32, 128))])
def test_largest_activation_is_the_largest_tensor_of_a_forward(model, blocks):
    m = STGCN(Architecture(6, blocks), model.cheb).eval()
    assert m.largest_activation_floats() == largest_tensor_of_one_window(m)


def test_cpu_chunks_hold_about_the_byte_budget_and_do_not_change_results(model, monkeypatch):
    inputs = torch.randn(11, 12, 6)
    whole = rollout(model, inputs, steps=3, batch_size=1140)
    per_window = 4 * model.largest_activation_floats()
    assert rollout_module.cpu_chunk(model, 1140) == min(sizes.CPU_CHUNK_WINDOWS, sizes.CPU_CHUNK_BYTES // per_window)
    assert rollout_module.cpu_chunk(model, 5) == 5
    monkeypatch.setattr(sizes, "CPU_CHUNK_BYTES", 3 * per_window)
    assert rollout_module.cpu_chunk(model, 1140) == 3
    torch.testing.assert_close(rollout(model, inputs, steps=3, batch_size=1140), whole, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(sizes, "CPU_CHUNK_BYTES", 1)
    assert rollout_module.cpu_chunk(model, 1140) == 1


def test_denormalise_inverts_the_scaler():
    scaler = Scaler(60.0, 5.0)
    x = torch.tensor([[-1.0, 0.0, 2.0]])
    np.testing.assert_allclose(denormalise(x, scaler), [[55.0, 60.0, 70.0]])
