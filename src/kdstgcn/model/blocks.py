"""The two parts an STGCN is made of: the spatio-temporal conv block and the output layer, each with the
streaming step that computes only its newest time position."""
from __future__ import annotations

import torch
from torch import nn

from kdstgcn.model.architecture import Architecture
from kdstgcn.model.graph_conv import ChebGraphConv
from kdstgcn.model.graph_products import ChebyshevTerms
from kdstgcn.model.norm import NodeChannelNorm
from kdstgcn.model.streaming import PositionRing
from kdstgcn.model.temporal import TemporalConv


class STConvBlock(nn.Module):
    """Temporal GLU conv -> Chebyshev graph conv -> temporal ReLU conv -> LayerNorm -> dropout."""

    def __init__(self, arch: Architecture, index: int, in_ids: tuple[int, ...], original_in: int):
        super().__init__()
        _, c_t, c_out = arch.blocks[index]
        name = f"block{index}"
        t1_ids = arch.channel_ids(f"{name}.temporal1")
        g_ids = arch.channel_ids(f"{name}.graph")
        t2_ids = arch.channel_ids(f"{name}.temporal2")
        self.temporal1 = TemporalConv(arch.kt, in_ids, t1_ids, original_in, c_t, "glu")
        self.graph = ChebGraphConv(arch.ks, t1_ids, g_ids, c_t)
        self.temporal2 = TemporalConv(arch.kt, g_ids, t2_ids, c_t, c_out, "relu")
        self.norm = NodeChannelNorm(arch.n_nodes, len(t2_ids))
        self.dropout = nn.Dropout(arch.dropout)

    def forward(self, x, cheb_terms: ChebyshevTerms, features: dict | None = None, stream: dict | None = None,
                sliding: bool = False):
        """[B, C, T, N] -> [B, C', T - 2(kt-1), N]; with `stream`, also keep there what `step` continues from (in
        `sliding` rings for a stream autograd differentiates through)."""
        mixing = self.graph.folded_mixing()
        t1 = self.temporal1(x)
        g = self.graph(t1, cheb_terms, mixing)
        t2 = self.temporal2(g)
        if features is not None:
            features["temporal"] += [t1, t2]
            features["spatial"].append(g)
        if stream is not None:
            stream["input"] = PositionRing(x, self.temporal1, sliding)
            stream["graph"] = PositionRing(g, self.temporal2, sliding)
            stream["mixing"] = mixing
        return self.dropout(self.norm(t2, self.temporal2.mask))

    def step(self, x_new: torch.Tensor, cheb_terms: ChebyshevTerms, stream: dict) -> torch.Tensor:
        """The block's output at the newest position [B, C', 1, N] once the input window moved on by x_new
        [B, C, 1, N]: only the newest position of each layer is computed, the older ones are in `stream`."""
        stream["input"].push(x_new)
        g = self.graph(self.temporal1.step(stream["input"]), cheb_terms, stream["mixing"])
        stream["graph"].push(g)
        return self.dropout(self.norm(self.temporal2.step(stream["graph"]), self.temporal2.mask))


class OutputLayer(nn.Module):
    """STGCN output: temporal GLU conv over the remaining steps, LayerNorm, 1x1 sigmoid conv, per-node linear."""

    def __init__(self, arch: Architecture, in_ids: tuple[int, ...], original_width: int):
        super().__init__()
        self.temporal = TemporalConv(arch.time_after_blocks, in_ids, in_ids, original_width, original_width, "glu")
        self.norm = NodeChannelNorm(arch.n_nodes, len(in_ids))
        self.gate = TemporalConv(1, in_ids, in_ids, original_width, original_width, "sigmoid")
        self.fc_weight = nn.Parameter(torch.empty(len(in_ids)))
        self.fc_bias = nn.Parameter(torch.zeros(arch.n_nodes))
        nn.init.uniform_(self.fc_weight, -len(in_ids) ** -0.5, len(in_ids) ** -0.5)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        self.temporal.set_mask(mask)
        self.gate.set_mask(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.temporal(x))

    def step(self, window: PositionRing) -> torch.Tensor:
        """forward() of the window held by `window` (TemporalConv.step)."""
        return self._head(self.temporal.step(window))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        h = self.gate(self.norm(h, self.temporal.mask))  # [B, C, 1, N]
        return torch.einsum("bctn,c->bn", h, self.fc_weight) + self.fc_bias
