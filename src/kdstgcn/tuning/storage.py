"""Where a study lives: an Optuna journal file (`kdstgcn.config.layout.tuning_journal`) that any number of worker
processes share, on one machine or on a cluster's shared file system (file lock, no database server).

A journal holds one study per set of sources (`study_name`): data, graph, models or code that changed upstream
start a fresh study beside the old one instead of continuing trials that were run on other inputs.

Trials record a heartbeat; a trial whose worker died goes silent, is failed by the next worker that looks and
retried with the same values, so a killed worker never blocks the study and a rerun of the worker continues it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
# the interface RDBStorage implements, which Optuna does not export: no public API gives a storage heartbeats, so
# pyproject.toml pins optuna to the versions this was tested on (4.9: the first with its present methods)
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
STALE_AFTER_HEARTBEATS = 5  # a running trial silent for this many heartbeat intervals is failed and retried
MAX_RETRIES = 2  # retries of a trial whose worker died, so that a trial that kills its worker cannot loop


class StudyMismatch(RuntimeError):
    """The study file was made with other settings than the configuration asks for now."""


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


def study_name(sources: dict) -> str:
    """The name of the study, in its journal, whose trials read `sources` (digests of what a trial reads)."""
    return "study-" + hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]


def open_study(path: str | Path, identity: dict, sources: dict, tuning: dict, worker: int) -> optuna.Study:
    """Create or load the study of `sources` in the journal `path` (`study_name`), so that trials run on other
    inputs are never continued. `identity` (the run spec, space, switches) must equal the one the study was created
    with, so that trials of other settings are never mixed."""
    storage = HeartbeatJournalStorage(path, tuning["heartbeat_s"])
    name = study_name(sources)
    # epochs are the budget: a trial reports after each epoch and may stop at a rung of successive halving
    pruner = optuna.pruners.HyperbandPruner(min_resource=tuning["min_epochs"], max_resource=tuning["epochs"],
                                            reduction_factor=tuning["reduction_factor"])
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", pruner=pruner,
                                load_if_exists=True)
    # seeded per worker and per restart (the trials already there), so no two draw the same random values
    study.sampler = optuna.samplers.TPESampler(seed=tuning["seed"] + worker + 1000 * len(study.trials),
                                               n_startup_trials=tuning["startup_trials"], constant_liar=True)
    wanted = json.loads(json.dumps(identity))
    found = study.user_attrs.get("identity")
    if found is None:
        study.set_user_attr("identity", wanted)
        log.info("%s: a new study %s, of the data, graph, models and code %s", path, name, sources)
    elif found != wanted:
        differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        raise StudyMismatch(f"{path}: this study was made with other settings (they differ in {differ}). Delete "
                            "it to start the study over, or restore the settings to continue it.")
    return study


def load_study(path: str | Path, name: str, heartbeat_s: int) -> optuna.Study:
    """The existing study `name` in the journal `path`, to read its trials."""
    return optuna.load_study(study_name=name, storage=HeartbeatJournalStorage(path, heartbeat_s))
