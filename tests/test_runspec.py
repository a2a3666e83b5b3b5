"""The run spec (kdstgcn.config.runspec): what each builder makes of the configuration, and its dict form, which
the rules pass as params and info.json records, read back to the same spec (through JSON too)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.config.runspec import RunSpec


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    return config


def every_run(config: dict) -> list[RunSpec]:
    pr = config["pruning"]
    runs = [runspec.reference_run(config, "demo", role, 0) for role in ("teacher", "pruning_base")]
    for loss in config["distillation"]["losses"]:
        runs += [runspec.student_run(config, "demo", loss, 1), runspec.tuning_run(config, "demo", loss),
                 runspec.student_run(config, "demo", loss, 1, role=f"student_{loss}_tuned")]
    for method in pr["methods"]:
        for base, ratio in [("pruning_base", r) for r in pr["base_ratios"]] + [("teacher", pr["teacher_ratio"])]:
            runs += [runspec.prune_run(config, "demo", method, base, ratio, 0),
                     runspec.prune_tuning_run(config, "demo", method, base, ratio)]
    runs += [runspec.deployable_run(config, "demo", entry, 2) for entry in config["deployable"]["models"]]
    return runs


def test_the_dict_form_reads_back_to_the_same_spec_also_through_json(demo_config):
    for run in every_run(demo_config) + [replace(every_run(demo_config)[0], hyperparameter_source="tuned")]:
        d = run.to_dict()
        assert RunSpec.from_dict(d) == run, run.role
        assert RunSpec.from_dict(json.loads(json.dumps(d))) == run, run.role
        assert RunSpec.from_dict(d).to_dict() == d


def test_a_reference_run_trains_its_architecture_on_the_task_loss_alone(demo_config):
    run = runspec.reference_run(demo_config, "demo", "teacher", 3)
    assert run.loss.name == "task" and run.prune is None and run.train.seed == 3
    assert run.arch.n_nodes == demo_config["datasets"]["demo"]["n_nodes"]
    assert run.train.teacher_features is None and "teacher_features" not in run.to_dict()["train"]
    with pytest.raises(ValueError, match="either an architecture or a pruning spec"):
        replace(run, arch=None)


def test_the_feature_store_bound_reaches_the_runs_that_read_a_store_but_not_their_identity(demo_config):
    """distillation.teacher_features_max_bytes: a resource limit, out of every fingerprint, and in the dict form
    (which names tuning studies) only where it is not the default."""
    config = json.loads(json.dumps(demo_config))
    default = {run.role: run.to_dict() for run in every_run(config)}
    assert not any("teacher_features_max_bytes" in d["train"] for d in default.values())
    config["distillation"]["teacher_features_max_bytes"] = 2**20
    schema.validate(config)
    student = runspec.student_run(config, "demo", "stcd", 0)
    assert student.train.teacher_features_max_bytes == 2**20
    assert student.to_dict()["train"]["teacher_features_max_bytes"] == 2**20
    assert RunSpec.from_dict(student.to_dict()) == student
    assert student.train.fingerprint() == runspec.student_run(demo_config, "demo", "stcd", 0).train.fingerprint()


def test_teacher_epochs_set_the_teachers_budget_alone(demo_config):
    """training.teacher_epochs: the teacher's epochs; null leaves every spec as training.epochs makes it."""
    config = json.loads(json.dumps(demo_config))
    before = {run.role: run.to_dict() for run in every_run(config)}
    config["training"]["teacher_epochs"] = config["training"]["epochs"] + 7
    schema.validate(config)
    after = {run.role: run.to_dict() for run in every_run(config)}
    assert runspec.reference_run(config, "demo", "teacher", 0).train.epochs == config["training"]["epochs"] + 7
    assert [role for role in before if before[role] != after[role]] == ["teacher"]
    assert demo_config["training"]["teacher_epochs"] is None


def test_tuning_run_trains_the_student_for_the_tuning_budget(demo_config):
    run = runspec.tuning_run(demo_config, "demo", "stcd")
    tuning = demo_config["tuning"]
    assert (run.train.epochs, run.train.seed) == (tuning["epochs"], tuning["seed"])
    assert run == runspec.student_run(demo_config, "demo", "stcd", tuning["seed"]).with_epochs(tuning["epochs"])


def test_pruning_studies_tune_the_fine_tuning_and_for_algorithm_1_the_stcd_weights(demo_config):
    from kdstgcn.config.tuned import tuning_space

    for method, weights in (("kd_taylor", {"alpha1", "alpha2", "alpha3"}), ("taylor", set())):
        run = runspec.prune_tuning_run(demo_config, "demo", method, "pruning_base", 50)
        assert run.train.epochs == demo_config["tuning"]["epochs"]
        assert run == runspec.prune_run(demo_config, "demo", method, "pruning_base", 50,
                                        demo_config["tuning"]["seed"]).with_epochs(run.train.epochs)
        assert set(tuning_space(demo_config, run.loss.name)) == {"learning_rate", "batch_size"} | weights


def test_a_deployable_model_is_a_student_of_its_own_shape_and_rollout(demo_config):
    """Its loss's values and the run's training settings as a student's; its architecture and rollout training
    from its entry, not from training.rollout; its targets the truth where its loss has no teacher to roll out."""
    config = json.loads(json.dumps(demo_config))
    config["model"]["architectures"]["student_wide"] = "[1,4,4][4,4,8]"
    config["deployable"]["models"]["wide_task"] = {"architecture": "student_wide", "loss": "task", "rollout": {
        "steps": [2, 9], "epochs_per_step": 3, "targets": "teacher", "feedback_gradient": False}}
    schema.validate(config)
    stcd = runspec.deployable_run(config, "demo", "stcd_rollout", 1)
    student = runspec.student_run(config, "demo", "stcd", 1)
    assert stcd.role == "deploy_stcd_rollout" and stcd.arch == student.arch and stcd.loss == student.loss
    assert stcd.train == replace(student.train, rollout=runspec.RolloutTraining(1, 3, 1, "teacher", True))
    assert config["training"]["rollout"] is None  # the entry's own rollout, not the section's
    wide = runspec.deployable_run(config, "demo", "wide_task", 0)
    assert wide.arch.blocks == ((1, 4, 4), (4, 4, 8)) and wide.loss.name == "task"
    assert wide.train.rollout == runspec.RolloutTraining(2, 9, 3, "truth", False)
    config["deployable"]["models"]["wide_task"]["architecture"] = "student_huge"
    with pytest.raises(schema.ConfigError, match="deployable.models.wide_task.architecture"):
        schema.validate(config)
    config["deployable"]["models"]["wide_task"] |= {"architecture": "student", "loss": "rd_kl"}
    config["distillation"]["losses"] = ["task", "stcd"]  # no student of rd_kl asks for its values
    del config["distillation"]["hyperparameters"]["PeMSD7"]["rd_kl"]
    with pytest.raises(schema.ConfigError, match="deployable.models.wide_task.loss"):
        schema.validate(config)
