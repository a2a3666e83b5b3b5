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
    method="kd_taylor|taylor",
    base="teacher|pruning_base",
    ratio=r"\d+",


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


def prune_inputs(wildcards):
    """A pruning run reads the trained base model and, for Algorithm 1, the teacher as KD source."""
    inputs = prepared_inputs(wildcards)
    inputs["base"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, wildcards.base)}/model.pt"
    if wildcards.method == "kd_taylor":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, 'teacher')}/model.pt"
    return inputs


def tsne_pairs():
    """(student, reference) pairs of the t-SNE plots: KD students vs teacher, pruned models vs their base."""
    pr = config["pruning"]
    pairs = [(f"student_{loss}", "teacher") for loss in ("task", "stcd") if loss in config["distillation"]["losses"]]
    pairs.append((cfg.pruned_name("kd_taylor", "teacher", pr["teacher_ratio"]), "teacher"))
    pairs += [(cfg.pruned_name(m, "pruning_base", max(pr["base_ratios"])), "pruning_base") for m in pr["methods"]]
    return pairs


def all_outputs():
    tables = [f"results/table{n}.{ext}" for n in (2, 3, 4, 5, 6, 7, 8, 9) for ext in ("csv", "parquet")]
    figures = expand("results/figures/figure{n}_{dataset}.png", n=(3, 4, 5), dataset=config["run_datasets"])
    tsne = [
        f"results/figures/tsne_{d}_{s}_vs_{r}.png" for d in config["run_datasets"] for s, r in tsne_pairs()
    ]
    return tables + figures + tsne
