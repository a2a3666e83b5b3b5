"""Per-dataset tuning: the search space each loss gets, tuned values placed into a run spec, a study run by a
worker on a small synthetic network (objective = validation MAE), a dead worker's trial retried, no surplus
trials, and the demo study run by two parallel Snakemake worker jobs sharing one journal file."""
from __future__ import annotations

import time

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution

from conftest import REPO, merged_config, run_snakemake, shared_data_dir
from test_workflow import job_stats
from kdstgcn.config import core as cfg
from kdstgcn import tuning
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.jobs import fit_run, load_data
from kdstgcn.losses.core import LOSS_PARAMETERS

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    cfg.validate(config)
    return config


def test_each_loss_tunes_learning_rate_batch_size_and_its_own_weights(demo_config):
    expected = {"task": set(), "rd_l2": {"beta"}, "rd_kl": {"beta"}, "skd": {"alpha"}, "ord": {"alpha1"},
                "tcd": {"alpha1", "alpha3"}, "scd": {"alpha1", "alpha3"}, "stcd": {"alpha1", "alpha2", "alpha3"}}
    assert set(expected) == set(LOSS_PARAMETERS)
    for loss, weights in expected.items():
        space = cfg.tuning_space(demo_config, loss)
        assert set(space) == {"learning_rate", "batch_size"} | weights, loss
        assert all(space[name] == demo_config["tuning"]["space"][name] for name in space)


def test_tuned_values_go_where_the_run_reads_them(demo_config):
    run = cfg.student_run(demo_config, "demo", "stcd", 0)
    before = yaml.safe_dump(run)
    tuned = {"hyperparameters": {"learning_rate": 0.004, "batch_size": 25, "alpha1": 0.3, "alpha2": 0.2,
                                 "alpha3": 0.1},
             "switches": {"training.optimizer": "adam", "distillation.scalar_norm": "absolute"}}
    out = cfg.apply_tuned(run, tuned, source="trial 3")
    assert yaml.safe_dump(run) == before  # the spec handed in is left alone
    assert out["train"]["learning_rate"] == 0.004 and out["train"]["batch_size"] == 25
    assert out["train"]["optimizer"] == "adam"
    assert {k: out["loss"]["params"][k] for k in ("alpha1", "alpha2", "alpha3")} == {"alpha1": 0.3, "alpha2": 0.2,
                                                                                    "alpha3": 0.1}
    assert out["loss"]["readings"] == {**run["loss"]["readings"], "scalar_norm": "absolute"}
    assert out["hyperparameter_source"] == "trial 3"
    assert cfg.switch_slot(out, "distillation.scalar_norm") == (out["loss"]["readings"], "scalar_norm")
    with pytest.raises(cfg.ConfigError, match="'model.dropout'"):
        cfg.apply_tuned(run, {"hyperparameters": {}, "switches": {"model.dropout": 0.1}})


def test_a_file_that_is_no_tuning_result_is_rejected_naming_it(tmp_path):
    path = tmp_path / "stcd.yaml"
    path.write_text("alpha1: 0.3\n")
    with pytest.raises(cfg.ConfigError, match="stcd.yaml: not a tuning result"):
        cfg.read_tuned(path)


def test_pruning_studies_tune_the_fine_tuning_and_for_algorithm_1_the_stcd_weights(demo_config):
    for method, weights in (("kd_taylor", {"alpha1", "alpha2", "alpha3"}), ("taylor", set())):
        run = cfg.prune_tuning_run(demo_config, "demo", method, "pruning_base", 50)
        assert run["train"]["epochs"] == demo_config["tuning"]["epochs"]
        assert run == {**cfg.prune_run(demo_config, "demo", method, "pruning_base", 50,
                                       demo_config["tuning"]["seed"]), "train": run["train"]}
        assert set(cfg.tuning_space(demo_config, run["loss"]["name"])) == {"learning_rate", "batch_size"} | weights


def test_tuning_run_trains_the_student_for_the_tuning_budget(demo_config):
    run = cfg.tuning_run(demo_config, "demo", "stcd")
    assert run["train"]["epochs"] == demo_config["tuning"]["epochs"]
    assert run["train"]["seed"] == demo_config["tuning"]["seed"]
    assert run == {**cfg.student_run(demo_config, "demo", "stcd", demo_config["tuning"]["seed"]),
                   "train": run["train"]}


# ---------------------------------------------------------------------------------------------------------
# a study on the small synthetic network of conftest (task loss: no teacher needed)
# ---------------------------------------------------------------------------------------------------------

def small_tuning(demo_config, **changes) -> dict:
    return {**demo_config["tuning"], "epochs": 2, "startup_trials": 1, "warmup_epochs": 0, **changes}


def small_run(demo_config, synthetic_files, tuning_settings) -> dict:
    config = {**demo_config, "tuning": tuning_settings}
    run = cfg.tuning_run(config, "demo", "task")
    run["arch"]["n_nodes"] = synthetic_files.n_nodes
    run["data"] = synthetic_files.data_spec()
    run["train"]["eval_batch_size"] = 200
    return run


def inputs(synthetic_files) -> dict:
    return {"values": str(synthetic_files.values), "fill_report": str(synthetic_files.fill_report),
            "adjacency": str(synthetic_files.adjacency)}


def test_a_worker_fills_the_study_with_validation_mae_starting_from_the_paper_values(demo_config, synthetic_files,
                                                                                    tmp_path):
    settings = small_tuning(demo_config)
    run = small_run(demo_config, synthetic_files, settings)
    space, switches = cfg.tuning_space(demo_config, "task"), cfg.tuning_switches(demo_config, "task")
    study = tuning.open_study(tmp_path / "task.journal", {"run": run}, settings, worker=0)
    tuning.enqueue_paper_values(study, run, space, switches)
    tuning.enqueue_paper_values(study, run, space, switches)  # once only
    run_trial = tuning.objective(run, space, switches, tuning.trainer(inputs(synthetic_files)), trials=3, worker=0)
    assert tuning.work(study, run_trial, trials=3, poll_s=0.1) == 3
    assert tuning.work(study, run_trial, trials=3, poll_s=0.1) == 0  # a finished study runs nothing more

    table = tuning.trials_table(study)
    assert table["state"].isin(["COMPLETE", "PRUNED"]).sum() == 3 and len(table) == 3
    assert set(table["worker"]) == {0}
    paper = table[table["source"] == "paper"]
    assert paper["number"].tolist() == [0]
    assert paper[["param_learning_rate", "param_batch_size", "param_training.optimizer"]].iloc[0].tolist() == [
        run["train"]["learning_rate"], run["train"]["batch_size"], run["train"]["optimizer"]]
    for trial in study.trials:  # reported per epoch: the best validation MAE so far; the value: the best
        val = trial.user_attrs["val_mae"]
        assert list(trial.intermediate_values.values()) == list(np.minimum.accumulate(val))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(val) == 2 and trial.value == min(val)

    more = tuning.objective(run, space, switches, tuning.trainer(inputs(synthetic_files)), trials=4, worker=1)
    assert tuning.work(tuning.open_study(tmp_path / "task.journal", {"run": run}, settings, worker=1), more,
                       trials=4, poll_s=0.1) == 1  # a larger budget continues the study

    out = tmp_path / "tuned.yaml"
    result = tuning.write_result(study, "demo", "task", space, 2, str(out), str(tmp_path / "trials.parquet"))
    best = min((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert result["trial"] == best.number and result["val_mae"] == best.value
    assert cfg.read_tuned(out)["hyperparameters"] == {k: best.params[k] for k in space}
    assert result["switches"] == {"training.optimizer": best.params["training.optimizer"]}
    assert len(pd.read_parquet(tmp_path / "trials.parquet")) == 4


def test_a_dead_workers_trial_is_failed_and_retried_with_its_values(demo_config, synthetic_files, tmp_path):
    settings = small_tuning(demo_config, epochs=1)
    run = small_run(demo_config, synthetic_files, settings)
    space = cfg.tuning_space(demo_config, "task")
    path = tmp_path / "task.journal"
    dead = tuning.open_study(path, {"run": run}, settings, worker=1)
    lr = dead.ask({"learning_rate": FloatDistribution(**{k: space["learning_rate"][k] for k in ("low", "high",
                                                                                                "log")})})
    heartbeat_s = 0.2  # the dead worker never sends one: stale after 5 x 0.2 s
    study = tuning.open_study(path, {"run": run}, {**settings, "heartbeat_s": heartbeat_s}, worker=0)
    time.sleep(tuning.STALE_AFTER_HEARTBEATS * heartbeat_s + 0.2)
    run_trial = tuning.objective(run, space, {}, tuning.trainer(inputs(synthetic_files)), trials=1, worker=0)
    assert tuning.work(study, run_trial, trials=1, poll_s=heartbeat_s) == 1
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    retry = tuning.trials_table(study).iloc[1]
    assert retry["source"] == "retry" and retry["retry_of"] == 0
    assert retry["param_learning_rate"] == lr.params["learning_rate"]


def test_a_pruning_study_prunes_and_fine_tunes_a_trained_base(demo_config, synthetic_files, tmp_path):
    from kdstgcn.jobs import train_run

    settings = small_tuning(demo_config, epochs=1)
    base_run = small_run(demo_config, synthetic_files, settings)
    base_run["arch"]["blocks"] = [[1, 4, 8], [8, 4, 16]]
    files = inputs(synthetic_files)
    train_run(base_run, **files, model_out=str(tmp_path / "base.pt"), history_out=str(tmp_path / "h.parquet"),
              info_out=str(tmp_path / "info.json"), checkpoint=str(tmp_path / "base_ckpt.pt"))
    run = cfg.prune_tuning_run({**demo_config, "tuning": settings}, "demo", "taylor", "pruning_base", 50)
    run["data"], run["train"]["eval_batch_size"] = synthetic_files.data_spec(), 200
    space = cfg.tuning_space(demo_config, run["loss"]["name"])
    study = tuning.open_study(tmp_path / "pruned.journal", {"run": run}, settings, worker=0)
    tuning.enqueue_paper_values(study, run, space, {})
    fit = tuning.trainer({**files, "base": str(tmp_path / "base.pt")})
    assert tuning.work(study, tuning.objective(run, space, {}, fit, trials=2, worker=0), trials=2, poll_s=0.1) == 2
    table = tuning.trials_table(study)
    assert table.loc[0, "state"] == "COMPLETE" and table.loc[1, "state"] in ("COMPLETE", "PRUNED")
    assert table.loc[0, "param_learning_rate"] == run["train"]["learning_rate"]  # Table 9's values first
    assert table.loc[0, "value"] == min(table.loc[0, "val_mae_per_epoch"])
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("pruned.journal"))
    assert written == ["base.pt", "base_ckpt.pt", "h.parquet", "info.json"]  # trials leave no files behind


def test_parallel_workers_never_run_more_trials_than_the_study_needs(demo_config, synthetic_files, tmp_path):
    settings = small_tuning(demo_config)
    run = small_run(demo_config, synthetic_files, settings)
    study = tuning.open_study(tmp_path / "task.journal", {"run": run}, settings, worker=0)
    study.ask()  # another worker's running trial fills the study of one
    run_trial = tuning.objective(run, cfg.tuning_space(demo_config, "task"), {},
                                 tuning.trainer(inputs(synthetic_files)), trials=1, worker=0)
    with pytest.raises(tuning.SurplusTrial):
        run_trial(study.ask())


def test_a_study_of_other_settings_is_not_continued(demo_config, tmp_path):
    settings = small_tuning(demo_config)
    tuning.open_study(tmp_path / "s.journal", {"run": {"epochs": 2}, "space": {}}, settings, worker=0)
    with pytest.raises(tuning.StudyMismatch, match=r"differ in \['run'\].*Delete it"):
        tuning.open_study(tmp_path / "s.journal", {"run": {"epochs": 3}, "space": {}}, settings, worker=1)


# ---------------------------------------------------------------------------------------------------------
# the demo study end to end: two worker jobs in parallel, one journal file
# ---------------------------------------------------------------------------------------------------------

DEMO_TUNING = {"training": {"epochs": 1}, "model": {"architectures": {"teacher": "[1,4,8][8,4,16]"}},
               "tuning": {"trials": 4, "epochs": 1, "workers": 2, "startup_trials": 1, "warmup_epochs": 0,
                          "heartbeat_s": 1}}


@pytest.mark.slow
def test_demo_tuning_with_two_parallel_workers_sharing_one_study(repo_copy):
    (repo_copy / "tune.yaml").write_text(yaml.safe_dump(DEMO_TUNING))
    target = "results/demo/tuned/stcd.yaml"
    result = run_snakemake(repo_copy, [target, "--cores", "2", "--configfile", "config/demo.yaml", "tune.yaml"],
                           mirror=shared_data_dir(), timeout=300)
    assert result.returncode == 0, result.output[-4000:]

    tuned = cfg.read_tuned(repo_copy / target)
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
    assert set(tuned["switches"]) == set(cfg.tuning_switches(merged_config("config/demo.yaml"), "stcd"))
    assert not (repo_copy / "results/demo/seed0/student_stcd").exists()  # trials write no model of the study

    # the objective is the validation MAE: the best trial retrained here gives it again, its test MAE differs
    config = merged_config("config/demo.yaml")
    config["training"]["epochs"], config["tuning"] = 1, {**config["tuning"], **DEMO_TUNING["tuning"]}
    run = cfg.apply_tuned(cfg.tuning_run(config, "demo", "stcd"), tuned)
    files = {k: str(repo_copy / f"results/demo/{v}") for k, v in
             {"values": "clean/values.parquet", "fill_report": "clean/fill_report.csv",
              "adjacency": "graph/adjacency.parquet", "teacher": "seed0/teacher/model.pt"}.items()}
    model, history, _ = fit_run(run, files["values"], files["fill_report"], files["adjacency"],
                                str(repo_copy / "check.pt"), files["teacher"])
    assert history["val_mae"].min() == pytest.approx(tuned["val_mae"], rel=1e-6)
    data = load_data(files["values"], files["fill_report"], run["data"])
    with torch.no_grad():
        test, _, _ = evaluate(model, data, "test", run["train"]["horizons"])
    assert float(test["MAE"].mean()) != pytest.approx(tuned["val_mae"], rel=1e-3)


def test_tables_say_which_hyper_parameters_a_student_used(demo_config):
    from kdstgcn.report.core import note

    assert "hyper-parameters of the paper (Table 6)" in note(demo_config, "demo", 2, model="student_stcd")
    tuned = {**demo_config, "distillation": {**demo_config["distillation"], "hyperparameter_source": "tuned"}}
    assert "tuned on validation MAE: results/demo/tuned/stcd.yaml" in note(tuned, "demo", 2, model="student_stcd")
    assert "hyper-parameters" not in note(tuned, "demo", 2, model="teacher")
    pruned = "pruned_taylor_pruning_base_50"
    assert "hyper-parameters of the paper (Table 9)" in note(tuned, "demo", 2, model=pruned)
    tuned["pruning"] = {**demo_config["pruning"], "hyperparameter_source": "tuned"}
    assert f"validation MAE: results/demo/tuned/{pruned}.yaml" in note(tuned, "demo", 2, model=pruned)


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
    assert stats["tune_worker"] == stats["tune_prune_worker"] == workers
    assert stats["tune"] == stats["train_student"] == stats["tune_prune"] == stats["prune"] == 1
    for study in ("stcd", "pruned_kd_taylor_pruning_base_50"):
        assert f"results/demo/tuned/{study}.yaml" in result.output


def test_a_loss_tunes_only_the_readings_it_uses():
    config = cfg.load(REPO / "config" / "config.yaml")
    assert set(cfg.tuning_switches(config, "stcd")) == {"training.optimizer", "distillation.scalar_norm",
                                                        "distillation.ord_reduction", "distillation.distance_scale"}
    assert set(cfg.tuning_switches(config, "rd_l2")) == {"training.optimizer", "distillation.scalar_norm"}
    assert set(cfg.tuning_switches(config, "skd")) == {"training.optimizer"}
    assert set(cfg.tuning_switches(config, "task")) == {"training.optimizer"}
