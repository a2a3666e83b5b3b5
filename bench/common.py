"""Shared set-up of the benchmarks: the real graphs, model shapes, machine description."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdstgcn.cost import benchmark_cheb, device_name
from kdstgcn.data import read_distances

TEACHER = ((1, 32, 64), (64, 32, 128))
BASE = ((1, 8, 16), (16, 8, 32))
STUDENT = ((1, 2, 4), (4, 2, 8))
SHAPES = {"teacher": TEACHER, "base": BASE, "student": STUDENT}
SHARED_ENV = "KDSTGCN_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[1].parent / "shared")
# name -> (nodes, distance file below SHARED, its format for kdstgcn.data.read_distances)
REAL_GRAPHS = {"pemsd7": (228, "data/pemsd7m/PeMSD7_W_228.csv", "matrix_csv"),
               "pems08": (170, "data/pems08/distance.csv", "edge_list")}


def real_distances(name: str) -> np.ndarray:
    """Distances in metres of a real network (pemsd7: PeMSD7(M), pems08: PEMS08) from the shared data folder."""
    n_nodes, relative, fmt = REAL_GRAPHS[name]
    path = SHARED / relative
    if not path.exists():
        raise SystemExit(f"{path} not found: the benchmarks read the shared data from the repository's ../shared; "
                         f"set {SHARED_ENV}=<folder holding data/> to use another place")
    return read_distances(path, fmt, n_nodes)


def graph(n_nodes: int, source: str = "auto", seed: int = 0) -> tuple[torch.Tensor, str]:
    """Chebyshev stack [3, N, N] and a description: a real network when N fits it (source auto, pemsd7 or
    pems08; auto falls back to a random graph when the file is missing), else a random geometric graph."""
    real = {name: spec for name, spec in REAL_GRAPHS.items() if source in ("auto", name) and spec[0] == n_nodes}
    for name, (_, relative, _) in real.items():
        if source != "auto" or (SHARED / relative).exists():
            return benchmark_cheb(n_nodes, distance_m=real_distances(name)), f"{name} ({SHARED / relative})"
    if source in REAL_GRAPHS:
        raise SystemExit(f"--graph {source} needs N={REAL_GRAPHS[source][0]}")
    note = "" if source == "random" else f" (no real graph of N={n_nodes} under {SHARED}; see {SHARED_ENV})"
    return benchmark_cheb(n_nodes, seed=seed), f"random geometric graph, seed {seed}{note}"


def machine(threads: int | None) -> str:
    if threads:
        torch.set_num_threads(threads)
    return (f"{device_name('cpu')}; torch {torch.__version__}; load average before start {load_now()} "
            f"(the machine may be shared: compare figures of one run only)")


def load_now() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
