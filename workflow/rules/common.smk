import os
import re
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir).parent / "src")
# the entry points in scripts/ import the package from the checkout, also under --sdm conda and on a cluster
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)

from kdstgcn import config as cfg
from kdstgcn import report as paper_report

cfg.validate(config, workflow.source_path("../schemas/config.schema.yaml"))

RAW_NAMES = sorted({n for d in config["datasets"] for n in cfg.raw_files(config, d)})
REFERENCE_MODELS = ["teacher", "pruning_base"]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    seed=r"\d+",
    filename="|".join(re.escape(n) for n in RAW_NAMES) or "(?!)",
    loss="|".join(config["distillation"]["losses"]),
    model=r"teacher|pruning_base|student_[a-z0-9_]+|pruned_(kd_taylor|taylor)_(teacher|pruning_base)_\d+",


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


def student_inputs(wildcards):
    """A student reads the prepared data and, when its loss distils, the teacher of the same seed."""
    inputs = prepared_inputs(wildcards)
    if wildcards.loss != "task":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, 'teacher')}/model.pt"
    return inputs


def all_outputs():
    tables = [f"results/table{n}.{ext}" for n in (2, 3, 4, 5, 6) for ext in ("csv", "parquet")]
    figures = expand("results/figures/figure3_{dataset}.png", dataset=config["run_datasets"])
    tsne = expand(
        "results/figures/tsne_{dataset}_{student}_vs_teacher.png",
        dataset=config["run_datasets"],
        student=[f"student_{loss}" for loss in ("task", "stcd") if loss in config["distillation"]["losses"]],
    )
    return tables + figures + tsne
