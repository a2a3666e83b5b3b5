"""STGCN's streaming (start_stream / stream_step over the position rings of kdstgcn.model.streaming) against the
full recompute of every moved window."""
import pytest
import torch

from helpers import fit_briefly, ring_model
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.model import graph_products
from kdstgcn.model.stgcn import STGCN
from kdstgcn.pruning.prune import compact

pytestmark = pytest.mark.usefixtures("single_thread")

N = 16
SMALL = ((1, 4, 8), (8, 4, 16))


def build(blocks=SMALL, seed: int = 0, **arch) -> STGCN:
    return ring_model(N, blocks, seed, **arch)


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
    gen = torch.Generator().manual_seed(1)
    m = fit_briefly(build(dropout=0.3), N, gen)
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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sparse", [False, True])
def test_streaming_equals_full_recompute_on_cuda_and_matches_the_cpu(monkeypatch, sparse):
    monkeypatch.setitem(graph_products.SPARSE_MAX_DENSITY, "cuda", 1.0 if sparse else 0.0)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare the algorithms in full float32
    m = build(dropout=0.1)
    inputs = torch.randn(9, 12, N)
    on_cpu = rollout(m, inputs, 9, mode="full")
    m.cuda()
    on_gpu = assert_rollouts_equal(m, inputs)
    assert on_gpu.device.type == "cpu"  # predictions come back to the host
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)
