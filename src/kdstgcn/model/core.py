"""STGCN (Yu et al., IJCAI-18) as specified in METHOD.md, with optional channel masks and compaction.

Layout inside the network: [batch, channels, time, nodes]. Every prunable layer has a name
("block0.temporal1", "block0.graph", "block0.temporal2", ...) and a set of surviving channel ids, so a
masked model and its compact (channel-dropped) twin compute the same outputs.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import register_flop_formula

LAYER_KINDS = ("temporal1", "graph", "temporal2")
LN_EPS = 1e-6


@dataclass(frozen=True)
class Architecture:
    """Shape of an STGCN: the paper's block notation [c_in, c_t, c_out], plus surviving channel ids once compacted."""

    n_nodes: int
    blocks: tuple[tuple[int, int, int], ...]
    kt: int = 3
    ks: int = 3
    n_his: int = 12
    dropout: float = 0.0
    kept: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self):
        blocks = tuple(tuple(int(c) for c in b) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "kept", {k: tuple(v) for k, v in self.kept.items()})
        if blocks[0][0] != 1:
            raise ValueError(f"the first block must take 1 input channel, got {blocks[0]}")
        for prev, nxt in zip(blocks, blocks[1:]):
            if prev[2] != nxt[0]:
                raise ValueError(f"block {nxt} must take the {prev[2]} channels that block {prev} gives")
        if self.time_after_blocks < 1:
            raise ValueError(f"n_his={self.n_his} is too short for {len(blocks)} blocks with kt={self.kt}")

    @property
    def time_after_blocks(self) -> int:
        return self.n_his - 2 * len(self.blocks) * (self.kt - 1)

    def layer_names(self) -> list[str]:
        return [f"block{b}.{kind}" for b in range(len(self.blocks)) for kind in LAYER_KINDS]

    def original_width(self, layer: str) -> int:
        b, kind = layer.split(".")
        c_in, c_t, c_out = self.blocks[int(b[5:])]
        return c_out if kind == "temporal2" else c_t

    def channel_ids(self, layer: str) -> tuple[int, ...]:
        """Original ids of the channels that `layer` outputs."""
        return self.kept.get(layer, tuple(range(self.original_width(layer))))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [list(b) for b in self.blocks]
        d["kept"] = {k: list(v) for k, v in self.kept.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        return cls(**{**d, "blocks": tuple(tuple(b) for b in d["blocks"]), "kept": d.get("kept", {})})

    def with_kept(self, kept: dict[str, tuple[int, ...]]) -> "Architecture":
        return replace(self, kept=kept)


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


# On a CPU a temporal conv whose contraction (input channels x kernel taps) is at least this wide runs as conv2d
# (oneDNN), a narrower one as a batched matrix product. bench/throughput.py, temporal conv table (forward +
# backward at batch 50, 2 threads, N = 228), two runs: the wide layers (contraction 96-512, all the teacher's but
# its input layer) took 1.4-4.0x conv2d's time as a product, the one-channel input layer (3) 0.64-0.80x; the
# student's layers (6-32, about 1 ms each) took 0.64-0.95x in one run and 1.07-2.17x in the other, within this
# machine's noise. A streaming step's product (no gradient) over a ring of contraction 96-512 took about half the
# batched product's time as a 1x1 conv2d, one of contraction 3-12 three to six times as long, and the student's
# output layer (32) 0.51 ms per call inside the rollout against ~0.05 ms as a product: so every student layer
# runs as a product and every wide teacher layer as conv2d.
CPU_CONV2D_MIN_CONTRACTION = 64


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

    def step(self, window: "PositionRing") -> torch.Tensor:
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

    def slot_weights(self) -> list[torch.Tensor]:
        """The folded weight as [C', kt x C] matrices with the taps in the slot order of a `PositionRing` whose
        newest position is in slot s, for s = 0 .. kt-1 (what `step` multiplies the ring's buffer by)."""
        taps = self.folded_weight()[..., 0].permute(0, 2, 1)  # [C', kt, C]
        matrices = []
        for newest in range(self.kt):
            oldest = (newest + 1) % self.kt
            order = [(slot - oldest) % self.kt for slot in range(self.kt)]  # window position held by each slot
            matrices.append(taps[:, order].reshape(taps.shape[0], -1))
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


# Largest share of non-zero entries at which a Chebyshev term T_k is multiplied as a sparse (CSR) matrix,
# per device type; denser terms use a dense matrix product. Measured with `bench/throughput.py` (its graph
# product table times both products per term and over a density sweep): on CPU the sparse product was
# faster up to about this density. CUDA: not yet measured on a GPU, so every term stays dense there.
SPARSE_MAX_DENSITY = {"cpu": 0.08, "cuda": 0.0}
# Largest operand (B x rows x N floats, in bytes) a sparse product takes, per device type. The CSR product needs
# the operand node-major: two copies that a dense product does not make. Past about this size, those copies cost
# more than the FLOPs saved (bench/throughput.py, graph product by block table, 2 threads: operands of at most
# 1.1 MiB took 0.15-0.99x the dense time, operands of 6-32 MiB 1.07-1.62x; a teacher training batch makes 6-14 MiB).
SPARSE_MAX_BLOCK_BYTES = {"cpu": 4 * 2**20, "cuda": 0}


@torch.library.custom_op("kdstgcn::csr_matmul", mutates_args=())
def csr_matmul(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """S x for a sparse N x N matrix S given by its CSR arrays and a dense x [N, M]."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        s = torch.sparse_csr_tensor(crow, col, values, (crow.numel() - 1, x.shape[0]), check_invariants=False)
    return torch.sparse.mm(s, x)


@csr_matmul.register_fake
def _csr_matmul_shape(crow, col, values, x):
    return x.new_empty(crow.shape[0] - 1, x.shape[1])


@register_flop_formula(torch.ops.kdstgcn.csr_matmul)
def _csr_matmul_flops(crow_shape, col_shape, values_shape, x_shape, *args, **kwargs) -> int:
    """2 FLOPs per stored non-zero and column of x: what the sparse product computes."""
    return 2 * values_shape[0] * x_shape[1]


def _csr_matmul_context(ctx, inputs, output):
    ctx.n_cols = inputs[3].shape[0]
    ctx.save_for_backward(*inputs[:3])


def _csr_matmul_backward(ctx, grad):
    crow, col, values = ctx.saved_tensors
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(crow, col, values, (crow.numel() - 1, ctx.n_cols), check_invariants=False)
        transposed = matrix.t().to_sparse_csr()
    return None, None, None, csr_matmul(transposed.crow_indices(), transposed.col_indices(),
                                        transposed.values(), grad)


csr_matmul.register_autograd(_csr_matmul_backward, setup_context=_csr_matmul_context)


class ChebyshevTerms(nn.Module):
    """The graph products T_k x of a Chebyshev stack [ks, N, N], each term multiplied the cheapest way:
    no product for the identity (T_0), a sparse CSR product where the term's share of non-zeros is at most
    `SPARSE_MAX_DENSITY` of the device type and the operand at most `SPARSE_MAX_BLOCK_BYTES`, a dense one
    otherwise (the choice is made per call, so a model moved between devices follows that device's thresholds).

    Built once from the stack given to `STGCN` (its buffers are not saved: `STGCN.cheb` is).
    """

    def __init__(self, cheb: torch.Tensor):
        super().__init__()
        cheb = cheb.float()
        n = cheb.shape[-1]
        self.meta_follows = "cpu"  # on the meta device (shape-only FLOP counting): the products of this device type
        self.register_buffer("dense", cheb.clone(), persistent=False)
        if cheb.is_meta:  # no values to look at (a shape-only model, e.g. for counting parameters): T_0 = I, dense
            self.identity, self.density = [k == 0 for k in range(cheb.shape[0])], [1.0] * cheb.shape[0]
            return
        if not torch.equal(cheb[0], torch.eye(n, device=cheb.device)):
            raise ValueError("the first term of a Chebyshev stack must be the identity (T_0 = I): the graph conv "
                             "folds its bias and residual into that term; build the stack with "
                             "kdstgcn.data.graph.chebyshev_polynomials")
        self.identity, self.density = [], []
        for k, term in enumerate(cheb):
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are tested
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                sparse = term.to_sparse_csr()
            self.identity.append(bool(torch.equal(term, torch.eye(n, device=term.device))))
            self.density.append(sparse.values().numel() / float(n * n))
            self.register_buffer(f"crow{k}", sparse.crow_indices(), persistent=False)
            self.register_buffer(f"col{k}", sparse.col_indices(), persistent=False)
            self.register_buffer(f"values{k}", sparse.values(), persistent=False)

    def modes(self, device_type: str, block_bytes: int = 0) -> list[str]:
        """How each term is multiplied on this device type for an operand of `block_bytes`: identity, sparse or
        dense."""
        limit = SPARSE_MAX_DENSITY.get(device_type, 0.0)
        small = block_bytes <= SPARSE_MAX_BLOCK_BYTES.get(device_type, 0)
        return ["identity" if eye else "sparse" if density <= limit and small else "dense"
                for eye, density in zip(self.identity, self.density)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """sum_k T_k z_k over the node axis: z [B, ks, R, N] -> [B, R, N] (R: any rows, e.g. channels x time)."""
        b, ks, r, n = z.shape
        device_type = self.meta_follows if z.device.type == "meta" else z.device.type
        out, owned = None, False  # owned: `out` is a sum made here, so later terms may be added to it in place
        for k, (mode, zk) in enumerate(zip(self.modes(device_type, z[:, 0].numel() * z.element_size()),
                                           z.unbind(1))):
            if mode == "dense":  # [B, R, N] @ T_k^T, batched over B with the matrix shared (no copy of z)
                matrix = self.dense[k].t().expand(b, n, n)
                out, owned = (torch.bmm(zk, matrix) if out is None else torch.baddbmm(out, zk, matrix)), True
                continue
            if mode == "sparse":  # node-major for the CSR product: [N, B * R]
                nodes_first = zk.permute(2, 0, 1).reshape(n, b * r)
                zk = csr_matmul(getattr(self, f"crow{k}"), getattr(self, f"col{k}"), getattr(self, f"values{k}"),
                                nodes_first).view(n, b, r).permute(1, 2, 0)
            if out is None:
                out = zk
            elif owned:
                out.add_(zk)
            else:
                out, owned = out + zk, True
        return out


class ChebGraphConv(MaskedLayer):
    """Chebyshev graph conv with ks terms, identity residual and ReLU (Yu et al., Eq. 3)."""

    def __init__(self, ks: int, in_ids, out_ids, original_width: int):
        super().__init__(len(out_ids))
        self.theta = nn.Parameter(torch.empty(ks, len(in_ids), len(out_ids)))
        self.bias = nn.Parameter(torch.zeros(len(out_ids)))
        nn.init.xavier_uniform_(self.theta.view(ks * len(in_ids), len(out_ids)))
        self.residual = make_residual(in_ids, out_ids, original_width, original_width)

    def forward(self, x: torch.Tensor, cheb_terms: ChebyshevTerms,
                mixing: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ReLU(sum_k T_k x theta_k + bias + residual): the channel mixing first (theta_k^T x for all k in one
        batched product on the [B, C, T, N] layout as it is, `folded_mixing`, made here unless given), then the
        graph products over the node axis."""
        b, c, t, n = x.shape
        ks, _, o = self.theta.shape
        matrix, bias = self.folded_mixing() if mixing is None else mixing
        z = torch.baddbmm(bias, matrix.expand(b, -1, -1), x.reshape(b, c, t * n)).view(b, ks, o * t, n)
        return self.apply_mask(torch.relu(cheb_terms(z).view(b, o, t, n)))

    def folded_mixing(self) -> tuple[torch.Tensor, torch.Tensor]:
        """theta_k^T for all k as one matrix [ks x C_out, C_in] and its bias [1, ks x C_out, 1], the bias and
        the residual folded into the k = 0 rows (T_0 is the identity, so they pass the graph product as they
        are): one product gives every term's input."""
        ks, c, o = self.theta.shape
        theta = self.theta.permute(0, 2, 1)  # [ks, o, c]
        first = theta[0] + residual_matrix(self.residual)
        matrix = torch.cat([first[None], theta[1:]]).reshape(ks * o, c)
        return matrix, torch.cat([self.bias, self.bias.new_zeros((ks - 1) * o)]).view(1, ks * o, 1)


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

    def forward(self, x, cheb_terms: ChebyshevTerms, features: dict | None = None, stream: dict | None = None):
        """[B, C, T, N] -> [B, C', T - 2(kt-1), N]; with `stream`, also keep there what `step` continues from."""
        mixing = self.graph.folded_mixing()
        t1 = self.temporal1(x)
        g = self.graph(t1, cheb_terms, mixing)
        t2 = self.temporal2(g)
        if features is not None:
            features["temporal"] += [t1, t2]
            features["spatial"].append(g)
        if stream is not None:
            stream["input"] = PositionRing(x, self.temporal1)
            stream["graph"] = PositionRing(g, self.temporal2)
            stream["mixing"] = mixing
        return self.dropout(self.norm(t2, self.temporal2.mask))

    def step(self, x_new: torch.Tensor, cheb_terms: ChebyshevTerms, stream: dict) -> torch.Tensor:
        """The block's output at the newest position [B, C', 1, N] once the input window moved on by x_new
        [B, C, 1, N]: only the newest position of each layer is computed, the older ones are in `stream`."""
        stream["input"].push(x_new)
        g = self.graph(self.temporal1.step(stream["input"]), cheb_terms, stream["mixing"])
        stream["graph"].push(g)
        return self.dropout(self.norm(self.temporal2.step(stream["graph"]), self.temporal2.mask))


class PositionRing:
    """The last kt positions of a temporal conv's input for streaming, in a buffer [B, kt, C, N] whose slots are
    written in turn: a new position overwrites the oldest, and the conv reads the slots in place with its
    kernel taps in slot order (`TemporalConv.slot_weights`, made once per stream), so no position is copied
    twice."""

    def __init__(self, x: torch.Tensor, conv: TemporalConv):
        """Start from the last kt - 1 positions of x [B, C, T, N]; `push` then completes the window."""
        b, c, t, n = x.shape
        self.size = conv.kt
        self.buffer = x.new_empty(b, self.size, c, n)
        self.buffer[:, : self.size - 1] = x[:, :, t - self.size + 1:].transpose(1, 2)
        self.written = self.size - 2  # the slot of the newest position so far
        self.slot_weights = conv.slot_weights()

    def push(self, x_new: torch.Tensor) -> None:
        """Add the newest position [B, C, 1, N], dropping the oldest."""
        self.written = (self.written + 1) % self.size
        self.buffer[:, self.written] = x_new[:, :, 0]

    def weight(self) -> torch.Tensor:
        """The conv's weight [C', kt x C] in the slot order of the window held now."""
        return self.slot_weights[self.written]


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


class STGCN(nn.Module):
    """Maps a window of `n_his` normalised speeds [B, n_his, N] to the next step [B, N]."""

    def __init__(self, arch: Architecture, cheb: torch.Tensor):
        super().__init__()
        if cheb.shape != (arch.ks, arch.n_nodes, arch.n_nodes):
            raise ValueError(f"Chebyshev stack has shape {tuple(cheb.shape)}, expected "
                             f"({arch.ks}, {arch.n_nodes}, {arch.n_nodes})")
        self.arch = arch
        self.register_buffer("cheb", cheb.float())
        self.cheb_terms = ChebyshevTerms(self.cheb)
        in_ids, original_in = (0,), 1
        blocks = []
        for b in range(len(arch.blocks)):
            blocks.append(STConvBlock(arch, b, in_ids, original_in))
            in_ids, original_in = arch.channel_ids(f"block{b}.temporal2"), arch.blocks[b][2]
        self.blocks = nn.ModuleList(blocks)
        self.output = OutputLayer(arch, in_ids, original_in)

    def prunable_layers(self) -> dict[str, TemporalConv | ChebGraphConv]:
        return {f"block{b}.{kind}": getattr(block, kind)
                for b, block in enumerate(self.blocks) for kind in LAYER_KINDS}

    def set_masks(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Switch channels off per prunable layer (None clears every mask)."""
        layers = self.prunable_layers()
        for name, layer in layers.items():
            layer.set_mask(None if masks is None else masks.get(name))
        self.output.set_mask(layers[f"block{len(self.blocks) - 1}.temporal2"].mask)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = x.unsqueeze(1)
        features = {"temporal": [], "spatial": []} if return_features else None
        for block in self.blocks:
            h = block(h, self.cheb_terms, features)
        y = self.output(h)
        if features is None:
            return y
        features["hidden"] = h
        return y, features

    def largest_activation_floats(self) -> int:
        """Floats of the largest tensor one window makes in a forward pass on a CPU (a temporal conv's stacked
        taps or output, the graph conv's ks stacked terms): what sizes the rollout's chunks there."""
        t, sizes = self.arch.n_his, []
        for block in self.blocks:
            for conv, stacked in ((block.temporal1, block.graph), (block.temporal2, None)):
                if conv.runs_as_matmul(t, "cpu"):
                    sizes.append(conv.conv.in_channels * conv.kt * (t - conv.kt + 1))
                t -= conv.kt - 1
                sizes.append(conv.conv.out_channels * t)
                if stacked is not None:
                    sizes.append(stacked.theta.shape[0] * stacked.width * t)
        head = self.output.temporal.conv
        sizes += [head.in_channels * head.kernel_size[0], head.out_channels]
        return max(sizes) * self.arch.n_nodes

    def start_stream(self, x: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """The forward pass of windows [B, n_his, N] (-> [B, N]), plus the per-layer state `stream_step`
        continues from: the last kt-1 inputs of each temporal conv and the last n_his - 4(kt-1) - 1 block
        outputs before the output layer. Inference only (dropout in eval mode)."""
        h = x.unsqueeze(1)
        state = []
        for block in self.blocks:
            state.append({})
            h = block(h, self.cheb_terms, stream=state[-1])
        state.append({"blocks": PositionRing(h, self.output.temporal)})
        return self.output(h), state

    def stream_step(self, newest: torch.Tensor, state: list[dict]) -> torch.Tensor:
        """The prediction [B, N] for the window moved on by one step, whose newest input is `newest` [B, N]:
        equal to forward() of the moved window, at the cost of one time position per layer (temporal convs
        are valid and the layer norm is per time step, so the older positions are unchanged)."""
        h = newest[:, None, None, :]
        for block, stream in zip(self.blocks, state):
            h = block.step(h, self.cheb_terms, stream)
        state[-1]["blocks"].push(h)
        return self.output.step(state[-1]["blocks"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_digest(model: nn.Module) -> str:
    """Short content hash of a model's weights and buffers: which teacher or base a run depends on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(model: STGCN, path, extra: dict | None = None) -> None:
    """Save a model whole: architecture, graph and weights (masks included), loadable without other files."""
    from kdstgcn.runtime.io import save_torch

    masks = {name: layer.mask.flatten().bool() for name, layer in model.prunable_layers().items()
             if layer.mask is not None}
    save_torch({"arch": model.arch.to_dict(), "cheb": model.cheb, "state_dict": model.state_dict(),
                "masks": masks, "extra": extra or {}}, path)


def load_model(path, map_location="cpu") -> tuple[STGCN, dict]:
    blob = torch.load(path, map_location=map_location, weights_only=False)
    model = STGCN(Architecture.from_dict(blob["arch"]), blob["cheb"])
    model.load_state_dict(blob["state_dict"])
    if blob.get("masks"):
        model.set_masks(blob["masks"])
    return model, blob.get("extra", {})
