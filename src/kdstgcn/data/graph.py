"""Road graph: distances, the Gaussian-kernel adjacency (Eq. 16) and Chebyshev polynomials of its Laplacian."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class GraphError(ValueError):
    """The distance data cannot give a usable graph."""


def distances_from_edges(edges: pd.DataFrame, n_nodes: int) -> np.ndarray:
    """Symmetric distance matrix (metres) from an edge list with columns from, to, cost; inf where no edge."""
    missing = {"from", "to", "cost"} - set(edges.columns)
    if missing:
        raise GraphError(f"edge list lacks columns {sorted(missing)}; expected 'from,to,cost'")
    d = np.full((n_nodes, n_nodes), np.inf)
    i = edges["from"].to_numpy(int)
    j = edges["to"].to_numpy(int)
    if i.min() < 0 or j.min() < 0 or max(i.max(), j.max()) >= n_nodes:
        raise GraphError(f"edge list names nodes outside 0..{n_nodes - 1}")
    cost = edges["cost"].to_numpy(float)
    # duplicate rows and both directions collapse to the shortest cost
    np.minimum.at(d, (i, j), cost)
    np.minimum.at(d, (j, i), cost)
    np.fill_diagonal(d, 0.0)
    return d


def gaussian_adjacency(distance_m: np.ndarray, sigma2: float = 10.0, epsilon: float = 0.5,
                       unit_m: float = 1000.0) -> np.ndarray:
    """Eq. 16: W_ij = exp(-d_ij^2 / sigma^2) (d in units of `unit_m` metres), kept where >= epsilon and i != j."""
    d = np.asarray(distance_m, dtype=float) / unit_m
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise GraphError(f"distance matrix must be square, got shape {d.shape}")
    if np.isnan(d).any():
        raise GraphError("distance matrix contains NaN")
    with np.errstate(over="ignore"):
        w = np.exp(-np.square(d) / sigma2)
    w[w < epsilon] = 0.0
    np.fill_diagonal(w, 0.0)
    return w


def components(w: np.ndarray) -> list[list[int]]:
    """Connected components of the (symmetrised) graph as sorted station ids, largest first (ties: lowest id)."""
    from scipy.sparse.csgraph import connected_components  # here: the training jobs read graphs without it

    sym = np.logical_or(w > 0, (w > 0).T)
    _, labels = connected_components(sym, directed=False)
    groups = [sorted(int(k) for k in np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def graph_stats(w: np.ndarray) -> dict:
    """Edge, degree and connectivity figures of a weighted adjacency matrix."""
    binary = w > 0
    degree = binary.sum(axis=1)
    sym = np.logical_or(binary, binary.T)
    parts = components(w)
    return {
        "nodes": int(w.shape[0]),
        "undirected_edges": int(np.triu(sym, 1).sum()),
        "isolated_nodes": int((sym.sum(axis=1) == 0).sum()),
        "isolated_ids": [int(k) for k in np.flatnonzero(sym.sum(axis=1) == 0)],
        "components": len(parts),
        "largest_component": len(parts[0]),
        "outside_largest_ids": sorted(k for part in parts[1:] for k in part),
        "small_components": parts[1:],
        "degree_min": int(degree.min()),
        "degree_mean": float(degree.mean()),
        "degree_max": int(degree.max()),
        "weight_mean": float(w[binary].mean()) if binary.any() else 0.0,
        "symmetric": bool(np.allclose(w, w.T)),
    }


def check_graph(w: np.ndarray, source: str) -> dict:
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


def chebyshev_polynomials(w: np.ndarray, ks: int) -> torch.Tensor:
    """Stack T_0..T_{ks-1} of the scaled Laplacian as a float32 tensor [ks, N, N]."""
    import torch  # here: the data jobs (synthesize, clean, adjacency) run without torch

    lt = scaled_laplacian(w)
    polys = [np.eye(w.shape[0]), lt]
    for _ in range(2, ks):
        polys.append(2 * lt @ polys[-1] - polys[-2])
    return torch.tensor(np.stack(polys[:ks]), dtype=torch.float32)


def load_cheb(adjacency_path: str, ks: int) -> torch.Tensor:
    """`chebyshev_polynomials` of the adjacency table the adjacency rule wrote."""
    return chebyshev_polynomials(pd.read_parquet(adjacency_path).to_numpy(), ks)
