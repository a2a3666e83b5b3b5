"""The synthetic PeMS-like network (kdstgcn.data.synthetic): a small network exactly as it always was, a large one
from a neighbour search (connected, about 10 neighbours a station, congestion spread by a sparse product), and the
raw files of rule synthesize, which read back as the generated network."""
import hashlib

import numpy as np
import pytest
from scipy.sparse import csr_array

from conftest import merged_config
from kdstgcn.config import datasets, schema
from kdstgcn.data.clean import read_distances, read_values
from kdstgcn.data.graph import DistancePairs, graph_stats, kernel_radius_m, road_adjacency
from kdstgcn.data.synthetic import NEIGHBOUR_RADIUS_M, dense_neighbours, generate, traffic
from kdstgcn.jobs.data import synthesize
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

SIGMA2, EPSILON = 10.0, 0.5


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# sha256 of the speeds and distances the generator gave before it had a large path: the demo's metrics depend on them
@pytest.mark.parametrize("arguments, speeds_sha256, distances_sha256", [
    (dict(n_nodes=16, n_days=2, seed=0),
     "168ff741c943d04edebfa1f1cf7dcaa1609fb553d701076527f6fbb6ff5c6250",
     "28b008961429ee7bec97c25adbe96b4036bd513fc0da5559c55ac5c704a90747"),
    (dict(n_nodes=16, n_days=5, seed=7, area_km=6.0, missing_pct=2.0),  # the demo's network
     "6d58aeb027c064957d06cc0e8742ac7c21fbfffa2a81ad2bb47e1a10d825c24a",
     "c9fda81490e7f3d75f3ceaf6abee8acf4f12bc9dba800f898e0b43137965e082"),
], ids=["n16_seed0", "demo"])
def test_a_small_network_is_the_one_it_always_was(arguments, speeds_sha256, distances_sha256):
    speeds, distances = generate(**arguments)
    n_nodes = arguments["n_nodes"]
    assert speeds.shape == (arguments["n_days"] * 288, n_nodes) and distances.shape == (n_nodes, n_nodes)
    assert (sha256(speeds), sha256(distances)) == (speeds_sha256, distances_sha256)


def test_a_large_network_is_connected_with_about_ten_neighbours_a_station():
    n_nodes = 1000
    speeds, distances = generate(n_nodes=n_nodes, n_days=1, seed=0)
    assert isinstance(distances, DistancePairs) and speeds.shape == (288, n_nodes)
    assert distances.metres.max() <= NEIGHBOUR_RADIUS_M
    stats = graph_stats(road_adjacency(distances, SIGMA2, EPSILON, 1000.0))
    assert stats["components"] == 1 and stats["isolated_nodes"] == 0 and stats["symmetric"]
    assert stats["undirected_edges"] == len(distances.rows) // 2  # the kernel keeps every pair listed
    assert 9.0 <= stats["degree_mean"] <= 11.5 and stats["degree_min"] >= 2
    readings = speeds[speeds > 0]
    assert 0.01 < (speeds == 0).mean() < 0.1 and readings.min() >= 3 and readings.max() <= 85


def test_congestion_spreads_the_same_through_sparse_and_dense_weights():
    near, _ = dense_neighbours(np.random.default_rng(0), 40, 8.0)
    dense = traffic(np.random.default_rng(1), near, 1, 288, 2.0)
    sparse = traffic(np.random.default_rng(1), csr_array(near), 1, 288, 2.0)
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=0.1 + 1e-9)  # 0.1 mph: rounding to one decimal


@pytest.mark.parametrize("n_nodes", [16, DENSE_MAX_NODES + 100])
def test_the_raw_files_read_back_as_the_generated_network(tmp_path, n_nodes):
    dataset = {"source": "synthetic", "n_nodes": n_nodes, "steps_per_day": 288, "synthetic": {"days": 1, "seed": 4},
               "sigma2": SIGMA2, "epsilon": EPSILON}
    config = {"datasets": {"net": dataset}}
    values_source, distance_source = datasets.values_source(config, "net"), datasets.distance_source(config, "net")
    values_path, distance_path = tmp_path / values_source["name"], tmp_path / distance_source["name"]
    synthesize(dataset, str(values_path), str(distance_path))

    speeds, distances = generate(n_nodes=n_nodes, n_days=1, seed=4,
                                 neighbour_radius_m=kernel_radius_m(SIGMA2, EPSILON))
    values = read_values(values_path, values_source["format"], n_nodes, values_source["steps"], values_source["key"],
                         values_source["channel"])
    np.testing.assert_array_equal(values, speeds)
    read = read_distances(distance_path, distance_source["format"], n_nodes)
    if n_nodes <= DENSE_MAX_NODES:  # exactly the matrix the dense csv the rule wrote before gave
        np.savetxt(tmp_path / "matrix.csv", distances, delimiter=",", fmt="%.1f")
        np.testing.assert_array_equal(read, read_distances(tmp_path / "matrix.csv", "matrix_csv", n_nodes))
    else:
        assert isinstance(read, DistancePairs)
        w_read, w_generated = (road_adjacency(d, SIGMA2, EPSILON, distance_source["unit_m"]) for d in (read, distances))
        np.testing.assert_allclose(w_read.toarray(), w_generated.toarray(), rtol=1e-9, atol=0)


def test_the_scale_config_is_valid_and_its_network_takes_the_large_path():
    config = merged_config("config/scale.yaml")
    schema.validate(config)
    (name,) = config["run_datasets"]
    dataset = config["datasets"][name]
    assert dataset["source"] == "synthetic" and dataset["n_nodes"] > DENSE_MAX_NODES
    assert datasets.distance_source(config, name)["format"] == "edge_list"
