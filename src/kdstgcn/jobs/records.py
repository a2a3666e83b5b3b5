"""What a trained model records: the identity its checkpoint must match to be resumed, and the summary written
beside its weights (info.json)."""
from __future__ import annotations

import pandas as pd

from kdstgcn.config.runspec import RunSpec
from kdstgcn.losses.base import Loss
from kdstgcn.model.persist import count_parameters, weights_digest
from kdstgcn.model.stgcn import STGCN


def resume_identity(run: RunSpec, keys: tuple[str, ...], teacher: STGCN | None, **depends_on: str) -> dict:
    """What a run's checkpoint must match to be resumed: the `keys` of its spec's dict form, plus a digest of the
    teacher it distils from and of any other model it starts from (`depends_on`)."""
    spec = run.to_dict()
    identity = {k: spec[k] for k in keys} | depends_on
    if teacher is not None:
        identity["teacher"] = weights_digest(teacher)
    return identity


def run_summary(run: RunSpec, history: pd.DataFrame, loss: Loss, model: STGCN) -> dict:
    """What every trained model records beside its weights: spec, best epoch, budget, teacher share, size, and the
    precision its last epoch was trained in."""
    best = history.loc[history["val_mae"].idxmin()]
    return {"run": run.to_dict(), "best_epoch": int(best["epoch"]), "best_val_mae": float(best["val_mae"]),
            "precision": str(history["precision"].iloc[-1]),
            "epochs_run": int(history["epoch"].max()), "teacher_share_pct": loss.share_pct(),
            "parameters": count_parameters(model), "seconds_per_epoch": float(history["epoch_seconds"].mean())}
