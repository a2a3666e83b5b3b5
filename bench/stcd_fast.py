"""Prototype (not used by the pipeline): an exact, faster formulation of the TCD/SCD gaps of losses.py.

losses.py computes, per feature layer, Ds = cdist(Fs, Fs, p=1) / Cs and Dt = cdist(Ft, Ft, p=1) / Ct as
full [G, P, P] tensors, then ((Ds - Dt) ** 2).sum() / 2 / pairs. On CPU every one of those steps is a
full pass over B*T*N*N floats (104 MB per spatial layer at B=50, T=10, N=228), and autograd adds as many
again in the backward. The formulation here computes the same number with fewer passes:

    R    = cdist(Fs, Fs, p=1) - (Cs / Ct) * cdist(Ft, Ft, p=1)      (one fused sub with alpha)
    gap  = <R, R> / (2 * pairs * Cs^2)                                (a BLAS dot, no temporary)
    dgap/dFs = 2 * _cdist_backward(R * 2g / (2 * pairs * Cs^2), Fs, Fs, p=1)

as one autograd.Function that keeps only R (the teacher's matrix is freed at once) and whose backward
is one scaled copy of R plus the very kernel autograd uses for cdist (both cdist arguments are Fs and R
is symmetric, so the two identical halves of CdistBackward are one call times 2).  -> method "cdist"

Method "pdist" (spatial layers only; the temporal ones keep "cdist"): only the pairs i < j are needed,
which is exactly torch.nn.functional.pdist's condensed output, and pdist's CPU kernel is much faster
than cdist's p=1 kernel for the teacher's C=32 (measured 55 vs 396 ms for [500, 228, 32] on one core;
half of that from doing only the pairs i < j):

    R    = stack_g pdist(Fs[g], p=1) - (Cs / Ct) * stack_g pdist(Ft[g], p=1)      [G, P(P-1)/2]
    gap  = <R, R> / (Cs^2 * G * P(P-1)/2)

plain autograd (pdist has its own backward), half the pairs of every elementwise pass. The price is a
Python loop of G = B*T pdist calls per layer. Each call is a small parallel region whose fork/join
stalls badly when other processes hold the cores, so the loops (forward and backward) run on one
thread (`PDIST_THREADS`; torch's thread count is restored after each loop).

Both give losses.py's value and gradients to float rounding (checked by `check()`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdstgcn.losses import L1CorrelationGap, Loss, OverseenResponse, spatial_groups, temporal_groups


class _Threads:
    """Run a block with torch limited to `n` intra-op threads (restored after). Each pdist call is too
    small to gain from a parallel region, and its fork/join stalls when other processes hold the cores."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        if self.n and self.n < self.saved:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)


PDIST_THREADS = 1  # None: leave torch's thread count alone


class _PdistRows(torch.autograd.Function):
    """F.pdist(p=1) of every group, forward and backward with the same aten kernels autograd would use,
    both run under `PDIST_THREADS` threads."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        with _Threads(PDIST_THREADS):
            out = torch.stack([torch.ops.aten._pdist_forward(row, 1.0) for row in x.unbind(0)])
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        grad = grad.contiguous()
        with _Threads(PDIST_THREADS):
            return torch.stack([torch.ops.aten._pdist_backward(g, row, 1.0, d)
                                for g, row, d in zip(grad.unbind(0), x.unbind(0), out.unbind(0))])


def _pdist_rows(x: torch.Tensor) -> torch.Tensor:
    """[G, P, C] -> [G, P(P-1)/2]: sum_c |x_i - x_j| for i < j, row-major (pdist's condensed order)."""
    if not x.requires_grad:
        with _Threads(PDIST_THREADS):
            return torch.stack([F.pdist(row, p=1) for row in x.unbind(0)])
    return _PdistRows.apply(x)


def _pdist_gap(xs: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    cs, ct = xs.shape[-1], xt.shape[-1]
    with torch.no_grad():
        dt = _pdist_rows(xt)
    r = _pdist_rows(xs).sub(dt, alpha=cs / ct).view(-1)
    return torch.dot(r, r) / (cs * cs * r.numel())


def fast_gap(fs: torch.Tensor, ft: torch.Tensor, kind: str, method: str = "cdist") -> torch.Tensor:
    """Eq. 8 / Eq. 10 gap of one layer pair (features [B, C, T, N]); method "cdist" or "pdist"."""
    groups = spatial_groups if kind == "spatial" else temporal_groups
    with torch.no_grad():
        xt = groups(ft).contiguous()
    xs = groups(fs).contiguous()
    if method == "pdist" and kind == "spatial":
        return _pdist_gap(xs, xt)
    return L1CorrelationGap.apply(xs, xt)


class FastSTCD(Loss):
    """Same value and gradient as kdstgcn.losses.SpatioTemporalCorrelation, computed with `fast_gap`."""

    uses_teacher = True
    uses_features = True

    def __init__(self, alpha1: float, alpha2: float, alpha3: float, method: str = "cdist"):
        super().__init__()
        if method not in ("cdist", "pdist"):
            raise ValueError(f"method must be cdist or pdist, got {method!r}")
        self.alpha2, self.alpha3, self.method = alpha2, alpha3, method
        self.ord = OverseenResponse(alpha1)

    def _term(self, student, teacher, key, kind):
        gaps = [fast_gap(fs, ft, kind, self.method)
                for fs, ft in zip(student.features[key], teacher.features[key], strict=True)]
        return torch.stack(gaps).mean()

    def forward(self, student, target, teacher):
        loss = self.ord(student, target, teacher)
        if self.alpha2 > 0:
            loss = loss + self.alpha3 * self.alpha2 * self._term(student, teacher, "spatial", "spatial")
        if self.alpha2 < 1:
            loss = loss + self.alpha3 * (1 - self.alpha2) * self._term(student, teacher, "temporal", "temporal")
        return loss

    def share_pct(self) -> float:
        return self.ord.share_pct()


def check(student, teacher, x, y, params, method: str = "cdist", rtol=1e-4, atol=1e-6) -> dict:
    """Loss value and student gradients of FastSTCD against losses.build_loss('stcd'): max relative gaps."""
    from kdstgcn.losses import build_loss
    from kdstgcn.train import loss_step

    out = {}
    grads = []
    for loss in (build_loss("stcd", params), FastSTCD(**params, method=method)):
        student.zero_grad(set_to_none=True)
        value = loss_step(student, teacher, loss, x, y)
        value.backward()
        grads.append([p.grad.detach().clone() for p in student.parameters()])
        out.setdefault("values", []).append(float(value.detach()))
    ref, new = grads
    out["loss_rel_diff"] = abs(out["values"][0] - out["values"][1]) / abs(out["values"][0])
    out["grad_max_rel_diff"] = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
                                   for a, b in zip(ref, new))
    out["grads_allclose"] = all(torch.allclose(a, b, rtol=rtol, atol=atol * float(a.abs().max()))
                                for a, b in zip(ref, new))
    student.zero_grad(set_to_none=True)
    return out
