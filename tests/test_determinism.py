"""Determinism: the same seed and configuration on CPU give bit-identical metrics, predictions, weights and
training history in two independent runs (separate processes, different hash seeds) on the demo data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.data.clean import clean, timestamps
from kdstgcn.data.graph import gaussian_adjacency
from kdstgcn.runtime.io import write_table
from kdstgcn.model.persist import load_model
from kdstgcn.data.synthetic import generate

THREADS = 1  # one per run: the two runs go side by side, and more threads than cores slow torch badly
TIMING = ("train_seconds", "epoch_seconds")

# one run of the teacher rule and the evaluate rule, as scripts/train.py and scripts/evaluate.py do them
JOB = """
import json, sys
from kdstgcn.config.runspec import RunSpec
from kdstgcn.jobs.evaluate import evaluate_run
from kdstgcn.jobs.train import train_run
from kdstgcn.runtime.runner import logged
spec = json.loads(sys.argv[1])
out, run = spec["out"], RunSpec.from_dict(spec["run"])
with logged(out + "/job.log", spec["threads"]):
    train_run(run, spec["values"], spec["fill_report"], spec["adjacency"], out + "/model.pt",
              out + "/history.parquet", out + "/info.json", out + "/checkpoint.pt")
    evaluate_run(out + "/model.pt", spec["values"], spec["fill_report"], run.data, [3, 6, 9], 5, run.device, 1140,
                 "PeMSD7", "teacher", out + "/metrics.csv", out + "/metrics.parquet", out + "/predictions.npz")
"""


def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    config["device"] = "cpu"
    config["training"]["epochs"] = 1
    schema.validate(config)
    return config


def write_demo_data(config: dict, folder) -> dict:
    """The demo network as the synthesize, clean and adjacency rules write it."""
    ds = config["datasets"]["demo"]
    syn = ds["synthetic"]
    values, distance = generate(n_nodes=ds["n_nodes"], n_days=syn["days"], steps_per_day=ds["steps_per_day"],
                                seed=syn["seed"], area_km=syn.get("area_km", 8.0),
                                missing_pct=syn.get("missing_pct", 2.0))
    table, report = clean(values, timestamps(values.shape[0], ds["steps_per_day"], ds["start"], ds["weekdays_only"]))
    w = gaussian_adjacency(distance, ds["sigma2"], ds["epsilon"], 1000.0)
    paths = {"values": str(folder / "values.parquet"), "fill_report": str(folder / "fill_report.csv"),
             "adjacency": str(folder / "adjacency.parquet")}
    write_table(table, paths["values"], index=True)
    write_table(report, paths["fill_report"])
    write_table(pd.DataFrame(w, columns=[str(i) for i in range(w.shape[0])]), paths["adjacency"])
    return paths


@pytest.mark.slow
def test_same_seed_and_config_on_cpu_give_bit_identical_results(tmp_path):
    config = demo_config()
    paths = write_demo_data(config, tmp_path)
    run = runspec.reference_run(config, "demo", "teacher", config["seeds"][0]).to_dict()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS=str(THREADS))
    procs = []
    for name, hash_seed in (("a", "1"), ("b", "2")):
        (tmp_path / name).mkdir()
        spec = {**paths, "run": run, "out": str(tmp_path / name), "threads": THREADS}
        procs.append(subprocess.Popen([sys.executable, "-c", JOB, json.dumps(spec)], cwd=tmp_path,
                                      env={**env, "PYTHONHASHSEED": hash_seed}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-4000:]

    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    metrics = pd.read_csv(a / "metrics.csv")
    assert np.isfinite(metrics["ours"]).all() and len(metrics) == 9
    with np.load(a / "predictions.npz") as za, np.load(b / "predictions.npz") as zb:
        assert np.array_equal(za["prediction"], zb["prediction"]) and np.array_equal(za["truth"], zb["truth"])
    state_a, state_b = load_model(a / "model.pt")[0].state_dict(), load_model(b / "model.pt")[0].state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    history_a = pd.read_parquet(a / "history.parquet").drop(columns=list(TIMING))
    pd.testing.assert_frame_equal(history_a, pd.read_parquet(b / "history.parquet").drop(columns=list(TIMING)),
                                  check_exact=True)
