"""Training losses of the paper: the task loss and every distillation loss, selectable by name.

A loss sees the student's and (frozen) teacher's `Outputs` and the target, and is the sum of its named terms,
each a weight times an unweighted value (`Loss.terms`). How the paper's open readings are taken (the
"||a - b||_2" of a scalar, the reduction of Eq. 6, the scale of the distance matrices) is a `Readings`;
its defaults are squared error averaged over batch and nodes (STGCN's L2 loss) and raw distances.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdstgcn.losses.registry import READING_CHOICES, loss_info

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """A model's one-step prediction [B, N] and, when asked for, its hidden-layer outputs."""

    prediction: torch.Tensor
    features: dict | None = None


@dataclass(frozen=True)
class Readings:
    """The paper's open readings (METHOD.md, "Readings under test"); the defaults are the original ones.

    scalar_norm: every ||a - b||_2 of a scalar in Eq. 2, 3, 6, 8, 10 as the squared error or its absolute value
    (the literal L2 norm of a scalar). ord_reduction: Eq. 6 averaged over batch and nodes or summed as written.
    distance_scale: the distance matrices of Eq. 7 / 9 raw or divided by their mean per group (Park et al. 2019).
    """

    scalar_norm: str = "squared"
    ord_reduction: str = "mean"
    distance_scale: str = "raw"

    def __post_init__(self):
        for key, choices in READING_CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"unknown reading {key}={getattr(self, key)!r}; choose one of {list(choices)}")


def scalar_gap(a: torch.Tensor, b: torch.Tensor, norm: str, reduction: str = "mean") -> torch.Tensor:
    """||a - b||_2 of per-entry scalars: squared error or absolute error, averaged or summed over all entries."""
    if norm == "squared":
        return F.mse_loss(a, b, reduction=reduction)
    return F.l1_loss(a, b, reduction=reduction)


class Loss(nn.Module):
    """A loss: the sum over its terms of weight * unweighted value."""

    uses_teacher = False
    uses_features = False
    feature_groups: tuple[str, ...] = ()  # the teacher's hidden-layer outputs the loss reads (Outputs.features)

    def terms(self, student: Outputs, target: torch.Tensor, teacher: Outputs | None = None
              ) -> dict[str, tuple[float, torch.Tensor]]:
        """Each term by name: (weight, unweighted value). Terms of weight 0 may be left out."""
        raise NotImplementedError

    def forward(self, student: Outputs, target: torch.Tensor, teacher: Outputs | None = None) -> torch.Tensor:
        return sum(weight * value for weight, value in self.terms(student, target, teacher).values())

    def share_pct(self) -> float | None:
        """Share of entries learnt from the teacher's prediction (Table 3); None for losses without a switch."""
        return None


class TaskLoss(Loss):
    """Squared error to the ground truth: the student trained without KD (and every teacher)."""

    def terms(self, student, target, teacher=None):
        return {"task": (1.0, F.mse_loss(student.prediction, target))}


class ResponseL2(Loss):
    """Eq. 3: beta * ||y_s - y_t||_2 + (1 - beta) * ||y_s - T||_2."""

    uses_teacher = True

    def __init__(self, beta: float, readings: Readings = Readings()):
        super().__init__()
        self.beta, self.readings = beta, readings

    def terms(self, student, target, teacher):
        norm = self.readings.scalar_norm
        return {"response": (self.beta, scalar_gap(student.prediction, teacher.prediction, norm)),
                "task": (1 - self.beta, scalar_gap(student.prediction, target, norm))}


class ResponseKL(Loss):
    """Eq. 1-2: beta * tau^2 * KL(p_t || p_s) with softmax over nodes at temperature tau, + (1 - beta) * ||y_s - T||_2."""

    uses_teacher = True

    def __init__(self, beta: float, temperature: float = 1.0, readings: Readings = Readings()):
        super().__init__()
        self.beta, self.temperature, self.readings = beta, temperature, readings

    def terms(self, student, target, teacher):
        tau = self.temperature
        log_ps = F.log_softmax(student.prediction / tau, dim=-1)
        log_pt = F.log_softmax(teacher.prediction / tau, dim=-1)
        kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau ** 2
        return {"kl": (self.beta, kl),
                "task": (1 - self.beta, scalar_gap(student.prediction, target, self.readings.scalar_norm))}


class OverseenResponse(Loss):
    """Eq. 4-6: learn from y_t where the min-max normalised |y_t - T| of a node exceeds alpha1, else from T."""

    uses_teacher = True

    def __init__(self, alpha1: float, readings: Readings = Readings()):
        super().__init__()
        self.alpha1, self.readings = alpha1, readings
        self.register_buffer("teacher_entries", torch.zeros((), dtype=torch.long))
        self.register_buffer("entries", torch.zeros((), dtype=torch.long))

    def terms(self, student, target, teacher):
        gap = (teacher.prediction - target).abs()
        low = gap.min(dim=-1, keepdim=True).values
        span = gap.max(dim=-1, keepdim=True).values - low
        normalised = torch.where(span > 0, (gap - low) / span.clamp_min(1e-12), torch.zeros_like(gap))
        use_teacher = normalised > self.alpha1
        self.teacher_entries += use_teacher.sum().cpu()
        self.entries += use_teacher.numel()
        goal = torch.where(use_teacher, teacher.prediction, target)
        readings = self.readings
        return {"ord": (1.0, scalar_gap(student.prediction, goal, readings.scalar_norm, readings.ord_reduction))}

    def share_pct(self) -> float:
        return 100.0 * int(self.teacher_entries) / max(int(self.entries), 1)


# The correlation kernels take a layer's groups in the layout [G, C, P, V]: G x V groups of C channels over P
# points, the pairs on axis 2 and a group axis carried last, so the loops over pairs vectorise along V where
# P is short (TCD: P = T <= 10 time steps, V = N nodes, the layer output as it is) and along the pairs
# where V = 1 (SCD: P = N nodes).

def _l1_distances(x: torch.Tensor) -> torch.Tensor:
    """Groups [G, C, P, V] -> [G, P, P, V]: the channel sums of |x_p - x_q| for each of the G x V groups."""
    return (x.unsqueeze(3) - x.unsqueeze(2)).abs().sum(1)


def pairwise_l1_mean(x: torch.Tensor) -> torch.Tensor:
    """Groups [G, C, P, V] -> [G, P, P, V]: mean over channels of |x_p - x_q| (an L1 distance matrix divided by
    C) for each of the G x V groups."""
    return _l1_distances(x) / x.shape[1]


def temporal_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*N groups of C channels over T time steps: [B, C, T, N] itself."""
    return f


def spatial_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*T groups of C channels over N nodes: [B*T, C, N, 1]."""
    b, c, t, n = f.shape
    return f.permute(0, 2, 1, 3).reshape(b * t, c, n, 1)


def temporal_correlation(f: torch.Tensor) -> torch.Tensor:
    """Eq. 7: TCD[b, n, i, j] = mean_c |F[b, i, n, c] - F[b, j, n, c]| for a layer output f [B, C, T, N]."""
    return pairwise_l1_mean(temporal_groups(f)).permute(0, 3, 1, 2)


def spatial_correlation(f: torch.Tensor) -> torch.Tensor:
    """Eq. 9: SCD[b, t, i, j] = mean_c |F[b, t, i, c] - F[b, t, j, c]| for a layer output f [B, C, T, N]."""
    b, _, t, n = f.shape
    return pairwise_l1_mean(spatial_groups(f)).view(b, t, n, n)


class CdistKernel:
    """L1 distance matrices by torch.cdist(p=1) and their gradient by its backward (any device, no compiler).
    Works on the groups as rows [G*V, P, C], so its matrices are [G*V, P, P] (pairs on axes 1 and 2, as the
    compiled kernel's)."""

    name = "cdist"

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        g, c, p, v = x.shape
        return x.permute(0, 3, 2, 1).reshape(g * v, p, c)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """L1(x): the channel sums of |x_p - x_q| for groups [G, C, P, V], [G*V, P, P]."""
        rows = self._rows(x)
        return torch.cdist(rows, rows, p=1)

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R = L1(xs) - (Cs / Ct) L1(xt) for groups [G, C, P, V] (the student-teacher gap in units of Cs) and
        the sum of its squares."""
        r = self.distances(xs)
        r.sub_(self.distances(xt), alpha=xs.shape[1] / xt.shape[1])
        flat = r.view(-1)
        return r, torch.dot(flat, flat)

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """coef * d/dxs of sum_pq R_pq L1(xs)_pq with R held fixed and symmetric, [G, C, P, V]."""
        g, c, p, v = xs.shape
        rows = self._rows(xs)
        # xs enters cdist twice and R is symmetric, so both halves of cdist's gradient are equal
        grad = torch.ops.aten._cdist_backward(r.contiguous(), rows, rows, 1.0, r.contiguous())
        return grad.view(g, v, p, c).permute(0, 3, 2, 1) * (2.0 * coef)


def _l1_residual(xs: torch.Tensor, xt: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    r = _l1_distances(xs) - ratio * _l1_distances(xt)
    return r, (r * r).sum()


def _l1_gradient(r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return (r.unsqueeze(1) * (xs.unsqueeze(3) - xs.unsqueeze(2)).sign()).sum(3) * (2.0 * coef)


class CompiledKernel:
    """The same quantities as fused loops generated by torch.compile on groups [G, C, P, V] (matrices
    [G, P, P, V]): the [G, C, P, P, V] broadcast of the definition is never stored, the channel sum runs in
    registers, and the innermost axis (V, or the pairs where V = 1) is vectorised.

    One compiled kernel per layer shape (compiled once per process, cached on disk by inductor); a shape
    beyond the recompile limit raises instead of silently running the broadcast eagerly.
    """

    name = "compiled"
    recompile_limit = 256

    def __init__(self):
        self._distances = torch.compile(_l1_distances, dynamic=False)
        self._residual = torch.compile(_l1_residual, dynamic=False)
        self._gradient = torch.compile(_l1_gradient, dynamic=False)

    def _limits(self):
        return torch._dynamo.config.patch(recompile_limit=self.recompile_limit, fail_on_recompile_limit_hit=True)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        with self._limits():
            return self._distances(x.contiguous())

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._limits():
            return self._residual(xs.contiguous(), xt.contiguous(), xs.shape[1] / xt.shape[1])

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        with self._limits():
            return self._gradient(r.contiguous(), xs.contiguous(), coef)


class AutoKernel:
    """The compiled kernel where it builds (a C++ compiler on CPU, Triton on GPU), else cdist, said once."""

    name = "auto"

    def __init__(self):
        self.chosen: CdistKernel | CompiledKernel | None = None

    def _first(self, method: str, *args):
        """Run `method` with the compiled kernel and keep it, or fall back to cdist if it does not build."""
        if self.chosen is None:
            try:
                compiled = CompiledKernel()
                result = getattr(compiled, method)(*args)
                self.chosen = compiled
                return result
            except Exception as error:  # noqa: BLE001 - any compiler failure means: fall back
                first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
                log.warning("correlation kernel: torch.compile is unavailable here (%s); using cdist, which is "
                            "slower but exact. Set distillation.correlation_kernel: cdist to skip this try.",
                            first_line[:200])
                self.chosen = CdistKernel()
        return getattr(self.chosen, method)(*args)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        return self._first("distances", x)

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._first("residual", xs, xt)

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        return self.chosen.gradient(r, xs, coef)


CORRELATION_KERNELS = {"auto": AutoKernel, "compiled": CompiledKernel, "cdist": CdistKernel}


def group_mean(d: torch.Tensor) -> torch.Tensor:
    """Mean of each [P, P] distance matrix (pairs on axes 1 and 2) over its pairs p != q, [G, 1, 1, ...]; 1 where
    all are 0 (left as 0)."""
    p = d.shape[1]
    mean = d.sum((1, 2), keepdim=True) / (p * (p - 1))
    return torch.where(mean > 0, mean, torch.ones_like(mean))


class L1CorrelationGap(torch.autograd.Function):
    """Mean over pairs i < j of ||D_s - D_t||_2 (squared or absolute, `Readings.scalar_norm`), D the
    pairwise_l1_mean of groups [G, C, P, V], raw or divided by its mean per group (`Readings.distance_scale`);
    gradient to xs only.

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
            normalised_s = ds / ds_mean  # the 1 / C of pairwise_l1_mean cancels here
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
    """Mean gap between student and teacher pairwise-distance matrices of matched layers, averaged."""

    uses_teacher = True
    uses_features = True
    name: str
    layers: str
    groups = None

    def __init__(self, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__()
        if kernel not in CORRELATION_KERNELS:
            raise ValueError(f"unknown correlation kernel {kernel!r}; choose one of {sorted(CORRELATION_KERNELS)}")
        self.kernel = CORRELATION_KERNELS[kernel]()
        self.readings = readings
        self.feature_groups = (self.layers,)

    def terms(self, student, target, teacher):
        group = type(self).groups
        gaps = [L1CorrelationGap.apply(group(fs), group(ft.detach()), self.kernel, self.readings)
                for fs, ft in zip(student.features[self.layers], teacher.features[self.layers], strict=True)]
        return {self.name: (1.0, torch.stack(gaps).mean())}


class TemporalCorrelationDistance(CorrelationDistance):
    """Eq. 8: the gap of TCD (Eq. 7) over the temporal-conv layers."""

    name = "tcd"
    layers = "temporal"
    groups = temporal_groups


class SpatialCorrelationDistance(CorrelationDistance):
    """Eq. 10: the gap of SCD (Eq. 9) over the graph-conv layers."""

    name = "scd"
    layers = "spatial"
    groups = spatial_groups


class SpatioTemporalCorrelation(Loss):
    """Eq. 11: L_ORD + alpha3 * (alpha2 * L_SCD + (1 - alpha2) * L_TCD)."""

    uses_teacher = True
    uses_features = True

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

    def share_pct(self) -> float:
        return self.ord.share_pct()


def node_similarity(hidden: torch.Tensor) -> torch.Tensor:
    """[B, C, T, N] -> [B, N, N] cosine similarity between the nodes' hidden vectors."""
    v = F.normalize(hidden.permute(0, 3, 1, 2).flatten(2), dim=-1)
    return v @ v.transpose(1, 2)


class StructureKD(Loss):
    """SKD (Bian et al. 2021), our reading: alpha * MSE of node-similarity matrices of the last hidden layer
    + (1 - alpha) * task loss."""

    uses_teacher = True
    uses_features = True
    feature_groups = ("hidden",)

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def terms(self, student, target, teacher):
        with torch.no_grad():
            sim_t = node_similarity(teacher.features["hidden"])
        structure = F.mse_loss(node_similarity(student.features["hidden"]), sim_t)
        return {"structure": (self.alpha, structure),
                "task": (1 - self.alpha, F.mse_loss(student.prediction, target))}


class TemporalOnlySTCD(SpatioTemporalCorrelation):
    """Table 5 ablation "TCD": Eq. 11 with alpha2 = 0, i.e. L_ORD + alpha3 * L_TCD."""

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__(alpha1, 0.0, alpha3, kernel, readings)


class SpatialOnlySTCD(SpatioTemporalCorrelation):
    """Table 5 ablation "SCD": Eq. 11 with alpha2 = 1, i.e. L_ORD + alpha3 * L_SCD."""

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto", readings: Readings = Readings()):
        super().__init__(alpha1, 1.0, alpha3, kernel, readings)


LOSSES = {
    "task": TaskLoss,
    "rd_l2": ResponseL2,
    "rd_kl": ResponseKL,
    "ord": OverseenResponse,
    "skd": StructureKD,
    "stcd": SpatioTemporalCorrelation,
    "tcd": TemporalOnlySTCD,
    "scd": SpatialOnlySTCD,
}

def build_loss(name: str, params: dict | None = None, correlation_kernel: str = "auto",
               readings: dict | None = None) -> Loss:
    """Build a loss by name from its hyper-parameters (extra keys such as batch_size are ignored); the
    correlation losses compute their distance matrices with `correlation_kernel` (see CORRELATION_KERNELS),
    and the losses of Eq. 2-11 take the paper's open readings from `readings` (Readings' fields; missing
    fields keep their defaults)."""
    params = params or {}
    info = loss_info(name)
    kwargs = {k: params[k] for k in info.parameters if k in params}
    if info.correlation:
        kwargs["kernel"] = correlation_kernel
    if info.readings:
        kwargs["readings"] = Readings(**(readings or {}))
    return LOSSES[name](**kwargs)
