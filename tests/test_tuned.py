"""Tuned values over a run spec (kdstgcn.config.tuned): the search space and switches each loss gets, tuned
values placed where the run reads them (a pruning run's fine-tuning loss included), a tuning result file checked."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from conftest import REPO, merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.config.tuned import apply_tuned, read_tuned, switch_value, tuning_space, tuning_switches
from kdstgcn.losses.registry import LOSSES


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    return config


def test_each_loss_tunes_learning_rate_batch_size_and_its_own_weights(demo_config):
    expected = {"task": set(), "rd_l2": {"beta"}, "rd_kl": {"beta"}, "skd": {"alpha"}, "ord": {"alpha1"},
                "tcd": {"alpha1", "alpha3"}, "scd": {"alpha1", "alpha3"}, "stcd": {"alpha1", "alpha2", "alpha3"}}
    assert set(expected) == set(LOSSES)
    for loss, weights in expected.items():
        space = tuning_space(demo_config, loss)
        assert set(space) == {"learning_rate", "batch_size"} | weights, loss
        assert all(space[name] == demo_config["tuning"]["space"][name] for name in space)


def test_a_loss_tunes_only_the_readings_it_uses():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema.validate(config)
    assert set(tuning_switches(config, "stcd")) == {"training.optimizer", "distillation.scalar_norm",
                                                    "distillation.ord_reduction", "distillation.distance_scale"}
    assert set(tuning_switches(config, "rd_l2")) == {"training.optimizer", "distillation.scalar_norm"}
    # every student's task term takes scalar_norm: the student without KD tunes it like the others
    assert set(tuning_switches(config, "skd")) == {"training.optimizer", "distillation.scalar_norm"}
    assert set(tuning_switches(config, "task")) == {"training.optimizer", "distillation.scalar_norm"}


TUNED = {"hyperparameters": {"learning_rate": 0.004, "batch_size": 25, "alpha1": 0.3, "alpha2": 0.2, "alpha3": 0.1},
         "switches": {"training.optimizer": "adam", "distillation.scalar_norm": "absolute"}}


def test_tuned_values_go_where_the_run_reads_them(demo_config):
    run = runspec.student_run(demo_config, "demo", "stcd", 0)
    before = run.to_dict()
    out = apply_tuned(run, TUNED, source="trial 3")
    assert run.to_dict() == before  # the spec handed in is left alone
    assert (out.train.learning_rate, out.train.batch_size, out.train.optimizer) == (0.004, 25, "adam")
    assert {k: out.loss.params[k] for k in ("alpha1", "alpha2", "alpha3")} == {"alpha1": 0.3, "alpha2": 0.2,
                                                                               "alpha3": 0.1}
    assert out.loss.readings == {**run.loss.readings, "scalar_norm": "absolute"}
    assert out.hyperparameter_source == "trial 3" and out.to_dict()["hyperparameter_source"] == "trial 3"
    assert switch_value(out, "distillation.scalar_norm") == "absolute"
    assert switch_value(out, "training.optimizer") == "adam"
    for bad in ("model.dropout", "training.no_such_setting"):
        with pytest.raises(schema.ConfigError, match=f"'{bad}'"):
            apply_tuned(run, {"hyperparameters": {}, "switches": {bad: 0.1}})


def test_a_pruning_run_fine_tuned_with_its_importance_loss_gets_the_tuned_values_in_both(demo_config):
    config = {**demo_config, "pruning": {**demo_config["pruning"], "finetune_loss": "stcd"}}
    algorithm1 = apply_tuned(runspec.prune_run(config, "demo", "kd_taylor", "teacher", 97, 0), TUNED)
    assert algorithm1.prune.finetune_loss == algorithm1.loss and algorithm1.loss.params["alpha1"] == 0.3
    assert algorithm1.loss.readings["scalar_norm"] == "absolute"
    baseline = apply_tuned(runspec.prune_run(config, "demo", "taylor", "pruning_base", 50, 0), TUNED)
    assert baseline.prune.finetune_loss == baseline.loss and baseline.loss.params["learning_rate"] == 0.004


def test_algorithm1_fine_tuned_with_the_task_loss_reads_the_tuned_readings_as_the_baseline_does(demo_config):
    """Under pruning.finetune_loss: task, Algorithm 1 fine-tunes with another loss than its importance loss: the
    tuned readings reach it too, so both methods fine-tune on equal terms (docs/method.md, Equal terms)."""
    config = {**demo_config, "pruning": {**demo_config["pruning"], "finetune_loss": "task"}}
    run = runspec.prune_run(config, "demo", "kd_taylor", "pruning_base", 50, 0)
    assert run.prune.finetune_loss.readings["scalar_norm"] == "squared"
    tuned = apply_tuned(run, TUNED)
    assert tuned.loss.params["alpha1"] == 0.3 and tuned.loss.readings["scalar_norm"] == "absolute"
    finetune = tuned.prune.finetune_loss
    assert (finetune.name, finetune.params, finetune.readings["scalar_norm"]) == ("task", {}, "absolute")
    baseline = apply_tuned(runspec.prune_run(config, "demo", "taylor", "pruning_base", 50, 0), TUNED)
    assert finetune.readings == baseline.prune.finetune_loss.readings


def test_tuned_values_reach_the_fine_tuning_loss_after_a_json_round_trip(demo_config):
    """The rules hand a run spec over as its dict form (params, info.json): after JSON, the importance loss and
    the fine-tuning loss are two equal objects, not one, and both still get the tuned values."""
    config = {**demo_config, "pruning": {**demo_config["pruning"], "finetune_loss": "stcd"}}
    run = runspec.prune_run(config, "demo", "kd_taylor", "teacher", 97, 0)
    passed = runspec.RunSpec.from_dict(json.loads(json.dumps(run.to_dict())))
    assert passed == run and passed.prune.finetune_loss is not passed.loss
    tuned = apply_tuned(passed, TUNED)
    for loss in (tuned.loss, tuned.prune.finetune_loss):
        assert loss.params["alpha1"] == 0.3 and loss.readings["scalar_norm"] == "absolute"
    assert tuned.to_dict()["finetune_loss"] == tuned.to_dict()["loss"]


def test_a_file_that_is_no_tuning_result_is_rejected_naming_it(tmp_path):
    path = tmp_path / "stcd.yaml"
    path.write_text("alpha1: 0.3\n")
    with pytest.raises(schema.ConfigError, match="stcd.yaml: not a tuning result"):
        read_tuned(path)


def test_the_rollout_switches_tune_a_run_that_rolls_out(demo_config):
    """training.rollout.* switches apply to a run with rollout training alone (the target source to a distilling
    one), go into its rollout settings, and a tuned length below the first one is the length throughout."""
    config = json.loads(json.dumps(demo_config))
    config["tuning"]["switches"] |= {"training.rollout.last_steps": [3, 9], "training.rollout.targets":
                                     ["truth", "teacher"], "training.rollout.feedback_gradient": [True, False]}
    schema.validate(config)
    rollout = {"training.rollout.last_steps", "training.rollout.targets", "training.rollout.feedback_gradient"}
    assert not rollout & set(tuning_switches(config, "stcd"))
    assert rollout <= set(tuning_switches(config, "stcd", rolls_out=True))
    assert "training.rollout.targets" not in tuning_switches(config, "task", rolls_out=True)
    run = runspec.deployable_run(config, "demo", "stcd_rollout", 0)
    assert switch_value(run, "training.rollout.last_steps") == 3
    assert switch_value(runspec.student_run(config, "demo", "stcd", 0), "training.rollout.targets") is None
    out = apply_tuned(run, {"hyperparameters": {}, "switches": {"training.rollout.last_steps": 9,
                                                                "training.rollout.targets": "truth"}})
    assert out.train.rollout == runspec.RolloutTraining(1, 9, 1, "truth", True)
    late = replace(run, train=replace(run.train, rollout=runspec.RolloutTraining(4, 6, 1)))
    short = apply_tuned(late, {"hyperparameters": {}, "switches": {"training.rollout.last_steps": 2}})
    assert short.train.rollout == runspec.RolloutTraining(2, 2, 1)
    with pytest.raises(schema.ConfigError, match="training.rollout"):
        switch_value(run, "training.rollout.no_such_key")
