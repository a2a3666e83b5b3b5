"""Correlation distillation: the gap between student and teacher pairwise-distance matrices of matched hidden
layers, over time steps (TCD, Eq. 7-8) and over nodes (SCD, Eq. 9-10, over every station or, beyond the paper,
over a sample of them per batch), and STCD (Eq. 11), which adds both to ORD, with its two ablations of Table 5."""
from __future__ import annotations

import torch
from torch import nn

from kdstgcn.losses.base import Loss, Readings
from kdstgcn.losses.kernels import CORRELATION_KERNELS
from kdstgcn.losses.registry import stcd_feature_groups
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

    def matched_layers(self, student, teacher) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The outputs [B, C, T, N] of the student's and the teacher's matched layers."""
        return list(zip(student.features[self.layers], teacher.features[self.layers], strict=True))

    def terms(self, student, target, teacher):
        group = type(self).groups
        gaps = [L1CorrelationGap.apply(group(fs), group(ft.detach()), self.kernel, self.readings)
                for fs, ft in self.matched_layers(student, teacher)]
        return {self.term: (1.0, torch.stack(gaps).mean())}


class TemporalCorrelationDistance(CorrelationDistance):
    """Eq. 7-8: L_TCD, the gap of the distances between time steps over the temporal-conv layers."""

    term = "tcd"
    layers = "temporal"
    groups = temporal_groups


WORD = 0xFFFFFFFF


def word_product(x: torch.Tensor, m: int) -> torch.Tensor:
    """x * m modulo 2^32 for 32-bit words x (int64) and m, exact: no intermediate reaches 2^49."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & WORD


def mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons' hash prospector): a bijection of 32-bit words (int64) whose every output bit
    depends on every input bit."""
    x = word_product(x ^ (x >> 16), 0x7FEB352D)
    x = word_product(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


class StationSample(nn.Module):
    """The stations SCD compares under `Readings.scd_stations` = K (beyond the paper): K of the N stations per
    batch, the same for the student and the teacher and in every layer, each K-subset about equally likely.

    Derived, not drawn: the K stations with the smallest keys mix(mix(mix(seed) + batch) + station), a hash of
    the seed torch was last seeded with when the loss was built (the run's: the jobs seed it just before),
    the count of batches recorded so far (`record`) and the station. No generator is read, so the global random
    stream is untouched, and the sample is a few integer tensor operations on the features' device: a compiled
    training step traces it, and every device gives the same stations. Seed and count are buffers, kept in the
    checkpoint with the loss: a resumed run takes the stations an uninterrupted one takes."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count
        self.register_buffer("seed", torch.tensor(torch.initial_seed() & WORD))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def stations(self, n: int, device: torch.device) -> torch.Tensor | None:
        """The indices, in order, of this batch's stations among `n`, on `device` (the features', which a loss left
        on the CPU may differ from); None where K >= n (every station)."""
        if self.count >= n:
            return None
        batch_key = mix((mix(self.seed) + self.batches) & WORD).to(device)
        keys = mix((batch_key + torch.arange(n, device=device)) & WORD)
        return keys.topk(self.count, largest=False, sorted=False).indices.sort().values

    def record(self) -> None:
        self.batches += 1


class SpatialCorrelationDistance(CorrelationDistance):
    """Eq. 9-10: L_SCD, the gap of the distances between nodes over the graph-conv layers."""

    term = "scd"
    layers = "spatial"
    groups = spatial_groups

    def __init__(self, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__(kernel, readings)
        self.sample = None if readings.scd_stations == "all" else StationSample(readings.scd_stations)

    def matched_layers(self, student, teacher):
        layers = super().matched_layers(student, teacher)
        first = layers[0][0]
        stations = None if self.sample is None else self.sample.stations(first.shape[3], first.device)
        if stations is None:
            return layers
        return [(fs.index_select(3, stations), ft.index_select(3, stations)) for fs, ft in layers]

    def record(self, taken, entries):
        if self.sample is not None:
            self.sample.record()


class SpatioTemporalCorrelation(Loss):
    """Eq. 11: L_ORD + alpha3 * (alpha2 * L_SCD + (1 - alpha2) * L_TCD)."""

    name = "stcd"

    def __init__(self, alpha1: float, alpha2: float, alpha3: float, kernel: str = "auto",
                 readings: Readings = Readings()):
        super().__init__()
        self.alpha2, self.alpha3, self.readings = alpha2, alpha3, readings
        self.ord = OverseenResponse(alpha1, readings)
        self.scd = SpatialCorrelationDistance(kernel, readings)
        self.tcd = TemporalCorrelationDistance(kernel, readings)
        self.feature_groups = stcd_feature_groups(alpha2)

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
        self.scd.record(taken, entries)

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
