"""Where every file of a study lives: one function per kind of path, and the parsers that read a path or a
model name back. Rules, jobs, report and scripts all take their paths from here."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RESULTS = "results"
REFERENCE_MODELS = ("teacher", "pruning_base")
PRUNING_METHODS = ("kd_taylor", "taylor")
HYPERPARAMETER_SOURCES = ("paper", "tuned")

# the {model} wildcard: a reference model, a student, or a pruned model, each optionally a verdict variant
PRUNED_PATTERN = (rf"pruned_(?P<method>{'|'.join(PRUNING_METHODS)})_(?P<base>{'|'.join(REFERENCE_MODELS)})"
                  rf"_(?P<ratio>\d+)")
SOURCE_SUFFIX = rf"(?:_(?P<source>{'|'.join(HYPERPARAMETER_SOURCES)}))?"
MODEL_PATTERN = rf"{'|'.join(REFERENCE_MODELS)}|student_[a-z0-9_]+|{PRUNED_PATTERN}{SOURCE_SUFFIX}"
RUN_DIR = re.compile(rf"{RESULTS}/(?P<dataset>[^/]+)/seed(?P<seed>\d+)/(?P<model>[^/]+)")


def raw_path(dataset: str, name: str) -> str:
    return f"{RESULTS}/{dataset}/raw/{name}"


def prepared(dataset: str) -> dict[str, str]:
    """Cleaned values, fill report and adjacency of a dataset: what every training and evaluation job reads."""
    return {"values": f"{RESULTS}/{dataset}/clean/values.parquet",
            "fill_report": f"{RESULTS}/{dataset}/clean/fill_report.csv",
            "adjacency": f"{RESULTS}/{dataset}/graph/adjacency.parquet"}


def run_dir(dataset: str, seed: int | str, model: str) -> str:
    """Folder of one trained model and its evaluation: results/<dataset>/seed<seed>/<model>."""
    return f"{RESULTS}/{dataset}/seed{seed}/{model}"


def run_file(dataset: str, seed: int | str, model: str, name: str) -> str:
    return f"{run_dir(dataset, seed, model)}/{name}"


@dataclass(frozen=True)
class RunPlace:
    dataset: str
    seed: int
    model: str


def parse_run_path(path: str | Path) -> RunPlace:
    """(dataset, seed, model) of a run folder or of a file inside it."""
    match = RUN_DIR.search(Path(path).as_posix())
    if match is None:
        raise ValueError(f"{path}: not inside a run folder {RESULTS}/<dataset>/seed<seed>/<model>")
    return RunPlace(match["dataset"], int(match["seed"]), match["model"])


@dataclass(frozen=True)
class PrunedName:
    method: str
    base: str
    ratio: int
    source: str | None = None


def pruned_name(method: str, base: str, ratio: int | str) -> str:
    return f"pruned_{method}_{base}_{ratio}"


def parse_pruned(model: str) -> PrunedName | None:
    """The parts of a pruned model's name (None for any other model)."""
    match = re.fullmatch(PRUNED_PATTERN + SOURCE_SUFFIX, model)
    if match is None:
        return None
    return PrunedName(match["method"], match["base"], int(match["ratio"]), match["source"])


def variant_name(model: str, source: str) -> str:
    """A student or pruned model trained with the other hyper-parameter source, for the verdict only."""
    return f"{model}_{source}"


def tuned_path(dataset: str, study: str) -> str:
    """Best values of one tuning study (a loss, or a pruned model's name)."""
    return f"{RESULTS}/{dataset}/tuned/{study}.yaml"


def tuning_journal(dataset: str, study: str) -> str:
    """The Optuna journal of one study, beside its results (not a Snakemake output: reruns continue it)."""
    return f"{RESULTS}/{dataset}/tuned/{study}.journal"


def table_path(number: int | str, ext: str) -> str:
    return f"{RESULTS}/table{number}.{ext}"


def figure_path(name: str) -> str:
    return f"{RESULTS}/figures/{name}.png"
