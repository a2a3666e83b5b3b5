# What the report rules read: the models of each table and figure and the run files they come from.
from dataclasses import asdict

from kdstgcn.report import rows as report_rows


def table_rows(number):
    """The models of metric table `number`, as plain dicts (params must be plain data)."""
    return [asdict(r) for r in report_rows.table_rows(number, LOSSES, config["pruning"])]


def hyperparameter_sources(*sections):
    """Where the values of each config section's models come from (paper or tuned): what the tables' notes say."""
    return {section: config[section]["hyperparameter_source"] for section in sections}


def run_files(models, name, seed=None):
    """`name` of each model's run on every dataset of the run, for one seed or all, models innermost."""
    return [
        layout.run_file(d, s, m, name)
        for d in config["run_datasets"]
        for s in (seeds() if seed is None else [seed])
        for m in models
    ]


def figure3_models():
    return ["teacher"] + [layout.student_name(loss) for loss in LOSSES]


def figure4_models():
    pruned = layout.pruned_name("kd_taylor", "teacher", config["pruning"]["teacher_ratio"])
    return ["teacher", "student_task", "student_stcd", pruned]


def figure5_models():
    return [r.model for r in report_rows.pruning_rows(8, config["pruning"])]


def predictions(models):
    """The figure's input: each model's predictions of the first seed, in the figure's order."""
    return lambda w: [layout.run_file(w.dataset, seeds()[0], m, "predictions.npz") for m in models]


def cost_models():
    """Table 1 models: teacher, pruning base, the fixed student and every pruned model of Tables 7-8."""
    rows = [r for n in (7, 8) for r in report_rows.pruning_rows(n, config["pruning"])]
    return ["teacher", "pruning_base", "student_task"] + [r.model for r in rows if r.model.startswith("pruned_")]


def tsne_pairs():
    """(student, reference) pairs of the t-SNE plots: KD students vs teacher, pruned models vs their base."""
    pr = config["pruning"]
    pairs = [(layout.student_name(loss), "teacher") for loss in ("task", "stcd") if loss in LOSSES]
    pairs.append((layout.pruned_name("kd_taylor", "teacher", pr["teacher_ratio"]), "teacher"))
    pairs += [(layout.pruned_name(m, "pruning_base", max(pr["base_ratios"])), "pruning_base") for m in pr["methods"]]
    return pairs


def anatomy_inputs(wildcards):
    """The histories of every distilled student, all seeds."""
    students = [layout.student_name(loss) for loss in LOSSES if loss != "task"]
    return [layout.run_file(wildcards.dataset, s, m, "history.parquet") for m in students for s in seeds()]


def deployable_models():
    """The models results/deployable.csv sets side by side: the teacher, the paper's students without KD and with
    L_STCD (those the config trains) and every deployable model; none where the config has no deployable model."""
    entries = config["deployable"]["models"]
    if not entries:
        return []
    students = [layout.student_name(loss) for loss in ("task", "stcd") if loss in LOSSES]
    return ["teacher"] + students + [layout.deployable_name(entry) for entry in entries]


def deployable_inputs(wildcards):
    """Metrics, info.json and test predictions of each model of `deployable_models`, all seeds, and each dataset's
    fill report (the stations the metrics score)."""
    models = deployable_models()
    return {"metrics": run_files(models, "metrics.csv"), "infos": run_files(models, "info.json"),
            "predictions": run_files(models, "predictions.npz"),
            "fill_reports": [layout.prepared(d)["fill_report"] for d in config["run_datasets"]]}


def verdict_inputs(wildcards):
    """Metrics and info.json (the readings each was trained with) of every verdict model, both sources, all
    seeds; the metrics of the models trained from scratch behind them (the teacher: is it better than the model
    without KD?, and the pruning base: their epochs); the test predictions of each claim's two models and each
    dataset's fill report (the stations the metrics score), for the effects' intervals; histories of the models
    claimed better; where the config has deployable models, their table (`deployable_inputs`) and their histories
    (the best one's anatomy)."""
    folders = report_rows.verdict_runs(config)  # model -> {source: its run folder}
    claims = report_rows.verdict_claims(config["verdict"])
    places = [(d, s) for d in config["run_datasets"] for s in seeds()]

    def files(models, name):
        runs = [folder for m in models for folder in folders[m].values()]
        return sorted({layout.run_file(d, s, run, name) for d, s in places for run in runs})

    scratch = {report_rows.trained_from_scratch(run) for runs in folders.values() for run in runs.values()}
    scratch = sorted(scratch | {"teacher"}) if folders else []
    from_scratch = sorted({layout.run_file(d, s, m, "metrics.csv") for d, s in places for m in scratch})
    deployable = [m for m in deployable_models() if layout.parse_deployable(m)]
    return {"metrics": sorted(set(files(folders, "metrics.csv") + from_scratch)), "infos": files(folders, "info.json"),
            "predictions": files({m for c in claims for m in (c.better, c.worse)}, "predictions.npz"),
            "fill_reports": [layout.prepared(d)["fill_report"] for d in config["run_datasets"]] if claims else [],
            "histories": files({c.better for c in claims}, "history.parquet") + run_files(deployable,
                                                                                        "history.parquet"),
            "deployable": [layout.deployable_path("parquet")] if deployable else []}
