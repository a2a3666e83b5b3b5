"""The graph products T_k x of a Chebyshev stack, each term multiplied the cheapest way: skipped (identity),
as a sparse CSR product (a custom op with its own backward and FLOP formula) or as a dense one; and the form a
model holds its stack in (`stack_for_model`): dense up to `DENSE_MAX_NODES` stations, sparse above."""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.utils.flop_counter import register_flop_formula

from kdstgcn.runtime.sizes import DENSE_MAX_NODES

# Largest share of non-zero entries at which a Chebyshev term T_k is multiplied as a sparse (CSR) matrix,
# per device type; denser terms use a dense matrix product. Measured with `bench/throughput.py` (its graph
# product table times both products per term and over a density sweep): on CPU the sparse product was
# faster up to about this density. CUDA: not yet measured on a GPU, so every term stays dense there.
SPARSE_MAX_DENSITY = {"cpu": 0.08, "cuda": 0.0}
# Largest operand (B x rows x N floats, in bytes) a sparse product takes, per device type. The CSR product needs
# the operand node-major: two copies that a dense product does not make. Past about this size, those copies cost
# more than the FLOPs saved (bench/throughput.py, graph product by block table; figures: docs/performance.md):
# small operands gained from the sparse product, a teacher training batch's lost.
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
# Under bfloat16 autocast (kdstgcn.runtime.precision) the product still runs in float32: torch's CSR product has
# no bfloat16 kernel on the CPU ("addmm_out_sparse_csr_impl_mkl" not implemented for 'BFloat16').
for _device_type in ("cpu", "cuda"):
    torch.library.register_autocast("kdstgcn::csr_matmul", _device_type, torch.float32)


def stack_for_model(cheb: torch.Tensor) -> torch.Tensor:
    """A Chebyshev stack [ks, N, N] in the form a model holds (and saves) it, float32: a sparse stack as a coalesced
    sparse COO tensor, a dense one of more than `DENSE_MAX_NODES` stations turned into one (so that above that size
    what a model holds grows with the graph's edges), any other dense one as it is."""
    cheb = cheb.float()
    if cheb.is_sparse:
        return cheb.coalesce()
    if cheb.shape[-1] > DENSE_MAX_NODES and not cheb.is_meta:  # a meta tensor has no values to keep
        return cheb.to_sparse().coalesce()
    return cheb


def _is_identity(term: torch.Tensor) -> bool:
    """Whether a CSR matrix is the identity: one entry per row, on the diagonal, equal to 1."""
    n = term.shape[0]
    diagonal = torch.arange(n + 1, device=term.device)
    return (torch.equal(term.crow_indices(), diagonal) and torch.equal(term.col_indices(), diagonal[:n])
            and bool((term.values() == 1).all()))


class ChebyshevTerms(nn.Module):
    """The graph products T_k x of a Chebyshev stack [ks, N, N], each term multiplied the cheapest way:
    no product for the identity (T_0), a sparse CSR product where the term's share of non-zeros is at most
    `SPARSE_MAX_DENSITY` of the device type and the operand at most `SPARSE_MAX_BLOCK_BYTES`, a dense one
    otherwise (the choice is made per call, so a model moved between devices follows that device's thresholds).
    A sparse stack (`stack_for_model`) keeps no dense copy: its terms are sparse products on every device.

    Built once from the stack given to `STGCN` (its buffers are not saved: `STGCN.cheb` is).
    """

    def __init__(self, cheb: torch.Tensor):
        super().__init__()
        cheb = cheb.float()
        ks, n = cheb.shape[0], cheb.shape[-1]
        self.meta_follows = "cpu"  # on the meta device (shape-only FLOP counting): the products of this device type
        self.register_buffer("dense", None if cheb.is_sparse else cheb.clone(), persistent=False)
        if cheb.is_meta:  # no values to look at (a shape-only model, e.g. for counting parameters): T_0 = I, dense
            self.identity, self.density = [k == 0 for k in range(ks)], [1.0] * ks
            return
        self.identity, self.density = [], []
        for k in range(ks):
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are tested
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                sparse = (cheb[k].coalesce() if cheb.is_sparse else cheb[k]).to_sparse_csr()
            self.identity.append(_is_identity(sparse))
            self.density.append(sparse.values().numel() / float(n * n))
            self.register_buffer(f"crow{k}", sparse.crow_indices(), persistent=False)
            self.register_buffer(f"col{k}", sparse.col_indices(), persistent=False)
            self.register_buffer(f"values{k}", sparse.values(), persistent=False)
        if not self.identity[0]:
            raise ValueError("the first term of a Chebyshev stack must be the identity (T_0 = I): the graph conv "
                             "folds its bias and residual into that term; build the stack with "
                             "kdstgcn.data.graph.chebyshev_polynomials")

    def modes(self, device_type: str, block_bytes: int = 0) -> list[str]:
        """How each term is multiplied on this device type for an operand of `block_bytes`: identity, sparse or
        dense (never dense for a sparse stack, which has no dense copy)."""
        if self.dense is None:
            return ["identity" if eye else "sparse" for eye in self.identity]
        limit = SPARSE_MAX_DENSITY.get(device_type, 0.0)
        small = block_bytes <= SPARSE_MAX_BLOCK_BYTES.get(device_type, 0)
        return ["identity" if eye else "sparse" if density <= limit and small else "dense"
                for eye, density in zip(self.identity, self.density)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """sum_k T_k z_k over the node axis: z [B, ks, R, N] -> [B, R, N] (R: any rows, e.g. channels x time)."""
        b, ks, r, n = z.shape
        device_type = self.meta_follows if z.device.type == "meta" else z.device.type
        out, owned = None, False  # owned: `out` is a sum made here, so later terms may be added to it in place
        float32_bytes = 4 * z[:, 0].numel()  # the operand as the sparse product takes it, also under bf16 autocast
        for k, (mode, zk) in enumerate(zip(self.modes(device_type, float32_bytes), z.unbind(1))):
            if mode == "dense":  # [B, R, N] @ T_k^T, batched over B with the matrix shared (no copy of z)
                matrix = self.dense[k].t().expand(b, n, n)
                out, owned = (torch.bmm(zk, matrix) if out is None else torch.baddbmm(out, zk, matrix)), True
                continue
            if mode == "sparse":  # node-major for the CSR product: [N, B * R]; float32 (csr_matmul), back to z's type
                nodes_first = zk.permute(2, 0, 1).reshape(n, b * r)
                zk = csr_matmul(getattr(self, f"crow{k}"), getattr(self, f"col{k}"), getattr(self, f"values{k}"),
                                nodes_first).view(n, b, r).permute(1, 2, 0).to(z.dtype)
            if out is None:
                out = zk
            elif owned:
                out.add_(zk)
            else:
                out, owned = out + zk, True
        return out
