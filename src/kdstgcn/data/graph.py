"""Road graph: distances, the Gaussian-kernel adjacency (Eq. 16), its file, and Chebyshev polynomials of its
Laplacian.

Up to `DENSE_MAX_NODES` stations (kdstgcn.runtime.sizes) the graph is built with dense N x N arrays. Above,
distances, kernel, Laplacian and Chebyshev terms are scipy.sparse matrices, the adjacency file is an edge list and
the model's Chebyshev stack a sparse tensor, whose cost grows with stations and edges (`sparse_*` functions)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kdstgcn.runtime.sizes import DENSE_MAX_NODES

if TYPE_CHECKING:
    import torch
    from scipy.sparse import csr_array

log = logging.getLogger(__name__)

# Rows of a dense distance matrix turned into kernel weights at a time by the sparse path (bounds its temporaries).
KERNEL_BLOCK_ROWS = 256
# The columns of an adjacency file that is an edge list (one row per non-zero weight W_row,col), and the key of its
# table attributes (parquet metadata) that holds the station count (stations without an edge are in no row).
EDGE_LIST_COLUMNS = ("row", "col", "weight")
EDGE_LIST_STATIONS = "n_nodes"


@dataclass(frozen=True)
class DistancePairs:
    """The finite entries of an N x N distance matrix, each (row, col) at most once, in metres; a pair not
    listed is infinitely far apart (no edge). The sparse path's form of the distances."""

    n_nodes: int
    rows: np.ndarray
    cols: np.ndarray
    metres: np.ndarray


class GraphError(ValueError):
    """The distance data cannot give a usable graph."""


def edge_columns(edges: pd.DataFrame, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The from, to and cost columns of an edge list, checked against the network's `n_nodes` stations."""
    missing = {"from", "to", "cost"} - set(edges.columns)
    if missing:
        raise GraphError(f"edge list lacks columns {sorted(missing)}; expected 'from,to,cost'")
    i = edges["from"].to_numpy(int)
    j = edges["to"].to_numpy(int)
    if i.min() < 0 or j.min() < 0 or max(i.max(), j.max()) >= n_nodes:
        raise GraphError(f"edge list names nodes outside 0..{n_nodes - 1}")
    return i, j, edges["cost"].to_numpy(float)


def distances_from_edges(edges: pd.DataFrame, n_nodes: int) -> np.ndarray:
    """Symmetric distance matrix (metres) from an edge list with columns from, to, cost; inf where no edge."""
    i, j, cost = edge_columns(edges, n_nodes)
    d = np.full((n_nodes, n_nodes), np.inf)
    # duplicate rows and both directions collapse to the shortest cost
    np.minimum.at(d, (i, j), cost)
    np.minimum.at(d, (j, i), cost)
    np.fill_diagonal(d, 0.0)
    return d


def distance_pairs_from_edges(edges: pd.DataFrame, n_nodes: int) -> DistancePairs:
    """`distances_from_edges` as `DistancePairs`: both directions of every edge, duplicates at the shortest cost."""
    i, j, cost = edge_columns(edges, n_nodes)
    if np.isnan(cost).any():
        raise GraphError("edge list contains a NaN cost")
    off_diagonal = i != j
    shortest = (pd.DataFrame({"first": np.minimum(i, j), "second": np.maximum(i, j), "cost": cost})[off_diagonal]
                .groupby(["first", "second"], sort=True)["cost"].min())
    first = shortest.index.get_level_values("first").to_numpy()
    second = shortest.index.get_level_values("second").to_numpy()
    metres = shortest.to_numpy(float)
    return DistancePairs(n_nodes, np.concatenate([first, second]), np.concatenate([second, first]),
                         np.concatenate([metres, metres]))


def kernel_radius_m(sigma2: float, epsilon: float, unit_m: float = 1000.0) -> float:
    """The distance (metres) beyond which Eq. 16's weight exp(-d^2 / sigma^2) falls below epsilon, widened by a
    relative 1e-9 so that a neighbour search within it misses no pair the kernel keeps (the kernel decides)."""
    return math.sqrt(sigma2 * math.log(1.0 / epsilon)) * unit_m * (1.0 + 1e-9)


def distance_pairs_from_coordinates(xy_km: np.ndarray, within_m: float) -> DistancePairs:
    """Straight-line distances (metres) of every pair of stations at most `within_m` apart (a k-d tree search),
    from station coordinates [N, 2] in kilometres on a plane: latitude and longitude must first be projected to
    a metric grid (e.g. UTM). Pass `kernel_radius_m` to find every pair the kernel keeps."""
    from scipy.spatial import cKDTree  # here: the training jobs read graphs without scipy

    xy_km = np.asarray(xy_km, dtype=float)
    if xy_km.ndim != 2 or xy_km.shape[1] != 2 or not np.isfinite(xy_km).all():
        raise GraphError(f"station coordinates must be finite [N, 2] (x, y in km), got shape {xy_km.shape}")
    pairs = cKDTree(xy_km).query_pairs(within_m / 1000.0, output_type="ndarray")
    first, second = pairs[:, 0], pairs[:, 1]
    metres = np.linalg.norm(xy_km[first] - xy_km[second], axis=1) * 1000.0
    return DistancePairs(len(xy_km), np.concatenate([first, second]), np.concatenate([second, first]),
                         np.concatenate([metres, metres]))


def kernel_weights(distance_m: np.ndarray, sigma2: float, unit_m: float) -> np.ndarray:
    """Eq. 16's weight exp(-d^2 / sigma^2) of distances in metres, d in units of `unit_m` metres (inf -> 0)."""
    with np.errstate(over="ignore"):
        return np.exp(-np.square(distance_m / unit_m) / sigma2)


def gaussian_adjacency(distance_m: np.ndarray, sigma2: float = 10.0, epsilon: float = 0.5,
                       unit_m: float = 1000.0) -> np.ndarray:
    """Eq. 16: W_ij = exp(-d_ij^2 / sigma^2) (d in units of `unit_m` metres), kept where >= epsilon and i != j."""
    d = np.asarray(distance_m, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise GraphError(f"distance matrix must be square, got shape {d.shape}")
    if np.isnan(d).any():
        raise GraphError("distance matrix contains NaN")
    w = kernel_weights(d, sigma2, unit_m)
    w[w < epsilon] = 0.0
    np.fill_diagonal(w, 0.0)
    return w


def sparse_gaussian_adjacency(distances: DistancePairs | np.ndarray, sigma2: float = 10.0, epsilon: float = 0.5,
                              unit_m: float = 1000.0) -> csr_array:
    """`gaussian_adjacency` as a sparse matrix holding only the weights >= epsilon (i != j), of `DistancePairs` or of
    a dense distance matrix, taken `KERNEL_BLOCK_ROWS` rows at a time (no N x N array beside the matrix itself)."""
    from scipy.sparse import csr_array

    if isinstance(distances, DistancePairs):
        n = distances.n_nodes
        if np.isnan(distances.metres).any():
            raise GraphError("distances contain NaN")
        rows, cols, w = distances.rows, distances.cols, kernel_weights(distances.metres, sigma2, unit_m)
        kept = (w >= epsilon) & (rows != cols)
        return csr_array((w[kept], (rows[kept], cols[kept])), shape=(n, n))
    d = np.asarray(distances, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise GraphError(f"distance matrix must be square, got shape {d.shape}")
    n = d.shape[0]
    rows, cols, weights = [], [], []
    for start in range(0, n, KERNEL_BLOCK_ROWS):
        block = d[start:start + KERNEL_BLOCK_ROWS]
        if np.isnan(block).any():
            raise GraphError("distance matrix contains NaN")
        w = kernel_weights(block, sigma2, unit_m)
        r, c = np.nonzero(w >= epsilon)
        off_diagonal = r + start != c
        rows.append(r[off_diagonal] + start)
        cols.append(c[off_diagonal])
        weights.append(w[r[off_diagonal], c[off_diagonal]])
    return csr_array((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def road_adjacency(distances: DistancePairs | np.ndarray, sigma2: float, epsilon: float,
                   unit_m: float) -> np.ndarray | csr_array:
    """Eq. 16 the way the network's size calls for: a distance matrix of at most `DENSE_MAX_NODES` stations by
    `gaussian_adjacency` (dense), anything else by `sparse_gaussian_adjacency`."""
    if isinstance(distances, np.ndarray) and len(distances) <= DENSE_MAX_NODES:
        return gaussian_adjacency(distances, sigma2, epsilon, unit_m)
    return sparse_gaussian_adjacency(distances, sigma2, epsilon, unit_m)


def as_sparse(w: np.ndarray | csr_array) -> csr_array:
    """An adjacency matrix, dense or sparse, as a sparse CSR matrix in canonical form (sorted, no duplicates)."""
    from scipy.sparse import csr_array

    sparse = csr_array(w, dtype=float)
    sparse.sum_duplicates()
    return sparse


def components(w: np.ndarray | csr_array) -> list[list[int]]:
    """Connected components of the (symmetrised) graph as sorted station ids, largest first (ties: lowest id)."""
    from scipy.sparse.csgraph import connected_components  # here: the training jobs read graphs without scipy

    _, labels = connected_components(as_sparse(w) > 0, directed=False)
    order = np.argsort(labels, kind="stable")
    groups = [part.tolist() for part in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def graph_stats(w: np.ndarray | csr_array) -> dict:
    """Edge, degree and connectivity figures of a weighted adjacency matrix, dense or sparse."""
    from scipy.sparse import triu

    w = as_sparse(w)
    binary = (w > 0).astype(np.int64)
    degree = binary.sum(axis=1)
    sym = (binary + binary.T) > 0
    sym_degree = sym.sum(axis=1)
    weights = w.data[w.data > 0]  # row-major, as a dense matrix's positive entries
    gap = abs(w - w.T) - 1e-5 * abs(w.T)  # np.allclose(w, w.T): |w - w^T| <= 1e-8 + 1e-5 |w^T| everywhere
    parts = components(w)
    return {
        "nodes": int(w.shape[0]),
        "undirected_edges": int(triu(sym, k=1).count_nonzero()),
        "isolated_nodes": int((sym_degree == 0).sum()),
        "isolated_ids": [int(k) for k in np.flatnonzero(sym_degree == 0)],
        "components": len(parts),
        "largest_component": len(parts[0]),
        "outside_largest_ids": sorted(k for part in parts[1:] for k in part),
        "small_components": parts[1:],
        "degree_min": int(degree.min()),
        "degree_mean": float(degree.mean()),
        "degree_max": int(degree.max()),
        "weight_mean": float(weights.mean()) if weights.size else 0.0,
        "symmetric": bool(gap.max() <= 1e-8),
    }


def check_graph(w: np.ndarray | csr_array, source: str) -> dict:
    """Raise if the graph has no edge at all (e.g. distances read in the wrong unit); warn on isolated nodes
    and on stations outside the largest connected component (they are kept: the graph convolution then
    mixes only within each component, and these stations still enter training and the metrics)."""
    stats = graph_stats(w)
    if stats["undirected_edges"] == 0:
        raise GraphError(
            f"{source}: the adjacency has no edge at all. Check the distance unit "
            "(datasets.<name>.distance.unit_m: 1000 if the file is in metres, 1 if in kilometres) and sigma2/epsilon.")
    if stats["isolated_nodes"]:
        log.warning("%s: %d isolated stations (no neighbour within the kernel threshold): %s",
                    source, stats["isolated_nodes"], stats["isolated_ids"])
    if stats["components"] > 1:
        log.warning("%s: the graph is disconnected: %d components; the largest has %d stations, the %d "
                    "stations outside it are kept (components by station id): %s", source, stats["components"],
                    stats["largest_component"], len(stats["outside_largest_ids"]), stats["small_components"])
    return stats


def scaled_laplacian(w: np.ndarray) -> np.ndarray:
    """L~ = 2 L / lambda_max - I with L = I - D^-1/2 W D^-1/2 (isolated nodes get L_ii = 1)."""
    n = w.shape[0]
    d = w.sum(axis=1)
    inv_sqrt = np.zeros_like(d)
    inv_sqrt[d > 0] = 1.0 / np.sqrt(d[d > 0])
    lap = np.eye(n) - inv_sqrt[:, None] * w * inv_sqrt[None, :]
    lam_max = float(np.linalg.eigvalsh((lap + lap.T) / 2).max())
    return 2.0 * lap / lam_max - np.eye(n)


def sparse_scaled_laplacian(w: np.ndarray | csr_array) -> csr_array:
    """`scaled_laplacian` as a sparse matrix; lambda_max from a sparse eigen-solver (ARPACK, from a fixed start
    vector: same graph, same result)."""
    from scipy.sparse import diags_array, eye_array
    from scipy.sparse.linalg import eigsh

    w = as_sparse(w)
    n = w.shape[0]
    d = w.sum(axis=1)
    inv_sqrt = np.zeros_like(d)
    inv_sqrt[d > 0] = 1.0 / np.sqrt(d[d > 0])
    eye = eye_array(n, format="csr")
    lap = (eye - diags_array(inv_sqrt) @ w @ diags_array(inv_sqrt)).tocsr()
    start = np.random.default_rng(0).uniform(0.5, 1.5, size=n)
    lam_max = float(eigsh((lap + lap.T) / 2, k=1, which="LA", v0=start, return_eigenvectors=False)[0])
    return (2.0 * lap / lam_max - eye).tocsr()


def sparse_chebyshev_polynomials(w: np.ndarray | csr_array, ks: int) -> list[csr_array]:
    """T_0..T_{ks-1} of the scaled Laplacian as float32 sparse CSR matrices, built without any dense N x N array."""
    from scipy.sparse import eye_array

    lt = sparse_scaled_laplacian(w)
    polys = [eye_array(lt.shape[0], format="csr"), lt]
    for _ in range(2, ks):
        polys.append((2 * lt @ polys[-1] - polys[-2]).tocsr())
    return [term.astype(np.float32) for term in polys[:ks]]


def sparse_stack(terms: list[csr_array]) -> torch.Tensor:
    """Sparse Chebyshev terms as the model's sparse stack: a float32 sparse COO tensor [ks, N, N], coalesced."""
    import torch

    indices, values = [], []
    for k, term in enumerate(terms):
        entries = term.tocoo()
        indices.append(np.stack([np.full(entries.nnz, k), entries.row, entries.col]))
        values.append(entries.data.astype(np.float32))
    n = terms[0].shape[0]
    return torch.sparse_coo_tensor(torch.from_numpy(np.concatenate(indices, axis=1)).long(),
                                   torch.from_numpy(np.concatenate(values)), (len(terms), n, n),
                                   check_invariants=True).coalesce()


def chebyshev_polynomials(w: np.ndarray | csr_array, ks: int, dense_max_nodes: int = DENSE_MAX_NODES) -> torch.Tensor:
    """T_0..T_{ks-1} of the scaled Laplacian as the model's float32 stack [ks, N, N]: up to `dense_max_nodes`
    stations a dense tensor computed densely, above a sparse one (`sparse_stack`) from
    `sparse_chebyshev_polynomials`, without any dense N x N array."""
    import torch  # here: the data jobs (synthesize, clean, adjacency) run without torch

    n = w.shape[0]
    if n > dense_max_nodes:
        return sparse_stack(sparse_chebyshev_polynomials(w, ks))
    w = w if isinstance(w, np.ndarray) else w.toarray()
    lt = scaled_laplacian(w)
    polys = [np.eye(n), lt]
    for _ in range(2, ks):
        polys.append(2 * lt @ polys[-1] - polys[-2])
    return torch.tensor(np.stack(polys[:ks]), dtype=torch.float32)


def adjacency_table(w: np.ndarray | csr_array) -> pd.DataFrame:
    """The adjacency as the adjacency rule writes it: a dense matrix as the N x N table of its weights (columns
    "0".."N-1"), a sparse one as its edge list (`EDGE_LIST_COLUMNS`, row-major, the station count in the table's
    attributes), whose size grows with edges."""
    if isinstance(w, np.ndarray):
        return pd.DataFrame(w, columns=[str(i) for i in range(w.shape[0])])
    edges = as_sparse(w).tocoo()
    row, col, weight = EDGE_LIST_COLUMNS
    table = pd.DataFrame({row: edges.row.astype(np.int64), col: edges.col.astype(np.int64), weight: edges.data})
    table.attrs[EDGE_LIST_STATIONS] = int(w.shape[0])
    return table


def read_adjacency(path: str) -> np.ndarray | csr_array:
    """The adjacency in an `adjacency_table` file: an N x N table as a dense matrix, an edge list as a sparse one."""
    table = pd.read_parquet(path)
    if tuple(table.columns) != EDGE_LIST_COLUMNS:
        if table.shape[0] != table.shape[1]:
            raise GraphError(f"{path}: neither an N x N adjacency table nor an edge list {EDGE_LIST_COLUMNS} "
                             f"(shape {table.shape}); write it again with the adjacency rule")
        return table.to_numpy()
    from scipy.sparse import csr_array

    n = table.attrs.get(EDGE_LIST_STATIONS)
    if n is None:
        raise GraphError(f"{path}: an edge list without its station count ({EDGE_LIST_STATIONS!r} in the parquet "
                         "metadata); write it again with the adjacency rule")
    row, col, weight = (table[name].to_numpy() for name in EDGE_LIST_COLUMNS)
    return csr_array((weight, (row, col)), shape=(n, n))


def load_cheb(adjacency_path: str, ks: int) -> torch.Tensor:
    """`chebyshev_polynomials` of the adjacency file the adjacency rule wrote (`read_adjacency`)."""
    return chebyshev_polynomials(read_adjacency(adjacency_path), ks)
