"""An STGCN in the form its ONNX files hold: the same arithmetic as `kdstgcn.model.stgcn.STGCN` (the folded
weights of its layers, masks included), laid out for ONNX Runtime and checked equal to it in tests.

Activations are [T, C, B, N] (time, channels, batch, nodes; [C, B, N] for one position), so that every product
is one large matrix product: a conv's weight times all windows and nodes at once ([C', kt x C] @ [kt x C,
B x N]), a graph product all windows and channels times a Chebyshev term ([.., N] @ [N, N]). The kt positions a
temporal conv reads are kt x C contiguous rows, and the streaming state of a conv is its last kt - 1 input
positions as one tensor [(kt - 1) x C, B, N]. The Chebyshev terms are constants of the file (T_0 = I is no product
at all): a dense stack's terms dense matrices, a sparse stack's (above `DENSE_MAX_NODES` stations) fixed-degree
neighbour lists (`neighbour_lists`: a gather, a product and a sum per neighbour slot), which grow with the graph's
edges. Layer norms are written out (mean and variance over channels and nodes), as ONNX's
LayerNormalization normalises trailing axes only.
"""
from __future__ import annotations

import torch
from torch import nn

from kdstgcn.model.blocks import OutputLayer, STConvBlock
from kdstgcn.model.graph_conv import ChebGraphConv
from kdstgcn.model.norm import LN_EPS, NodeChannelNorm
from kdstgcn.model.stgcn import STGCN
from kdstgcn.model.temporal import TemporalConv


def _constant(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    module.register_buffer(name, None if value is None else value.detach().clone().float())


def _channel_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A layer's 0/1 channel mask shaped to multiply [.., C, B, N]."""
    return None if mask is None else mask.reshape(-1, 1, 1)


def _times(module: nn.Module, weight: str, h: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    """A module's weight [M, K] times h [*lead, K, B, N], plus its bias [M, 1] -> [*lead, M, B, N]: one matrix
    product over all windows and nodes (for one position a Gemm with the bias in it; M, K and N are numbers of
    the module, so that the file computes no shapes)."""
    rows, width = module.shapes[weight]
    product = torch.matmul(getattr(module, weight), h.reshape(*lead, width, -1)) + module.bias
    return product.reshape(*lead, rows, -1, module.n_nodes)


class Temporal(nn.Module):
    """A temporal conv (residual folded in) over kt positions held as kt x C rows [.., kt x C, B, N] ->
    [.., C', B, N]."""

    def __init__(self, conv: TemporalConv, n_nodes: int):
        super().__init__()
        self.kt, self.act, self.width, self.n_nodes = conv.kt, conv.act, conv.conv.in_channels, n_nodes
        self.out_width = len(conv.conv.bias) // 2 if conv.act == "glu" else len(conv.conv.bias)
        taps = conv.folded_weight()[..., 0].permute(0, 2, 1)  # [C', kt, C]: oldest position first
        _constant(self, "weight", taps.reshape(taps.shape[0], -1))
        _constant(self, "bias", conv.conv.bias.reshape(-1, 1))
        _constant(self, "mask", _channel_mask(conv.mask))
        self.shapes = {"weight": tuple(self.weight.shape)}

    def forward(self, rows: torch.Tensor, lead: tuple[int, ...] = ()) -> torch.Tensor:
        """rows [*lead, kt x C, B, N] -> [*lead, C', B, N]."""
        h = _times(self, "weight", rows, lead)
        if self.act == "glu":
            h = h[..., :self.out_width, :, :] * torch.sigmoid(h[..., self.out_width:, :, :])
        else:
            h = torch.sigmoid(h) if self.act == "sigmoid" else torch.relu(h)
        return h if self.mask is None else h * self.mask

    def over(self, h: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
        """The conv over every window of h [length, C, B, N] -> ([positions, C', B, N], positions = length - kt
        + 1); `length` is a number of the file, not read from h, so that every slice is static."""
        positions = length - self.kt + 1
        taps = torch.cat([h[k:k + positions] for k in range(self.kt)], dim=1) if self.kt > 1 else h
        return self(taps, (positions,)), positions

    def state(self, h: torch.Tensor) -> torch.Tensor:
        """The last kt - 1 positions of this conv's input h [T, C, B, N] as one tensor [(kt - 1) x C, B, N]."""
        return h[1 - self.kt:].reshape((self.kt - 1) * self.width, -1, self.n_nodes)


def neighbour_lists(term: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse N x N matrix T as fixed-degree neighbour lists, slot by slot: the columns [D, N] and values [D, N]
    of each row's entries, D the most entries of a row, shorter rows padded with their own station at weight 0, so
    that (T z)_i = sum_d values[d, i] z[columns[d, i]]."""
    term = term.coalesce()
    rows, cols = term.indices()
    n = term.shape[0]
    per_row = torch.bincount(rows, minlength=n)
    slot = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(per_row, 0) - per_row)[rows]
    degree = int(per_row.max())
    columns = torch.arange(n, device=rows.device).repeat(degree, 1)
    values = torch.zeros(degree, n, device=rows.device)
    columns[slot, rows], values[slot, rows] = cols, term.values()
    return columns, values


class Graph(nn.Module):
    """The Chebyshev graph conv: channel mixing (bias and residual folded into T_0's rows), then the graph
    products over the node axis (dense T_k^T, or the neighbour lists of a sparse stack), ReLU and mask:
    [.., C, B, N] -> [.., C', B, N]."""

    def __init__(self, conv: ChebGraphConv, cheb: torch.Tensor):
        super().__init__()
        matrix, bias = conv.folded_mixing()
        self.width, self.n_nodes = conv.theta.shape[2], cheb.shape[-1]
        _constant(self, "mixing", matrix)
        _constant(self, "bias", bias.reshape(-1, 1))
        self.ks, self.degrees = cheb.shape[0], {}
        for k in range(1, self.ks):  # T_0 = I: no product
            if cheb.is_sparse:
                columns, values = neighbour_lists(cheb[k])
                self.register_buffer(f"neighbours{k}", columns)
                _constant(self, f"weights{k}", values)
                self.degrees[k] = len(values)
            else:
                _constant(self, f"term{k}", cheb[k].t())  # T_k^T
        _constant(self, "mask", _channel_mask(conv.mask))
        self.shapes = {"mixing": tuple(matrix.shape)}

    def product(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """T_k over the node axis of z [.., N]: a matrix product with T_k^T, or, slot by slot, each station's
        neighbour in that slot gathered, weighted and added (no tensor larger than z, whatever the degree)."""
        if k not in self.degrees:
            return torch.matmul(z, getattr(self, f"term{k}"))
        columns, weights = getattr(self, f"neighbours{k}"), getattr(self, f"weights{k}")
        out = torch.index_select(z, -1, columns[0]) * weights[0]
        for d in range(1, self.degrees[k]):
            out = out + torch.index_select(z, -1, columns[d]) * weights[d]
        return out

    def forward(self, h: torch.Tensor, lead: tuple[int, ...] = ()) -> torch.Tensor:
        z = _times(self, "mixing", h, lead)
        o = self.width
        out = z[..., :o, :, :]
        for k in range(1, self.ks):
            out = out + self.product(z[..., k * o:(k + 1) * o, :, :], k)
        out = torch.relu(out)
        return out if self.mask is None else out * self.mask


def _over_nodes_and_channels(reduce, h: torch.Tensor) -> torch.Tensor:
    """A sum or mean (`reduce`: torch.sum or torch.mean) of h [.., C, B, N] over its nodes, then its channels:
    ONNX Runtime sums over the two axes at once with an error that grows with N (5e-4 in a student's prediction at
    8,600 stations), over the contiguous node axis first about as precisely as torch."""
    return reduce(reduce(h, dim=-1, keepdim=True), dim=-3, keepdim=True)


class Norm(nn.Module):
    """STGCN's layer norm over the channels and nodes of each position and window, [.., C, B, N] (statistics
    over unmasked channels only)."""

    def __init__(self, norm: NodeChannelNorm, mask: torch.Tensor | None):
        super().__init__()
        _constant(self, "weight", norm.weight.t()[:, None])  # [C, 1, N]
        _constant(self, "bias", norm.bias.t()[:, None])
        _constant(self, "mask", _channel_mask(mask))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            centred = h - _over_nodes_and_channels(torch.mean, h)
            var = _over_nodes_and_channels(torch.mean, centred * centred)
            return centred / torch.sqrt(var + LN_EPS) * self.weight + self.bias
        count = self.mask.sum() * self.weight.shape[-1]
        centred = h - _over_nodes_and_channels(torch.sum, h * self.mask) / count
        kept = centred * self.mask
        var = _over_nodes_and_channels(torch.sum, kept * kept) / count
        return (centred / torch.sqrt(var + LN_EPS) * self.weight + self.bias) * self.mask


class Block(nn.Module):
    """A spatio-temporal conv block: temporal GLU conv, graph conv, temporal ReLU conv, layer norm."""

    def __init__(self, block: STConvBlock, cheb: torch.Tensor):
        super().__init__()
        n_nodes = cheb.shape[-1]
        self.temporal1, self.temporal2 = Temporal(block.temporal1, n_nodes), Temporal(block.temporal2, n_nodes)
        self.graph = Graph(block.graph, cheb)
        self.norm = Norm(block.norm, block.temporal2.mask)


class Head(nn.Module):
    """The output layer over its whole input window [T x C, B, N] -> [B, N]."""

    def __init__(self, output: OutputLayer, n_nodes: int):
        super().__init__()
        self.n_nodes = n_nodes
        self.temporal, self.gate = Temporal(output.temporal, n_nodes), Temporal(output.gate, n_nodes)
        self.norm = Norm(output.norm, output.temporal.mask)
        _constant(self, "fc_weight", output.fc_weight.reshape(1, -1))
        _constant(self, "fc_bias", output.fc_bias)
        self.width = len(output.fc_weight)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        h = self.gate(self.norm(self.temporal(rows)))  # [C, B, N]
        return torch.matmul(self.fc_weight, h.reshape(self.width, -1)).reshape(-1, self.n_nodes) + self.fc_bias


class Exported(nn.Module):
    """The layers of an STGCN in export form; subclasses are the three files' graphs."""

    def __init__(self, model: STGCN):
        super().__init__()
        cheb = model.cheb
        self.blocks = nn.ModuleList(Block(block, cheb) for block in model.blocks)
        self.head = Head(model.output, model.arch.n_nodes)
        self.n_his, self.n_nodes = model.arch.n_his, model.arch.n_nodes

    def state_names(self) -> list[str]:
        """The streaming state, one tensor per temporal conv that reads more than one position: its last kt - 1
        input positions, named after the conv."""
        convs = [(f"block{b}.{kind}", getattr(block, kind)) for b, block in enumerate(self.blocks)
                 for kind in ("temporal1", "temporal2")] + [("output.temporal", self.head.temporal)]
        return [name for name, conv in convs if conv.kt > 1]

    def _forward(self, window: torch.Tensor, states: list | None) -> torch.Tensor:
        """[B, n_his, N] -> [B, N]; appends to `states` (when given) the state after this window."""
        h, length = window.transpose(0, 1).unsqueeze(1), self.n_his
        for block in self.blocks:
            _keep(states, block.temporal1, h)
            t1, length = block.temporal1.over(h, length)
            g = block.graph(t1, (length,))
            _keep(states, block.temporal2, g)
            t2, length = block.temporal2.over(g, length)
            h = block.norm(t2)
        _keep(states, self.head.temporal, h)
        return self.head(h.reshape(length * self.head.temporal.width, -1, self.n_nodes))


def _keep(states: list | None, conv: Temporal, h: torch.Tensor) -> None:
    """Add the state of `conv` (input h [T, C, B, N]) to `states` (when given)."""
    if states is not None and conv.kt > 1:
        states.append(conv.state(h))


class OneStep(Exported):
    """model.onnx: window [B, n_his, N] -> the next step [B, N]."""

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self._forward(window, None)


class StartStream(Exported):
    """start.onnx: window [B, n_his, N] -> (the next step [B, N], *state)."""

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = []
        prediction = self._forward(window, states)
        return (prediction, *states)


class StreamStep(Exported):
    """stream.onnx: (newest input position [B, N], *state) -> (the next step [B, N], *new state): only the newest
    position of each layer is computed."""

    def forward(self, newest: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        held, new_state = iter(state), []

        def window(conv: Temporal, h: torch.Tensor) -> torch.Tensor:
            if conv.kt == 1:
                return h
            rows = torch.cat([next(held), h], dim=0)
            new_state.append(rows[conv.width:])
            return rows

        h = newest.unsqueeze(0)
        for block in self.blocks:
            g = block.graph(block.temporal1(window(block.temporal1, h)))
            h = block.norm(block.temporal2(window(block.temporal2, g)))
        return (self.head(window(self.head.temporal, h)), *new_state)
