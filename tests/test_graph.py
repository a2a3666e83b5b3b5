"""Road graph: Gaussian kernel (Eq. 16), edge lists, the real PeMSD7(M) and PEMS08 graphs, Laplacian and
Chebyshev polynomials."""
import math

import numpy as np
import pandas as pd
import pytest

from conftest import shared_file
from kdstgcn.data.clean import read_distances
from kdstgcn.data.graph import (GraphError, check_graph, chebyshev_polynomials, distances_from_edges,
                           gaussian_adjacency, graph_stats, scaled_laplacian)


def test_gaussian_kernel_by_hand():
    d_m = np.array([[0.0, 1000.0, 3000.0, np.inf],
                    [1000.0, 0.0, 2000.0, 500.0],
                    [3000.0, 2000.0, 0.0, np.inf],
                    [np.inf, 500.0, np.inf, 0.0]])
    w = gaussian_adjacency(d_m, sigma2=10.0, epsilon=0.5, unit_m=1000.0)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = math.exp(-1.0 / 10)   # 1 km: 0.905, kept
    expected[1, 2] = expected[2, 1] = math.exp(-4.0 / 10)   # 2 km: 0.670, kept
    expected[1, 3] = expected[3, 1] = math.exp(-0.25 / 10)  # 0.5 km
    # 3 km: exp(-0.9) = 0.407 < epsilon -> dropped; inf -> no edge; diagonal (d = 0, W = 1) -> 0
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=0)
    stats = graph_stats(w)
    assert stats["undirected_edges"] == 3 and stats["isolated_nodes"] == 0 and stats["symmetric"]


def test_epsilon_is_a_threshold_not_an_offset():
    w = gaussian_adjacency(np.array([[0.0, 2000.0], [2000.0, 0.0]]), sigma2=10.0, epsilon=0.7)
    assert (w == 0).all()  # exp(-0.4) = 0.67 < 0.7
    w = gaussian_adjacency(np.array([[0.0, 2000.0], [2000.0, 0.0]]), sigma2=10.0, epsilon=0.6)
    assert w[0, 1] == pytest.approx(math.exp(-0.4))


def test_distances_from_edges_collapses_duplicates_and_symmetrises():
    edges = pd.DataFrame({"from": [0, 0, 1, 2, 3], "to": [1, 1, 2, 1, 0], "cost": [300.0, 300.0, 900.0, 700.0, 50.0]})
    d = distances_from_edges(edges, 5)
    expected = np.full((5, 5), np.inf)
    np.fill_diagonal(expected, 0.0)
    expected[0, 1] = expected[1, 0] = 300.0
    expected[1, 2] = expected[2, 1] = 700.0  # both directions given: the shorter cost
    expected[0, 3] = expected[3, 0] = 50.0
    np.testing.assert_array_equal(d, expected)
    assert np.isinf(d[4]).sum() == 4  # node 4 has no edge


def test_distances_from_edges_rejects_bad_lists():
    with pytest.raises(GraphError, match="from,to,cost"):
        distances_from_edges(pd.DataFrame({"a": [0], "b": [1], "c": [1.0]}), 2)
    with pytest.raises(GraphError, match="outside"):
        distances_from_edges(pd.DataFrame({"from": [0], "to": [5], "cost": [1.0]}), 3)


def test_pemsd7m_graph(shared_data):
    path = shared_file(shared_data, "pemsd7m/PeMSD7_W_228.csv")
    d = read_distances(path, "matrix_csv", 228)
    w = gaussian_adjacency(d, 10.0, 0.5, 1000.0)
    stats = check_graph(w, str(path))
    assert stats["undirected_edges"] == 832
    assert stats["isolated_nodes"] == 3
    assert stats["symmetric"]


@pytest.fixture(scope="module")
def pems08_distance(shared_data):
    return shared_file(shared_data, "pems08/distance.csv")


def test_pems08_graph(pems08_distance):
    rows = pd.read_csv(pems08_distance)
    assert len(rows) == 295 and rows.duplicated().sum() == 18
    d = read_distances(pems08_distance, "edge_list", 170)
    assert int(np.triu(np.isfinite(d), 1).sum()) == 274  # distinct undirected pairs
    w = gaussian_adjacency(d, 10.0, 0.5, 1000.0)  # cost is in metres
    stats = check_graph(w, str(pems08_distance))
    assert stats["undirected_edges"] == 273
    assert stats["isolated_nodes"] == 0


def test_pems08_metres_read_as_kilometres_cannot_pass(pems08_distance):
    """unit_m = 1 treats 316 m as 316 km: every edge is lost, and check_graph must stop the run."""
    d = read_distances(pems08_distance, "edge_list", 170)
    w = gaussian_adjacency(d, 10.0, 0.5, unit_m=1.0)
    assert graph_stats(w)["undirected_edges"] == 0
    with pytest.raises(GraphError, match="unit") as info:
        check_graph(w, str(pems08_distance))
    assert "unit_m" in str(info.value) and "distance.csv" in str(info.value)


def test_empty_graph_hint_gives_the_right_unit():
    with pytest.raises(GraphError) as info:
        check_graph(np.zeros((3, 3)), "distance.csv")
    message = str(info.value)
    assert "1000" in message and "metres" in message


def test_scaled_laplacian_spectrum(shared_data):
    d = read_distances(shared_file(shared_data, "pemsd7m/PeMSD7_W_228.csv"), "matrix_csv", 228)
    w = gaussian_adjacency(d, 10.0, 0.5, 1000.0)
    lt = scaled_laplacian(w)
    np.testing.assert_allclose(lt, lt.T, atol=1e-12)
    eig = np.linalg.eigvalsh(lt)
    assert eig.min() >= -1 - 1e-9 and eig.max() <= 1 + 1e-9
    assert eig.max() == pytest.approx(1.0, abs=1e-9)  # lambda_max maps to 1


def test_scaled_laplacian_small_graph_by_hand():
    w = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # path graph
    deg = w.sum(1)
    lap = np.eye(3) - w / np.sqrt(np.outer(deg, deg))
    lam = np.linalg.eigvalsh(lap).max()  # 2 for a bipartite graph
    np.testing.assert_allclose(scaled_laplacian(w), 2 * lap / lam - np.eye(3), atol=1e-12)
    eig = np.linalg.eigvalsh(scaled_laplacian(w))
    assert eig.min() >= -1 - 1e-9 and eig.max() <= 1 + 1e-9


def test_chebyshev_stack():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(6, 6))
    w = np.triu(a, 1) * (np.triu(a, 1) > 0.4)
    w = w + w.T
    cheb = chebyshev_polynomials(w, 3)
    assert tuple(cheb.shape) == (3, 6, 6)
    lt = scaled_laplacian(w)
    np.testing.assert_allclose(cheb[0].numpy(), np.eye(6), atol=0)
    np.testing.assert_allclose(cheb[1].numpy(), lt, atol=1e-6)
    np.testing.assert_allclose(cheb[2].numpy(), 2 * lt @ lt - np.eye(6), atol=1e-6)
    assert tuple(chebyshev_polynomials(w, 2).shape) == (2, 6, 6)
