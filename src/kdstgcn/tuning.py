"""Per-dataset tuning with Optuna, on the validation MAE only, of a student's hyper-parameters (per loss) and
of a pruning run's (per method, base and ratio).

One study per dataset and loss (or pruned model) lives in an Optuna journal file (`config.tuning_study_path`)
that any number of worker processes share, on one machine or on a cluster's shared file system (file lock,
no database server). Each worker runs trials until the study holds `tuning.trials` finished (complete or
pruned) ones. Trials record a heartbeat; a trial whose worker died goes silent, is failed by the next worker
that looks and retried with the same values, so a killed worker never blocks the study and a rerun of the
worker continues it.
"""
from __future__ import annotations

import copy
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the interface RDBStorage implements; not re-exported
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from kdstgcn.config.core import apply_tuned, switch_slot
from kdstgcn.runtime.io import atomic_path, write_table
from kdstgcn.jobs import fit_prune, fit_run
from kdstgcn.training.loop import NonFiniteLoss

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT = "heartbeat"
STALE_AFTER_HEARTBEATS = 5  # a running trial silent for this many heartbeat intervals is failed and retried
MAX_RETRIES = 2  # retries of a trial whose worker died, so that a trial that kills its worker cannot loop


class StudyMismatch(RuntimeError):
    """The study file was made with other settings than the configuration asks for now."""


class SurplusTrial(RuntimeError):
    """Parallel workers started more trials than the study needs; the later one stops unrun (state FAIL)."""


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal file storage with heartbeats (which Optuna offers only for databases): each running
    trial writes the time every `heartbeat_s`; one silent for STALE_AFTER_HEARTBEATS intervals is stale. The
    times are the workers' clocks, so on a cluster the nodes' clocks must agree to well within that."""

    def __init__(self, path: str | Path, heartbeat_s: int):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        self.heartbeat_s = heartbeat_s
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        # a retried trial inherits its predecessor's last heartbeat: it counts only after the trial's start
        return [t._trial_id for t in running
                if now - max(t.system_attrs.get(HEARTBEAT, 0.0), t.datetime_start.timestamp())
                > STALE_AFTER_HEARTBEATS * self.heartbeat_s]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_s

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        return self.retry


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and queue for retry) the running trials whose worker stopped sending heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def open_study(path: str | Path, identity: dict, tuning: dict, worker: int) -> optuna.Study:
    """Create or load the study in `path`. `identity` (dataset, loss, base run, space, switches) must equal the
    one it was created with, so that trials of other settings are never mixed."""
    storage = HeartbeatJournalStorage(path, tuning["heartbeat_s"])
    pruner = optuna.pruners.MedianPruner(n_startup_trials=tuning["startup_trials"],
                                         n_warmup_steps=tuning["warmup_epochs"])
    study = optuna.create_study(storage=storage, study_name="study", direction="minimize", pruner=pruner,
                                load_if_exists=True)
    # seeded per worker and per restart (the trials already there), so no two draw the same random values
    study.sampler = optuna.samplers.TPESampler(seed=tuning["seed"] + worker + 1000 * len(study.trials),
                                               n_startup_trials=tuning["startup_trials"], constant_liar=True)
    wanted = json.loads(json.dumps(identity))
    found = study.user_attrs.get("identity")
    if found is None:
        study.set_user_attr("identity", wanted)
    elif found != wanted:
        differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        raise StudyMismatch(f"{path}: this study was made with other settings (they differ in {differ}). Delete "
                            "it to start the study over, or restore the settings to continue it.")
    return study


def load_study(path: str | Path, heartbeat_s: int) -> optuna.Study:
    """An existing study, to read its trials."""
    return optuna.load_study(study_name="study", storage=HeartbeatJournalStorage(path, heartbeat_s))


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


def enqueue_paper_values(study: optuna.Study, run: dict, space: dict, switches: dict) -> None:
    """Queue the paper's values and today's switch settings (those inside the space) as a trial, once, so that
    tuning starts from them."""
    if any(t.user_attrs.get("source") == "paper" for t in study.get_trials(deepcopy=False)):
        return
    hyper = {**run["loss"]["params"], "learning_rate": run["train"]["learning_rate"],
             "batch_size": run["train"]["batch_size"]}
    params = {name: hyper[name] for name, spec in space.items() if name in hyper and (
        hyper[name] in spec["choices"] if "choices" in spec else spec["low"] <= hyper[name] <= spec["high"])}
    for name, values in switches.items():
        slot, key = switch_slot(copy.deepcopy(run), name)
        if slot.get(key) in values:
            params[name] = slot[key]
    study.enqueue_trial(params, user_attrs={"source": "paper"})


def trainer(inputs: dict) -> Callable[[dict, str, Callable], object]:
    """How a trial trains, as fit(run, checkpoint, on_epoch): a student from scratch, or, when the inputs hold a
    base model, pruning it and fine-tuning its compact form."""
    if "base" in inputs:
        return lambda run, checkpoint, on_epoch: fit_prune(run, inputs["values"], inputs["fill_report"],
                                                           inputs["base"], inputs.get("teacher"), checkpoint,
                                                           on_epoch)
    return lambda run, checkpoint, on_epoch: fit_run(run, inputs["values"], inputs["fill_report"],
                                                     inputs["adjacency"], checkpoint, inputs.get("teacher"),
                                                     on_epoch)


def objective(run: dict, space: dict, switches: dict, fit, trials: int, worker: int):
    """The function a worker optimises: train with the trial's values for the study's epochs (`fit`, from
    `trainer`) and return the best validation MAE; the best so far is reported after every epoch for pruning."""

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
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: best validation MAE {min(val_mae):.4f} is above the "
                                         "median of earlier trials")

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


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value (best validation MAE), its values, the validation MAE of every
    epoch it ran, where it came from (paper values, sampled, retry of a dead worker's trial), its worker and times."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{f"param_{k}": v for k, v in t.params.items()},
                     "val_mae_per_epoch": attrs.get("val_mae"), "epochs_run": len(attrs.get("val_mae", [])),
                     "source": "retry" if "failed_trial" in t.system_attrs else attrs.get("source", "sampled"),
                     "retry_of": t.system_attrs.get("failed_trial"),
                     "worker": attrs.get("worker"), "diverged": attrs.get("diverged"),
                     "started": t.datetime_start, "finished": t.datetime_complete})
    return pd.DataFrame(rows)


def tuned_result(study: optuna.Study, dataset: str, name: str, space: dict, epochs: int) -> dict:
    """The best complete trial's values (the shape `apply_tuned` reads), which trial, its validation MAE."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {dataset}/{name}: no trial completed (all pruned or failed); see its trials")
    best = min(complete, key=lambda t: t.value)
    counts = pd.Series([t.state.name.lower() for t in study.get_trials(deepcopy=False)]).value_counts()
    return {"dataset": dataset, "study": name,
            "hyperparameters": {k: v for k, v in best.params.items() if k in space},
            "switches": {k: v for k, v in best.params.items() if k not in space},
            "trial": best.number, "val_mae": float(best.value), "epochs_per_trial": epochs,
            "trials": {k: int(v) for k, v in counts.items()}}


def write_result(study: optuna.Study, dataset: str, name: str, space: dict, epochs: int, yaml_out: str,
                 trials_out: str) -> dict:
    result = tuned_result(study, dataset, name, space, epochs)
    write_table(trials_table(study), trials_out)
    with atomic_path(yaml_out) as tmp:
        tmp.write_text(yaml.safe_dump(result, sort_keys=False))
    return result
