"""What every prunable layer shares: a 0/1 mask over its output channels, and STGCN's residual connection as a
matrix [C_out, C_in] that the layer folds into its own weights."""
from __future__ import annotations

import torch
from torch import nn


class ChannelAlign(nn.Module):
    """Parameter-free residual: carries input channel id k to output channel id k (STGCN's identity or zero-pad).
    The layers fold it into their weights as the 0/1 matrix `matrix` [C_out, C_in] instead of calling it."""

    def __init__(self, in_ids: tuple[int, ...], out_ids: tuple[int, ...]):
        super().__init__()
        position = {cid: p for p, cid in enumerate(in_ids)}
        matrix = torch.zeros(len(out_ids), len(in_ids))
        for j, cid in enumerate(out_ids):
            if cid in position:
                matrix[j, position[cid]] = 1.0
        self.register_buffer("matrix", matrix, persistent=False)


def make_residual(in_ids, out_ids, original_in: int, original_out: int) -> nn.Module:
    """STGCN's residual: a bias-free 1x1 conv when the layer narrows the channels, else identity/zero-pad."""
    if original_in > original_out:
        return nn.Conv2d(len(in_ids), len(out_ids), (1, 1), bias=False)
    return ChannelAlign(in_ids, out_ids)


def residual_matrix(residual: nn.Module) -> torch.Tensor:
    """A residual as the matrix [C_out, C_in] it multiplies the input channels by."""
    return residual.weight[:, :, 0, 0] if isinstance(residual, nn.Conv2d) else residual.matrix


class MaskedLayer(nn.Module):
    """A layer whose output channels can be switched off by a 0/1 mask (None = all kept, no cost).

    The mask is a buffer outside the state dict: it lives on the layer's device, whatever device it is given on,
    and `.to()` moves it with the weights."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.register_buffer("mask", None, persistent=False)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        device = next(self.parameters()).device
        self.mask = None if mask is None else mask.to(device).float().reshape(1, -1, 1, 1)

    def apply_mask(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mask is None else x * self.mask.to(x.device)

