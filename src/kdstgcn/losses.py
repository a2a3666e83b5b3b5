"""Training losses of the paper: the task loss and every distillation loss, selectable by name.

Every "||a - b||_2" of the paper on a scalar per node is read as the squared error averaged over batch
and nodes (STGCN's L2 loss). A loss sees the student's and (frozen) teacher's `Outputs` and the target.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """A model's one-step prediction [B, N] and, when asked for, its hidden-layer outputs."""

    prediction: torch.Tensor
    features: dict | None = None


class Loss(nn.Module):
    uses_teacher = False
    uses_features = False

    def share_pct(self) -> float | None:
        """Share of entries learnt from the teacher's prediction (Table 3); None for losses without a switch."""
        return None


class TaskLoss(Loss):
    """Squared error to the ground truth: the student trained without KD (and every teacher)."""

    def forward(self, student: Outputs, target: torch.Tensor, teacher: Outputs | None = None) -> torch.Tensor:
        return F.mse_loss(student.prediction, target)


class ResponseL2(Loss):
    """Eq. 3: beta * (y_s - y_t)^2 + (1 - beta) * (y_s - T)^2."""

    uses_teacher = True

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, student, target, teacher):
        return (self.beta * F.mse_loss(student.prediction, teacher.prediction)
                + (1 - self.beta) * F.mse_loss(student.prediction, target))


class ResponseKL(Loss):
    """Eq. 1-2: beta * tau^2 * KL(p_t || p_s) with softmax over nodes at temperature tau, + (1 - beta) * (y_s - T)^2."""

    uses_teacher = True

    def __init__(self, beta: float, temperature: float = 1.0):
        super().__init__()
        self.beta, self.temperature = beta, temperature

    def forward(self, student, target, teacher):
        tau = self.temperature
        log_ps = F.log_softmax(student.prediction / tau, dim=-1)
        log_pt = F.log_softmax(teacher.prediction / tau, dim=-1)
        kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau ** 2
        return self.beta * kl + (1 - self.beta) * F.mse_loss(student.prediction, target)


class OverseenResponse(Loss):
    """Eq. 4-6: learn from y_t where the min-max normalised |y_t - T| of a node exceeds alpha1, else from T."""

    uses_teacher = True

    def __init__(self, alpha1: float):
        super().__init__()
        self.alpha1 = alpha1
        self.register_buffer("teacher_entries", torch.zeros((), dtype=torch.long))
        self.register_buffer("entries", torch.zeros((), dtype=torch.long))

    def forward(self, student, target, teacher):
        gap = (teacher.prediction - target).abs()
        low = gap.min(dim=-1, keepdim=True).values
        span = gap.max(dim=-1, keepdim=True).values - low
        normalised = torch.where(span > 0, (gap - low) / span.clamp_min(1e-12), torch.zeros_like(gap))
        use_teacher = normalised > self.alpha1
        self.teacher_entries += use_teacher.sum().cpu()
        self.entries += use_teacher.numel()
        goal = torch.where(use_teacher, teacher.prediction, target)
        return F.mse_loss(student.prediction, goal)

    def share_pct(self) -> float:
        return 100.0 * int(self.teacher_entries) / max(int(self.entries), 1)


def pairwise_l1_mean(x: torch.Tensor) -> torch.Tensor:
    """[G, C, P] -> [G, P, P]: mean over channels of |x_p - x_q| (an L1 distance matrix divided by C)."""
    rows = x.transpose(1, 2)
    return torch.cdist(rows, rows, p=1) / x.shape[1]


def temporal_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*N groups of C channels over T time steps: [B*N, C, T]."""
    b, c, t, n = f.shape
    return f.permute(0, 3, 1, 2).reshape(b * n, c, t)


def spatial_groups(f: torch.Tensor) -> torch.Tensor:
    """A layer output [B, C, T, N] as B*T groups of C channels over N nodes: [B*T, C, N]."""
    b, c, t, n = f.shape
    return f.permute(0, 2, 1, 3).reshape(b * t, c, n)


def temporal_correlation(f: torch.Tensor) -> torch.Tensor:
    """Eq. 7: TCD[b, n, i, j] = mean_c |F[b, i, n, c] - F[b, j, n, c]| for a layer output f [B, C, T, N]."""
    return pairwise_l1_mean(temporal_groups(f))


def spatial_correlation(f: torch.Tensor) -> torch.Tensor:
    """Eq. 9: SCD[b, t, i, j] = mean_c |F[b, t, i, c] - F[b, t, j, c]| for a layer output f [B, C, T, N]."""
    return pairwise_l1_mean(spatial_groups(f))


class CdistKernel:
    """L1 distance matrices by torch.cdist(p=1) and their gradient by its backward (any device, no compiler)."""

    name = "cdist"

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R = L1(xs) - (Cs / Ct) L1(xt) for groups [G, C, P] (the student-teacher gap in units of Cs, [G, P, P])
        and the sum of its squares."""
        rs, rt = xs.transpose(1, 2).contiguous(), xt.transpose(1, 2).contiguous()
        r = torch.cdist(rs, rs, p=1)
        r.sub_(torch.cdist(rt, rt, p=1), alpha=xs.shape[1] / xt.shape[1])
        flat = r.view(-1)
        return r, torch.dot(flat, flat)

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """coef * d/dxs of sum_pq R_pq L1(xs)_pq with R held fixed and symmetric, [G, C, P]."""
        rows = xs.transpose(1, 2).contiguous()
        # xs enters cdist twice and R is symmetric, so both halves of cdist's gradient are equal
        return torch.ops.aten._cdist_backward(r, rows, rows, 1.0, r).transpose(1, 2) * (2.0 * coef)


def _l1_residual(xs: torch.Tensor, xt: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    ds = (xs.unsqueeze(3) - xs.unsqueeze(2)).abs().sum(1)
    dt = (xt.unsqueeze(3) - xt.unsqueeze(2)).abs().sum(1)
    r = ds - ratio * dt
    return r, (r * r).sum()


def _l1_gradient(r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return (r.unsqueeze(1) * (xs.unsqueeze(3) - xs.unsqueeze(2)).sign()).sum(3) * (2.0 * coef)


class CompiledKernel:
    """The same quantities as fused loops generated by torch.compile: the [G, C, P, P] broadcast of the
    definition is never stored, the channel sum runs in registers, and the pair axis is vectorised.

    One compiled kernel per layer shape (compiled once per process, cached on disk by inductor); a shape
    beyond the recompile limit raises instead of silently running the broadcast eagerly.
    """

    name = "compiled"
    recompile_limit = 256

    def __init__(self):
        self._residual = torch.compile(_l1_residual, dynamic=False)
        self._gradient = torch.compile(_l1_gradient, dynamic=False)

    def _limits(self):
        return torch._dynamo.config.patch(recompile_limit=self.recompile_limit, fail_on_recompile_limit_hit=True)

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._limits():
            return self._residual(xs.contiguous(), xt.contiguous(), xs.shape[1] / xt.shape[1])

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        with self._limits():
            return self._gradient(r, xs.contiguous(), coef)


class AutoKernel:
    """The compiled kernel where it builds (a C++ compiler on CPU, Triton on GPU), else cdist, said once."""

    name = "auto"

    def __init__(self):
        self.chosen: CdistKernel | CompiledKernel | None = None

    def residual(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chosen is None:
            try:
                compiled = CompiledKernel()
                result = compiled.residual(xs, xt)
                self.chosen = compiled
                return result
            except Exception as error:  # noqa: BLE001 - any compiler failure means: fall back
                first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
                log.warning("correlation kernel: torch.compile is unavailable here (%s); using cdist, which is "
                            "slower but exact. Set distillation.correlation_kernel: cdist to skip this try.",
                            first_line[:200])
                self.chosen = CdistKernel()
        return self.chosen.residual(xs, xt)

    def gradient(self, r: torch.Tensor, xs: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        return self.chosen.gradient(r, xs, coef)


CORRELATION_KERNELS = {"auto": AutoKernel, "compiled": CompiledKernel, "cdist": CdistKernel}


class L1CorrelationGap(torch.autograd.Function):
    """Mean over pairs i < j of (D_s - D_t)^2, D = pairwise_l1_mean of groups [G, C, P]; gradient to xs only.

    The student and teacher distance matrices are merged into one residual R in units of the student's channel
    count, the loss is <R, R> scaled, and the backward pass reuses R: no B x T x N x N x C intermediate, and
    no extra matrices kept for autograd.
    """

    @staticmethod
    def forward(ctx, xs: torch.Tensor, xt: torch.Tensor, kernel) -> torch.Tensor:
        g, cs, p = xs.shape
        scale = 1.0 / (cs * cs * g * p * (p - 1))  # 1 / (2 * pairs * Cs^2): the residual is in units of Cs
        r, squares = kernel.residual(xs, xt)
        ctx.save_for_backward(xs, r)
        ctx.scale, ctx.kernel = scale, kernel
        return squares * scale

    @staticmethod
    def backward(ctx, grad_out):
        xs, r = ctx.saved_tensors
        return ctx.kernel.gradient(r, xs, (2.0 * ctx.scale) * grad_out), None, None


class CorrelationDistance(Loss):
    """Mean squared gap between student and teacher pairwise-distance matrices of matched layers, averaged."""

    uses_teacher = True
    uses_features = True
    layers: str
    groups = None

    def __init__(self, kernel: str = "auto"):
        super().__init__()
        if kernel not in CORRELATION_KERNELS:
            raise ValueError(f"unknown correlation kernel {kernel!r}; choose one of {sorted(CORRELATION_KERNELS)}")
        self.kernel = CORRELATION_KERNELS[kernel]()

    def forward(self, student, target, teacher):
        group = type(self).groups
        gaps = [L1CorrelationGap.apply(group(fs), group(ft.detach()), self.kernel)
                for fs, ft in zip(student.features[self.layers], teacher.features[self.layers], strict=True)]
        return torch.stack(gaps).mean()


class TemporalCorrelationDistance(CorrelationDistance):
    """Eq. 8: the gap of TCD (Eq. 7) over the temporal-conv layers."""

    layers = "temporal"
    groups = temporal_groups


class SpatialCorrelationDistance(CorrelationDistance):
    """Eq. 10: the gap of SCD (Eq. 9) over the graph-conv layers."""

    layers = "spatial"
    groups = spatial_groups


class SpatioTemporalCorrelation(Loss):
    """Eq. 11: L_ORD + alpha3 * (alpha2 * L_SCD + (1 - alpha2) * L_TCD)."""

    uses_teacher = True
    uses_features = True

    def __init__(self, alpha1: float, alpha2: float, alpha3: float, kernel: str = "auto"):
        super().__init__()
        self.alpha2, self.alpha3 = alpha2, alpha3
        self.ord = OverseenResponse(alpha1)
        self.scd = SpatialCorrelationDistance(kernel)
        self.tcd = TemporalCorrelationDistance(kernel)

    def forward(self, student, target, teacher):
        loss = self.ord(student, target, teacher)
        if self.alpha2 > 0:
            loss = loss + self.alpha3 * self.alpha2 * self.scd(student, target, teacher)
        if self.alpha2 < 1:
            loss = loss + self.alpha3 * (1 - self.alpha2) * self.tcd(student, target, teacher)
        return loss

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

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, student, target, teacher):
        with torch.no_grad():
            sim_t = node_similarity(teacher.features["hidden"])
        structure = F.mse_loss(node_similarity(student.features["hidden"]), sim_t)
        return self.alpha * structure + (1 - self.alpha) * F.mse_loss(student.prediction, target)


class TemporalOnlySTCD(SpatioTemporalCorrelation):
    """Table 5 ablation "TCD": Eq. 11 with alpha2 = 0, i.e. L_ORD + alpha3 * L_TCD."""

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto"):
        super().__init__(alpha1, 0.0, alpha3, kernel)


class SpatialOnlySTCD(SpatioTemporalCorrelation):
    """Table 5 ablation "SCD": Eq. 11 with alpha2 = 1, i.e. L_ORD + alpha3 * L_SCD."""

    def __init__(self, alpha1: float, alpha3: float, kernel: str = "auto"):
        super().__init__(alpha1, 1.0, alpha3, kernel)


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

CORRELATION_LOSSES = ("stcd", "tcd", "scd")

LOSS_PARAMETERS = {
    "task": (), "rd_l2": ("beta",), "rd_kl": ("beta", "temperature"), "ord": ("alpha1",),
    "skd": ("alpha",), "stcd": ("alpha1", "alpha2", "alpha3"),
    "tcd": ("alpha1", "alpha3"), "scd": ("alpha1", "alpha3"),
}


def build_loss(name: str, params: dict | None = None, correlation_kernel: str = "auto") -> Loss:
    """Build a loss by name from its hyper-parameters (extra keys such as batch_size are ignored); the
    correlation losses compute their distance matrices with `correlation_kernel` (see CORRELATION_KERNELS)."""
    params = params or {}
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    kwargs = {k: params[k] for k in LOSS_PARAMETERS[name] if k in params}
    if name in CORRELATION_LOSSES:
        kwargs["kernel"] = correlation_kernel
    return LOSSES[name](**kwargs)
