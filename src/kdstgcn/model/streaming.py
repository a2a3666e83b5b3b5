"""The ring of the last kt positions a temporal conv reads while streaming (one new time position per step)."""
from __future__ import annotations

import torch
from torch import nn


class PositionRing:
    """The last kt positions of a temporal conv's input for streaming, in a buffer [B, kt, C, N] whose slots are
    written in turn: a new position overwrites the oldest, and the conv reads the slots in place with its
    kernel taps in slot order (`TemporalConv.slot_weights`, made once per stream), so no position is copied
    twice.

    A `sliding` ring (for training: autograd cannot differentiate through writes in place) keeps the positions in
    time order instead, and each push makes a new buffer of the newest kt: the same products, differentiable."""

    def __init__(self, x: torch.Tensor, conv: nn.Module, sliding: bool = False):
        """Start from the last kt - 1 positions of x [B, C, T, N] for the temporal conv `conv` (its `kt` and
        `slot_weights`); `push` then completes the window."""
        b, c, t, n = x.shape
        self.size, self.sliding = conv.kt, sliding
        last = x[:, :, t - self.size + 1:].transpose(1, 2)
        if sliding:
            self.buffer = last
        else:
            self.buffer = x.new_empty(b, self.size, c, n)
            self.buffer[:, : self.size - 1] = last
        self.written = self.size - 2  # the slot of the newest position so far
        # a sliding ring holds its window in time order: its newest position is always in the last slot
        self.slot_weights = conv.slot_weights([self.size - 1] if sliding else None)

    def push(self, x_new: torch.Tensor) -> None:
        """Add the newest position [B, C, 1, N], dropping the oldest."""
        if self.sliding:
            self.buffer = torch.cat([self.buffer[:, 1 - self.size:] if self.size > 1 else self.buffer[:, :0],
                                     x_new.transpose(1, 2)], dim=1)
            self.written = self.size - 1  # time order: the newest in the last slot
            return
        self.written = (self.written + 1) % self.size
        self.buffer[:, self.written] = x_new[:, :, 0]

    def weight(self) -> torch.Tensor:
        """The conv's weight [C', kt x C] in the slot order of the window held now."""
        return self.slot_weights[self.written]
