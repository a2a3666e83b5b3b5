"""STGCN's layer norm over nodes and channels, whose statistics leave masked channels out."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


class NodeChannelNorm(nn.Module):
    """LayerNorm over [nodes, channels] per sample and time step; statistics over unmasked channels only."""

    def __init__(self, n_nodes: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_nodes, width))
        self.bias = nn.Parameter(torch.zeros(n_nodes, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = x.transpose(1, 2)  # [B, T, C, N]: no copy when T = 1 (the streaming step)
        weight, bias = self.weight.t(), self.bias.t()
        if mask is None:
            out = F.layer_norm(h, h.shape[-2:], weight, bias, LN_EPS)
        else:
            m = mask.reshape(1, 1, -1, 1).to(h.device)
            count = m.sum() * h.shape[3]
            mean = (h * m).sum(dim=(2, 3), keepdim=True) / count
            var = (((h - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
            out = ((h - mean) / torch.sqrt(var + LN_EPS) * weight + bias) * m
        return out.transpose(1, 2)
