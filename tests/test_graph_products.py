"""The graph products of kdstgcn.model.graph_products: which product each Chebyshev term gets, the sparse (CSR)
product against the dense one in outputs and gradients, and its FLOP formula; a stack held sparse (above
DENSE_MAX_NODES stations) against the same stack held dense."""
import pytest
import torch
import torch.nn.functional as F

from helpers import ring_cheb, ring_model, sparse_twin
from kdstgcn.evaluation.cost import count_flops
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.model import graph_products
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.graph_products import ChebyshevTerms
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

pytestmark = pytest.mark.usefixtures("single_thread")

N = 16
SMALL = ((1, 4, 8), (8, 4, 16))


def product_modes(monkeypatch, sparse: bool) -> None:
    monkeypatch.setitem(graph_products.SPARSE_MAX_DENSITY, "cpu", 1.0 if sparse else 0.0)
    monkeypatch.setitem(graph_products.SPARSE_MAX_BLOCK_BYTES, "cpu", 2**62)


def test_terms_are_identity_sparse_or_dense_by_density_and_operand_size(monkeypatch):
    terms = ChebyshevTerms(ring_cheb(N))
    assert terms.density[0] == pytest.approx(1 / N) and terms.identity == [True, False, False]
    assert terms.density[1] < terms.density[2] < 1  # T_2 is denser than L
    monkeypatch.setitem(graph_products.SPARSE_MAX_DENSITY, "cpu", terms.density[1])
    assert terms.modes("cpu") == ["identity", "sparse", "dense"]
    assert terms.modes("cuda") == ["identity", "dense", "dense"]
    limit = graph_products.SPARSE_MAX_BLOCK_BYTES["cpu"]
    assert terms.modes("cpu", limit) == ["identity", "sparse", "dense"]
    assert terms.modes("cpu", limit + 1) == ["identity", "dense", "dense"]  # the node-major copies cost more


def test_sparse_and_dense_products_give_the_same_outputs_and_gradients(monkeypatch):
    x, target = torch.randn(4, 12, N), torch.randn(4, N)
    results = {}
    for sparse in (False, True):
        product_modes(monkeypatch, sparse)
        m = ring_model(N, SMALL, dropout=0.0)
        assert m.cheb_terms.modes("cpu")[1:] == (["sparse"] * 2 if sparse else ["dense"] * 2)
        loss = F.mse_loss(m(x), target)
        loss.backward()
        results[sparse] = (loss.detach(), [p.grad for p in m.parameters()], rollout(m, x, 9))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    for sparse_grad, dense_grad in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(results[True][2], results[False][2], rtol=1e-5, atol=1e-5)


def test_flop_count_follows_the_product_that_runs(monkeypatch):
    x = torch.randn(3, 12, N)
    counts = {}
    for sparse in (False, True):
        product_modes(monkeypatch, sparse)
        m = ring_model(N, SMALL)
        counts[sparse] = (count_flops(m, x, meta=True), count_flops(m, x, meta=False))
    assert counts[True][0] == counts[True][1] and counts[False][0] == counts[False][1]
    terms = ring_model(N, SMALL).cheb_terms
    nnz = [int(d * N * N) for d in terms.density]
    # graph-conv inputs: block0 4 channels x 10 positions, block1 4 channels x 6 positions, batch 3
    columns = 3 * (4 * 10 + 4 * 6)
    dense_products = 2 * 2 * N * N * columns  # T_1 and T_2; the identity T_0 costs nothing
    sparse_products = 2 * (nnz[1] + nnz[2]) * columns
    assert counts[False][0] - counts[True][0] == dense_products - sparse_products


def test_a_sparse_stack_keeps_no_dense_copy_and_is_multiplied_sparsely_on_every_device():
    dense, sparse = ChebyshevTerms(ring_cheb(N)), ChebyshevTerms(ring_cheb(N).to_sparse())
    assert sparse.dense is None and dense.dense is not None
    assert sparse.identity == dense.identity and sparse.density == dense.density
    for k in range(3):
        for name in ("crow", "col", "values"):
            assert torch.equal(getattr(sparse, f"{name}{k}"), getattr(dense, f"{name}{k}"))
    assert sparse.modes("cpu", 2**62) == sparse.modes("cuda") == ["identity", "sparse", "sparse"]
    assert not any(name.startswith("dense") for name, _ in sparse.named_buffers())


def test_a_sparse_stack_gives_the_dense_stacks_outputs_gradients_and_flops(monkeypatch):
    product_modes(monkeypatch, sparse=False)
    x, target = torch.randn(4, 12, N), torch.randn(4, N)
    results = {}
    for held_sparse in (False, True):
        m = ring_model(N, SMALL, dropout=0.0)
        m = sparse_twin(m) if held_sparse else m
        assert m.cheb.is_sparse == held_sparse
        loss = F.mse_loss(m(x), target)
        loss.backward()
        results[held_sparse] = (loss.detach(), [p.grad for p in m.parameters()], rollout(m, x, 9),
                                count_flops(m, x, meta=True), count_flops(m, x, meta=False))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    for sparse_grad, dense_grad in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(results[True][2], results[False][2], rtol=1e-5, atol=1e-5)
    assert results[True][3] == results[True][4] < results[False][3]  # the sparse products' own count
    product_modes(monkeypatch, sparse=True)
    assert results[True][3] == count_flops(ring_model(N, SMALL), x)


def test_above_the_threshold_a_model_holds_its_stack_sparse():
    n = DENSE_MAX_NODES + 100
    m = ring_model(n, SMALL)
    assert m.cheb.is_sparse and m.cheb_terms.dense is None
    given_dense = STGCN(Architecture(n, SMALL), m.cheb.to_dense())
    assert given_dense.cheb.is_sparse and torch.equal(given_dense.cheb.to_dense(), m.cheb.to_dense())
    assert m.cheb._nnz() < 10 * n  # a ring: 1, 3 and 5 entries a row
    not_identity = m.cheb.to_dense()
    not_identity[0, 0, 0] = 2.0
    with pytest.raises(ValueError, match="identity"):
        STGCN(Architecture(n, SMALL), not_identity.to_sparse())
