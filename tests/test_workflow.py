"""The Snakemake workflow end to end, each run in a fresh copy of the repository (no results, no locks shared
with the working tree): dry run of `all`, the demo (and its console: under 200 lines), the offline failure, and
the real PEMS08 data rules."""
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import job_stats, planned_wildcards, run_snakemake, shared_data_dir

pytestmark = pytest.mark.slow

RAW_NAME = "pems08_288_62_170.mat"


def test_dry_run_of_all_plans_both_teachers(repo_copy):
    result = run_snakemake(repo_copy, ["-n", "all", "--cores", "2"], timeout=120)
    assert result.returncode == 0, result.output[-4000:]
    stats = job_stats(result.output)
    assert stats.get("all") == 1, stats
    teachers = [j for j in planned_wildcards(result.output, "train") if j["model"] == "teacher"]
    assert sorted(j["dataset"] for j in teachers) == ["pemsd7m", "pemsd8"], teachers
    assert all(j["seed"] == "0" for j in teachers)
    assert not (repo_copy / "results").exists()  # a dry run writes nothing


def demo_epochs(repo) -> int:
    for name in ("config/demo.yaml", "config/config.yaml"):
        epochs = (yaml.safe_load((repo / name).read_text()).get("training") or {}).get("epochs")
        if epochs:
            return int(epochs)
    raise AssertionError("no training.epochs in the configs")


def test_demo_trains_and_evaluates_a_teacher(repo_copy):
    target = "results/demo/seed0/teacher/metrics.csv"
    result = run_snakemake(repo_copy, [target, "--cores", "2", "--configfile", "config/demo.yaml"],
                           mirror=shared_data_dir(), timeout=300)
    assert result.returncode == 0, result.output[-4000:]

    metrics = pd.read_csv(repo_copy / target)
    assert len(metrics) == 9
    assert sorted(metrics["horizon_min"].unique().tolist()) == [15, 30, 45]
    assert sorted(metrics["metric"].unique().tolist()) == ["MAE", "MAPE", "RMSE"]
    assert metrics.groupby(["horizon_min", "metric"]).size().eq(1).all()
    assert metrics["ours"].map(math.isfinite).all() and (metrics["ours"] > 0).all()
    assert metrics["paper"].notna().all()  # the demo is compared with the PeMSD7 teacher row of Table 2
    mae = metrics[metrics["metric"] == "MAE"].set_index("horizon_min")["ours"]
    assert mae[15] < 10 and mae[15] <= mae[45]  # synthetic speeds in mph: sane, and error grows with horizon

    epochs = demo_epochs(repo_copy)
    history = pd.read_parquet(repo_copy / "results/demo/seed0/teacher/history.parquet")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    assert history["train_loss"].map(math.isfinite).all()
    assert (repo_copy / "results/demo/seed0/teacher/checkpoint.pt").exists()  # kept: a larger budget continues it

    log = (repo_copy / "logs/train/demo/seed0/teacher.log").read_text()
    assert len(re.findall(rf"epoch \d+/{epochs} ", log)) == epochs
    console = result.output.splitlines()
    assert len(console) < 200, f"{len(console)} console lines:\n{result.output[-4000:]}"
    finished = re.findall(r"^\S+ \d+ of \d+ steps \(\d+%\) done: ", result.output, re.M)
    assert len(finished) == sum(job_stats(result.output).values())  # one line per job
    assert len(re.findall(rf"train/demo/seed0/teacher: epoch \d+/{epochs} .* ETA ", result.output)) == epochs
    assert "Shell command" not in result.output and "localrule" not in result.output  # no per-job blocks
    stats = json.loads((repo_copy / "results/demo/graph/stats.json").read_text())
    demo_nodes = yaml.safe_load((repo_copy / "config/demo.yaml").read_text())["datasets"]["demo"]["n_nodes"]
    assert stats["nodes"] == demo_nodes and stats["undirected_edges"] > 0


def test_offline_without_mirror_fails_fast_and_says_how_to_supply_the_file(repo_copy):
    (repo_copy / "offline.yaml").write_text('run_datasets: [pemsd8_flow]\nmirror: ""\n')
    result = run_snakemake(repo_copy, ["results/pemsd8_flow/seed0/teacher/metrics.csv", "--cores", "1",
                                       "--configfile", "offline.yaml", "--keep-going"], mirror=None, timeout=180)
    assert result.returncode != 0
    assert result.seconds < 60, f"the offline failure took {result.seconds:.0f} s"
    text = result.output + "".join(p.read_text() for p in (repo_copy / "logs").rglob("*.log"))
    assert RAW_NAME in text
    assert "`mirror`" in text and "KDSTGCN_MIRROR" in text
    raw = repo_copy / "results/pemsd8_flow/raw"
    assert not raw.exists() or not any(raw.iterdir()), sorted(p.name for p in raw.iterdir())


def test_pems08_flow_data_rules_with_the_mirror(repo_copy, shared_data):
    targets = ["results/pemsd8_flow/graph/stats.json", "results/pemsd8_flow/clean/values.parquet"]
    result = run_snakemake(repo_copy, [*targets, "--cores", "2", "--config", f"mirror={shared_data}"],
                           mirror=None, timeout=240)
    assert result.returncode == 0, result.output[-4000:]
    stats = json.loads((repo_copy / targets[0]).read_text())
    assert stats["nodes"] == 170
    assert stats["undirected_edges"] == 273
    assert stats["isolated_nodes"] == 0
    values = pd.read_parquet(repo_copy / targets[1])
    assert values.shape == (17856, 170)
    assert np.isfinite(values.to_numpy()).all() and (values.to_numpy() > 0).all()
    np.testing.assert_array_equal(values.iloc[0, :4].to_numpy(), [133, 210, 124, 145])
    report = pd.read_csv(repo_copy / "results/pemsd8_flow/clean/fill_report.csv")
    assert report["missing"].sum() == 10_560 and (report["missing"] > 0).sum() == 50
