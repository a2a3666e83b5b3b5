# What every .smk file shares: the package of this checkout, the checked config, the wildcards, the conda
# env, and the input and run-spec functions of the rules. Every path comes from kdstgcn.config.layout.
import re
import sys
from pathlib import Path

# the workflow's own Python imports the package of this checkout (scripts/use_checkout.py does it for the jobs)
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from dataclasses import replace

from kdstgcn.config import datasets, layout, runspec, schema, tuned
from kdstgcn.runtime import console
from kdstgcn.data import download
from kdstgcn.jobs import memory
from kdstgcn.losses.registry import loss_info

console.quiet_snakemake(workflow)
schema.validate(config)
MIRROR = download.check_mirror(config["mirror"])

# every rule runs in this environment under --sdm conda (the path is relative to the rule files)
CONDA_ENV = "../../envs/kdstgcn.yaml"

RAW_NAMES = sorted({n for d in config["datasets"] for n in datasets.raw_files(config, d)})
LOSSES = config["distillation"]["losses"]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    seed=r"\d+",
    filename="|".join(re.escape(n) for n in RAW_NAMES) or "(?!)",
    model=layout.MODEL_PATTERN,
    study="|".join(LOSSES + [layout.PRUNED_STUDY_PATTERN, layout.DEPLOYABLE_STUDY_PATTERN]),
    worker=r"\d+",


def seeds():
    return [int(s) for s in config["seeds"]]


def prepared_inputs(wildcards):
    """Cleaned values, fill report and adjacency of a dataset: what every training and evaluation job reads."""
    return layout.prepared(wildcards.dataset)


def model_file(dataset, seed, model):
    return layout.run_file(dataset, seed, model, "model.pt")


def hyperparameter_source(name, section):
    """Where a run's values come from: its name's source suffix (a verdict variant), else the section's setting."""
    return name.source or config[section]["hyperparameter_source"]


# --- training: the teacher, the pruning base and every student (rule train)


def tuned_study(wildcards):
    """The tuning study whose values a trained model takes (None: the paper's): its loss's for a student with tuned
    values; for a deployable model its own with `values: tuned`, its loss's student's with `values: student_tuned`."""
    student = layout.parse_student(wildcards.model)
    if student is not None:
        return student.loss if hyperparameter_source(student, "distillation") == "tuned" else None
    entry = layout.parse_deployable(wildcards.model)
    if entry is None:
        return None
    spec = config["deployable"]["models"][entry]
    return {"paper": None, "tuned": wildcards.model, "student_tuned": spec["loss"]}[spec.get("values", "paper")]


def train_inputs(wildcards):
    """The prepared data; the teacher of its seed where the run's loss distils (a student's, a deployable model's),
    and the result of its tuning study where its values are tuned (`tuned_study`)."""
    inputs = prepared_inputs(wildcards)
    if loss_info(train_run(wildcards).loss.name).uses_teacher:
        inputs["teacher"] = model_file(wildcards.dataset, wildcards.seed, "teacher")
    study = tuned_study(wildcards)
    if study is not None:
        inputs["tuned"] = layout.tuned_path(wildcards.dataset, study)
    return inputs


def train_run(wildcards):
    """Run spec of a reference model (task loss alone), of a student (its loss, Table 6's values) or of a deployable
    model (its entry)."""
    entry = layout.parse_deployable(wildcards.model)
    if entry is not None:
        return runspec.deployable_run(config, wildcards.dataset, entry, wildcards.seed)
    student = layout.parse_student(wildcards.model)
    if student is None:
        return runspec.reference_run(config, wildcards.dataset, wildcards.model, wildcards.seed)
    return runspec.student_run(config, wildcards.dataset, student.loss, wildcards.seed, role=wildcards.model)


# --- pruning: Algorithm 1 and the baseline on a trained model (rule prune)


def prune_inputs(wildcards):
    """The prepared data and the base model; for Algorithm 1 also the teacher (its KD source); when the values
    are tuned the pruned model's tuning result."""
    pruned = layout.parse_pruned(wildcards.model)
    inputs = prepared_inputs(wildcards)
    inputs["base"] = model_file(wildcards.dataset, wildcards.seed, pruned.base)
    if pruned.method == "kd_taylor":
        inputs["teacher"] = model_file(wildcards.dataset, wildcards.seed, "teacher")
    if hyperparameter_source(pruned, "pruning") == "tuned":
        name = layout.pruned_name(pruned.method, pruned.base, pruned.ratio)
        inputs["tuned"] = layout.tuned_path(wildcards.dataset, name)
    return inputs


def prune_run(wildcards):
    """Run spec of a pruning run (Table 9's values)."""
    pruned = layout.parse_pruned(wildcards.model)
    return runspec.prune_run(config, wildcards.dataset, pruned.method, pruned.base, pruned.ratio, wildcards.seed,
                             role=wildcards.model)


# --- memory: each job's mem_mb, its estimate (kdstgcn.jobs.memory) from the config before anything is computed


def planned_run(run, tuned):
    """A run spec as far as the plan knows it: where its values are `tuned` (not known until the study has run),
    the batch size the study may choose that needs most memory."""
    if not tuned:
        return run
    largest = max(config["tuning"]["space"]["batch_size"]["choices"])
    return replace(run, train=replace(run.train, batch_size=max(largest, run.train.batch_size)))


def planned_architecture(wildcards, role):
    """The architecture the config gives a role (teacher, pruning_base, student)."""
    return runspec.architecture(config, wildcards.dataset, role)


def train_mem_mb(wildcards):
    """mem_mb of a training job: the run's estimate, with the teacher where its loss reads one."""
    run = planned_run(train_run(wildcards), tuned_study(wildcards) is not None)
    teacher = planned_architecture(wildcards, "teacher") if loss_info(run.loss.name).uses_teacher else None
    return memory.planned_mem_mb(memory.train_estimate(run, teacher, "cpu"), config["device"])


def prune_mem_mb(wildcards):
    """mem_mb of a pruning job: the run's estimate on its base, with the teacher for Algorithm 1."""
    pruned = layout.parse_pruned(wildcards.model)
    teacher = planned_architecture(wildcards, "teacher") if pruned.method == "kd_taylor" else None
    run = planned_run(prune_run(wildcards), hyperparameter_source(pruned, "pruning") == "tuned")
    estimate = memory.prune_estimate(run, planned_architecture(wildcards, pruned.base), teacher, "cpu")
    return memory.planned_mem_mb(estimate, config["device"])


def model_architecture(wildcards):
    """The architecture of a model by its name: a student's, a reference model's, a deployable model's, or for a
    pruned model its base's (which it is at most)."""
    pruned = layout.parse_pruned(wildcards.model)
    if pruned is not None:
        return planned_architecture(wildcards, pruned.base)
    entry = layout.parse_deployable(wildcards.model)
    if entry is not None:
        return planned_architecture(wildcards, config["deployable"]["models"][entry]["architecture"])
    return planned_architecture(wildcards, "student" if layout.parse_student(wildcards.model) else wildcards.model)


def evaluate_mem_mb(wildcards):
    """mem_mb of an evaluation job."""
    estimate = memory.evaluate_estimate(model_architecture(wildcards), run_data(wildcards), config["model"]["horizons"],
                                        config["training"]["eval_batch_size"], "cpu")
    return memory.planned_mem_mb(estimate, config["device"])


def export_mem_mb(wildcards):
    """mem_mb of an export job (on the CPU)."""
    return memory.planned_mem_mb(memory.export_estimate(model_architecture(wildcards), run_data(wildcards)), "cpu")


def run_data(wildcards):
    """How the dataset is cut into samples (`DataSpec`)."""
    return datasets.DataSpec.from_dict(datasets.data_spec(config, wildcards.dataset))


# --- tuning: a study per loss, per pruned model and per deployable model (rules tune_worker, tune)


def tuning_inputs(wildcards):
    """The prepared data and the models of the tuning seed a study's runs read: for a loss's or a deployable
    model's study the teacher (when the loss distils), for a pruned model's study its base and, for Algorithm 1,
    the teacher."""
    inputs = prepared_inputs(wildcards)
    seed = config["tuning"]["seed"]
    pruned = layout.parse_pruned(wildcards.study)
    if pruned is None:
        distils = loss_info(tuned_loss(wildcards)).uses_teacher
    else:
        inputs["base"] = model_file(wildcards.dataset, seed, pruned.base)
        distils = pruned.method == "kd_taylor"
    if distils:
        inputs["teacher"] = model_file(wildcards.dataset, seed, "teacher")
    return inputs


def tuning_run(wildcards):
    """What every trial of a study starts from: the student of the loss, the pruning run or the deployable model,
    with the paper's values, trained for tuning.epochs with the tuning seed."""
    pruned = layout.parse_pruned(wildcards.study)
    if pruned is not None:
        return runspec.prune_tuning_run(config, wildcards.dataset, pruned.method, pruned.base, pruned.ratio)
    entry = layout.parse_deployable(wildcards.study)
    if entry is not None:
        run = runspec.deployable_run(config, wildcards.dataset, entry, config["tuning"]["seed"])
        return run.with_epochs(config["tuning"]["epochs"])
    return runspec.tuning_run(config, wildcards.dataset, wildcards.study)


def tuned_loss(wildcards):
    """The loss whose values a study tunes: the study's own, or the one its run's spec names."""
    return tuning_run(wildcards).loss.name


def tuning_worker_files(wildcards):
    workers = range(config["tuning"]["workers"])
    return [layout.tuning_worker_file(wildcards.dataset, wildcards.study, i) for i in workers]


def all_outputs():
    """Every table, figure and page of the study, and the exported files of every evaluated model (what `all`
    asks for)."""
    run_datasets = config["run_datasets"]
    tables = [layout.table_path(n, ext) for n in range(1, 10) for ext in ("csv", "parquet", "html")]
    figures = [layout.figure_path(f"figure{n}_{d}") for n in (3, 4, 5) for d in run_datasets]
    tsne = [layout.figure_path(f"tsne_{d}_{s}_vs_{r}") for d in run_datasets for s, r in tsne_pairs()]
    anatomy = [layout.figure_path(f"anatomy_{d}") for d in run_datasets]
    verdict = [layout.verdict_path(ext) for ext in ("csv", "parquet")] + [layout.verdict_figure_path()]
    summary = [layout.summary_path(ext) for ext in ("md", "html")]
    deployable = [layout.deployable_path(ext) for ext in ("csv", "parquet", "png")] if deployable_models() else []
    return tables + figures + tsne + anatomy + verdict + summary + deployable + deployed_outputs()


def evaluated_runs():
    """(dataset, seed, model) of every model the study evaluates: those of the metric tables, the verdict and the
    deployable models' table (all seeds) and of the figures (first seed)."""
    tables = {r["model"] for n in (2, 4, 5, 7, 8) for r in table_rows(n)} | set(deployable_models())
    runs = {(d, s, m) for d in config["run_datasets"] for s in seeds() for m in tables}
    figures = set(figure3_models() + figure4_models() + figure5_models())
    runs |= {(d, seeds()[0], m) for d in config["run_datasets"] for m in figures}
    for path in verdict_inputs(None)["metrics"]:
        place = layout.parse_run_path(path)
        runs.add((place.dataset, place.seed, place.model))
    return sorted(runs)


def deployed_outputs():
    """The exported files of every evaluated model (what `all` asks for)."""
    return [path for run in evaluated_runs() for path in layout.deploy_files(*run).values()]


def check_raw_sources():
    """Before the first job (not in a dry run): every raw file a download job of this run needs must be in the
    mirror or at a URL that answers; else one message names them all and the run stops with nothing written."""
    needed = {
        job.output[0]: datasets.raw_files(config, job.wildcards.dataset)[job.wildcards.filename]["urls"]
        for job in workflow.dag.needrun_jobs()
        if job.rule.name == "download"
    }
    missing = download.unavailable_files(needed, MIRROR)
    if missing:
        raise download.DownloadError(download.missing_files_message(missing))
