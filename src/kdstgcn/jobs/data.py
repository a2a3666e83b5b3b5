"""The data jobs: a synthetic network's raw files, a dataset's raw values cleaned into the table every model
reads, and its distances turned into the graph's adjacency."""
from __future__ import annotations

import logging

import numpy as np

from kdstgcn.config.datasets import gap_fill
from kdstgcn.data.graph import adjacency_table, check_graph, kernel_radius_m, road_adjacency
from kdstgcn.data.clean import clean, read_distances, read_values, timestamps
from kdstgcn.data.synthetic import edge_list, generate
from kdstgcn.runtime.io import atomic_path, write_json, write_table, write_tables

log = logging.getLogger(__name__)


def synthesize(dataset: dict, values_out: str, distance_out: str) -> None:
    """The synthetic PeMS-like network of a dataset's config section as raw files: values npz and distances as an
    edge list csv (from, to, cost in metres); a network above `kdstgcn.runtime.sizes.DENSE_MAX_NODES` stations lists
    the pairs its kernel keeps (sigma2, epsilon), a smaller one every pair."""
    syn = dataset["synthetic"]
    values, distance = generate(n_nodes=dataset["n_nodes"], n_days=syn["days"],
                                steps_per_day=dataset["steps_per_day"], seed=syn["seed"],
                                area_km=syn.get("area_km"), missing_pct=syn.get("missing_pct", 2.0),
                                neighbour_radius_m=kernel_radius_m(dataset["sigma2"], dataset["epsilon"]))
    edges = edge_list(distance)
    with atomic_path(values_out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, data=values)
    with atomic_path(distance_out) as tmp:
        edges.to_csv(tmp, index=False, float_format="%.1f")
    log.info("synthetic network: %d nodes, %d days, %.2f%% missing, %d station pairs", dataset["n_nodes"],
             syn["days"], 100 * (values == 0).mean(), len(edges))


def clean_values(raw: str, source: dict, dataset: dict, values_out: str, report_out: str,
                 report_parquet_out: str) -> None:
    """Raw values (read as `source` says, `kdstgcn.config.datasets.values_source`) -> table with its gaps filled
    as the dataset's config section says (`kdstgcn.config.datasets.gap_fill`) and a per-station fill report."""
    values = read_values(raw, source["format"], dataset["n_nodes"], source["steps"], source["key"],
                         source["channel"])
    index = timestamps(values.shape[0], dataset["steps_per_day"], dataset["start"], dataset["weekdays_only"])
    fill = gap_fill(dataset)
    table, report = clean(values, index, fill)
    log.info("%s: %d steps x %d stations, %d readings missing (%.3f%%) filled (%s)",
             raw, *values.shape, report["missing"].sum(), 100 * report["missing"].sum() / values.size, fill)
    write_table(table, values_out, index=True)
    write_tables(report, report_out, report_parquet_out)


def build_adjacency(raw: str, source: dict, dataset: dict, adjacency_out: str, stats_out: str) -> None:
    """Distances (read as `source` says, `kdstgcn.config.datasets.distance_source`) -> Gaussian-kernel adjacency
    (Eq. 16) with edge statistics; sparse above `kdstgcn.runtime.sizes.DENSE_MAX_NODES` stations, where the file is
    an edge list (`kdstgcn.data.graph.adjacency_table`)."""
    distance = read_distances(raw, source["format"], dataset["n_nodes"])
    w = road_adjacency(distance, dataset["sigma2"], dataset["epsilon"], source["unit_m"])
    stats = check_graph(w, raw)
    log.info("graph: %s", stats)
    write_table(adjacency_table(w), adjacency_out)
    write_json(stats, stats_out)
