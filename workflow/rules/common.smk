import re
import sys
from pathlib import Path

# the workflow's own Python imports the package of this checkout (scripts/use_checkout.py does it for the jobs)
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from kdstgcn.config import core as cfg
from kdstgcn.runtime import console
from kdstgcn.data import download
from kdstgcn.report import core as paper_report
console.quiet_snakemake(workflow)
cfg.validate(config, workflow.source_path("../schemas/config.schema.yaml"))
MIRROR = download.check_mirror(config["mirror"])

RAW_NAMES = sorted({n for d in config["datasets"] for n in cfg.raw_files(config, d)})
REFERENCE_MODELS = ["teacher", "pruning_base"]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    seed=r"\d+",
    filename="|".join(re.escape(n) for n in RAW_NAMES) or "(?!)",
    loss="|".join(config["distillation"]["losses"]),
    model=r"teacher|pruning_base|student_[a-z0-9_]+|pruned_(kd_taylor|taylor)_(teacher|pruning_base)_\d+(_paper|_tuned)?",
    method="kd_taylor|taylor",
    base="teacher|pruning_base",
    ratio=r"\d+",
    source="|".join(cfg.HYPERPARAMETER_SOURCES),


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


def hyperparameter_source(wildcards, section):
    """Where a run's values come from: its {source} wildcard (a verdict variant), else the section's setting."""
    return wildcards.get("source", config[section]["hyperparameter_source"])


def student_inputs(wildcards):
    """A student reads the prepared data, when its loss distils the teacher of the same seed, and when its values
    are tuned its loss's tuning result."""
    inputs = prepared_inputs(wildcards)
    if wildcards.loss != "task":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, 'teacher')}/model.pt"
    if hyperparameter_source(wildcards, "distillation") == "tuned":
        inputs["tuned"] = cfg.tuned_path(wildcards.dataset, wildcards.loss)
    return inputs


def tune_inputs(wildcards):
    """A tuning worker reads the prepared data and, when its loss distils, the teacher of the tuning seed."""
    inputs = prepared_inputs(wildcards)
    if wildcards.loss != "task":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, config['tuning']['seed'], 'teacher')}/model.pt"
    return inputs


def tune_prune_inputs(wildcards):
    """A pruning study's worker reads the base model of the tuning seed (and, for Algorithm 1, its teacher)."""
    inputs = prepared_inputs(wildcards)
    seed = config["tuning"]["seed"]
    inputs["base"] = f"{cfg.run_dir(wildcards.dataset, seed, wildcards.base)}/model.pt"
    if wildcards.method == "kd_taylor":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, seed, 'teacher')}/model.pt"
    return inputs


def prune_loss(wildcards):
    """The loss a pruning run's importance and fine-tuning use (its spec says): its tuning space follows it."""
    run = cfg.prune_tuning_run(config, wildcards.dataset, wildcards.method, wildcards.base, int(wildcards.ratio))
    return run["loss"]["name"]


def tune_worker_outputs(dataset, study):
    return [f"results/{dataset}/tuned/workers/{study}_{i}.json" for i in range(config["tuning"]["workers"])]


def prune_inputs(wildcards):
    """A pruning run reads the trained base model and, for Algorithm 1, the teacher as KD source."""
    inputs = prepared_inputs(wildcards)
    inputs["base"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, wildcards.base)}/model.pt"
    if wildcards.method == "kd_taylor":
        inputs["teacher"] = f"{cfg.run_dir(wildcards.dataset, wildcards.seed, 'teacher')}/model.pt"
    if hyperparameter_source(wildcards, "pruning") == "tuned":
        name = cfg.pruned_name(wildcards.method, wildcards.base, wildcards.ratio)
        inputs["tuned"] = cfg.tuned_path(wildcards.dataset, name)
    return inputs


def metric_table_inputs(rows):
    return [
        f"{cfg.run_dir(d, s, r.model)}/metrics.csv"
        for d in config["run_datasets"]
        for s in seeds()
        for r in rows
    ]


def student_info_inputs(models):
    return [
        f"{cfg.run_dir(d, s, m)}/info.json"
        for d in config["run_datasets"]
        for s in seeds()
        for m in models
    ]


def figure3_models():
    return ["teacher"] + [f"student_{loss}" for loss in config["distillation"]["losses"]]


def figure4_models():
    pruned = cfg.pruned_name("kd_taylor", "teacher", config["pruning"]["teacher_ratio"])
    return ["teacher", "student_task", "student_stcd", pruned]


def figure5_models():
    return [r.model for r in paper_report.pruning_rows(8, config)]


def cost_models():
    """Table 1 models: teacher, pruning base, the fixed student and every pruned model of Tables 7-8."""
    pruned = [r.model for n in (7, 8) for r in paper_report.pruning_rows(n, config) if r.model.startswith("pruned_")]
    return ["teacher", "pruning_base", "student_task"] + pruned


def tsne_pairs():
    """(student, reference) pairs of the t-SNE plots: KD students vs teacher, pruned models vs their base."""
    pr = config["pruning"]
    pairs = [(f"student_{loss}", "teacher") for loss in ("task", "stcd") if loss in config["distillation"]["losses"]]
    pairs.append((cfg.pruned_name("kd_taylor", "teacher", pr["teacher_ratio"]), "teacher"))
    pairs += [(cfg.pruned_name(m, "pruning_base", max(pr["base_ratios"])), "pruning_base") for m in pr["methods"]]
    return pairs


def anatomy_runs():
    """(loss, seed) of every distilled student, whose histories the loss anatomy figure reads."""
    return [(loss, s) for loss in config["distillation"]["losses"] if loss != "task" for s in seeds()]


def verdict_models():
    """(claimed better, other) model of every verdict claim, each trained with the paper's and the tuned values."""
    return [(c.better, c.worse) for c in paper_report.verdict_claims(config)]


def verdict_inputs(wildcards):
    """Metrics of every verdict model, both sources, all seeds; histories of the models claimed better."""
    runs = [
        (d, s, cfg.sourced_model(config, m, source), m == better)
        for d in config["run_datasets"]
        for s in seeds()
        for better, worse in verdict_models()
        for m in (better, worse)
        for source in cfg.HYPERPARAMETER_SOURCES
    ]
    metrics = sorted({f"{cfg.run_dir(d, s, m)}/metrics.csv" for d, s, m, _ in runs})
    histories = sorted({f"{cfg.run_dir(d, s, m)}/history.parquet" for d, s, m, better in runs if better})
    return {"metrics": metrics, "histories": histories}


def all_outputs():
    tables = [f"results/table{n}.{ext}" for n in range(1, 10) for ext in ("csv", "parquet", "html")]
    figures = expand("results/figures/figure{n}_{dataset}.png", n=(3, 4, 5), dataset=config["run_datasets"])
    tsne = [
        f"results/figures/tsne_{d}_{s}_vs_{r}.png" for d in config["run_datasets"] for s, r in tsne_pairs()
    ]
    anatomy = expand("results/figures/anatomy_{dataset}.png", dataset=config["run_datasets"])
    verdict = ["results/verdict.csv", "results/verdict.parquet"]
    return tables + figures + tsne + anatomy + verdict + ["results/summary.md", "results/summary.html"]


def check_raw_sources():
    """Before the first job (not in a dry run): every raw file a download job of this run needs must be in the
    mirror or at a URL that answers; else one message names them all and the run stops with nothing written."""
    needed = {
        job.output[0]: cfg.raw_files(config, job.wildcards.dataset)[job.wildcards.filename]["urls"]
        for job in workflow.dag.needrun_jobs()
        if job.rule.name == "download"
    }
    missing = download.unavailable_files(needed, MIRROR)
    if missing:
        raise download.DownloadError(download.missing_files_message(missing))
