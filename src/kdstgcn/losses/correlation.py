"""Correlation distillation: the gap between student and teacher pairwise-distance matrices of matched hidden
layers, over time steps (TCD, Eq. 7-8) and over nodes (SCD, Eq. 9-10), and STCD (Eq. 11), which adds both to
ORD, with its two ablations of Table 5."""
from __future__ import annotations

import torch

from kdstgcn.losses.base import Loss, Readings
from kdstgcn.losses.kernels import CORRELATION_KERNELS
from kdstgcn.losses.response import OverseenResponse


def temporal_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*N groups of C channels over T time steps: [B, C, T, N] itself."""
    return f


def spatial_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*T groups of C channels over N nodes: [B*T, C, N, 1]."""
    b, c, t, n = f.shape
    return f.permute(0, 2, 1, 3).reshape(b * t, c, n, 1)


def group_mean(d: torch.Tensor) -> torch.Tensor:
    """Mean of each [P, P] distance matrix (pairs on axes 1 and 2) over its pairs p != q, [G, 1, 1, ...]; 1 where
    all are 0 (left as 0)."""
    p = d.shape[1]
    mean = d.sum((1, 2), keepdim=True) / (p * (p - 1))
    return torch.where(mean > 0, mean, torch.ones_like(mean))


class L1CorrelationGap(torch.autograd.Function):
    """Mean over pairs i < j of ||D_s - D_t||_2 (squared or absolute, `Readings.scalar_norm`), D the mean over
    channels of |x_p - x_q| for groups [G, C, P, V] (the TCD / SCD matrix of Eq. 7 / 9), raw or divided by its
    mean per group (`Readings.distance_scale`); gradient to xs only.

    The two distance matrices are merged into one residual R (raw: in units of the student's channel count),
    and the backward pass reuses R: no B x T x N x N x C intermediate, and no extra matrices kept for autograd
    (mean-normalised: also the student's normalised distances, for the gradient through its mean).
    """

    @staticmethod
    def forward(ctx, xs: torch.Tensor, xt: torch.Tensor, kernel, readings: Readings) -> torch.Tensor:
        g, cs, p, v = xs.shape
        ordered_pairs = g * v * p * (p - 1)  # every pair i < j twice in a full symmetric matrix
        if readings.distance_scale == "raw":
            r, squares = kernel.residual(xs, xt)
            unit, saved = cs, (xs, r)
        else:
            ds, dt = kernel.distances(xs), kernel.distances(xt)
            ds_mean = group_mean(ds)
            normalised_s = ds / ds_mean  # the 1 / C of the mean over channels cancels here
            r = normalised_s - dt / group_mean(dt)
            squares = torch.dot(r.view(-1), r.view(-1))
            unit, saved = 1, (xs, r, ds_mean, normalised_s)
        ctx.save_for_backward(*saved)
        ctx.kernel, ctx.readings = kernel, readings
        if readings.scalar_norm == "squared":
            ctx.scale = 1.0 / (unit * unit * ordered_pairs)
            return squares * ctx.scale
        ctx.scale = 1.0 / (unit * ordered_pairs)
        return r.abs().sum() * ctx.scale

    @staticmethod
    def backward(ctx, grad_out):
        xs, r, *normalisation = ctx.saved_tensors
        # d loss / d R, up to the factor coef
        if ctx.readings.scalar_norm == "squared":
            weight, coef = r, 2.0 * ctx.scale * grad_out
        else:
            weight, coef = r.sign(), ctx.scale * grad_out
        if normalisation:  # R = L1(xs) / m(xs) - ...: d/dL1 = (W - <W, L1 / m> / pairs) / m, per group
            ds_mean, normalised_s = normalisation
            p = r.shape[1]
            through_mean = (weight * normalised_s).sum((1, 2), keepdim=True) / (p * (p - 1))
            weight = (weight - through_mean) / ds_mean
        return ctx.kernel.gradient(weight, xs, coef), None, None, None


class CorrelationDistance(Loss):
    """Eq. 8 / 10: the gap of the distance matrices of matched layers, averaged over the layers (a part of STCD)."""

    term: str  # the term's name in STCD
    layers: str  # the hidden-layer outputs it reads (a key of Outputs.features)
    groups = None  # a layer output [B, C, T, N] as groups [G, C, P, V]

    def __init__(self, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__()
        if kernel not in CORRELATION_KERNELS:
            raise ValueError(f"unknown correlation kernel {kernel!r}; choose one of {sorted(CORRELATION_KERNELS)}")
        self.kernel = CORRELATION_KERNELS[kernel]()
        self.readings = readings

    def terms(self, student, target, teacher):
        group = type(self).groups
        gaps = [L1CorrelationGap.apply(group(fs), group(ft.detach()), self.kernel, self.readings)
                for fs, ft in zip(student.features[self.layers], teacher.features[self.layers], strict=True)]
        return {self.term: (1.0, torch.stack(gaps).mean())}


class TemporalCorrelationDistance(CorrelationDistance):
    """Eq. 7-8: L_TCD, the gap of the distances between time steps over the temporal-conv layers."""

    term = "tcd"
    layers = "temporal"
    groups = temporal_groups


class SpatialCorrelationDistance(CorrelationDistance):
    """Eq. 9-10: L_SCD, the gap of the distances between nodes over the graph-conv layers."""

    term = "scd"
    layers = "spatial"
    groups = spatial_groups


class SpatioTemporalCorrelation(Loss):
    """Eq. 11: L_ORD + alpha3 * (alpha2 * L_SCD + (1 - alpha2) * L_TCD)."""

    name = "stcd"

    def __init__(self, alpha1: float, alpha2: float, alpha3: float, kernel: str = "auto",
                 readings: Readings = Readings()):
        super().__init__()
        self.alpha2, self.alpha3 = alpha2, alpha3
        self.ord = OverseenResponse(alpha1, readings)
        self.scd = SpatialCorrelationDistance(kernel, readings)
        self.tcd = TemporalCorrelationDistance(kernel, readings)
        self.feature_groups = (("temporal",) if alpha2 < 1 else ()) + (("spatial",) if alpha2 > 0 else ())

    def terms(self, student, target, teacher):
        terms = self.ord.terms(student, target, teacher)
        if self.alpha2 > 0:
            terms["scd"] = (self.alpha3 * self.alpha2, self.scd(student, target, teacher))
        if self.alpha2 < 1:
            terms["tcd"] = (self.alpha3 * (1 - self.alpha2), self.tcd(student, target, teacher))
        return terms

    def taken(self, target, teacher):
        return self.ord.taken(target, teacher)

    def record(self, taken, entries):
        self.ord.record(taken, entries)

    def share_pct(self) -> float:
        return self.ord.share_pct()


class TemporalOnlySTCD(SpatioTemporalCorrelation):
    """Eq. 11 with alpha2 = 0, Table 5's ablation "TCD": L_ORD + alpha3 * L_TCD."""

    name = "tcd"

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__(alpha1, 0.0, alpha3, kernel, readings)


class SpatialOnlySTCD(SpatioTemporalCorrelation):
    """Eq. 11 with alpha2 = 1, Table 5's ablation "SCD": L_ORD + alpha3 * L_SCD."""

    name = "scd"

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__(alpha1, 1.0, alpha3, kernel, readings)
