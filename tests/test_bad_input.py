"""Bad input: out-of-range or unknown configuration values are rejected before any job starts, naming the key
and what is allowed; raw data with all-missing stations, constant stations or a disconnected road graph is
reported (warnings with station ids) and handled (kept, masked in the metrics) instead of crashing or giving
NaN metrics. Each case is a row of the Reliability table (docs/reliability.md)."""
from __future__ import annotations

import copy
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import merged_config, run_snakemake
from kdstgcn.config import schema
from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.runspec import LossSpec, RunSpec, TrainSettings
from kdstgcn.data.download import MIRROR_ENV, check_mirror
from kdstgcn.jobs.evaluate import evaluate_run
from kdstgcn.jobs.train import train_run
from kdstgcn.data.clean import DataError, clean, timestamps
from kdstgcn.data.samples import prepare
from kdstgcn.evaluation.rollout import horizon_metrics
from kdstgcn.data.graph import chebyshev_polynomials, check_graph, gaussian_adjacency
from kdstgcn.runtime.io import write_table
from kdstgcn.model.architecture import Architecture
from kdstgcn.data.synthetic import generate


# ---------------------------------------------------------------------------------------------------------
# configuration values
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    return config


def set_key(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


# (key to change, bad value, key the message must name, words the message must contain)
BAD_VALUES = {
    "negative_kd_alpha": ("distillation.hyperparameters.PeMSD7.skd.alpha", -0.1,
                          "distillation.hyperparameters.PeMSD7.skd.alpha", ["-0.1", "minimum of 0"]),
    "negative_stcd_alpha1": ("distillation.hyperparameters.PeMSD7.stcd.alpha1", -0.5,
                             "distillation.hyperparameters.PeMSD7.stcd.alpha1", ["minimum of 0"]),
    "alpha_above_one": ("distillation.hyperparameters.PeMSD7.ord.alpha1", 1.5,
                        "distillation.hyperparameters.PeMSD7.ord.alpha1", ["maximum of 1"]),
    "negative_pruning_alpha3": ("pruning.hyperparameters.PeMSD7.97.alpha3", -1.0,
                                "pruning.hyperparameters.PeMSD7.97.alpha3", ["minimum of 0"]),
    "teacher_ratio_100": ("pruning.teacher_ratio", 100, "pruning.teacher_ratio", ["maximum of 99"]),
    "base_ratio_150": ("pruning.base_ratios", [25, 150], "pruning.base_ratios.1", ["maximum of 99"]),
    "ratio_0": ("pruning.base_ratios", [0, 50], "pruning.base_ratios.0", ["minimum of 1"]),
    "unknown_loss": ("distillation.losses", ["task", "l3"], "distillation.losses.1",
                     ["'l3' is not one of", "'stcd'"]),
    "unknown_optimizer": ("training.optimizer", "sgd", "training.optimizer", ["'rmsprop'", "'rmsprop_tf'", "'adam'"]),
    "unknown_reading": ("distillation.scalar_norm", "l1", "distillation.scalar_norm", ["'squared'", "'absolute'"]),
    "unknown_run_dataset": ("run_datasets", ["pemsd9"], "run_datasets",
                            ["unknown dataset 'pemsd9'", "'demo'", "'pemsd7m'"]),
    "unknown_paper_dataset": ("datasets.demo.paper_name", "PeMSD9", "datasets.demo.paper_name",
                              ["'PeMSD7'", "'PeMSD8'"]),
    "split_beyond_synthetic_days": ("datasets.demo.split", [3, 2, 1], "datasets.demo.split",
                                    ["needs 6 days", "has 5", "at most 5"]),
    "split_beyond_file_days": ("datasets.pemsd8.split", [50, 6, 7], "datasets.pemsd8.split",
                               ["needs 63 days", "has 62", "at most 62"]),
    "negative_epochs": ("training.epochs", -1, "training.epochs", ["minimum of 1"]),
    "unknown_hyperparameter_source": ("distillation.hyperparameter_source", "best",
                                      "distillation.hyperparameter_source", ["'paper'", "'tuned'"]),
    "tuning_range_reversed": ("tuning.space.alpha1", {"low": 0.8, "high": 0.2}, "tuning.space.alpha1",
                              ["low 0.8 exceeds high 0.2"]),
    "tuning_log_range_from_zero": ("tuning.space.alpha3", {"low": 0.0, "high": 1.0, "log": True},
                                   "tuning.space.alpha3", ["log scale needs low > 0"]),
    "tuning_weight_above_one": ("tuning.space.beta", {"low": 0.0, "high": 1.5}, "tuning.space.beta.high",
                                ["maximum of 1"]),
    "unknown_tuning_switch": ("tuning.switches", {"distillation.nope": ["a"]}, "tuning.switches",
                              ["'distillation.nope' was unexpected"]),
    "verdict_loss_not_trained": ("distillation.losses", ["task", "ord"], "verdict.losses",
                                 ["'stcd' is not a trained student", "distillation.losses ['task', 'ord']"]),
    "verdict_without_stcd": ("verdict.losses", ["task"], "verdict.losses", ["holds no 'stcd'"]),
    "verdict_ratio_not_pruned": ("verdict.pruning_ratios", [60], "verdict.pruning_ratios",
                                 ["60 is not pruned", "pruning.base_ratios [25, 50, 75]"]),
    "unknown_tuned_optimizer": ("tuning.switches", {"training.optimizer": ["sgd"]},
                                "tuning.switches.training.optimizer.0", ["'sgd' is not one of", "'adam'"]),
    "tuning_min_epochs_above_epochs": ("tuning.min_epochs", 2, "tuning.min_epochs",
                                       ["2 exceeds tuning.epochs = 1", "at most tuning.epochs"]),
    "unknown_importance_memory": ("pruning.importance_memory", "forget", "pruning.importance_memory",
                                  ["'carry'", "'reset'"]),
    "unknown_fill": ("datasets.demo.fill", "forward", "datasets.demo.fill", ["'interpolate'", "'causal'"]),
}


def test_student_claims_need_the_student_without_kd_to_check_the_teacher_against(demo_config):
    config = copy.deepcopy(demo_config)
    config["distillation"]["losses"] = config["verdict"]["losses"] = ["ord", "stcd"]
    with pytest.raises(schema.ConfigError, match=r"verdict.losses: .*student without KD.*add 'task'"):
        schema.validate(config)


def rejection(demo_config, case) -> str:
    """The validation error for the demo config with one BAD_VALUES case applied."""
    key, value, _, _ = BAD_VALUES[case]
    config = copy.deepcopy(demo_config)
    set_key(config, key, value)
    with pytest.raises(schema.ConfigError) as info:
        schema.validate(config)
    return str(info.value)


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_config_value_is_rejected_naming_the_key_and_the_bound(demo_config, case):
    _, _, named, words = BAD_VALUES[case]
    message = rejection(demo_config, case)
    assert f"{named}:" in message, message
    for word in words:
        assert word in message, message


RANGE_CASES = {"negative_kd_alpha": "between 0 and 1", "teacher_ratio_100": "between 1 and 99",
               "negative_epochs": ">= 1"}


@pytest.mark.parametrize("case", list(RANGE_CASES))
def test_out_of_range_message_names_both_bounds(demo_config, case):
    message = rejection(demo_config, case)
    assert "allowed" in message, message
    assert message.rstrip().endswith(f"; allowed: {RANGE_CASES[case]}"), message
    assert "inf" not in message


def command_line_config(demo_config, *entries: str) -> dict:
    """The demo config with `--config` entries laid over it the way Snakemake does (its own parser and merge)."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    config = copy.deepcopy(demo_config)
    update_config(config, parse_config(list(entries)))
    return config


def test_command_line_strings_are_read_as_the_schema_types(demo_config):
    config = command_line_config(demo_config, "training={epochs: 5, learning_rate: 1e-3}", "seeds=[0, 1]",
                                 "pruning={finetune_epochs: 2, step_fraction: 0.5}",
                                 "datasets={demo: {weekdays_only: true}}")
    assert config["training"]["epochs"] == "5" and config["seeds"] == ["0", "1"]  # what Snakemake hands over
    schema.validate(config)
    assert config["training"]["epochs"] == 5 and config["training"]["learning_rate"] == 1e-3
    assert config["seeds"] == [0, 1]
    assert config["pruning"]["finetune_epochs"] == 2 and config["pruning"]["step_fraction"] == 0.5
    assert config["pruning"]["base_ratios"] == demo_config["pruning"]["base_ratios"]  # merged, not replaced
    assert config["datasets"]["demo"]["weekdays_only"] is True
    assert config["mirror"] == "" and config["device"] == "auto"  # strings stay strings


def test_an_empty_or_null_mirror_means_no_mirror(demo_config, monkeypatch):
    """`--config mirror=""` (the shell hands Snakemake `mirror=`, which it reads as null), `mirror: null` in a
    file and the default `mirror: ""` all name no mirror folder: the raw files come from $KDSTGCN_MIRROR or the
    URLs."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    from_file = copy.deepcopy(demo_config)
    from_file.update(yaml.safe_load("mirror: null"))
    for config in (command_line_config(demo_config, "mirror="), from_file, copy.deepcopy(demo_config)):
        schema.validate(config)
        assert check_mirror(config["mirror"]) is None, config["mirror"]


@pytest.mark.parametrize("entry, named, words", [
    ("training={epochs: five}", "training.epochs", ["'five' is not of type 'integer'", "allowed: >= 1"]),
    ("seeds=[0, x]", "seeds.1", ["'x' is not of type 'integer'", "allowed: >= 0"]),
    ("training={epochs: 0}", "training.epochs", ["0 is less than the minimum of 1", "allowed: >= 1"]),
    ("distillation={kl_temperature: warm}", "distillation.kl_temperature", ["'warm' is not of type 'number'"]),
])
def test_a_wrong_type_from_the_command_line_still_fails_naming_the_key(demo_config, entry, named, words):
    with pytest.raises(schema.ConfigError) as info:
        schema.validate(command_line_config(demo_config, entry))
    message = str(info.value)
    assert f"{named}:" in message, message
    for word in words:
        assert word in message, message


@pytest.mark.slow
@pytest.mark.parametrize("bad, key", [
    ({"distillation": {"hyperparameters": {"PeMSD7": {"skd": {"alpha": -0.3}}}}},
     "distillation.hyperparameters.PeMSD7.skd.alpha"),
    ({"datasets": {"demo": {"split": [4, 1, 1]}}}, "datasets.demo.split"),
], ids=["schema", "cross_key_check"])
def test_bad_config_stops_snakemake_before_any_job(repo_copy, bad, key):
    (repo_copy / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = run_snakemake(repo_copy, ["--cores", "1", "--configfile", "config/demo.yaml", "bad.yaml", "--",
                                       "results/demo/seed0/teacher/metrics.csv"], timeout=120)
    assert result.returncode != 0
    assert key in result.output and "ConfigError" in result.output, result.output[-3000:]
    for folder in ("results", "logs", "benchmarks"):
        assert not (repo_copy / folder).exists(), f"{folder}/ was written before the config was rejected"


# ---------------------------------------------------------------------------------------------------------
# raw data: all-missing and constant stations, disconnected graph
# ---------------------------------------------------------------------------------------------------------

N, STEPS_PER_DAY, SPLIT = 10, 96, (2, 1, 1)
ALL_MISSING, CONSTANT, SIDE_COMPONENT = 2, 5, [8, 9]


@pytest.fixture(scope="module")
def odd_network(tmp_path_factory):
    """A small network with one dead detector, one stuck detector and two stations cut off from the rest."""
    values, distance = generate(n_nodes=N, n_days=sum(SPLIT), steps_per_day=STEPS_PER_DAY, seed=5, area_km=3.0)
    values[:, ALL_MISSING] = 0.0            # never reads (0 = missing)
    values[:, CONSTANT] = 55.0              # stuck at one value
    for k in SIDE_COMPONENT:                # 50 km from everything, 0.4 km from each other
        distance[k, :] = distance[:, k] = 50_000.0
        distance[k, k] = 0.0
    distance[8, 9] = distance[9, 8] = 400.0
    return values, distance, tmp_path_factory.mktemp("odd")


def test_all_missing_and_constant_stations_are_reported_with_their_ids(odd_network, caplog):
    values, _, _ = odd_network
    caplog.set_level(logging.WARNING, logger="kdstgcn")
    table, report = clean(values, timestamps(values.shape[0], STEPS_PER_DAY, "2024-01-01", False))
    assert report["all_missing"].tolist() == [k == ALL_MISSING for k in range(N)]
    assert report["constant"].tolist() == [k == CONSTANT for k in range(N)]
    assert list(table.columns) == [str(k) for k in range(N)]  # both kept
    assert np.isfinite(table.to_numpy()).all()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no reading at all" in w and f"[{ALL_MISSING}]" in w for w in warnings), warnings
    assert any("constant" in w and f"[{CONSTANT}]" in w for w in warnings), warnings


def test_disconnected_graph_is_reported_with_station_ids_and_kept(odd_network, caplog):
    _, distance, _ = odd_network
    caplog.set_level(logging.WARNING, logger="kdstgcn")
    w = gaussian_adjacency(distance, 10.0, 0.5, 1000.0)
    stats = check_graph(w, "odd_distance.csv")
    assert stats["components"] >= 2
    assert set(SIDE_COMPONENT) <= set(stats["outside_largest_ids"])
    assert SIDE_COMPONENT in stats["small_components"]
    json.dumps(stats)  # stats.json stays writable
    warning = next(r.getMessage() for r in caplog.records if "disconnected" in r.getMessage())
    assert "odd_distance.csv" in warning and str(SIDE_COMPONENT) in warning
    cheb = chebyshev_polynomials(w, 3)
    assert cheb.shape == (3, N, N) and bool(cheb.isfinite().all())


def test_odd_stations_are_kept_in_training_and_masked_in_the_metrics(odd_network, tmp_path, caplog, single_thread):
    """The whole job path (clean -> adjacency -> train_run -> evaluate_run): finite metrics over the good stations."""
    values, distance, _ = odd_network
    table, report = clean(values, timestamps(values.shape[0], STEPS_PER_DAY, "2024-01-01", False))
    paths = {k: str(tmp_path / f"{k}.{ext}") for k, ext in
             (("values", "parquet"), ("fill_report", "csv"), ("adjacency", "parquet"))}
    write_table(table, paths["values"], index=True)
    write_table(report, paths["fill_report"])
    w = gaussian_adjacency(distance, 10.0, 0.5, 1000.0)
    write_table(pd.DataFrame(w, columns=[str(k) for k in range(N)]), paths["adjacency"])
    data = DataSpec(STEPS_PER_DAY, SPLIT, n_his=12, n_pred=9)
    run = RunSpec("odd", "teacher", data, TrainSettings(epochs=1, batch_size=50, eval_batch_size=200),
                  LossSpec("task", {}), "cpu", arch=Architecture(N, ((1, 4, 8), (8, 4, 16))))
    caplog.set_level(logging.WARNING, logger="kdstgcn")
    train_run(run, paths["values"], paths["fill_report"], paths["adjacency"], str(tmp_path / "model.pt"),
              str(tmp_path / "history.parquet"), str(tmp_path / "info.json"), str(tmp_path / "ckpt.pt"))
    metrics = evaluate_run(str(tmp_path / "model.pt"), paths["values"], paths["fill_report"], data, [3, 6, 9], 5,
                           "cpu", 200, "PeMSD7", "teacher", str(tmp_path / "m.csv"), str(tmp_path / "m.parquet"),
                           str(tmp_path / "p.npz"))
    assert metrics["ours"].map(math.isfinite).all() and (metrics["ours"] > 0).all()
    left_out = [r.getMessage() for r in caplog.records if "left out of the metrics" in r.getMessage()]
    assert left_out and f"all-missing [{ALL_MISSING}], constant [{CONSTANT}]" in left_out[0], left_out

    # every station is predicted (kept), the metrics are those of the unflagged stations exactly
    with np.load(tmp_path / "p.npz") as z:
        pred, truth = z["prediction"], z["truth"]
    assert pred.shape[-1] == N and np.isfinite(pred).all()
    keep = np.array([k not in (ALL_MISSING, CONSTANT) for k in range(N)])
    prepared = prepare(paths["values"], paths["fill_report"], STEPS_PER_DAY, SPLIT, 12, 9)
    assert prepared.station_mask.numpy().tolist() == keep.tolist()
    mae = metrics[metrics["metric"] == "MAE"].set_index("horizon_min")["ours"]
    expected = horizon_metrics(pred.astype(np.float64), truth.astype(np.float64), [3, 6, 9], 5, keep)
    np.testing.assert_allclose(mae.to_numpy(), expected["MAE"].to_numpy(), rtol=1e-5)


def test_every_station_flagged_stops_with_a_message_instead_of_nan_metrics(tmp_path):
    values = np.zeros((STEPS_PER_DAY * sum(SPLIT), 3))
    values[:, 0] = 40.0
    values[:, 1] = 60.0  # two stuck detectors and a dead one: nothing to score
    table, report = clean(values, timestamps(values.shape[0], STEPS_PER_DAY, "2024-01-01", False))
    write_table(table, tmp_path / "values.parquet", index=True)
    write_table(report, tmp_path / "fill_report.csv")
    with pytest.raises(DataError, match="every station is all-missing or constant") as info:
        prepare(tmp_path / "values.parquet", tmp_path / "fill_report.csv", STEPS_PER_DAY, SPLIT, 12, 9)
    assert "fill_report.csv" in str(info.value)
