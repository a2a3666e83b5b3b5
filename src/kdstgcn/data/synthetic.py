"""A deterministic PeMS-like network for tests and the demo: geometric road graph, rush hours that spread
to neighbours, incidents, noise and missing readings."""
from __future__ import annotations

import numpy as np


def generate(n_nodes: int = 24, n_days: int = 6, steps_per_day: int = 288, seed: int = 0,
             area_km: float = 8.0, missing_pct: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Return speeds [n_days * steps_per_day, n_nodes] (mph, 0 = missing) and distances [N, N] in metres."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, area_km, size=(n_nodes, 2))
    dist_km = np.linalg.norm(pos[:, None] - pos[None, :], axis=-1)
    near = np.exp(-dist_km ** 2 / 10.0) * (dist_km > 0)
    near /= np.maximum(near.sum(axis=1, keepdims=True), 1e-9)

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
    return np.round(speed, 1), np.round(dist_km * 1000.0, 1)
