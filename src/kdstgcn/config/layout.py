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

LOGS = "logs"
BENCHMARKS = "benchmarks"

# model names: a reference model, a student, or a pruned model, students and pruned models optionally a verdict
# variant (_paper, _tuned); the named groups are the parts the parsers below read
PRUNED_PATTERN = (rf"pruned_(?P<method>{'|'.join(PRUNING_METHODS)})_(?P<base>{'|'.join(REFERENCE_MODELS)})"
                  rf"_(?P<ratio>\d+)")
SOURCE_SUFFIX = rf"(?:_(?P<source>{'|'.join(HYPERPARAMETER_SOURCES)}))?"
STUDENT_PATTERN = rf"student_(?P<loss>[a-z0-9_]+?){SOURCE_SUFFIX}"
DEPLOYABLE_PATTERN = r"deploy_(?P<entry>[a-z0-9_]+)"  # a model of the `deployable` section (beyond the paper)


def unnamed(pattern: str) -> str:
    """A pattern with its named groups made plain groups: Snakemake reads every named group of a wildcard's
    constraint as a wildcard of its own, so the wildcard patterns below have none."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


# the wildcard patterns: {model} of the train rule, of the prune rule, of any run (evaluate); {study} of the
# tuning rules for a pruned model or a deployable one (a loss's study is the loss's name)
TRAINED_PATTERN = unnamed(rf"{'|'.join(REFERENCE_MODELS)}|{STUDENT_PATTERN}|{DEPLOYABLE_PATTERN}")
PRUNED_MODEL_PATTERN = unnamed(PRUNED_PATTERN + SOURCE_SUFFIX)
MODEL_PATTERN = f"{TRAINED_PATTERN}|{PRUNED_MODEL_PATTERN}"
PRUNED_STUDY_PATTERN = unnamed(PRUNED_PATTERN)
DEPLOYABLE_STUDY_PATTERN = unnamed(DEPLOYABLE_PATTERN)
RUN_DIR = re.compile(rf"{RESULTS}/(?P<dataset>[^/]+)/seed(?P<seed>\d+)/(?P<model>[^/]+)")


def raw_path(dataset: str, name: str) -> str:
    return f"{RESULTS}/{dataset}/raw/{name}"


def clean_path(dataset: str, name: str) -> str:
    """A file of a dataset's cleaned values (values.parquet, fill_report.csv / .parquet)."""
    return f"{RESULTS}/{dataset}/clean/{name}"


def graph_path(dataset: str, name: str) -> str:
    """A file of a dataset's sensor graph (adjacency.parquet, stats.json)."""
    return f"{RESULTS}/{dataset}/graph/{name}"


def prepared(dataset: str) -> dict[str, str]:
    """Cleaned values, fill report and adjacency of a dataset: what every training and evaluation job reads."""
    return {"values": clean_path(dataset, "values.parquet"),
            "fill_report": clean_path(dataset, "fill_report.csv"),
            "adjacency": graph_path(dataset, "adjacency.parquet")}


def run_dir(dataset: str, seed: int | str, model: str) -> str:
    """Folder of one trained model and its evaluation: results/<dataset>/seed<seed>/<model>."""
    return f"{RESULTS}/{dataset}/seed{seed}/{model}"


def run_file(dataset: str, seed: int | str, model: str, name: str) -> str:
    return f"{run_dir(dataset, seed, model)}/{name}"


# the deployable form of a run, in its folder: the ONNX files (one step, streaming start, streaming step) and the
# model card that says how to feed them
CARD = "card"
DEPLOY_FILES = {"model": "model.onnx", "start": "start.onnx", "stream": "stream.onnx", CARD: "model_card.json"}


def deploy_files(dataset: str, seed: int | str, model: str) -> dict[str, str]:
    """The exported files of one run (model, start, stream, card -> path)."""
    return {part: run_file(dataset, seed, model, name) for part, name in DEPLOY_FILES.items()}


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


@dataclass(frozen=True)
class StudentName:
    loss: str
    source: str | None = None


def student_name(loss: str) -> str:
    return f"student_{loss}"


def parse_student(model: str) -> StudentName | None:
    """The loss (and verdict source) of a student's name (None for any other model)."""
    match = re.fullmatch(STUDENT_PATTERN, model)
    if match is None:
        return None
    return StudentName(match["loss"], match["source"])


def deployable_name(entry: str) -> str:
    """The run name of the `deployable` section's entry `entry`."""
    return f"deploy_{entry}"


def parse_deployable(model: str) -> str | None:
    """The `deployable` entry a model's name runs (None for any other model)."""
    match = re.fullmatch(DEPLOYABLE_PATTERN, model)
    return None if match is None else match["entry"]


def variant_name(model: str, source: str) -> str:
    """A student or pruned model trained with the other hyper-parameter source, for the verdict only."""
    return f"{model}_{source}"


def tuned_path(dataset: str, study: str) -> str:
    """Best values of one tuning study (a loss, or a pruned or deployable model's name)."""
    return f"{RESULTS}/{dataset}/tuned/{study}.yaml"


def tuning_journal(dataset: str, study: str) -> str:
    """The Optuna journal of one study, beside its results (not a Snakemake output: reruns continue it)."""
    return f"{RESULTS}/{dataset}/tuned/{study}.journal"


def tuning_trials(dataset: str, study: str) -> str:
    """Every trial of one tuning study, with its values and validation MAE."""
    return f"{RESULTS}/{dataset}/tuned/{study}_trials.parquet"


def tuning_worker_file(dataset: str, study: str, worker: int | str) -> str:
    """What one tuning worker of a study did (the name of the study in the journal, the trials it started, its
    time)."""
    return f"{RESULTS}/{dataset}/tuned/workers/{study}_{worker}.json"


def job_log(rule: str, *parts: str) -> str:
    """Log file of one job: logs/<rule>/<parts...>.log (the console names a job by it)."""
    return "/".join((LOGS, rule, *parts)) + ".log"


def job_benchmark(rule: str, *parts: str) -> str:
    """Benchmark (time and memory) file of one job: benchmarks/<rule>/<parts...>.tsv."""
    return "/".join((BENCHMARKS, rule, *parts)) + ".tsv"


def table_path(number: int | str, ext: str) -> str:
    return f"{RESULTS}/table{number}.{ext}"


def figure_path(name: str) -> str:
    return f"{RESULTS}/figures/{name}.png"


def verdict_path(ext: str) -> str:
    """The verdict table: each of the paper's central claims under its and the tuned hyper-parameters."""
    return f"{RESULTS}/verdict.{ext}"


def verdict_figure_path() -> str:
    """The verdict's figure: each claim's effect per horizon, paper and tuned values, beside the published one."""
    return figure_path("verdict")


def deployable_path(ext: str) -> str:
    """The deployable models beside the teacher and the paper's students (csv, parquet), or their figure (png)."""
    return figure_path("deployable") if ext == "png" else f"{RESULTS}/deployable.{ext}"


def summary_path(ext: str) -> str:
    """The summary page (md, html): each claim of the paper against this study's numbers."""
    return f"{RESULTS}/summary.{ext}"


def costs_path(dataset: str) -> str:
    """Parameters, FLOPs and test time of a dataset's Table 1 models, as measured."""
    return f"{RESULTS}/{dataset}/costs.parquet"


def anatomy_path(dataset: str) -> str:
    """The loss anatomy of a dataset's distilled students (the table beside its figure)."""
    return f"{RESULTS}/anatomy_{dataset}.csv"
