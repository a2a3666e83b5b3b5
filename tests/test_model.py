"""STGCN: the parameter counts of Table 1, the block notation, output and feature shapes, save/load round trip
(a dense stack, a sparse one above DENSE_MAX_NODES stations, an older file's dense one there), and the torch-free
modules of kdstgcn.model."""
import subprocess
import sys

import pytest
import torch

from helpers import ring_model
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.notation import format_blocks, parse_blocks
from kdstgcn.model.persist import count_parameters, load_model, save_model, weights_digest
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

pytestmark = pytest.mark.usefixtures("single_thread")

TEACHER, BASE, STUDENT = "[1,32,64][64,32,128]", "[1,8,16][16,8,32]", "[1,2,4][4,2,8]"
SMALL = "[1,4,8][8,4,16]"


def eye_cheb(n_nodes: int, ks: int = 3) -> torch.Tensor:
    """A valid Chebyshev stack (T0 = I, the others a fixed symmetric matrix); counts do not depend on it."""
    g = torch.Generator().manual_seed(n_nodes)
    a = torch.rand(n_nodes, n_nodes, generator=g)
    lt = (a + a.T) / (2 * n_nodes)
    polys = [torch.eye(n_nodes), lt]
    for _ in range(2, ks):
        polys.append(2 * lt @ polys[-1] - polys[-2])
    return torch.stack(polys[:ks])


def build(blocks: str, n_nodes: int, seed: int = 0) -> STGCN:
    torch.manual_seed(seed)
    return STGCN(Architecture(n_nodes, parse_blocks(blocks)), eye_cheb(n_nodes))


@pytest.mark.parametrize("blocks, n_nodes, expected", [
    (TEACHER, 228, 333_604), (BASE, 228, 48_628), (STUDENT, 228, 10_144),
    (TEACHER, 170, 296_426), (BASE, 170, 39_290), (STUDENT, 170, 7_766),
])
def test_parameter_counts_match_table_1(blocks, n_nodes, expected):
    assert count_parameters(build(blocks, n_nodes)) == expected


def test_parse_blocks_reads_the_paper_notation():
    assert parse_blocks(TEACHER) == ((1, 32, 64), (64, 32, 128))
    assert parse_blocks([[1, 2, 4], [4, 2, 8]]) == ((1, 2, 4), (4, 2, 8))
    assert format_blocks(parse_blocks(TEACHER)) == TEACHER


def test_architecture_and_notation_load_without_torch():
    code = ("import sys, kdstgcn.model.architecture, kdstgcn.model.notation; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_output_shape_and_features():
    n_nodes, batch = 7, 5
    model = build(SMALL, n_nodes).eval()
    x = torch.randn(batch, 12, n_nodes)
    y = model(x)
    assert y.shape == (batch, n_nodes)
    assert torch.isfinite(y).all()

    y2, features = model(x, return_features=True)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)
    assert len(features["temporal"]) == 4
    assert len(features["spatial"]) == 2
    # layout [batch, channels, time, nodes]: each temporal conv of kernel 3 shortens time by 2
    assert [tuple(f.shape) for f in features["temporal"]] == [
        (batch, 4, 10, n_nodes), (batch, 8, 8, n_nodes), (batch, 4, 6, n_nodes), (batch, 16, 4, n_nodes)]
    assert [tuple(f.shape) for f in features["spatial"]] == [(batch, 4, 10, n_nodes), (batch, 4, 6, n_nodes)]
    assert tuple(features["hidden"].shape) == (batch, 16, 4, n_nodes)


def test_nodes_interact_through_the_graph():
    """Changing one station's history changes a neighbour's prediction (the graph conv is wired in)."""
    model = build(SMALL, 6).eval()
    x = torch.randn(2, 12, 6)
    x2 = x.clone()
    x2[:, :, 0] += 3.0
    with torch.no_grad():
        diff = (model(x2) - model(x)).abs()
    assert diff[:, 1:].max() > 1e-4


def test_save_load_round_trip(tmp_path):
    model = build(SMALL, 9, seed=4).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-default LayerNorm and biases too
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "model.pt"
    save_model(model, path, {"note": "x"})
    loaded, extra = load_model(path)
    loaded.eval()
    assert extra["note"] == "x"
    assert loaded.arch == model.arch
    assert count_parameters(loaded) == count_parameters(model)
    x = torch.randn(4, 12, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_above_the_threshold_the_file_holds_the_sparse_stack(tmp_path):
    """model.pt grows with the graph's edges; it loads to the same model, weights digest included."""
    n = DENSE_MAX_NODES + 100
    model = ring_model(n, parse_blocks(SMALL)).eval()
    path = tmp_path / "model.pt"
    save_model(model, path)
    assert path.stat().st_size < 4 * n * n  # less than one dense N x N float32 term
    loaded, _ = load_model(path)
    assert loaded.cheb.is_sparse and torch.equal(loaded.cheb.to_dense(), model.cheb.to_dense())
    assert weights_digest(loaded) == weights_digest(model)
    x = torch.randn(2, 12, n)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)


def test_an_older_file_with_a_dense_stack_above_the_threshold_loads_sparse(tmp_path):
    """Files written while the model held every stack dense: the stack is taken sparse, the weights as saved."""
    n = DENSE_MAX_NODES + 100
    model = ring_model(n, parse_blocks(SMALL)).eval()
    dense = model.cheb.to_dense()
    torch.save({"arch": model.arch.to_dict(), "cheb": dense, "state_dict": model.state_dict() | {"cheb": dense},
                "masks": {}, "extra": {"note": "x"}}, tmp_path / "model.pt")
    loaded, extra = load_model(tmp_path / "model.pt")
    assert extra == {"note": "x"} and loaded.cheb.is_sparse and weights_digest(loaded) == weights_digest(model)
