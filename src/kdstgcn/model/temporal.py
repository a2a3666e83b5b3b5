"""The temporal convolution of kernel (kt, 1) with its residual folded in: as conv2d or as one batched matrix
product, over a whole window or (streaming) over the kt positions a `PositionRing` holds."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from kdstgcn.model.layers import MaskedLayer, make_residual, residual_matrix
from kdstgcn.runtime.sizes import CPU_CONV2D_MIN_CONTRACTION

if TYPE_CHECKING:
    from kdstgcn.model.streaming import PositionRing


class TemporalConv(MaskedLayer):
    """Temporal gated/plain conv of kernel (kt, 1) with STGCN's residual; act in {glu, relu, sigmoid}."""

    def __init__(self, kt: int, in_ids, out_ids, original_in: int, original_out: int, act: str):
        super().__init__(len(out_ids))
        self.kt, self.act = kt, act
        c_in, c_out = len(in_ids), len(out_ids)
        self.conv = nn.Conv2d(c_in, 2 * c_out if act == "glu" else c_out, (kt, 1))
        self.residual = None if act == "sigmoid" else make_residual(in_ids, out_ids, original_in, original_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.folded_weight()
        if self.runs_as_matmul(x.shape[2], x.device.type):
            return self._activate(self._as_matmul(x, weight))
        return self._activate(F.conv2d(x, weight, self.conv.bias))

    def folded_weight(self) -> torch.Tensor:
        """The conv's weight [C', C, kt, 1] with the residual added to its newest tap (for GLU: to the linear
        half), so that one product gives conv + residual: the residual is never a tensor of its own."""
        weight = self.conv.weight
        if self.residual is None:
            return weight
        matrix = residual_matrix(self.residual)
        newest = torch.cat([matrix, matrix.new_zeros(weight.shape[0] - matrix.shape[0], matrix.shape[1])])
        return torch.cat([weight[:, :, :-1], weight[:, :, -1:] + newest[:, :, None, None]], dim=2)

    def step(self, window: PositionRing) -> torch.Tensor:
        """forward() of the kt positions held by `window` -> [B, C', 1, N]: one product with the kernel's taps
        put in the ring's slot order, so the positions are never moved (the streaming step). The product runs
        as forward() would run this window: a batched matrix product or (as a 1x1 conv over the ring) conv2d."""
        b, _, c, n = window.buffer.shape
        weight, buffer = window.weight(), window.buffer.view(b, self.kt * c, n)
        if self.runs_as_matmul(self.kt, buffer.device.type):
            h = torch.baddbmm(self.conv.bias.view(1, -1, 1), weight.expand(b, -1, -1), buffer).unsqueeze(2)
        else:
            h = F.conv2d(buffer.unsqueeze(2), weight[:, :, None, None], self.conv.bias)
        return self._activate(h)

    def slot_weights(self, newest_slots: Iterable[int] | None = None) -> dict[int, torch.Tensor]:
        """The folded weight as [C', kt x C] matrices with the taps in the slot order of a `PositionRing` whose
        newest position is in slot s (what `step` multiplies the ring's buffer by), by s: for each s of
        `newest_slots`, or for s = 0 .. kt-1."""
        taps = self.folded_weight()[..., 0].permute(0, 2, 1)  # [C', kt, C]
        matrices = {}
        for newest in range(self.kt) if newest_slots is None else newest_slots:
            oldest = (newest + 1) % self.kt
            order = [(slot - oldest) % self.kt for slot in range(self.kt)]  # window position held by each slot
            matrices[newest] = taps[:, order].reshape(taps.shape[0], -1)
        return matrices

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        """The layer's output from its conv `h` (the residual already in it)."""
        if self.act == "sigmoid":
            out = torch.sigmoid(h)
        elif self.act == "glu":  # h[:, :C] * sigmoid(h[:, C:]), its backward writes the whole gradient at once
            out = F.glu(h, dim=1)
        else:
            out = torch.relu(h)
        return self.apply_mask(out)

    def runs_as_matmul(self, positions: int, device_type: str) -> bool:
        """Whether forward() of a window of that many positions runs `_as_matmul` (else conv2d): on a CPU where
        the contraction (input channels x taps) is narrower than CPU_CONV2D_MIN_CONTRACTION, elsewhere for a
        window of exactly kt positions."""
        if device_type == "cpu":
            return self.conv.in_channels * self.kt < CPU_CONV2D_MIN_CONTRACTION
        return positions == self.kt

    def _as_matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The conv (of `weight`, bias included) as one batched matrix product over (channel, tap): x [B, C, T, N]
        -> [B, C', T - kt + 1, N], the same sums as conv2d, where it beats conv2d (`runs_as_matmul`)."""
        b, c, t, n = x.shape
        positions = t - self.kt + 1
        taps = x.unsqueeze(3) if positions == 1 else torch.stack(
            [x[:, :, k:k + positions] for k in range(self.kt)], dim=2)  # [B, C, kt, T', N]
        weight = weight.reshape(self.conv.out_channels, c * self.kt)
        h = torch.baddbmm(self.conv.bias.view(1, -1, 1), weight.expand(b, -1, -1),
                          taps.reshape(b, c * self.kt, positions * n))
        return h.view(b, -1, positions, n)
