"""A deterministic PeMS-like network for tests, the demo and the scale run: station positions, rush hours that
spread to neighbours, incidents, noise and missing readings.

Up to `DENSE_MAX_NODES` stations (kdstgcn.runtime.sizes) they lie at random on a square, and the distances and the
weights through which congestion spreads are dense N x N arrays. Above, each station lies in its own cell of a
square grid and only the pairs within a neighbour radius are found (a k-d tree search) and kept: the distances as
`DistancePairs`, the spread as a sparse matrix, so that time and memory grow with stations x neighbours."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.sparse import csr_array

from kdstgcn.data.graph import DistancePairs, distance_pairs_from_coordinates, kernel_radius_m
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

# Congestion spreads to a neighbour d km away with weight exp(-d^2 / SPREAD_SIGMA2_KM2) (normalised per station).
SPREAD_SIGMA2_KM2 = 10.0
# Side (km) of the square of a network of at most DENSE_MAX_NODES stations when no area is given.
SMALL_AREA_KM = 8.0
# Pairs a larger network keeps when no radius is given: those the default kernel (sigma2 = 10, epsilon = 0.5) keeps.
NEIGHBOUR_RADIUS_M = kernel_radius_m(10.0, 0.5)
# Side of a larger network's grid cells, in neighbour radii, when no area is given: about 10 stations within the
# radius of each (fewer at the edges), 0.58 stations per km^2 at the default radius (the demo: 0.44).
CELL_RADII = 0.5
# Share of its cell's side (centred) a larger network's station lies in: the stations of side-adjacent cells are
# then at most sqrt((1 + CELL_SPREAD)^2 + CELL_SPREAD^2) = 1.58 cell sides apart, within the neighbour radius
# at the default area, so that the graph is connected.
CELL_SPREAD = 0.5


def generate(n_nodes: int = 24, n_days: int = 6, steps_per_day: int = 288, seed: int = 0,
             area_km: float | None = None, missing_pct: float = 2.0,
             neighbour_radius_m: float = NEIGHBOUR_RADIUS_M) -> tuple[np.ndarray, np.ndarray | DistancePairs]:
    """Return speeds [n_days * steps_per_day, n_nodes] (mph, 0 = missing) and the distances in metres: an N x N
    matrix up to `DENSE_MAX_NODES` stations, above the `DistancePairs` at most `neighbour_radius_m` apart.

    `area_km` is the side of the square the stations lie on; none given: `SMALL_AREA_KM` for a small network, for
    a larger one that of a square grid of cells `CELL_RADII` neighbour radii wide, one station each (it grows with
    sqrt(N))."""
    rng = np.random.default_rng(seed)
    if n_nodes <= DENSE_MAX_NODES:
        near, distances = dense_neighbours(rng, n_nodes, SMALL_AREA_KM if area_km is None else area_km)
    else:
        near, distances = sparse_neighbours(rng, n_nodes, area_km, neighbour_radius_m)
    return traffic(rng, near, n_days, steps_per_day, missing_pct), distances


def dense_neighbours(rng: np.random.Generator, n_nodes: int, area_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Stations at random on a square `area_km` wide: spread weights [N, N] over every other station (each row
    sums to 1) and the distance matrix [N, N] in metres."""
    pos = rng.uniform(0, area_km, size=(n_nodes, 2))
    dist_km = np.linalg.norm(pos[:, None] - pos[None, :], axis=-1)
    near = np.exp(-dist_km ** 2 / SPREAD_SIGMA2_KM2) * (dist_km > 0)
    near /= np.maximum(near.sum(axis=1, keepdims=True), 1e-9)
    return near, np.round(dist_km * 1000.0, 1)


def sparse_neighbours(rng: np.random.Generator, n_nodes: int, area_km: float | None,
                      radius_m: float) -> tuple[csr_array, DistancePairs]:
    """Station k in cell k (row by row) of a square grid, anywhere in the middle `CELL_SPREAD` of its cell: spread
    weights (a sparse [N, N] matrix, each row summing to 1) over the stations within `radius_m`, and their
    distances in metres."""
    columns = math.ceil(math.sqrt(n_nodes))
    cell_km = radius_m / 1000.0 * CELL_RADII if area_km is None else area_km / columns
    cell = np.stack([np.arange(n_nodes) % columns, np.arange(n_nodes) // columns], axis=1)
    pos = (cell + 0.5 + rng.uniform(-CELL_SPREAD / 2, CELL_SPREAD / 2, size=(n_nodes, 2))) * cell_km
    pairs = distance_pairs_from_coordinates(pos, radius_m)
    weight = np.exp(-(pairs.metres / 1000.0) ** 2 / SPREAD_SIGMA2_KM2)
    row_sum = np.bincount(pairs.rows, weights=weight, minlength=n_nodes)
    near = csr_array((weight / np.maximum(row_sum, 1e-9)[pairs.rows], (pairs.rows, pairs.cols)),
                     shape=(n_nodes, n_nodes))
    return near, DistancePairs(n_nodes, pairs.rows, pairs.cols, np.round(pairs.metres, 1))


def traffic(rng: np.random.Generator, near: np.ndarray | csr_array, n_days: int, steps_per_day: int,
            missing_pct: float) -> np.ndarray:
    """Speeds [n_days * steps_per_day, N] (mph, 0 = missing, 0.1 mph steps) of the stations whose congestion
    spreads through `near` (dense or sparse [N, N] weights)."""
    n_nodes = near.shape[0]
    hours = np.arange(steps_per_day) * 24.0 / steps_per_day
    free_flow = rng.uniform(58, 70, n_nodes)
    am_depth, pm_depth = rng.uniform(0.1, 0.45, n_nodes), rng.uniform(0.1, 0.5, n_nodes)
    am_peak, pm_peak = rng.normal(8.0, 0.4, n_nodes), rng.normal(17.5, 0.5, n_nodes)

    t = n_days * steps_per_day
    congestion = np.zeros((t, n_nodes))
    for d in range(n_days):
        day = slice(d * steps_per_day, (d + 1) * steps_per_day)
        scale = rng.uniform(0.8, 1.2, n_nodes)
        am = am_depth * np.exp(-((hours[:, None] - am_peak) / 0.9) ** 2)
        pm = pm_depth * np.exp(-((hours[:, None] - pm_peak) / 1.2) ** 2)
        congestion[day] = scale * (am + pm)
        for _ in range(rng.poisson(1.5)):  # incidents: a sharp drop at one station, cleared over ~1-2 h
            node, start = rng.integers(n_nodes), d * steps_per_day + rng.integers(steps_per_day)
            length = rng.integers(6, 24)
            shape = np.exp(-np.arange(length) / (length / 3))
            end = min(start + length, t)
            congestion[start:end, node] += rng.uniform(0.3, 0.6) * shape[: end - start]

    spread = congestion.copy()
    for lag in (1, 2, 3):  # congestion reaches neighbours a few steps later
        spread[lag:] += 0.35 * congestion[:-lag] @ near.T / lag
    noise = np.zeros((t, n_nodes))
    eps = rng.normal(0, 1.0, (t, n_nodes))
    for k in range(1, t):
        noise[k] = 0.8 * noise[k - 1] + eps[k]
    speed = np.clip(free_flow * (1 - np.clip(spread, 0, 0.9)) + noise, 3, 85)

    missing = rng.random((t, n_nodes)) < missing_pct / 100.0
    for _ in range(max(1, n_nodes // 8)):  # a few detector outages of 30 min to 2 h
        node, start = rng.integers(n_nodes), rng.integers(t)
        missing[start:start + rng.integers(6, 24), node] = True
    speed[missing] = 0.0
    return np.round(speed, 1)


def edge_list(distances: np.ndarray | DistancePairs) -> pd.DataFrame:
    """`generate`'s distances as the edge list `kdstgcn.data.clean.read_distances` reads (format edge_list): columns
    from, to, cost (metres), each pair once (from < to), in order; read back they give the same distances."""
    if isinstance(distances, DistancePairs):
        one_way = distances.rows < distances.cols
        first, second, metres = distances.rows[one_way], distances.cols[one_way], distances.metres[one_way]
    else:
        first, second = np.triu_indices(len(distances), k=1)
        metres = distances[first, second]
    return pd.DataFrame({"from": first, "to": second, "cost": metres}).sort_values(["from", "to"], ignore_index=True)
