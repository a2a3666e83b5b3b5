import os
import re
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir).parent / "src")
# the entry points in scripts/ import the package from the checkout, also under --sdm conda and on a cluster
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)

from kdstgcn import config as cfg

cfg.validate(config, workflow.source_path("../schemas/config.schema.yaml"))

RAW_NAMES = sorted({n for d in config["datasets"] for n in cfg.raw_files(config, d)})
REFERENCE_MODELS = ["teacher", "pruning_base"]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    seed=r"\d+",
    filename="|".join(re.escape(n) for n in RAW_NAMES) or "(?!)",
    model=r"teacher|pruning_base",


def seeds():
    return [int(s) for s in config["seeds"]]


def raw_path(dataset, name):
    return f"results/{dataset}/raw/{name}"


def prepared_inputs(wildcards):
    """Cleaned values, fill report and adjacency of a dataset: what every training and evaluation job reads."""
    d = wildcards.dataset
    return {
        "values": f"results/{d}/clean/values.parquet",
        "fill_report": f"results/{d}/clean/fill_report.csv",
        "adjacency": f"results/{d}/graph/adjacency.parquet",
    }


def run_dir(dataset, seed, model):
    return f"results/{dataset}/seed{seed}/{model}"


def all_outputs():
    return expand(
        "results/{dataset}/seed{seed}/{model}/metrics.csv",
        dataset=config["run_datasets"],
        seed=seeds(),
        model=["teacher"],
    )
