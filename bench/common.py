"""Shared set-up of the benchmarks: the N=228 graph, model shapes, machine description."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdstgcn.cost import benchmark_cheb, device_name

TEACHER = ((1, 32, 64), (64, 32, 128))
BASE = ((1, 8, 16), (16, 8, 32))
STUDENT = ((1, 2, 4), (4, 2, 8))
SHAPES = {"teacher": TEACHER, "base": BASE, "student": STUDENT}
PEMSD7_W = Path(os.environ.get("KDSTGCN_SHARED", "/work/shared")) / "data/pemsd7m/PeMSD7_W_228.csv"


def graph(n_nodes: int, source: str = "auto", seed: int = 0) -> tuple[torch.Tensor, str]:
    """Chebyshev stack [3, N, N] and a description: the real PeMSD7(M) distances when N = 228 and the
    file is there (source auto/pemsd7), else a random geometric graph (source random)."""
    if source in ("auto", "pemsd7") and n_nodes == 228 and PEMSD7_W.exists():
        return benchmark_cheb(228, distance_m=np.loadtxt(PEMSD7_W, delimiter=",")), f"PeMSD7(M) ({PEMSD7_W})"
    if source == "pemsd7":
        raise SystemExit(f"--graph pemsd7 needs N=228 and {PEMSD7_W}")
    return benchmark_cheb(n_nodes, seed=seed), f"random geometric graph, seed {seed}"


def machine(threads: int | None) -> str:
    if threads:
        torch.set_num_threads(threads)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{device_name('cpu')}; torch {torch.__version__}; load average before start {load} "
            f"(the machine may be shared: compare figures of one run only)")


def load_now() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
