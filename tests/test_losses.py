"""Tests of the losses (kdstgcn.losses): task loss, response distillation (Eq. 1-3), ORD (Eq. 4-6), TCD / SCD /
STCD (Eq. 7-11) and SKD, against hand computations and literal loops under every reading of the paper's open
choices (Readings); the correlation kernels; build_loss, the run spec's readings, what each loss needs of the
teacher, and gradient flow through loss_step."""
import itertools
import math

import numpy as np
import pytest
import torch

from conftest import merged_config
from helpers import (B, C, KERNELS, N, T, feature_outputs, literal_gap, literal_norm, literal_scd, literal_tcd, randn,
                     two_layer_features)
from kdstgcn.config import runspec, schema
from kdstgcn.data.graph import chebyshev_polynomials
from kdstgcn.losses.base import Outputs, Readings, counted_step, forward, loss_step, teacher_forward
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.correlation import (SpatialCorrelationDistance, SpatioTemporalCorrelation,
                                        TemporalCorrelationDistance, spatial_groups, temporal_groups)
from kdstgcn.losses.kernels import CORRELATION_KERNELS
from kdstgcn.losses.registry import LOSSES, READING_CHOICES
from kdstgcn.losses.response import OverseenResponse, ResponseKL, ResponseL2, TaskLoss
from kdstgcn.losses.structure import StructureKD
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN


# ----------------------------------------------------------------------------------------------- task loss

def test_task_loss_is_mean_squared_error():
    y_s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 6.0]])
    # squared errors 1, 4, 4, 4 -> mean 13/4
    assert TaskLoss()(Outputs(y_s), target).item() == pytest.approx(13 / 4)
    assert TaskLoss.uses_teacher is False and TaskLoss().share_pct() is None
    # the default reading computes what the plain mean squared error computes, bit for bit
    assert torch.equal(TaskLoss()(Outputs(y_s), target), torch.nn.functional.mse_loss(y_s, target))
    # absolute errors 1, 2, 2, 2 -> mean 7/4
    assert TaskLoss(Readings(scalar_norm="absolute"))(Outputs(y_s), target).item() == pytest.approx(7 / 4)


# ------------------------------------------------------------------------------------------- RD(L2), Eq. 3

def test_response_l2_matches_hand_computation():
    y_s = torch.tensor([[1.0, 2.0, 3.0]])
    y_t = torch.tensor([[0.0, 4.0, 3.0]])
    target = torch.tensor([[1.0, 0.0, 0.0]])
    # MSE to teacher (1 + 4 + 0) / 3, to target (0 + 4 + 9) / 3; 0.25 * 5/3 + 0.75 * 13/3 = 11/3
    loss = ResponseL2(beta=0.25)(Outputs(y_s), target, Outputs(y_t))
    assert loss.item() == pytest.approx(11 / 3)


def test_response_l2_limits():
    y_s, y_t, target = randn(4, 7, seed=1), randn(4, 7, seed=2), randn(4, 7, seed=3)
    at0 = ResponseL2(beta=0.0)(Outputs(y_s), target, Outputs(y_t))
    at1 = ResponseL2(beta=1.0)(Outputs(y_s), target, Outputs(y_t))
    torch.testing.assert_close(at0, TaskLoss()(Outputs(y_s), target))
    torch.testing.assert_close(at1, ((y_s - y_t) ** 2).mean())
    assert not torch.allclose(at0, at1)


# ------------------------------------------------------------------------------------------ RD(KL), Eq. 1-2

def literal_kl(y_s, y_t, tau):
    """sum over nodes of p_t * (log p_t - log p_s), softmax over nodes at temperature tau, mean over batch * tau^2."""
    total = 0.0
    for b in range(y_s.shape[0]):
        zs = [math.exp(v / tau) for v in y_s[b].tolist()]
        zt = [math.exp(v / tau) for v in y_t[b].tolist()]
        ps = [z / sum(zs) for z in zs]
        pt = [z / sum(zt) for z in zt]
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(ps, pt))
    return total / y_s.shape[0] * tau ** 2


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_response_kl_matches_literal_sum(tau):
    y_s, y_t, target = randn(4, 7, seed=4), randn(4, 7, seed=5), randn(4, 7, seed=6)
    kl = ResponseKL(beta=1.0, temperature=tau)(Outputs(y_s), target, Outputs(y_t))
    assert kl.item() == pytest.approx(literal_kl(y_s, y_t, tau), rel=1e-10)
    mixed = ResponseKL(beta=0.3, temperature=tau)(Outputs(y_s), target, Outputs(y_t))
    assert mixed.item() == pytest.approx(0.3 * kl.item() + 0.7 * ((y_s - target) ** 2).mean().item(), rel=1e-10)


def test_response_kl_nonnegative_zero_on_equal_and_beta0_is_task_loss():
    for seed in range(20):
        y_s, y_t = randn(3, 6, seed=seed) * 3, randn(3, 6, seed=100 + seed) * 3
        for tau in (0.5, 1.0, 4.0):
            assert ResponseKL(1.0, tau)(Outputs(y_s), y_s, Outputs(y_t)).item() >= 0.0
    y = randn(3, 6, seed=7)
    for tau in (0.5, 1.0, 4.0):
        assert abs(ResponseKL(1.0, tau)(Outputs(y.float()), y.float(), Outputs(y.float().clone())).item()) <= 1e-7
    target = randn(3, 6, seed=8)
    torch.testing.assert_close(ResponseKL(0.0)(Outputs(y), target, Outputs(randn(3, 6, seed=9))),
                               TaskLoss()(Outputs(y), target))


# ------------------------------------------------------------------------------------------- ORD, Eq. 4-6

def ord_case():
    """Two samples of five nodes; the min-max normalised |y_t - T| is known exactly.

    sample 0: T = 0, y_t = [0, 1, 2, 3, 4]          -> D = [0, .25, .5, .75, 1]
    sample 1: T = [1..5], y_t - T = [2, -10, 6, -4, 8] -> |.| = [2, 10, 6, 4, 8] -> D = [0, 1, .5, .25, .75]
    """
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    y_t = target + torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [2.0, -10.0, 6.0, -4.0, 8.0]])
    y_s = torch.tensor([[0.5, -1.0, 1.5, 2.0, 7.0], [0.0, 3.0, -2.0, 1.0, 4.0]])
    return y_s, y_t, target


def test_ord_switches_to_teacher_strictly_above_alpha1():
    y_s, y_t, target = ord_case()
    y_s = y_s.clone().requires_grad_(True)
    loss = OverseenResponse(alpha1=0.5)(Outputs(y_s), target, Outputs(y_t))
    # D > 0.5 learns from the teacher; D == 0.5 (node 2 of both samples) still learns from the target
    use_teacher = torch.tensor([[False, False, False, True, True], [False, True, False, False, True]])
    goal = torch.where(use_teacher, y_t, target)
    assert loss.item() == pytest.approx(((y_s.detach() - goal) ** 2).mean().item())
    # recover the goal each entry was pulled to from d loss / d y_s = 2 (y_s - goal) / numel
    (grad,) = torch.autograd.grad(loss, y_s)
    torch.testing.assert_close(y_s.detach() - grad * y_s.numel() / 2, goal)
    # node 2 differs between teacher and target, so the tie really was decided for the target
    assert (y_t[:, 2] != target[:, 2]).all()


def test_ord_threshold_extremes():
    y_s, y_t, target = ord_case()
    just_below = OverseenResponse(alpha1=0.5 - 1e-6)(Outputs(y_s), target, Outputs(y_t))
    use_teacher = torch.tensor([[False, False, True, True, True], [False, True, True, False, True]])
    assert just_below.item() == pytest.approx(((y_s - torch.where(use_teacher, y_t, target)) ** 2).mean().item())
    # alpha1 = 1: nothing exceeds the maximum, task loss; alpha1 < 0: everything from the teacher, RD(L2) beta=1
    assert OverseenResponse(1.0)(Outputs(y_s), target, Outputs(y_t)).item() == pytest.approx(
        ((y_s - target) ** 2).mean().item())
    assert OverseenResponse(-0.1)(Outputs(y_s), target, Outputs(y_t)).item() == pytest.approx(
        ((y_s - y_t) ** 2).mean().item())


def counted(loss, student, target, teacher):
    """The loss of a batch, the batch counted in its share, as the training step does (kdstgcn.losses.base)."""
    value = loss(student, target, teacher)
    loss.record(loss.taken(target, teacher), target.numel())
    return value


def test_ord_constant_gap_is_finite_and_uses_target():
    target = torch.zeros(2, 4)
    y_t = torch.full((2, 4), 3.0)  # max == min: the normalisation divides 0 by 0
    y_s = torch.arange(8.0).reshape(2, 4)
    ord_loss = OverseenResponse(alpha1=0.5)
    loss = counted(ord_loss, Outputs(y_s), target, Outputs(y_t))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(((y_s - target) ** 2).mean().item())
    assert ord_loss.share_pct() == 0.0 and int(ord_loss.entries) == 8


def test_ord_share_accumulates_in_buffers_and_survives_state_dict():
    ord_loss = OverseenResponse(alpha1=0.5)
    assert ord_loss.share_pct() == 0.0
    y_s, y_t, target = ord_case()
    counted(ord_loss, Outputs(y_s), target, Outputs(y_t))  # 4 of 10 entries from the teacher
    assert ord_loss.share_pct() == pytest.approx(40.0)
    # one sample, D = [0, .1, .2, .3, 1]: 1 of 5 from the teacher -> cumulative 5 / 15
    counted(ord_loss, Outputs(torch.zeros(1, 5)), torch.zeros(1, 5),
            Outputs(torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0]])))
    assert ord_loss.share_pct() == pytest.approx(100 * 5 / 15)
    state = ord_loss.state_dict()
    assert int(state["teacher_entries"]) == 5 and int(state["entries"]) == 15
    fresh = OverseenResponse(alpha1=0.5)
    fresh.load_state_dict(state)
    assert fresh.share_pct() == pytest.approx(100 * 5 / 15)
    # the STCD reports the share of its ORD term, also through its state_dict
    stcd = SpatioTemporalCorrelation(0.5, 0.5, 1.0)
    stcd.load_state_dict({f"ord.{k}": v for k, v in state.items()})
    assert stcd.share_pct() == pytest.approx(100 * 5 / 15)


# ------------------------------------------------------------------- scalar readings of Eq. 2, 3, 6 (ORD)

def literal_ord(y_s, y_t, target, alpha1, norm, reduction):
    """Eq. 4-6 entry by entry: D = min-max normalised |y_t - T| per sample; ||y_s - y_t|| where D > alpha1,
    else ||y_s - T||; averaged over batch and nodes (mean) or summed as Eq. 6 writes (sum)."""
    total, count = 0.0, 0
    for b in range(y_s.shape[0]):
        gaps = [abs(t - g) for t, g in zip(y_t[b].tolist(), target[b].tolist())]
        low, high = min(gaps), max(gaps)
        for i, gap in enumerate(gaps):
            d = (gap - low) / (high - low)
            goal = y_t[b, i].item() if d > alpha1 else target[b, i].item()
            total += literal_norm(y_s[b, i].item() - goal, norm)
            count += 1
    return total / count if reduction == "mean" else total


@pytest.mark.parametrize("reduction", READING_CHOICES["ord_reduction"])
@pytest.mark.parametrize("norm", READING_CHOICES["scalar_norm"])
def test_ord_matches_literal_loop_under_every_reading(norm, reduction):
    y_s, y_t, target = ord_case()
    loss = OverseenResponse(0.5, Readings(scalar_norm=norm, ord_reduction=reduction))
    assert counted(loss, Outputs(y_s), target, Outputs(y_t)).item() == pytest.approx(
        literal_ord(y_s, y_t, target, 0.5, norm, reduction), rel=1e-6)
    assert loss.share_pct() == pytest.approx(40.0)


@pytest.mark.parametrize("norm", READING_CHOICES["scalar_norm"])
def test_response_losses_match_literal_loops_under_every_norm(norm):
    y_s, y_t, target = randn(3, 6, seed=150), randn(3, 6, seed=151), randn(3, 6, seed=152)
    entries = list(itertools.product(range(3), range(6)))

    def literal_mean(a, b):
        return sum(literal_norm(a[e].item() - b[e].item(), norm) for e in entries) / len(entries)

    readings = Readings(scalar_norm=norm)
    rd_l2 = ResponseL2(0.3, readings)(Outputs(y_s), target, Outputs(y_t)).item()
    assert rd_l2 == pytest.approx(0.3 * literal_mean(y_s, y_t) + 0.7 * literal_mean(y_s, target), rel=1e-10)
    rd_kl = ResponseKL(0.3, 2.0, readings)(Outputs(y_s), target, Outputs(y_t)).item()
    assert rd_kl == pytest.approx(0.3 * literal_kl(y_s, y_t, 2.0) + 0.7 * literal_mean(y_s, target), rel=1e-10)


def test_absolute_and_squared_readings_differ_and_sum_scales_by_entries():
    y_s, y_t, target = ord_case()
    value = {(norm, reduction): OverseenResponse(0.5, Readings(scalar_norm=norm, ord_reduction=reduction))(
        Outputs(y_s), target, Outputs(y_t)).item() for norm in ("squared", "absolute") for reduction in ("mean", "sum")}
    assert value["squared", "mean"] != pytest.approx(value["absolute", "mean"])
    for norm in ("squared", "absolute"):
        assert value[norm, "sum"] == pytest.approx(y_s.numel() * value[norm, "mean"])


def test_readings_reject_unknown_values_naming_the_key():
    with pytest.raises(ValueError, match="scalar_norm='l1'.*'squared', 'absolute'"):
        Readings(scalar_norm="l1")
    with pytest.raises(ValueError, match="distance_scale"):
        build_loss("stcd", {"alpha1": 0.5, "alpha2": 0.5, "alpha3": 0.5}, readings={"distance_scale": "max"})


# ----------------------------------------------------------------------------------- TCD / SCD, Eq. 7-10
# Layer outputs in the model's layout f [B, C, T, N]; the paper's F [B, T, N, C] is f.permute(0, 2, 3, 1).

def kernel_matrices(kernel, groups):
    """The kernel's L1 distance matrices of groups [G, C, P, V] as [G, V, P, P] (cdist and the compiled loops
    keep the group axes in different places)."""
    g, _, p, v = groups.shape
    d = CORRELATION_KERNELS[kernel]().distances(groups)
    return d.view(g, v, p, p) if kernel == "cdist" else d.permute(0, 3, 1, 2)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_distances_of_the_groups_are_c_times_tcd_and_scd(kernel):
    """Eq. 7 and 9 as the losses compute them: the layer output as groups, the kernel's channel sums of
    |x_p - x_q|; the mean over channels (1 / C) is then taken with the residual's unit or cancels in the mean."""
    f = randn(B, C, T, N, seed=10)
    tcd = kernel_matrices(kernel, temporal_groups(f)) / C
    scd = kernel_matrices(kernel, spatial_groups(f)).view(B, T, N, N) / C
    torch.testing.assert_close(tcd, literal_tcd(f))
    torch.testing.assert_close(scd, literal_scd(f))
    for matrices in (tcd, scd):
        torch.testing.assert_close(matrices, matrices.transpose(-1, -2), rtol=0, atol=0)
        assert (torch.diagonal(matrices, dim1=-2, dim2=-1) == 0).all()


# cdist under every (scalar_norm, distance_scale) of the correlation terms. The readings act in Python shared by
# both kernels, around the kernel's distance matrices, residual and gradient; so the compiled kernel (whose
# first use per shape costs seconds of compiling) is checked on the default and on the reading that uses all
# three of its loops, the absolute gap of mean-normalised distances.
KERNEL_READINGS = [("cdist", Readings(scalar_norm=norm, distance_scale=scale))
                   for norm in READING_CHOICES["scalar_norm"] for scale in READING_CHOICES["distance_scale"]] + [
    ("compiled", Readings()), ("compiled", Readings(scalar_norm="absolute", distance_scale="mean_normalised"))]


def kernel_reading_id(case):
    return case if isinstance(case, str) else f"{case.scalar_norm}-{case.ord_reduction}-{case.distance_scale}"


@pytest.mark.parametrize("kernel, readings", KERNEL_READINGS, ids=kernel_reading_id)
def test_tcd_and_scd_losses_match_literal_loops(kernel, readings):
    temporal_s, spatial_s = two_layer_features(20, C)
    temporal_t, spatial_t = two_layer_features(30, 2 * C + 1)  # the teacher is wider: no projection needed
    student = feature_outputs(randn(B, N, seed=40), temporal_s, spatial_s)
    teacher = feature_outputs(randn(B, N, seed=41), temporal_t, spatial_t)
    target = randn(B, N, seed=42)
    norm, scale = readings.scalar_norm, readings.distance_scale
    # averaged over layers, each layer's gap normalised by its own B * N * C(T, 2) / B * T * C(N, 2)
    want_tcd = np.mean([literal_gap(literal_tcd(fs), literal_tcd(ft), norm, scale)
                        for fs, ft in zip(temporal_s, temporal_t)])
    want_scd = np.mean([literal_gap(literal_scd(fs), literal_scd(ft), norm, scale)
                        for fs, ft in zip(spatial_s, spatial_t)])
    tcd = TemporalCorrelationDistance(kernel, readings)(student, target, teacher).item()
    scd = SpatialCorrelationDistance(kernel, readings)(student, target, teacher).item()
    assert tcd == pytest.approx(want_tcd, rel=1e-10)
    assert scd == pytest.approx(want_scd, rel=1e-10)
    assert want_tcd > 0 and want_scd > 0


def test_mean_normalised_distances_ignore_the_feature_scale():
    """Relational KD's point: scaling a layer's output scales its distances and leaves their shape."""
    kernel = "cdist"
    temporal_s, spatial_s = two_layer_features(130, C)
    temporal_t, spatial_t = two_layer_features(140, 2 * C)
    teacher = feature_outputs(None, temporal_t, spatial_t)
    scaled = [[7.0 * f for f in temporal_s], [0.1 * f for f in spatial_s]]
    for scale, same in [("mean_normalised", True), ("raw", False)]:
        readings = Readings(distance_scale=scale)
        for loss_cls in (TemporalCorrelationDistance, SpatialCorrelationDistance):
            loss = loss_cls(kernel, readings)
            plain = loss(feature_outputs(None, temporal_s, spatial_s), None, teacher).item()
            rescaled = loss(feature_outputs(None, *scaled), None, teacher).item()
            assert (rescaled == pytest.approx(plain, rel=1e-10)) is same, (scale, loss_cls.__name__)


@pytest.mark.parametrize("kernel", KERNELS)
def test_tcd_and_scd_vanish_when_teacher_repeats_student_channels(kernel):
    temporal_s, spatial_s = two_layer_features(50, C)
    # repeating every channel keeps the mean over C, hence every TCD / SCD entry
    temporal_t = [torch.cat([f, f], dim=1) for f in temporal_s]
    spatial_t = [torch.cat([f, f, f], dim=1) for f in spatial_s]
    student = feature_outputs(randn(B, N, seed=51), temporal_s, spatial_s)
    teacher = feature_outputs(randn(B, N, seed=52), temporal_t, spatial_t)
    target = randn(B, N, seed=53)
    assert TemporalCorrelationDistance(kernel)(student, target, teacher).item() == pytest.approx(0.0, abs=1e-12)
    assert SpatialCorrelationDistance(kernel)(student, target, teacher).item() == pytest.approx(0.0, abs=1e-12)
    # a perturbation of one channel of one layer makes each loss positive
    temporal_t[1] = temporal_t[1].clone()
    temporal_t[1][:, 0] += randn(B, T - 1, N, seed=54)
    spatial_t[0] = spatial_t[0].clone()
    spatial_t[0][:, 2] += randn(B, T, N, seed=55)
    teacher = feature_outputs(teacher.prediction, temporal_t, spatial_t)
    assert TemporalCorrelationDistance(kernel)(student, target, teacher).item() > 1e-3
    assert SpatialCorrelationDistance(kernel)(student, target, teacher).item() > 1e-3


@pytest.mark.parametrize("kernel, readings", KERNEL_READINGS, ids=kernel_reading_id)
def test_correlation_losses_have_correct_gradients(kernel, readings):
    """float64 gradcheck; with mean_normalised the gradient also flows through the student's group means."""
    temporal_s, spatial_s = two_layer_features(60, C)
    temporal_t, spatial_t = two_layer_features(70, 2)
    teacher = feature_outputs(randn(B, N, seed=71), temporal_t, spatial_t)
    target = randn(B, N, seed=72)

    def tcd(f0, f1):
        loss = TemporalCorrelationDistance(kernel, readings)
        return loss(feature_outputs(target, [f0, f1], spatial_s), target, teacher)

    def scd(f0, f1):
        loss = SpatialCorrelationDistance(kernel, readings)
        return loss(feature_outputs(target, temporal_s, [f0, f1]), target, teacher)

    assert torch.autograd.gradcheck(tcd, [f.clone().requires_grad_(True) for f in temporal_s])
    assert torch.autograd.gradcheck(scd, [f.clone().requires_grad_(True) for f in spatial_s])


@pytest.mark.parametrize("loss_cls", [TemporalCorrelationDistance, SpatialCorrelationDistance])
def test_compiled_kernel_matches_cdist_on_a_float32_layer(loss_cls):
    fs, ft = randn(3, 2, 5, 40, seed=120).float(), randn(3, 16, 5, 40, seed=121).float()
    values, grads = [], []
    for kernel in KERNELS:
        f = fs.clone().requires_grad_(True)
        value = loss_cls(kernel)(feature_outputs(None, [f], [f]), None, feature_outputs(None, [ft], [ft]))
        value.backward()
        values.append(value.item()), grads.append(f.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_auto_kernel_falls_back_to_cdist_where_nothing_compiles(caplog):
    student, teacher, target = stcd_case()
    want = SpatialCorrelationDistance("cdist")(student, target, teacher).item()
    torch._dynamo.reset()
    with torch._inductor.config.patch({"cpp.cxx": ("no-such-compiler",), "fx_graph_cache": False}):
        loss = SpatialCorrelationDistance("auto")
        assert loss(student, target, teacher).item() == pytest.approx(want, rel=1e-12)
    torch._dynamo.reset()
    assert loss.kernel.chosen.name == "cdist"
    assert "torch.compile is unavailable here" in caplog.text and "correlation_kernel: cdist" in caplog.text


# ------------------------------------------------------------------------------------------- STCD, Eq. 11

def stcd_case():
    temporal_s, spatial_s = two_layer_features(80, C)
    temporal_t, spatial_t = two_layer_features(90, 2 * C)
    y_s, y_t, target = ord_case()
    y_s, y_t, target = y_s[:B].double(), y_t[:B].double(), target[:B].double()
    return feature_outputs(y_s, temporal_s, spatial_s), feature_outputs(y_t, temporal_t, spatial_t), target


def test_stcd_combines_its_parts():
    student, teacher, target = stcd_case()
    alpha1, alpha2, alpha3 = 0.5, 0.3, 0.7
    ord_part = OverseenResponse(alpha1)(student, target, teacher).item()
    tcd_part = TemporalCorrelationDistance()(student, target, teacher).item()
    scd_part = SpatialCorrelationDistance()(student, target, teacher).item()
    assert min(ord_part, tcd_part, scd_part) > 0
    stcd = build_loss("stcd", {"alpha1": alpha1, "alpha2": alpha2, "alpha3": alpha3})
    want = ord_part + alpha3 * (alpha2 * scd_part + (1 - alpha2) * tcd_part)
    assert counted(stcd, student, target, teacher).item() == pytest.approx(want, rel=1e-10)
    assert stcd.share_pct() == pytest.approx(40.0)
    # the ablations of Table 5 ignore any alpha2 given to them
    params = {"alpha1": alpha1, "alpha2": alpha2, "alpha3": alpha3}
    for name, fixed, want in [("tcd", 0.0, ord_part + alpha3 * tcd_part), ("scd", 1.0, ord_part + alpha3 * scd_part)]:
        ablation = build_loss(name, params)(student, target, teacher).item()
        assert ablation == pytest.approx(want, rel=1e-10)
        assert ablation == pytest.approx(
            SpatioTemporalCorrelation(alpha1, fixed, alpha3)(student, target, teacher).item(), rel=1e-12)


def test_stcd_terms_carry_the_weights_of_eq_11_and_sum_to_the_loss():
    student, teacher, target = stcd_case()
    readings = Readings("absolute", "sum", "mean_normalised")
    stcd = SpatioTemporalCorrelation(0.5, 0.3, 0.7, "cdist", readings)
    terms = stcd.terms(student, target, teacher)
    assert {name: weight for name, (weight, _) in terms.items()} == pytest.approx(
        {"ord": 1.0, "scd": 0.7 * 0.3, "tcd": 0.7 * 0.7})
    parts = {"ord": OverseenResponse(0.5, readings), "scd": SpatialCorrelationDistance("cdist", readings),
             "tcd": TemporalCorrelationDistance("cdist", readings)}
    for name, part in parts.items():
        assert terms[name][1].item() == pytest.approx(part(student, target, teacher).item(), rel=1e-12)
    total = sum(weight * value.item() for weight, value in terms.values())
    assert stcd(student, target, teacher).item() == pytest.approx(total, rel=1e-12)
    # the ablations leave out the term of weight 0
    assert set(build_loss("tcd", {"alpha1": 0.5, "alpha3": 0.7}).terms(student, target, teacher)) == {"ord", "tcd"}
    assert set(build_loss("scd", {"alpha1": 0.5, "alpha3": 0.7}).terms(student, target, teacher)) == {"ord", "scd"}


# ------------------------------------------------------------------------------------------------------ SKD

def test_structure_kd_by_hand():
    # student: B=1, C=1, T=2, N=3, node vectors [1,0], [0,1], [1,1]
    hidden_s = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).reshape(1, 1, 2, 3)
    # teacher: C=2, T=1, node vectors [1,0], [1,0], [0,2]
    hidden_t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]).reshape(1, 2, 1, 3)
    # cosine matrices: s = [[1,0,r],[0,1,r],[r,r,1]] (r = 1/sqrt 2), t = [[1,1,0],[1,1,0],[0,0,1]]
    # squared gaps: 1 twice (0,1), 1/2 four times (0,2), (1,2) -> 4 over 9 entries
    y_s, target = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 0.0, 0.0]])  # task loss 13/3
    student = Outputs(y_s, {"hidden": hidden_s})
    teacher = Outputs(torch.zeros(1, 3), {"hidden": hidden_t})
    assert StructureKD(alpha=1.0)(student, target, teacher).item() == pytest.approx(4 / 9, rel=1e-6)
    assert StructureKD(alpha=0.25)(student, target, teacher).item() == pytest.approx(
        0.25 * 4 / 9 + 0.75 * 13 / 3, rel=1e-6)
    torch.testing.assert_close(StructureKD(alpha=0.0)(student, target, teacher), TaskLoss()(student, target))


def test_structure_kd_matches_cosine_loop():
    hidden_s, hidden_t = randn(2, 3, 2, 4, seed=100), randn(2, 5, 2, 4, seed=101)
    y_s, target = randn(2, 4, seed=102), randn(2, 4, seed=103)

    def cosine(h, b, n, m):
        u, v = h[b, :, :, n].flatten(), h[b, :, :, m].flatten()
        return (u @ v).item() / (u.norm().item() * v.norm().item())

    gaps = [(cosine(hidden_s, b, n, m) - cosine(hidden_t, b, n, m)) ** 2
            for b in range(2) for n in range(4) for m in range(4)]
    loss = StructureKD(alpha=0.6)(Outputs(y_s, {"hidden": hidden_s}), target, Outputs(y_s, {"hidden": hidden_t}))
    assert loss.item() == pytest.approx(0.6 * np.mean(gaps) + 0.4 * ((y_s - target) ** 2).mean().item(), rel=1e-10)
    absolute = StructureKD(0.6, Readings(scalar_norm="absolute"))(Outputs(y_s, {"hidden": hidden_s}), target,
                                                                   Outputs(y_s, {"hidden": hidden_t}))
    assert absolute.item() == pytest.approx(0.6 * np.mean(gaps) + 0.4 * (y_s - target).abs().mean().item(), rel=1e-10)


# ------------------------------------------------------------------------------------------------ build_loss

ALL_PARAMS = {"batch_size": 50, "learning_rate": 1e-3, "alpha1": 0.3, "alpha2": 0.4, "alpha3": 0.5,
              "alpha": 0.2, "beta": 0.6, "temperature": 2.0}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_build_loss_ignores_extra_keys(name):
    assert build_loss(name, ALL_PARAMS).name == name


def test_build_loss_passes_the_hyper_parameters():
    assert build_loss("rd_l2", ALL_PARAMS).beta == 0.6
    kl = build_loss("rd_kl", ALL_PARAMS)
    assert (kl.beta, kl.temperature) == (0.6, 2.0)
    assert build_loss("rd_kl", {"beta": 0.6}).temperature == 1.0
    assert build_loss("ord", ALL_PARAMS).alpha1 == 0.3
    assert build_loss("skd", ALL_PARAMS).alpha == 0.2
    for name, alpha2 in [("stcd", 0.4), ("tcd", 0.0), ("scd", 1.0)]:
        loss = build_loss(name, ALL_PARAMS)
        assert (loss.ord.alpha1, loss.alpha2, loss.alpha3) == (0.3, alpha2, 0.5)
    assert type(build_loss("task")) is TaskLoss


def test_build_loss_passes_the_readings_to_every_part():
    readings = {"scalar_norm": "absolute", "ord_reduction": "sum", "distance_scale": "mean_normalised"}
    for name in (name for name, info in LOSSES.items() if info.readings):
        loss = build_loss(name, ALL_PARAMS, "cdist", readings)
        parts = [loss.ord, loss.scd, loss.tcd] if LOSSES[name].correlation else [loss]
        assert all(part.readings == Readings(**readings) for part in parts), name
    assert build_loss("ord", ALL_PARAMS).readings == Readings()
    # every student's task term takes scalar_norm; the reference runs' task loss (no readings) the default
    assert {name for name, info in LOSSES.items() if "scalar_norm" in info.readings} == set(LOSSES)
    assert build_loss("task").readings == Readings()


def test_run_spec_carries_the_configured_readings():
    demo_config = merged_config("config/demo.yaml")
    config = {**demo_config, "distillation": {**demo_config["distillation"], "scalar_norm": "absolute",
                                              "ord_reduction": "sum", "distance_scale": "mean_normalised"}}
    schema.validate(config)
    spec = runspec.student_run(config, "demo", "stcd", 0).loss
    assert spec.readings == {"scalar_norm": "absolute", "ord_reduction": "sum", "distance_scale": "mean_normalised"}
    assert build_loss(**spec.to_dict()).ord.readings == Readings("absolute", "sum", "mean_normalised")
    pruning = runspec.prune_run(config, "demo", "kd_taylor", "pruning_base", config["pruning"]["base_ratios"][0], 0)
    assert pruning.loss.readings == spec.readings
    # defaults: today's readings; the student without KD takes them like the others, the teacher and the pruning
    # base train on the plain task loss (no readings)
    assert runspec.student_run(demo_config, "demo", "stcd", 0).loss.readings == {
        "scalar_norm": "squared", "ord_reduction": "mean", "distance_scale": "raw"}
    no_kd = runspec.student_run(config, "demo", "task", 0).loss
    assert no_kd.readings["scalar_norm"] == build_loss(**no_kd.to_dict()).readings.scalar_norm == "absolute"
    for role in ("teacher", "pruning_base"):
        assert "readings" not in runspec.reference_run(config, "demo", role, 0).loss.to_dict()
    baseline = runspec.prune_run(config, "demo", "taylor", "pruning_base", config["pruning"]["base_ratios"][0], 0)
    assert baseline.loss.readings["scalar_norm"] == baseline.prune.finetune_loss.readings["scalar_norm"] == "absolute"


def test_build_loss_unknown_name():
    with pytest.raises(KeyError) as info:
        build_loss("fitnet", ALL_PARAMS)
    message = str(info.value)
    assert "fitnet" in message
    assert all(name in message for name in LOSSES)


# ---------------------------------------------------------------------------- gradient flow with real STGCNs

def small_models():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 1.0, size=(6, 6)) * (rng.uniform(size=(6, 6)) < 0.6)
    w = np.triu(w, 1)
    w = w + w.T
    cheb = chebyshev_polynomials(w, 3)
    torch.manual_seed(0)
    teacher = STGCN(Architecture(n_nodes=6, blocks=((1, 4, 8), (8, 4, 16))), cheb).eval()
    student = STGCN(Architecture(n_nodes=6, blocks=((1, 2, 4), (4, 2, 8))), cheb).train()
    g = torch.Generator().manual_seed(1)
    return student, teacher, torch.randn(3, 12, 6, generator=g), torch.randn(3, 6, generator=g)


KD_LOSSES = sorted(name for name, info in LOSSES.items() if info.uses_teacher)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_runs_on_what_the_registry_says_it_reads(name):
    """loss_step gives a loss the teacher and the hidden layers only where the registry says it reads them; a loss
    that reads more than its entry says fails here (a missing teacher, features None)."""
    student, teacher, x, y = small_models()
    info = LOSSES[name]
    loss = build_loss(name, ALL_PARAMS)
    assert (loss.uses_teacher, loss.uses_features) == (info.uses_teacher, info.reads_features)
    value = loss_step(student, teacher if info.uses_teacher else None, loss, x, y)
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize("name", ["ord", "stcd"])
def test_a_compiled_counted_step_returns_the_share_count_and_changes_no_state(name):
    """ORD's counters stay out of the compiled graph (a buffer written there keeps CUDA graphs from replaying):
    counted_step compiled in one graph returns the batch's count and leaves the loss's state alone; loss_step
    then records it. Loss and share are the eager ones."""
    student, teacher, x, y = small_models()
    loss = build_loss(name, ALL_PARAMS, correlation_kernel="cdist")
    eager_value, eager_taken = counted_step(student, teacher, loss, x, y)
    compiled = torch.compile(counted_step, backend="aot_eager", fullgraph=True, dynamic=False)
    value, taken = compiled(student, teacher, loss, x, y)
    assert all(int(v) == 0 for v in loss.state_dict().values())
    assert int(taken) == int(eager_taken) and 0 < int(taken) < y.numel()
    assert value.item() == pytest.approx(eager_value.item(), rel=1e-6)
    assert loss_step(student, teacher, loss, x, y).item() == eager_value.item()
    assert loss.share_pct() == pytest.approx(100 * int(taken) / y.numel())


@pytest.mark.parametrize("name", KD_LOSSES)
def test_gradients_reach_the_student_only(name):
    student, teacher, x, y = small_models()
    # alpha1 = 0.3 so that ORD uses both the teacher and the target
    loss_fn = build_loss(name, {**ALL_PARAMS, "temperature": 1.0})
    loss = loss_step(student, teacher, loss_fn, x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in student.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"no gradient for student parameters {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(m.training for m in teacher.modules())
    assert student.training


@pytest.mark.parametrize("loss_cls, unreached", [
    (TemporalCorrelationDistance, ("output.", "blocks.1.norm.")),
    (SpatialCorrelationDistance, ("output.", "blocks.1.temporal2.", "blocks.1.norm.")),
])
def test_hidden_layer_losses_train_the_layers_they_read(loss_cls, unreached):
    student, teacher, x, y = small_models()
    # a part of STCD alone, fed as loss_step feeds STCD
    loss_cls()(forward(student, x, True), y, teacher_forward(teacher, x, True)).backward()
    for n, p in student.named_parameters():
        if n.startswith(unreached):
            assert p.grad is None, n
    first = student.blocks[0].temporal1.conv.weight.grad
    assert first is not None and first.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
