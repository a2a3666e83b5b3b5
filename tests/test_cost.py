"""Tests of kdstgcn.evaluation.cost: FLOP counting against hand formulas, rollout timing."""
import math

import torch
from torch import nn

from helpers import ring_cheb
from kdstgcn.evaluation.cost import count_flops, time_rollout
from kdstgcn.model import graph_products
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.graph_conv import ChebGraphConv
from kdstgcn.model.graph_products import ChebyshevTerms
from kdstgcn.model.stgcn import STGCN

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
    monkeypatch.setitem(graph_products.SPARSE_MAX_DENSITY, "cpu", 0.0)  # every term dense
    layer = ChebGraphConv(ks, tuple(range(c)), tuple(range(c)), c)
    terms = ChebyshevTerms(ring_cheb(n, ks))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer, self.terms = layer, terms

        def forward(self, x):
            return self.layer(x, self.terms)

    flops = count_flops(Wrap(), torch.randn(b, c, t, n))
    # the theta contraction over c for every k, then T_k z_k added for k = 1, 2 (T_0 is the identity: no product)
    assert flops == 2 * (ks - 1) * n * n * b * c * t + 2 * b * t * n * ks * c * c


def test_flops_grow_from_student_to_base_to_teacher():
    n = 20
    cheb = ring_cheb(n)
    x = torch.randn(4, 12, n)
    flops = {name: count_flops(STGCN(Architecture(n, blocks), cheb), x)
             for name, blocks in (("student", STUDENT), ("base", BASE), ("teacher", TEACHER))}
    assert 0 < flops["student"] < flops["base"] < flops["teacher"]
    # linear in the batch
    assert count_flops(STGCN(Architecture(n, STUDENT), cheb), torch.randn(8, 12, n)) == 2 * flops["student"]


def test_meta_count_equals_real_count_also_for_a_masked_model():
    n = 12
    model = STGCN(Architecture(n, BASE), ring_cheb(n))
    model.set_masks({"block0.graph": torch.tensor([1, 0] * 4), "block1.temporal2": torch.tensor([1, 1, 0, 1] * 8)})
    x = torch.randn(3, 12, n)
    assert count_flops(model, x, meta=True) == count_flops(model, x, meta=False) > 0
    assert model.cheb.device.type == "cpu"  # the caller's model stays where it was


def test_count_flops_keeps_training_mode_and_has_no_grad_side_effects():
    model = STGCN(Architecture(8, STUDENT), ring_cheb(8)).train()
    count_flops(model, torch.randn(2, 12, 8), meta=False)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_time_rollout_gives_finite_positive_times():
    model = STGCN(Architecture(8, STUDENT), ring_cheb(8))
    result = time_rollout(model, torch.randn(16, 12, 8), steps=9, runs=3, warmup=1)
    for key in ("mean_s", "min_s", "median_s"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert math.isfinite(result["std_s"]) and result["std_s"] >= 0
    assert result["min_s"] <= result["mean_s"]
    assert result["runs"] == 3 and result["batch"] == 16
    assert result["device_name"].startswith("cpu: ") and result["device_name"].endswith("threads")
