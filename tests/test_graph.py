"""Road graph: Gaussian kernel (Eq. 16), edge lists, station coordinates, the real PeMSD7(M) and PEMS08 graphs,
Laplacian and Chebyshev polynomials, dense and sparse, and the adjacency file (N x N table or edge list)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_file
from kdstgcn.data.clean import read_distances
from kdstgcn.jobs.data import build_adjacency
from kdstgcn.data.graph import (EDGE_LIST_COLUMNS, DistancePairs, GraphError, adjacency_table, check_graph,
                                chebyshev_polynomials, distance_pairs_from_coordinates,
                                distance_pairs_from_edges, distances_from_edges, gaussian_adjacency, graph_stats,
                                kernel_radius_m, load_cheb, read_adjacency, road_adjacency, scaled_laplacian,
                                sparse_chebyshev_polynomials, sparse_gaussian_adjacency, sparse_scaled_laplacian)
from kdstgcn.runtime.io import write_table
from kdstgcn.runtime.sizes import DENSE_MAX_NODES


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


def dense_chebyshev_reference(w: np.ndarray, ks: int) -> np.ndarray:
    """The paper's networks' Chebyshev stack as the project has always computed it: eigvalsh's lambda_max, float64
    recursion, float32 at the end."""
    n = w.shape[0]
    d = w.sum(axis=1)
    inv_sqrt = np.zeros_like(d)
    inv_sqrt[d > 0] = 1.0 / np.sqrt(d[d > 0])
    lap = np.eye(n) - inv_sqrt[:, None] * w * inv_sqrt[None, :]
    lt = 2.0 * lap / float(np.linalg.eigvalsh((lap + lap.T) / 2).max()) - np.eye(n)
    polys = [np.eye(n), lt]
    for _ in range(2, ks):
        polys.append(2 * lt @ polys[-1] - polys[-2])
    return np.stack(polys[:ks]).astype(np.float32)


def random_station_coordinates(n_nodes: int, side_km: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, side_km, size=(n_nodes, 2))


@pytest.fixture(scope="module", params=["pemsd7", "pems08"])
def real_network(request, shared_data):
    """(distances as the adjacency job reads them, the same as `DistancePairs`) of a paper network."""
    if request.param == "pemsd7":
        d = read_distances(shared_file(shared_data, "pemsd7m/PeMSD7_W_228.csv"), "matrix_csv", 228)
        finite = np.isfinite(d)
        rows, cols = np.nonzero(finite)
        return d, DistancePairs(228, rows, cols, d[finite])
    path = shared_file(shared_data, "pems08/distance.csv")
    return read_distances(path, "edge_list", 170), distance_pairs_from_edges(pd.read_csv(path), 170)


def test_paper_networks_keep_the_dense_arithmetic_bit_for_bit(real_network, tmp_path):
    """Adjacency, its file (the N x N table it has always been) and the Chebyshev stack read from that file."""
    d, _ = real_network
    assert len(d) <= DENSE_MAX_NODES and isinstance(d, np.ndarray)
    w = road_adjacency(d, 10.0, 0.5, 1000.0)
    assert isinstance(w, np.ndarray)
    np.testing.assert_array_equal(w, gaussian_adjacency(d, 10.0, 0.5, 1000.0))
    cheb = chebyshev_polynomials(w, 3).numpy()
    assert cheb.tobytes() == dense_chebyshev_reference(w, 3).tobytes()
    path = tmp_path / "adjacency.parquet"
    write_table(adjacency_table(w), path)
    table = pd.read_parquet(path)
    assert list(table.columns) == [str(i) for i in range(len(w))] and table.to_numpy().tobytes() == w.tobytes()
    assert load_cheb(str(path), 3).numpy().tobytes() == cheb.tobytes()


def test_sparse_path_equals_the_dense_one_on_the_paper_networks(real_network):
    d, pairs = real_network
    dense_w = gaussian_adjacency(d, 10.0, 0.5, 1000.0)
    for w in (sparse_gaussian_adjacency(pairs, 10.0, 0.5, 1000.0), sparse_gaussian_adjacency(d, 10.0, 0.5, 1000.0)):
        np.testing.assert_allclose(w.toarray(), dense_w, rtol=0, atol=1e-12)
        assert graph_stats(w) == graph_stats(dense_w)
    lt = sparse_scaled_laplacian(w)
    np.testing.assert_allclose(lt.toarray(), scaled_laplacian(dense_w), rtol=0, atol=1e-9)
    dense_terms = chebyshev_polynomials(dense_w, 3).numpy()
    sparse_terms = sparse_chebyshev_polynomials(w, 3)
    assert [term.dtype for term in sparse_terms] == [np.float32] * 3
    for k in range(3):
        np.testing.assert_allclose(sparse_terms[k].toarray(), dense_terms[k], rtol=0, atol=1e-6)


def test_sparse_path_is_reproducible():
    xy = random_station_coordinates(400, 30.0)
    w = sparse_gaussian_adjacency(distance_pairs_from_coordinates(xy, kernel_radius_m(10.0, 0.5)))
    first, second = sparse_chebyshev_polynomials(w, 3), sparse_chebyshev_polynomials(w.copy(), 3)
    for a, b in zip(first, second):
        assert (a != b).nnz == 0 and a.data.tobytes() == b.data.tobytes()


def test_above_the_threshold_the_model_stack_is_the_sparse_terms():
    """A sparse float32 stack, whatever form the adjacency comes in; the threshold is a parameter."""
    n = DENSE_MAX_NODES + 1
    xy = random_station_coordinates(n, math.sqrt(n * math.pi * 2.633 ** 2 / 10))  # about 10 neighbours each
    distance_m = np.linalg.norm(xy[:, None] - xy[None], axis=-1) * 1000.0
    w = road_adjacency(distance_m, 10.0, 0.5, 1000.0)
    assert not isinstance(w, np.ndarray)
    stack = chebyshev_polynomials(w, 3)
    assert stack.is_sparse and stack.is_coalesced() and stack.dtype == torch.float32
    assert tuple(stack.shape) == (3, n, n)
    terms = sparse_chebyshev_polynomials(w, 3)
    assert stack._nnz() == sum(term.nnz for term in terms)
    for k, term in enumerate(terms):
        np.testing.assert_array_equal(stack[k].to_dense().numpy(), term.toarray())
    assert torch.equal(chebyshev_polynomials(w.toarray(), 3).to_dense(), stack.to_dense())
    np.testing.assert_allclose(stack.to_dense().numpy(), dense_chebyshev_reference(w.toarray(), 3), rtol=0,
                               atol=1e-6)
    dense = chebyshev_polynomials(w, 3, dense_max_nodes=n)
    assert dense.layout == torch.strided
    assert dense.numpy().tobytes() == dense_chebyshev_reference(w.toarray(), 3).tobytes()
    small = gaussian_adjacency(distance_m[:20, :20], 10.0, 0.5, 1000.0)
    assert chebyshev_polynomials(small, 3, dense_max_nodes=10).is_sparse


def test_adjacency_file_above_the_threshold_is_an_edge_list_and_reads_back_exactly(tmp_path):
    """The file holds one row per edge and the station count (the last stations have no edge); it reads back as
    the same sparse matrix, and as the same Chebyshev stack; an N x N table of that size still loads."""
    n = DENSE_MAX_NODES + 100
    xy = random_station_coordinates(n, 30.0, seed=2)
    xy[-3:] = [[500.0, 500.0], [600.0, 600.0], [700.0, 700.0]]  # far away from every other station
    w = sparse_gaussian_adjacency(distance_pairs_from_coordinates(xy, kernel_radius_m(10.0, 0.5)), 10.0, 0.5)
    assert graph_stats(w)["isolated_ids"][-3:] == [n - 3, n - 2, n - 1]
    path = tmp_path / "adjacency.parquet"
    write_table(adjacency_table(w), path)
    table = pd.read_parquet(path)
    assert tuple(table.columns) == EDGE_LIST_COLUMNS and len(table) == w.nnz
    assert path.stat().st_size < 50 * w.nnz  # grows with edges, not N^2
    read = read_adjacency(str(path))
    assert read.shape == (n, n) and (read != w).nnz == 0 and read.data.tobytes() == w.data.tobytes()
    assert torch.equal(load_cheb(str(path), 3).to_dense(), chebyshev_polynomials(w, 3).to_dense())
    dense_path = tmp_path / "dense.parquet"
    write_table(adjacency_table(w.toarray()), dense_path)
    assert isinstance(read_adjacency(str(dense_path)), np.ndarray)
    assert torch.equal(load_cheb(str(dense_path), 3).to_dense(), chebyshev_polynomials(w, 3).to_dense())


def test_unreadable_adjacency_files_name_the_file_and_the_fix(tmp_path):
    no_count = tmp_path / "edges.parquet"
    pd.DataFrame({"row": [0, 1], "col": [1, 0], "weight": [0.9, 0.9]}).to_parquet(no_count)
    with pytest.raises(GraphError, match=f"{no_count}: an edge list without its station count.*adjacency rule"):
        read_adjacency(str(no_count))
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.0], "c": [0.0, 0.0]}).to_parquet(other)
    with pytest.raises(GraphError, match=f"{other}: neither an N x N adjacency table nor an edge list"):
        read_adjacency(str(other))


def test_distance_pairs_from_edges_match_the_distance_matrix():
    edges = pd.DataFrame({"from": [0, 0, 1, 2, 3, 4], "to": [1, 1, 2, 1, 0, 4],
                          "cost": [300.0, 300.0, 900.0, 700.0, 50.0, 10.0]})
    pairs = distance_pairs_from_edges(edges, 5)
    matrix = np.full((5, 5), np.inf)
    np.fill_diagonal(matrix, 0.0)
    matrix[pairs.rows, pairs.cols] = pairs.metres
    np.testing.assert_array_equal(matrix, distances_from_edges(edges, 5))
    assert len(pairs.metres) == 6  # 3 pairs, both directions; the self-loop 4-4 is no pair
    with pytest.raises(GraphError, match="NaN"):
        distance_pairs_from_edges(pd.DataFrame({"from": [0], "to": [1], "cost": [np.nan]}), 2)


def test_kernel_radius_is_where_the_weight_reaches_epsilon():
    radius = kernel_radius_m(10.0, 0.5, 1000.0)
    assert radius == pytest.approx(1000.0 * math.sqrt(10.0 * math.log(2.0)), rel=1e-8)  # 2.633 km
    assert math.exp(-((radius / 1000.0) ** 2) / 10.0) == pytest.approx(0.5, rel=1e-8)


def test_coordinates_by_hand():
    """Stations on a line at 0, 1, 3.5 and 6 km: only the pairs within 2.633 km are linked."""
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [3.5, 0.0], [6.0, 0.0]])
    pairs = distance_pairs_from_coordinates(xy, kernel_radius_m(10.0, 0.5))
    found = sorted(zip(pairs.rows.tolist(), pairs.cols.tolist(), pairs.metres.round(6).tolist()))
    assert found == [(0, 1, 1000.0), (1, 0, 1000.0), (1, 2, 2500.0), (2, 1, 2500.0), (2, 3, 2500.0),
                     (3, 2, 2500.0)]
    w = sparse_gaussian_adjacency(pairs, 10.0, 0.5, 1000.0).toarray()
    assert w[0, 1] == pytest.approx(math.exp(-0.1)) and w[1, 2] == pytest.approx(math.exp(-0.625))
    assert w[0, 2] == 0 and w[0, 3] == 0
    with pytest.raises(GraphError, match="N, 2"):
        distance_pairs_from_coordinates(np.zeros((3, 3)), 1000.0)


def test_coordinates_give_the_adjacency_of_their_distance_matrix():
    """The neighbour search finds every pair the kernel keeps: the same adjacency as from all N^2 distances."""
    xy = random_station_coordinates(300, 25.0, seed=3)
    distance_m = np.linalg.norm(xy[:, None] - xy[None], axis=-1) * 1000.0
    expected = gaussian_adjacency(distance_m, 10.0, 0.5, 1000.0)
    w = sparse_gaussian_adjacency(distance_pairs_from_coordinates(xy, kernel_radius_m(10.0, 0.5)), 10.0, 0.5)
    assert graph_stats(expected)["undirected_edges"] > 1000
    np.testing.assert_allclose(w.toarray(), expected, rtol=1e-12, atol=0)


def test_adjacency_job_of_a_large_edge_list_reads_it_sparse(tmp_path):
    """Above the threshold the edge list is read as pairs and the kernel is sparse; the job writes the adjacency
    (as an edge list) and stats the dense path would."""
    n = DENSE_MAX_NODES + 1
    pairs = distance_pairs_from_coordinates(random_station_coordinates(n, 40.0, seed=5), 4000.0)
    edges = pd.DataFrame({"from": pairs.rows, "to": pairs.cols, "cost": pairs.metres.round(1)})
    edges.to_csv(tmp_path / "distance.csv", index=False)
    assert isinstance(read_distances(tmp_path / "distance.csv", "edge_list", n), DistancePairs)
    build_adjacency(str(tmp_path / "distance.csv"), {"format": "edge_list", "unit_m": 1000.0},
                    {"n_nodes": n, "sigma2": 10.0, "epsilon": 0.5}, str(tmp_path / "adjacency.parquet"),
                    str(tmp_path / "stats.json"))
    expected = gaussian_adjacency(distances_from_edges(edges, n), 10.0, 0.5, 1000.0)
    assert tuple(pd.read_parquet(tmp_path / "adjacency.parquet").columns) == EDGE_LIST_COLUMNS
    np.testing.assert_array_equal(read_adjacency(str(tmp_path / "adjacency.parquet")).toarray(), expected)
    assert json.loads((tmp_path / "stats.json").read_text()) == graph_stats(expected)
