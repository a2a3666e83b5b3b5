"""Shared set-up of the benchmarks: the real graphs, graphs and input batches for timing, model shapes, machine
description."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdstgcn.evaluation.cost import device_name
from kdstgcn.data.clean import clean, read_distances, read_values, timestamps
from kdstgcn.data.samples import PreparedData, prepare
from kdstgcn.data.graph import chebyshev_polynomials, gaussian_adjacency
from kdstgcn.data.synthetic import generate
from kdstgcn.runtime.io import write_table
from kdstgcn.runtime.runner import set_up_compute

TEACHER = ((1, 32, 64), (64, 32, 128))
BASE = ((1, 8, 16), (16, 8, 32))
STUDENT = ((1, 2, 4), (4, 2, 8))
SHAPES = {"teacher": TEACHER, "base": BASE, "student": STUDENT}
PEMSD8_STCD = {"alpha1": 0.846, "alpha2": 0.465, "alpha3": 0.504}  # L_STCD's weights for PeMSD8 (Table 6)
SHARED_ENV = "KDSTGCN_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[1].parent / "shared")
# name -> (nodes, distance file below SHARED, its format for kdstgcn.data.clean.read_distances)
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


def fallback_note(what: str) -> str:
    """The line a benchmark prints where the shared data is missing and it measures generated data instead."""
    return (f"note: {what} not found under {SHARED}: measured on generated data of the same size instead "
            f"(set {SHARED_ENV}=<folder holding data/> for the real files)")


def network_graphs() -> list[tuple[str, int, torch.Tensor]]:
    """(label, N, Chebyshev stack) of each real network of REAL_GRAPHS; where its file is missing, a random geometric
    graph of the same N stands in (the label says so, and a note is printed)."""
    graphs = []
    for name, (n_nodes, relative, _) in REAL_GRAPHS.items():
        if (SHARED / relative).exists():
            graphs.append((name, n_nodes, benchmark_cheb(n_nodes, distance_m=real_distances(name))))
        else:
            print(fallback_note(f"the {name} distances ({relative})"))
            graphs.append((f"random~{name}", n_nodes, benchmark_cheb(n_nodes)))
    return graphs


def benchmark_cheb(n_nodes: int, ks: int = 3, seed: int = 0, distance_m: np.ndarray | None = None,
                   area_km: float = 8.0) -> torch.Tensor:
    """Chebyshev stack [ks, N, N] for timing: of `distance_m` (metres) if given, else of a random geometric
    graph (stations uniform in an `area_km` square, as `kdstgcn.data.synthetic`), both through Eq. 16.

    The graph conv's cost depends on the graph: sparse Chebyshev terms are multiplied as sparse matrices
    (`kdstgcn.model.graph_products.ChebyshevTerms`), so time on the real network's distances where they matter.
    """
    if distance_m is None:
        points = np.random.default_rng(seed).uniform(0.0, area_km, size=(n_nodes, 2))
        distance_m = np.linalg.norm(points[:, None] - points[None], axis=-1) * 1000.0
    distance_m = np.asarray(distance_m, dtype=float)
    if distance_m.shape != (n_nodes, n_nodes):
        raise ValueError(f"distance matrix has shape {distance_m.shape}, expected ({n_nodes}, {n_nodes})")
    return chebyshev_polynomials(gaussian_adjacency(distance_m), ks)


def random_windows(n_nodes: int, batch: int = 1140, n_his: int = 12, seed: int = 0) -> torch.Tensor:
    """A reproducible input batch [batch, n_his, n_nodes] of standard-normal (z-scored) speeds.

    Same arguments, same tensor, whatever the global RNG state (a private generator is used). Costs do not
    depend on the values, only on the shape; 1140 is the test batch of Table 1.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_his, n_nodes, generator=generator)


PEMS08_DIR = SHARED / "data" / "pems08"
PEMS08_SPLIT = (50, 6, 6)


def pems08_flow(folder: Path, data_dir: Path = PEMS08_DIR, split: tuple[int, int, int] = PEMS08_SPLIT
                ) -> tuple[PreparedData, torch.Tensor]:
    """PEMS08 flow through the package's loaders, as the pipeline's pemsd8_flow dataset: the raw .mat cleaned
    (written to `folder`), split by days into windows and z-scored; the Chebyshev stack of distance.csv (Eq. 16).
    Where the files are missing, a synthetic network of the same size and days (kdstgcn.data.synthetic) stands in,
    and a note says so."""
    missing = [name for name in ("pems08_288_62_170.mat", "distance.csv") if not (data_dir / name).exists()]
    if missing:
        print(fallback_note(f"{', '.join(missing)} (in {data_dir})"))
        values, distance_m = generate(170, sum(split), 288, seed=8)
    else:
        values = read_values(data_dir / "pems08_288_62_170.mat", "mat_day_major", 170, 17856, key="T")
        distance_m = read_distances(data_dir / "distance.csv", "edge_list", 170)
    table, report = clean(values, timestamps(values.shape[0], 288, "2016-07-01", False))
    write_table(table, folder / "values.parquet", index=True)
    write_table(report, folder / "fill_report.csv")
    data = prepare(folder / "values.parquet", folder / "fill_report.csv", 288, split, 12, 9)
    return data, chebyshev_polynomials(gaussian_adjacency(distance_m), 3)


def graph(n_nodes: int, source: str = "auto", seed: int = 0) -> tuple[torch.Tensor, str]:
    """Chebyshev stack [3, N, N] and a description: a real network when N fits it (source auto, pemsd7 or
    pems08; where the file is missing, a random graph of that N with a printed note), else a random geometric
    graph."""
    if source in REAL_GRAPHS and REAL_GRAPHS[source][0] != n_nodes:
        raise SystemExit(f"--graph {source} needs N={REAL_GRAPHS[source][0]}")
    real = {name: spec for name, spec in REAL_GRAPHS.items() if source in ("auto", name) and spec[0] == n_nodes}
    for name, (_, relative, _) in real.items():
        if (SHARED / relative).exists():
            return benchmark_cheb(n_nodes, distance_m=real_distances(name)), f"{name} ({SHARED / relative})"
        if source == name:
            print(fallback_note(f"the {name} distances ({relative})"))
            return benchmark_cheb(n_nodes, seed=seed), f"random geometric graph, seed {seed}, standing in for {name}"
    note = "" if source == "random" else f" (no real graph of N={n_nodes} under {SHARED}; see {SHARED_ENV})"
    return benchmark_cheb(n_nodes, seed=seed), f"random geometric graph, seed {seed}{note}"


def machine(threads: int | None) -> str:
    set_up_compute(threads or torch.get_num_threads())
    return (f"{device_name('cpu')}; torch {torch.__version__}; load average before start {load_now()} "
            f"(the machine may be shared: compare figures of one run only)")


def load_now() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
