"""Tuned values laid over a run spec, the spaces and switches a study tunes, and which hyper-parameter source
(paper or tuned) a student or pruned model follows."""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

import yaml

from kdstgcn.config.layout import HYPERPARAMETER_SOURCES, variant_name
from kdstgcn.config.runspec import LossSpec, RolloutTraining, RunSpec, TrainSettings
from kdstgcn.config.schema import ConfigError
from kdstgcn.losses.registry import LOSSES, READING_CHOICES, SCALE_READINGS


def tuning_space(config: dict, loss: str) -> dict:
    """Ranges tuned for one loss: learning rate, batch size and that loss's own weights (Table 6's columns)."""
    names = ["learning_rate", "batch_size", *LOSSES[loss].tuned_parameters]
    return {name: config["tuning"]["space"][name] for name in names}


def tuning_switches(config: dict, loss: str, rolls_out: bool = False) -> dict:
    """The categorical switches tuned for one loss: `tuning.switches` less the readings that loss does not use,
    and less the rollout training's switches unless the run `rolls_out` (its target source only where the loss
    has a teacher to roll out)."""
    def applies(name: str) -> bool:
        section, key = switch_place(name)
        if section == "rollout":
            return rolls_out and (key != "targets" or LOSSES[loss].uses_teacher)
        return section != "distillation" or key not in READING_CHOICES or key in LOSSES[loss].readings

    return {name: values for name, values in config["tuning"]["switches"].items() if applies(name)}


TUNED_KEYS = ("hyperparameters", "switches")


ROLLOUT_SWITCH = "training.rollout."


def switch_place(name: str) -> tuple[str, str]:
    """(section, key) of the switch `name`: `training.rollout.<key>` ("rollout"), a field of the run's rollout
    training; `training.<key>`, a field of its training settings; or `distillation.<key>`, an entry of its loss
    spec's readings."""
    rollout = [f.name for f in fields(RolloutTraining)]
    if name.startswith(ROLLOUT_SWITCH) and name[len(ROLLOUT_SWITCH):] in rollout:
        return "rollout", name[len(ROLLOUT_SWITCH):]
    section, key = name.split(".", 1)
    settings = [f.name for f in fields(TrainSettings) if f.name != "rollout"]
    if (section == "training" and key in settings) or section == "distillation":
        return section, key
    raise ConfigError(f"switch {name!r}: only training.*, training.rollout.* and distillation.* keys can be tuned "
                      f"(training: one of {settings}; training.rollout: one of {rollout})")


def switch_value(run: RunSpec, name: str):
    """The value a run spec holds for the switch `name` (None where its loss records no such reading; the default
    of a scale reading its loss records readings without: a spec records one only where set)."""
    section, key = switch_place(name)
    if section == "training":
        return getattr(run.train, key)
    if section == "rollout":
        return None if run.train.rollout is None else getattr(run.train.rollout, key)
    if run.loss.readings is None:
        return None
    return run.loss.readings.get(key, READING_CHOICES[key][0] if key in SCALE_READINGS else None)


def with_readings(loss: LossSpec, readings: dict) -> LossSpec:
    """The loss spec with `readings` laid over its own; a loss that records none (a reference run's) is left
    alone."""
    if not readings or loss.readings is None:
        return loss
    return replace(loss, readings={**loss.readings, **readings})


def apply_tuned(run: RunSpec, tuned: dict, source: str = "tuned") -> RunSpec:
    """The run spec with tuned values: `tuned["hyperparameters"]` (learning rate and batch size into the training
    settings, every value into the loss's parameters, as `student_run` records them) and `tuned["switches"]`
    (see `switch_place`). A pruning run that fine-tunes with its importance loss gets them in both; one that
    fine-tunes with another loss (Algorithm 1 under `pruning.finetune_loss: task`) gets the tuned readings in
    that loss too, so that its fine-tuning reads them as the baseline's does. `source` is recorded as the run's
    `hyperparameter_source`."""
    hyper = tuned["hyperparameters"]
    train = replace(run.train, **{k: hyper[k] for k in ("batch_size", "learning_rate") if k in hyper})
    places = {name: switch_place(name) for name in tuned["switches"]}
    train = replace(train, **{key: tuned["switches"][name] for name, (section, key) in places.items()
                              if section == "training"})
    rolled = {key: tuned["switches"][name] for name, (section, key) in places.items() if section == "rollout"}
    if rolled and train.rollout is not None:
        rollout = asdict(train.rollout) | rolled
        # a rollout tuned shorter than it starts is that length throughout
        rollout["first_steps"] = min(rollout["first_steps"], rollout["last_steps"])
        train = replace(train, rollout=RolloutTraining(**rollout))
    readings = {key: tuned["switches"][name] for name, (section, key) in places.items() if section == "distillation"}
    loss = with_readings(replace(run.loss, params={**run.loss.params, **hyper}), readings)
    prune = run.prune
    if prune is not None:
        finetune = loss if prune.finetune_loss == run.loss else with_readings(prune.finetune_loss, readings)
        prune = replace(prune, finetune_loss=finetune)
    return replace(run, train=train, loss=loss, prune=prune, hyperparameter_source=source)


def read_tuned(path: str | Path) -> dict:
    """The tuned values of one study (written by the `tune` rule), checked for the keys `apply_tuned` needs."""
    tuned = yaml.safe_load(Path(path).read_text())
    if not isinstance(tuned, dict) or not all(isinstance(tuned.get(k), dict) for k in TUNED_KEYS):
        raise ConfigError(f"{path}: not a tuning result (needs the mappings {list(TUNED_KEYS)}); delete it and "
                          "run its `tune` rule again")
    return tuned


def with_tuning_result(run: RunSpec, path: str | None) -> RunSpec:
    """The run spec with the tuning result in `path` laid over it (`apply_tuned`); unchanged without one."""
    if not path:
        return run
    values = read_tuned(path)
    return apply_tuned(run, values, source=f"tuned: {path}, trial {values.get('trial')}")


def source_section(model: str) -> str:
    """The config section whose `hyperparameter_source` a student or pruned model follows."""
    if model.startswith("student_"):
        return "distillation"
    if model.startswith("pruned_"):
        return "pruning"
    raise ConfigError(f"{model!r} has no tunable hyper-parameters: only students and pruned models do")


def sourced_model(config: dict, model: str, source: str) -> str:
    """The folder name of a student or pruned `model` trained with the `source` values (paper or tuned): the
    tables' own run where its section's hyperparameter_source is `source`, else `<model>_<source>`, a variant
    trained only for the verdict (one run per setting: nothing is trained twice)."""
    if source not in HYPERPARAMETER_SOURCES:
        raise ConfigError(f"unknown hyper-parameter source {source!r}; choose one of {list(HYPERPARAMETER_SOURCES)}")
    if config[source_section(model)]["hyperparameter_source"] == source:
        return model
    return variant_name(model, source)
