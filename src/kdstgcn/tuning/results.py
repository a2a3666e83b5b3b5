"""What a finished study gives: its best complete trial's values (the tuning result `apply_tuned` reads) and a
table of all its trials."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from kdstgcn.runtime.io import atomic_path, write_table
from kdstgcn.tuning.storage import load_study

log = logging.getLogger(__name__)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value (best validation MAE), its values, the validation MAE of every
    epoch it ran (the curve the pruner judged), where it came from (paper values, sampled, retry of a dead
    worker's trial), its worker and times."""
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
    """The values of the best trial that reached the full budget of `epochs` (the shape `apply_tuned` reads),
    which trial, its validation MAE."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if len(t.user_attrs.get("val_mae", [])) == epochs]
    if not complete:
        raise RuntimeError(f"study {dataset}/{name}: no trial ran all {epochs} epochs (all pruned or failed); see "
                           "its trials")
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


def finish_study(study_path: str, worker_files: list[str], heartbeat_s: int, dataset: str, name: str, space: dict,
                 epochs: int, yaml_out: str, trials_out: str) -> dict:
    """Write the result and the trials table (`write_result`) of the finished study in the journal `study_path`
    that the workers' summaries `worker_files` name."""
    studies = {json.loads(Path(path).read_text()).get("study") for path in worker_files}
    if len(studies) != 1 or None in studies:
        raise RuntimeError(f"{study_path}: the tuning workers' files {list(worker_files)} name the studies "
                           f"{sorted(map(str, studies))}, not one; delete them to rerun the workers")
    study = load_study(study_path, studies.pop(), heartbeat_s)
    result = write_result(study, dataset, name, space, epochs, yaml_out, trials_out)
    log.info("best: trial %d, validation MAE %.4f, %s %s", result["trial"], result["val_mae"],
             result["hyperparameters"], result["switches"])
    return result
