"""Streaming rollout against the full recompute, and the sparse graph product against the dense one."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kdstgcn.model import core as model_module
from kdstgcn.evaluation.cost import count_flops
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.data.graph import chebyshev_polynomials
from kdstgcn.model.core import STGCN, Architecture, ChebyshevTerms
from kdstgcn.pruning.prune import compact

pytestmark = pytest.mark.usefixtures("single_thread")

N = 16
SMALL = ((1, 4, 8), (8, 4, 16))


def ring_cheb(n: int = N, ks: int = 3) -> torch.Tensor:
    """Chebyshev stack of a ring road with a few shortcuts: a sparse graph like the real ones."""
    w = np.zeros((n, n))
    for i in range(n):
        w[i, (i + 1) % n] = w[(i + 1) % n, i] = 0.8
    w[0, n // 2] = w[n // 2, 0] = 0.6
    return chebyshev_polynomials(w, ks)


def build(blocks=SMALL, seed: int = 0, **arch) -> STGCN:
    torch.manual_seed(seed)
    m = STGCN(Architecture(N, blocks, **arch), ring_cheb(N, arch.get("ks", 3)))
    with torch.no_grad():  # move off the initial values so that every layer matters
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def assert_rollouts_equal(m: STGCN, inputs: torch.Tensor, steps: int = 9) -> torch.Tensor:
    full = rollout(m, inputs, steps, mode="full")
    streamed = rollout(m, inputs, steps, mode="streaming")
    assert streamed.shape == full.shape == (inputs.shape[0], steps, inputs.shape[2])
    torch.testing.assert_close(streamed, full, rtol=1e-5, atol=1e-5)
    return full


@pytest.mark.parametrize("arch", [{}, {"kt": 2, "n_his": 9}, {"kt": 3, "n_his": 9, "ks": 2}, {"n_his": 13}])
def test_streaming_equals_full_recompute_on_random_models(arch):
    # n_his 9 with kt 3 leaves one position for the output layer (nothing cached there); kt 2 a window of 5
    full = assert_rollouts_equal(build(**arch), torch.randn(5, arch.get("n_his", 12), N))
    assert not torch.allclose(full[:, 0], full[:, -1])  # the steps differ: the feedback is exercised


def test_streaming_equals_full_recompute_on_a_trained_model_with_dropout():
    m = build(dropout=0.3)
    optimizer = torch.optim.RMSprop(m.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 12, N, generator=gen), torch.randn(20, N, generator=gen)
    m.train()
    for _ in range(5):
        optimizer.zero_grad()
        F.mse_loss(m(x), y).backward()
        optimizer.step()
    assert_rollouts_equal(m, torch.randn(6, 12, N, generator=gen))
    assert not m.training  # rollout evaluates in eval mode: dropout off


def test_streaming_equals_full_recompute_on_masked_and_compact_models():
    m = build(((1, 8, 16), (16, 8, 32)), dropout=0.2)
    masks = {"block0.temporal1": torch.tensor([1, 0, 1, 1, 0, 1, 1, 1]),
             "block0.graph": torch.tensor([0, 1, 1, 1, 1, 0, 1, 1]),
             "block1.temporal2": torch.tensor([1, 0] * 16)}
    m.set_masks(masks)
    inputs = torch.randn(5, 12, N)
    masked = assert_rollouts_equal(m, inputs)
    small = compact(m.eval())
    torch.testing.assert_close(assert_rollouts_equal(small, inputs), masked, rtol=1e-5, atol=1e-5)


def test_streaming_rollout_in_batches_and_for_one_step():
    m = build()
    inputs = torch.randn(7, 12, N)
    torch.testing.assert_close(rollout(m, inputs, 4, batch_size=3), rollout(m, inputs, 4, mode="full"),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rollout(m, inputs, 1)[:, 0], m(inputs).detach(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="rollout mode 'fast'"):
        rollout(m, inputs, 2, mode="fast")


def product_modes(monkeypatch, sparse: bool) -> None:
    monkeypatch.setitem(model_module.SPARSE_MAX_DENSITY, "cpu", 1.0 if sparse else 0.0)
    monkeypatch.setitem(model_module.SPARSE_MAX_BLOCK_BYTES, "cpu", 2**62)


def test_terms_are_identity_sparse_or_dense_by_density_and_operand_size(monkeypatch):
    terms = ChebyshevTerms(ring_cheb())
    assert terms.density[0] == pytest.approx(1 / N) and terms.identity == [True, False, False]
    assert terms.density[1] < terms.density[2] < 1  # T_2 is denser than L
    monkeypatch.setitem(model_module.SPARSE_MAX_DENSITY, "cpu", terms.density[1])
    assert terms.modes("cpu") == ["identity", "sparse", "dense"]
    assert terms.modes("cuda") == ["identity", "dense", "dense"]
    limit = model_module.SPARSE_MAX_BLOCK_BYTES["cpu"]
    assert terms.modes("cpu", limit) == ["identity", "sparse", "dense"]
    assert terms.modes("cpu", limit + 1) == ["identity", "dense", "dense"]  # the node-major copies cost more


def test_sparse_and_dense_products_give_the_same_outputs_and_gradients(monkeypatch):
    x, target = torch.randn(4, 12, N), torch.randn(4, N)
    results = {}
    for sparse in (False, True):
        product_modes(monkeypatch, sparse)
        m = build(dropout=0.0)
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
        m = build()
        counts[sparse] = (count_flops(m, x, meta=True), count_flops(m, x, meta=False))
    assert counts[True][0] == counts[True][1] and counts[False][0] == counts[False][1]
    terms = build().cheb_terms
    nnz = [int(d * N * N) for d in terms.density]
    # graph-conv inputs: block0 4 channels x 10 positions, block1 4 channels x 6 positions, batch 3
    columns = 3 * (4 * 10 + 4 * 6)
    dense_products = 2 * 2 * N * N * columns  # T_1 and T_2; the identity T_0 costs nothing
    sparse_products = 2 * (nnz[1] + nnz[2]) * columns
    assert counts[False][0] - counts[True][0] == dense_products - sparse_products


def test_table1_has_the_full_recompute_time_beside_the_streaming_one():
    from kdstgcn.report.core import cost_table

    costs = pd.DataFrame([
        {"dataset": "d", "model": model_name, "parameters": p, "flops": f, "mean_s": s, "std_s": 0.1 * s,
         "runs": 3, "batch": 1140, "device_name": "cpu: test", "full_recompute_mean_s": full,
         "full_recompute_std_s": 0.1 * full}
        for model_name, p, f, s, full in (("teacher", 1000, 1e9, 2.0, 8.0), ("student_task", 10, 1e7, 0.1, 0.5))])
    config = {"datasets": {"d": {"paper_name": "PeMSD7", "description": "test data"}}}
    table = cost_table(costs, config)
    time_rows = table[table["metric"] == "test_time_s"].set_index("model")
    assert time_rows.loc["student_task", "ours"] == 0.1
    assert time_rows.loc["student_task", "full_recompute_s"] == 0.5
    assert time_rows.loc["student_task", "full_recompute_ratio_to_teacher"] == pytest.approx(0.5 / 8.0)
    assert table[table["metric"] != "test_time_s"]["full_recompute_s"].isna().all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sparse", [False, True])
def test_streaming_equals_full_recompute_on_cuda_and_matches_the_cpu(monkeypatch, sparse):
    monkeypatch.setitem(model_module.SPARSE_MAX_DENSITY, "cuda", 1.0 if sparse else 0.0)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare the algorithms in full float32
    m = build(dropout=0.1)
    inputs = torch.randn(9, 12, N)
    on_cpu = rollout(m, inputs, 9, mode="full")
    m.cuda()
    on_gpu = assert_rollouts_equal(m, inputs)
    assert on_gpu.device.type == "cpu"  # predictions come back to the host
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)
