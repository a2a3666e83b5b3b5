"""Tests of kdstgcn.evaluation.cost: FLOP counting against hand formulas, rollout timing, peak memory, test batch."""
import functools
import math

import pytest
import torch
from torch import nn

from kdstgcn.evaluation.cost import (benchmark_cheb, count_flops, flop_breakdown, memory_profile, time_rollout)
from kdstgcn.evaluation.cost import test_batch as make_batch  # aliased: pytest would collect a test_* name
from kdstgcn.model import core as model_module
from kdstgcn.model.core import STGCN, Architecture, ChebGraphConv, ChebyshevTerms

TEACHER = ((1, 32, 64), (64, 32, 128))
BASE = ((1, 8, 16), (16, 8, 32))
STUDENT = ((1, 2, 4), (4, 2, 8))


def test_conv2d_flops_equal_hand_formula():
    conv = nn.Conv2d(3, 5, (3, 1))
    x = torch.randn(2, 3, 12, 7)
    # output [2, 5, 10, 7], each output a dot product of c_in * kt * 1 terms, 2 FLOPs per multiply-add
    assert count_flops(conv, x) == 2 * (2 * 5 * 10 * 7) * (3 * 3 * 1)


def test_linear_flops_equal_hand_formula():
    assert count_flops(nn.Linear(16, 8), torch.randn(4, 16)) == 2 * 4 * 16 * 8


def test_chebyshev_graph_conv_is_counted(monkeypatch):
    n, b, c, t, ks = 10, 2, 4, 5, 3
    monkeypatch.setitem(model_module.SPARSE_MAX_DENSITY, "cpu", 0.0)  # every term dense
    layer = ChebGraphConv(ks, tuple(range(c)), tuple(range(c)), c)
    terms = ChebyshevTerms(benchmark_cheb(n, ks))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer, self.terms = layer, terms

        def forward(self, x):
            return self.layer(x, self.terms)

    flops = count_flops(Wrap(), torch.randn(b, c, t, n))
    # the theta contraction over c for every k, then T_k z_k added for k = 1, 2 (T_0 is the identity: no product)
    assert flops == 2 * (ks - 1) * n * n * b * c * t + 2 * b * t * n * ks * c * c
    assert flop_breakdown(Wrap(), torch.randn(b, c, t, n)).keys() == {"baddbmm"}


def test_flops_grow_from_student_to_base_to_teacher():
    n = 20
    cheb = benchmark_cheb(n)
    x = make_batch(n, batch=4)
    flops = {name: count_flops(STGCN(Architecture(n, blocks), cheb), x)
             for name, blocks in (("student", STUDENT), ("base", BASE), ("teacher", TEACHER))}
    assert 0 < flops["student"] < flops["base"] < flops["teacher"]
    # linear in the batch
    assert count_flops(STGCN(Architecture(n, STUDENT), cheb), make_batch(n, batch=8)) == 2 * flops["student"]


def test_meta_count_equals_real_count_also_for_a_masked_model():
    n = 12
    model = STGCN(Architecture(n, BASE), benchmark_cheb(n))
    model.set_masks({"block0.graph": torch.tensor([1, 0] * 4), "block1.temporal2": torch.tensor([1, 1, 0, 1] * 8)})
    x = make_batch(n, batch=3)
    assert count_flops(model, x, meta=True) == count_flops(model, x, meta=False) > 0
    assert model.cheb.device.type == "cpu"  # the caller's model stays where it was


def test_count_flops_keeps_training_mode_and_has_no_grad_side_effects():
    model = STGCN(Architecture(8, STUDENT), benchmark_cheb(8)).train()
    count_flops(model, make_batch(8, batch=2), meta=False)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_time_rollout_gives_finite_positive_times():
    model = STGCN(Architecture(8, STUDENT), benchmark_cheb(8))
    result = time_rollout(model, make_batch(8, batch=16), steps=9, runs=3, warmup=1)
    for key in ("mean_s", "min_s", "median_s"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert math.isfinite(result["std_s"]) and result["std_s"] >= 0
    assert result["min_s"] <= result["mean_s"]
    assert result["runs"] == 3 and result["batch"] == 16
    assert result["device_name"].startswith("cpu: ") and result["device_name"].endswith("threads")


def test_test_batch_is_reproducible():
    a = make_batch(5, batch=7, seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(a, make_batch(5, batch=7, seed=3))
    assert a.shape == (7, 12, 5)
    assert not torch.equal(a, make_batch(5, batch=7, seed=4))


def test_benchmark_cheb_rejects_a_wrong_shape():
    with pytest.raises(ValueError):
        benchmark_cheb(4, distance_m=torch.zeros(3, 3).numpy())


def test_peak_memory_sees_a_large_tensor_in_process():
    report = memory_profile(torch.ones, 32 * 2 ** 20, isolate=False)  # 128 MiB, written
    assert report["increase_bytes"] >= 100 * 2 ** 20
    assert report["peak_bytes"] >= report["baseline_bytes"] + report["increase_bytes"] - 2 ** 20


def test_peak_memory_in_a_fresh_process():
    report = memory_profile(functools.partial(torch.ones, 64 * 2 ** 20))  # 256 MiB, written
    assert "spawned" in report["method"]
    assert report["increase_bytes"] >= 200 * 2 ** 20
