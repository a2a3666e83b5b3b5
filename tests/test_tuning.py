"""Per-dataset tuning: a study run by a worker on a small synthetic network (objective = validation MAE), a
pruning study, a dead worker's trial retried, no surplus trials, and the demo study run by two parallel Snakemake
worker jobs sharing one journal file."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution

from conftest import job_stats, merged_config, planned_wildcards, run_snakemake, shared_data_dir
from kdstgcn.config import runspec, schema
from kdstgcn.config.runspec import RunSpec
from kdstgcn.config.tuned import apply_tuned, read_tuned, tuning_space, tuning_switches
from kdstgcn.data.samples import load_data
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.jobs.train import fit_run, train_run
from kdstgcn.runtime.io import write_table
from kdstgcn.tuning.results import finish_study, trials_table, tuned_result, write_result
from kdstgcn.tuning.storage import STALE_AFTER_HEARTBEATS, StudyMismatch, load_study, open_study
from kdstgcn.tuning.trials import SurplusTrial, enqueue_paper_values, objective, trainer, work
from kdstgcn.tuning.worker import run_worker, study_sources

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    return config


# ---------------------------------------------------------------------------------------------------------
# a study on the small synthetic network of conftest (task loss: no teacher needed)
# ---------------------------------------------------------------------------------------------------------

def small_tuning(demo_config, **changes) -> dict:
    return {**demo_config["tuning"], "epochs": 2, "startup_trials": 1, "min_epochs": 1, **changes}


def small_run(demo_config, synthetic_files, tuning_settings) -> RunSpec:
    """The demo study's run spec on the small synthetic network."""
    run = runspec.tuning_run({**demo_config, "tuning": tuning_settings}, "demo", "task")
    return replace(run, arch=replace(run.arch, n_nodes=synthetic_files.n_nodes), data=synthetic_files.data_spec(),
                   train=replace(run.train, eval_batch_size=200))


def inputs(synthetic_files) -> dict:
    return {"values": str(synthetic_files.values), "fill_report": str(synthetic_files.fill_report),
            "adjacency": str(synthetic_files.adjacency)}


def study_of(path, run: RunSpec, files: dict, settings: dict, worker: int) -> optuna.Study:
    """The study of `run` on the input `files` in the journal `path`, as a worker opens it."""
    return open_study(path, {"run": run.to_dict()}, study_sources(run, files), settings, worker)


def test_a_worker_fills_the_study_with_validation_mae_starting_from_the_paper_values(demo_config, synthetic_files,
                                                                                    tmp_path):
    settings = small_tuning(demo_config)
    run = small_run(demo_config, synthetic_files, settings)
    files = inputs(synthetic_files)
    space, switches = tuning_space(demo_config, "task"), tuning_switches(demo_config, "task")
    study = study_of(tmp_path / "task.journal", run, files, settings, worker=0)
    enqueue_paper_values(study, run, space, switches)
    enqueue_paper_values(study, run, space, switches)  # once only
    run_trial = objective(run, space, switches, trainer(files), trials=3, worker=0)
    assert work(study, run_trial, trials=3, poll_s=0.1) == 3
    assert work(study, run_trial, trials=3, poll_s=0.1) == 0  # a finished study runs nothing more

    table = trials_table(study)
    assert table["state"].isin(["COMPLETE", "PRUNED"]).sum() == 3 and len(table) == 3
    assert set(table["worker"]) == {0}
    paper = table[table["source"] == "paper"]
    assert paper["number"].tolist() == [0]
    assert paper[["param_learning_rate", "param_batch_size", "param_training.optimizer"]].iloc[0].tolist() == [
        run.train.learning_rate, run.train.batch_size, run.train.optimizer]
    for trial in study.trials:  # reported per epoch: the best validation MAE so far; the value: the best
        val = trial.user_attrs["val_mae"]
        assert list(trial.intermediate_values.values()) == list(np.minimum.accumulate(val))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(val) == 2 and trial.value == min(val)

    more = objective(run, space, switches, trainer(files), trials=4, worker=1)
    assert work(study_of(tmp_path / "task.journal", run, files, settings, worker=1), more, trials=4,
                poll_s=0.1) == 1  # a larger budget continues the study

    out = tmp_path / "tuned.yaml"
    result = write_result(study, "demo", "task", space, 2, str(out), str(tmp_path / "trials.parquet"))
    best = min((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert result["trial"] == best.number and result["val_mae"] == best.value
    assert read_tuned(out)["hyperparameters"] == {k: best.params[k] for k in space}
    assert set(switches) == {"training.optimizer", "distillation.scalar_norm"}  # the task loss's reading too
    assert result["switches"] == {name: best.params[name] for name in switches}
    assert len(pd.read_parquet(tmp_path / "trials.parquet")) == 4


def test_epochs_are_the_budget_and_only_trials_that_ran_them_all_can_win(demo_config, synthetic_files, tmp_path):
    """Hyperband over epochs (3 at most, a first rung after 1): poor trials stop early, every complete trial ran
    all 3 epochs, the trials table keeps each trial's per-epoch curve, and a complete trial of fewer epochs never
    wins, however low its value."""
    settings = small_tuning(demo_config, epochs=3, min_epochs=1, reduction_factor=3)
    run = small_run(demo_config, synthetic_files, settings)
    files = inputs(synthetic_files)
    space = tuning_space(demo_config, "task")
    study = study_of(tmp_path / "task.journal", run, files, settings, worker=0)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    assert work(study, objective(run, space, {}, trainer(files), trials=6, worker=0),
                trials=6, poll_s=0.1) == 6
    table = trials_table(study)
    complete, pruned = table[table["state"] == "COMPLETE"], table[table["state"] == "PRUNED"]
    assert len(complete) and len(pruned) and len(complete) + len(pruned) == 6
    assert (complete["epochs_run"] == 3).all() and (pruned["epochs_run"] < 3).all()
    assert (table["val_mae_per_epoch"].map(len) == table["epochs_run"]).all()
    assert (complete["value"] == complete["val_mae_per_epoch"].map(min)).all()
    short = optuna.trial.create_trial(params={"learning_rate": 1e-3},
                                      distributions={"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)},
                                      value=0.0, user_attrs={"val_mae": [0.0]})
    study.add_trial(short)
    result = tuned_result(study, "demo", "task", space, 3)
    best = complete.loc[complete["value"].idxmin()]
    assert (result["trial"], result["val_mae"]) == (best["number"], best["value"])


def test_a_dead_workers_trial_is_failed_and_retried_with_its_values(demo_config, synthetic_files, tmp_path):
    settings = small_tuning(demo_config, epochs=1)
    run = small_run(demo_config, synthetic_files, settings)
    files = inputs(synthetic_files)
    space = tuning_space(demo_config, "task")
    path = tmp_path / "task.journal"
    dead = study_of(path, run, files, settings, worker=1)
    lr = dead.ask({"learning_rate": FloatDistribution(**{k: space["learning_rate"][k] for k in ("low", "high",
                                                                                                "log")})})
    heartbeat_s = 0.2  # the dead worker never sends one: stale after 5 x 0.2 s
    study = study_of(path, run, files, {**settings, "heartbeat_s": heartbeat_s}, worker=0)
    time.sleep(STALE_AFTER_HEARTBEATS * heartbeat_s + 0.2)
    run_trial = objective(run, space, {}, trainer(files), trials=1, worker=0)
    assert work(study, run_trial, trials=1, poll_s=heartbeat_s) == 1
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    retry = trials_table(study).iloc[1]
    assert retry["source"] == "retry" and retry["retry_of"] == 0
    assert retry["param_learning_rate"] == lr.params["learning_rate"]


def test_a_pruning_study_prunes_and_fine_tunes_a_trained_base(demo_config, synthetic_files, tmp_path):
    settings = small_tuning(demo_config, epochs=1)
    run = small_run(demo_config, synthetic_files, settings)
    base_run = replace(run, arch=replace(run.arch, blocks=((1, 4, 8), (8, 4, 16))))
    files = inputs(synthetic_files)
    train_run(base_run, **files, model_out=str(tmp_path / "base.pt"), history_out=str(tmp_path / "h.parquet"),
              info_out=str(tmp_path / "info.json"), checkpoint=str(tmp_path / "base_ckpt.pt"))
    run = runspec.prune_tuning_run({**demo_config, "tuning": settings}, "demo", "taylor", "pruning_base", 50)
    run = replace(run, data=synthetic_files.data_spec(), train=replace(run.train, eval_batch_size=200))
    space = tuning_space(demo_config, run.loss.name)
    study = study_of(tmp_path / "pruned.journal", run, files, settings, worker=0)
    enqueue_paper_values(study, run, space, {})
    fit = trainer({**files, "base": str(tmp_path / "base.pt")})
    assert work(study, objective(run, space, {}, fit, trials=2, worker=0), trials=2, poll_s=0.1) == 2
    table = trials_table(study)
    assert table.loc[0, "state"] == "COMPLETE" and table.loc[1, "state"] in ("COMPLETE", "PRUNED")
    assert table.loc[0, "param_learning_rate"] == run.train.learning_rate  # Table 9's values first
    assert table.loc[0, "value"] == min(table.loc[0, "val_mae_per_epoch"])
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("pruned.journal"))
    assert written == ["base.pt", "base_ckpt.pt", "h.parquet", "info.json"]  # trials leave no files behind


def test_parallel_workers_never_run_more_trials_than_the_study_needs(demo_config, synthetic_files, tmp_path):
    settings = small_tuning(demo_config)
    run = small_run(demo_config, synthetic_files, settings)
    files = inputs(synthetic_files)
    study = study_of(tmp_path / "task.journal", run, files, settings, worker=0)
    study.ask()  # another worker's running trial fills the study of one
    run_trial = objective(run, tuning_space(demo_config, "task"), {}, trainer(files), trials=1, worker=0)
    with pytest.raises(SurplusTrial):
        run_trial(study.ask())


def test_a_study_of_other_settings_is_not_continued(demo_config, tmp_path):
    settings = small_tuning(demo_config)
    open_study(tmp_path / "s.journal", {"run": {"epochs": 2}, "space": {}}, {"train": "days"}, settings, worker=0)
    with pytest.raises(StudyMismatch, match=r"differ in \['run'\].*Delete it"):
        open_study(tmp_path / "s.journal", {"run": {"epochs": 3}, "space": {}}, {"train": "days"}, settings, worker=1)


def test_a_change_of_data_or_graph_starts_a_fresh_study(demo_config, synthetic_files, tmp_path):
    """A study belongs to the data and the graph its trials read: after a change to either (here one station's
    readings shifted by a step, one edge's weight), a worker starts a fresh study in the same journal instead of
    finding the old one finished, and the study's result is read from the study its workers name."""
    settings = small_tuning(demo_config, epochs=1, trials=1)
    run = small_run(demo_config, synthetic_files, settings)
    space, switches = tuning_space(demo_config, "task"), tuning_switches(demo_config, "task")
    values = pd.read_parquet(synthetic_files.values)
    values.iloc[:, 0] = np.roll(values.iloc[:, 0].to_numpy(), 1)
    write_table(values, tmp_path / "values.parquet", index=True)
    adjacency = pd.read_parquet(synthetic_files.adjacency)
    adjacency.iloc[0, 1] = adjacency.iloc[1, 0] = adjacency.iloc[0, 1] + 0.5
    write_table(adjacency, tmp_path / "adjacency.parquet")
    journal = tmp_path / "task.journal"

    def worker(changes: dict, name: str) -> dict:
        out = tmp_path / f"{name}.json"
        run_worker(run.to_dict(), space, switches, str(journal), settings, {**inputs(synthetic_files), **changes}, 0,
                   str(out))
        return json.loads(out.read_text())

    first, again = worker({}, "first"), worker({}, "again")
    data = worker({"values": str(tmp_path / "values.parquet")}, "data")
    graph = worker({"adjacency": str(tmp_path / "adjacency.parquet")}, "graph")
    assert [w["trials_started"] for w in (first, again, data, graph)] == [1, 0, 1, 1]
    assert again["study"] == first["study"] and len({first["study"], data["study"], graph["study"]}) == 3
    result = finish_study(str(journal), [str(tmp_path / "graph.json")], settings["heartbeat_s"], "demo", "task",
                          space, 1, str(tmp_path / "tuned.yaml"), str(tmp_path / "trials.parquet"))
    graph_trial = load_study(journal, graph["study"], settings["heartbeat_s"]).trials[0]
    assert result["val_mae"] == graph_trial.value and result["trials"] == {"complete": 1}
    with pytest.raises(RuntimeError, match="not one"):
        finish_study(str(journal), [str(tmp_path / "first.json"), str(tmp_path / "graph.json")],
                     settings["heartbeat_s"], "demo", "task", space, 1, str(tmp_path / "tuned.yaml"),
                     str(tmp_path / "trials.parquet"))


# ---------------------------------------------------------------------------------------------------------
# the demo study end to end: two worker jobs in parallel, one journal file
# ---------------------------------------------------------------------------------------------------------

DEMO_TUNING = {"training": {"epochs": 1}, "model": {"architectures": {"teacher": "[1,4,8][8,4,16]"}},
               "tuning": {"trials": 4, "epochs": 1, "workers": 2, "startup_trials": 1, "min_epochs": 1,
                          "heartbeat_s": 1}}


@pytest.mark.slow
def test_demo_tuning_with_two_parallel_workers_sharing_one_study(repo_copy):
    (repo_copy / "tune.yaml").write_text(yaml.safe_dump(DEMO_TUNING))
    target = "results/demo/tuned/stcd.yaml"
    result = run_snakemake(repo_copy, [target, "--cores", "2", "--configfile", "config/demo.yaml", "tune.yaml"],
                           mirror=shared_data_dir(), timeout=300)
    assert result.returncode == 0, result.output[-4000:]

    tuned = read_tuned(repo_copy / target)
    trials = pd.read_parquet(repo_copy / "results/demo/tuned/stcd_trials.parquet")
    finished = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert len(finished) == 4 and set(trials["state"]) <= {"COMPLETE", "PRUNED", "FAIL"}
    assert set(finished["worker"]) == {0, 1}
    first, second = (finished[finished["worker"] == w] for w in (0, 1))
    assert any(a.started < b.finished and b.started < a.finished  # the two jobs ran trials at the same time
               for a in first.itertuples() for b in second.itertuples())
    assert trials.loc[trials["source"] == "paper", "param_alpha1"].tolist() == [0.17]  # Table 6, PeMSD7 STCD
    complete = trials[trials["state"] == "COMPLETE"]
    assert (complete["value"] == complete["val_mae_per_epoch"].map(min)).all()
    best = complete.loc[complete["value"].idxmin()]
    assert tuned["trial"] == best["number"] and tuned["val_mae"] == best["value"]
    assert set(tuned["hyperparameters"]) == {"learning_rate", "batch_size", "alpha1", "alpha2", "alpha3"}
    assert set(tuned["switches"]) == set(tuning_switches(merged_config("config/demo.yaml"), "stcd"))
    assert not (repo_copy / "results/demo/seed0/student_stcd").exists()  # trials write no model of the study

    # the objective is the validation MAE: the best trial retrained here gives it again, its test MAE differs
    config = merged_config("config/demo.yaml")
    config["training"]["epochs"], config["tuning"] = 1, {**config["tuning"], **DEMO_TUNING["tuning"]}
    run = apply_tuned(runspec.tuning_run(config, "demo", "stcd"), tuned)
    files = {k: str(repo_copy / f"results/demo/{v}") for k, v in
             {"values": "clean/values.parquet", "fill_report": "clean/fill_report.csv",
              "adjacency": "graph/adjacency.parquet", "teacher": "seed0/teacher/model.pt"}.items()}
    model, history, _ = fit_run(run, files["values"], files["fill_report"], files["adjacency"],
                                str(repo_copy / "check.pt"), files["teacher"])
    assert history["val_mae"].min() == pytest.approx(tuned["val_mae"], rel=1e-6)
    data = load_data(files["values"], files["fill_report"], run.data)
    with torch.no_grad():
        test, _, _ = evaluate(model, data, "test", run.train.horizons)
    assert float(test["MAE"].mean()) != pytest.approx(tuned["val_mae"], rel=1e-3)


@pytest.mark.slow
def test_tuned_students_and_pruning_runs_wait_for_their_studies(repo_copy):
    (repo_copy / "tuned.yaml").write_text("distillation: {hyperparameter_source: tuned}\n"
                                          "pruning: {hyperparameter_source: tuned}\n")
    result = run_snakemake(repo_copy, ["-n", "results/demo/seed0/student_stcd/model.pt",
                                       "results/demo/seed0/pruned_kd_taylor_pruning_base_50/model.pt", "--cores", "2",
                                       "--configfile", "config/demo.yaml", "tuned.yaml"], timeout=120)
    assert result.returncode == 0, result.output[-3000:]
    stats = job_stats(result.output)
    workers = merged_config("config/demo.yaml")["tuning"]["workers"]
    assert stats["tune_worker"] == 2 * workers and stats["tune"] == 2 and stats["prune"] == 1
    studies = {w["study"] for w in planned_wildcards(result.output, "tune")}
    assert studies == {"stcd", "pruned_kd_taylor_pruning_base_50"}
    assert {"model": "student_stcd", "dataset": "demo", "seed": "0"} in planned_wildcards(result.output, "train")
    for study in ("stcd", "pruned_kd_taylor_pruning_base_50"):
        assert f"results/demo/tuned/{study}.yaml" in result.output


@pytest.mark.slow
def test_a_deployable_model_takes_its_own_study_or_its_students(repo_copy):
    rollout = "{steps: [1, 2], epochs_per_step: 1, targets: truth, feedback_gradient: true}"
    (repo_copy / "tuned.yaml").write_text(
        "deployable:\n  models:\n"
        f"    own: {{architecture: student, loss: task, rollout: {rollout}, values: tuned}}\n"
        f"    borrowed: {{architecture: student, loss: stcd, rollout: {rollout}, values: student_tuned}}\n")
    result = run_snakemake(repo_copy, ["-n", "results/demo/seed0/deploy_own/model.pt",
                                       "results/demo/seed0/deploy_borrowed/model.pt", "--cores", "2",
                                       "--configfile", "config/demo.yaml", "tuned.yaml"], timeout=120)
    assert result.returncode == 0, result.output[-3000:]
    assert {w["study"] for w in planned_wildcards(result.output, "tune")} == {"deploy_own", "stcd"}
    for study in ("deploy_own", "stcd"):
        assert f"results/demo/tuned/{study}.yaml" in result.output
