"""Graph build time, dense against sparse path (kdstgcn.data.graph), on random geometric road graphs of N stations.

Stations lie uniformly in a square sized so that each has about `--neighbours` others within the kernel's cut-off
(sigma^2 = 10, epsilon = 0.5 on distances in km: 2.63 km). A build goes from station coordinates to the Chebyshev
terms, with the graph checks of the adjacency job:

- dense: distance matrix, `gaussian_adjacency`, `check_graph`, `chebyshev_polynomials` by the dense arithmetic;
- sparse: `distance_pairs_from_coordinates`, `sparse_gaussian_adjacency`, `check_graph`,
  `sparse_chebyshev_polynomials`;
- model stack: the sparse [ks, N, N] tensor the model takes above `DENSE_MAX_NODES`, from the sparse terms
  (`sparse_stack`).

The dense path is timed up to `--dense-max` stations (its eigen-decomposition grows with N^3).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from kdstgcn.data import graph
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

SIGMA2, EPSILON, KS = 10.0, 0.5, 3


def coordinates(n_nodes: int, neighbours: float, seed: int = 0) -> np.ndarray:
    """Station coordinates [N, 2] in km, uniform in a square where a station has about `neighbours` within the
    kernel's cut-off (edge effects aside)."""
    radius_km = graph.kernel_radius_m(SIGMA2, EPSILON) / 1000.0
    side_km = math.sqrt(n_nodes * math.pi * radius_km ** 2 / neighbours)
    return np.random.default_rng(seed).uniform(0.0, side_km, size=(n_nodes, 2))


def dense_build(xy_km: np.ndarray) -> torch.Tensor:
    distance_m = np.linalg.norm(xy_km[:, None] - xy_km[None], axis=-1) * 1000.0
    w = graph.gaussian_adjacency(distance_m, SIGMA2, EPSILON)
    graph.check_graph(w, "bench")
    return graph.chebyshev_polynomials(w, KS, dense_max_nodes=len(xy_km))  # the dense arithmetic at any N


def sparse_build(xy_km: np.ndarray) -> list:
    pairs = graph.distance_pairs_from_coordinates(xy_km, graph.kernel_radius_m(SIGMA2, EPSILON))
    w = graph.sparse_gaussian_adjacency(pairs, SIGMA2, EPSILON)
    stats = graph.check_graph(w, "bench")
    sparse_build.degree_mean = stats["degree_mean"]
    return graph.sparse_chebyshev_polynomials(w, KS)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[228, 500, 1000, 2352, 8600])
    parser.add_argument("--neighbours", type=float, default=10.0)
    parser.add_argument("--dense-max", type=int, default=2352)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many builds per path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average before {os.getloadavg()[0]:.1f}, "
          f"dense path up to N = {DENSE_MAX_NODES} in the pipeline")
    print(f"{'N':>6} {'degree':>7} {'T_2 nnz':>9} {'dense s':>8} {'sparse s':>9} {'model stack s':>14}")
    for n in args.nodes:
        xy_km = coordinates(n, args.neighbours)
        sparse_s, terms = min((timed(sparse_build, xy_km) for _ in range(args.repeats)), key=lambda t: t[0])
        stack_s = timed(graph.sparse_stack, terms)[0]
        if n <= args.dense_max:
            dense_s, dense = min((timed(dense_build, xy_km) for _ in range(args.repeats)), key=lambda t: t[0])
            gap = max(float(np.abs(dense[k].numpy() - terms[k].toarray()).max()) for k in range(KS))
            dense_text = f"{dense_s:8.3f}"
        else:
            dense_text, gap = f"{'-':>8}", float("nan")
        print(f"{n:6d} {sparse_build.degree_mean:7.1f} {terms[-1].nnz:9d} {dense_text} {sparse_s:9.3f} "
              f"{stack_s:14.3f}   max |dense - sparse| {gap:.1e}")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
