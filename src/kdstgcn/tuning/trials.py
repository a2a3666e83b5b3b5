"""What a tuning worker does: draw a trial's values, lay them over the study's run spec, train (a student, or
a pruning run's fine-tuning) with pruning of poor trials after each epoch, until the study holds `tuning.trials`
finished trials."""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from kdstgcn.config.runspec import RunSpec
from kdstgcn.config.tuned import apply_tuned, switch_value
from kdstgcn.jobs.prune import fit_prune
from kdstgcn.jobs.train import fit_run
from kdstgcn.training.loop import NonFiniteLoss
from kdstgcn.tuning.storage import fail_stale_trials

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SurplusTrial(RuntimeError):
    """Parallel workers started more trials than the study needs; the later one stops unrun (state FAIL)."""


def suggest(trial: optuna.Trial, space: dict, switches: dict) -> dict:
    """The trial's values in the shape of a tuned result: {"hyperparameters": ..., "switches": ...}."""
    hyper = {}
    for name, spec in space.items():
        if "choices" in spec:
            hyper[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            hyper[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return {"hyperparameters": hyper,
            "switches": {name: trial.suggest_categorical(name, values) for name, values in switches.items()}}


def enqueue_paper_values(study: optuna.Study, run: RunSpec, space: dict, switches: dict) -> None:
    """Queue the paper's values and today's switch settings (those inside the space) as a trial, once, so that
    tuning starts from them."""
    if any(t.user_attrs.get("source") == "paper" for t in study.get_trials(deepcopy=False)):
        return
    hyper = {**run.loss.params, "learning_rate": run.train.learning_rate, "batch_size": run.train.batch_size}
    params = {name: hyper[name] for name, spec in space.items() if name in hyper and (
        hyper[name] in spec["choices"] if "choices" in spec else spec["low"] <= hyper[name] <= spec["high"])}
    for name, values in switches.items():
        value = switch_value(run, name)
        if value in values:
            params[name] = value
    study.enqueue_trial(params, user_attrs={"source": "paper"})


def trainer(inputs: dict) -> Callable[[RunSpec, str, Callable], object]:
    """How a trial trains, as fit(run, checkpoint, on_epoch): a student from scratch, or, when the inputs hold a
    base model, pruning it and fine-tuning its compact form."""
    if "base" in inputs:
        return lambda run, checkpoint, on_epoch: fit_prune(run, inputs["values"], inputs["fill_report"],
                                                           inputs["base"], inputs.get("teacher"), checkpoint,
                                                           on_epoch)
    return lambda run, checkpoint, on_epoch: fit_run(run, inputs["values"], inputs["fill_report"],
                                                     inputs["adjacency"], checkpoint, inputs.get("teacher"),
                                                     on_epoch)


def objective(run: RunSpec, space: dict, switches: dict, fit, trials: int, worker: int):
    """The function a worker optimises: train with the trial's values for the study's epochs (`fit`, from
    `trainer`) and return the best validation MAE at its last epoch. The best so far is reported after every epoch,
    where the study's pruner (successive halving over epochs) may stop the trial; a trial that reached the full
    budget is never stopped, so every complete trial, and only a complete one, ran every epoch."""

    def run_trial(trial: optuna.Trial) -> float:
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                   if t.number < trial.number]
        if len(earlier) >= trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the study already has {trials} trials")
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("val_mae", [])
        values = suggest(trial, space, switches)
        log.info("trial %d (worker %d): %s", trial.number, worker, values)
        trial_run = apply_tuned(run, values, source=f"trial {trial.number}")
        val_mae: list[float] = []

        def on_epoch(epoch: int, row: dict) -> None:
            val_mae.append(float(row["val_mae"]))
            trial.set_user_attr("val_mae", val_mae)
            trial.report(min(val_mae), epoch)
            if epoch < run.train.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: best validation MAE {min(val_mae):.4f} is not among the "
                                         "best of the trials that reached this epoch")

        with tempfile.TemporaryDirectory(prefix="kdstgcn-trial-") as scratch:
            try:
                fit(trial_run, f"{scratch}/checkpoint.pt", on_epoch)
            except NonFiniteLoss as exc:
                trial.set_user_attr("diverged", str(exc))
                raise optuna.TrialPruned(f"diverged: {exc}") from exc
        return min(val_mae)

    return run_trial


def work(study: optuna.Study, run_trial, trials: int, poll_s: float) -> int:
    """Run trials until the study has `trials` finished ones; while the others' running trials would fill it,
    wait (one of them may die and be retried here). Returns the number of trials this worker started."""
    ran = 0
    while True:
        fail_stale_trials(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished = sum(s in FINISHED for s in states)
        if finished >= trials:
            return ran
        if finished + states.count(TrialState.RUNNING) >= trials:
            time.sleep(poll_s)
            continue
        study.optimize(run_trial, n_trials=1, catch=(SurplusTrial,))
        ran += 1
