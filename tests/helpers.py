"""Helpers shared by test modules: float64 random tensors and the loss tests' literal loops (Eq. 7-10 element by
element) with the hidden-layer outputs they are checked on; a small sparse road graph, a model on it and its
twin on the same stack held sparse."""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from kdstgcn.data.graph import chebyshev_polynomials
from kdstgcn.losses.base import Outputs
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN

DOUBLE = torch.float64
B, C, T, N = 2, 3, 4, 5  # batch, channels, time steps, nodes of the hidden-layer outputs below
KERNELS = ["cdist", "compiled"]  # the correlation kernels that compute (auto picks one of them)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DOUBLE)


# Layer outputs in the model's layout f [B, C, T, N]; the paper's F [B, T, N, C] is f.permute(0, 2, 3, 1).

def literal_tcd(f):
    """Eq. 7 element by element: TCD[b, n, i, j] = 1/C sum_c |F[b,i,n,c] - F[b,j,n,c]|, filled for i < j and mirrored."""
    paper = f.permute(0, 2, 3, 1)
    b_, t_, n_, c_ = paper.shape
    out = torch.zeros(b_, n_, t_, t_, dtype=f.dtype)
    for b, n in itertools.product(range(b_), range(n_)):
        for i, j in itertools.combinations(range(t_), 2):
            value = sum(abs(paper[b, i, n, c].item() - paper[b, j, n, c].item()) for c in range(c_)) / c_
            out[b, n, i, j] = out[b, n, j, i] = value
    return out


def literal_scd(f):
    """Eq. 9 element by element: SCD[b, t, i, j] = 1/C sum_c |F[b,t,i,c] - F[b,t,j,c]|, filled for i < j and mirrored."""
    paper = f.permute(0, 2, 3, 1)
    b_, t_, n_, c_ = paper.shape
    out = torch.zeros(b_, t_, n_, n_, dtype=f.dtype)
    for b, t in itertools.product(range(b_), range(t_)):
        for i, j in itertools.combinations(range(n_), 2):
            value = sum(abs(paper[b, t, i, c].item() - paper[b, t, j, c].item()) for c in range(c_)) / c_
            out[b, t, i, j] = out[b, t, j, i] = value
    return out


def literal_norm(gap, norm):
    """||gap||_2 of a scalar: its square (our default reading) or its absolute value (the literal norm)."""
    return gap * gap if norm == "squared" else abs(gap)


def literal_gap(m_s, m_t, norm="squared", scale="raw"):
    """Eq. 8 / 10: mean over the leading two axes and the pairs i < j of ||m_s - m_t||_2; with scale
    mean_normalised each [P, P] matrix is first divided by its own mean over the pairs i < j."""
    a, b, p, _ = m_s.shape
    pairs = list(itertools.combinations(range(p), 2))
    total = 0.0
    for x, y in itertools.product(range(a), range(b)):
        mean_s = mean_t = 1.0
        if scale == "mean_normalised":
            mean_s = sum(m_s[x, y, i, j].item() for i, j in pairs) / len(pairs)
            mean_t = sum(m_t[x, y, i, j].item() for i, j in pairs) / len(pairs)
        total += sum(literal_norm(m_s[x, y, i, j].item() / mean_s - m_t[x, y, i, j].item() / mean_t, norm)
                     for i, j in pairs)
    return total / (a * b * math.comb(p, 2))


def feature_outputs(prediction, temporal, spatial, hidden=None):
    return Outputs(prediction, {"temporal": temporal, "spatial": spatial, "hidden": hidden})


def two_layer_features(seed, channels):
    """Two temporal and two spatial layers of different lengths (T = 4 and 3), as in an ST block."""
    temporal = [randn(B, channels, T, N, seed=seed), randn(B, channels, T - 1, N, seed=seed + 1)]
    spatial = [randn(B, channels, T, N, seed=seed + 2), randn(B, channels, T - 1, N, seed=seed + 3)]
    return temporal, spatial


def ring_cheb(n: int, ks: int = 3) -> torch.Tensor:
    """Chebyshev stack of a ring road with a few shortcuts: a sparse graph like the real ones."""
    w = np.zeros((n, n))
    for i in range(n):
        w[i, (i + 1) % n] = w[(i + 1) % n, i] = 0.8
    w[0, n // 2] = w[n // 2, 0] = 0.6
    return chebyshev_polynomials(w, ks)


def ring_model(n: int, blocks, seed: int = 0, **arch) -> STGCN:
    """An STGCN on `ring_cheb(n)` whose weights are moved off their initial values, so that every layer matters."""
    torch.manual_seed(seed)
    m = STGCN(Architecture(n, blocks, **arch), ring_cheb(n, arch.get("ks", 3)))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def sparse_twin(model: STGCN) -> STGCN:
    """`model` with its Chebyshev stack held sparse, as a network above DENSE_MAX_NODES holds it: same weights."""
    twin = STGCN(model.arch, model.cheb.to_sparse())
    twin.load_state_dict(model.state_dict() | {"cheb": twin.cheb})
    return twin.train(model.training)


def fit_briefly(model: STGCN, n_nodes: int, gen: torch.Generator, steps: int = 5) -> STGCN:
    """`model` after `steps` RMSprop steps (lr 1e-2, task loss) on 20 random windows drawn from `gen`, so that
    its weights are no longer the initial ones; left in train mode."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    x, y = torch.randn(20, 12, n_nodes, generator=gen), torch.randn(20, n_nodes, generator=gen)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return model


class Interrupted(Exception):
    pass


class StopAfter(TaskLoss):
    """The task loss, but the run dies (like a killed job) at the first batch after `calls` batches."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls = calls

    def forward(self, student, target, teacher=None):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        return super().forward(student, target, teacher)
