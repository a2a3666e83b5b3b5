"""Whether a verdict row can judge its claim at all: a teacher better than the model trained without KD, the
paper's epoch budget, more than one seed; and which of the paper's open readings each model was trained with,
those that leave the paper's equations marked."""
from __future__ import annotations

import pandas as pd

from kdstgcn.config.layout import HYPERPARAMETER_SOURCES, parse_pruned
from kdstgcn.losses.registry import LOSSES, READING_CHOICES, beyond_paper
from kdstgcn.report.labels import paper_label

BEYOND_PAPER_TAG = " (beyond the paper)"


def loss_readings(loss: dict) -> str:
    """The readings a loss spec (its dict form) trains with, those its loss uses only, e.g. 'scalar_norm=squared';
    a reading that leaves the paper's equations is marked; 'none' for a loss that takes none. A spec that
    records no readings takes the defaults (each reading's first choice)."""
    recorded = loss.get("readings") or {}
    parts = []
    for key in LOSSES[loss["name"]].readings:
        value = recorded.get(key, READING_CHOICES[key][0])
        parts.append(f"{key}={value}" + (BEYOND_PAPER_TAG if beyond_paper(key, value) else ""))
    return ", ".join(parts) or "none"


def run_readings(run: dict) -> str:
    """The readings of a run (its spec's dict form, as info.json records it under "run"): its loss's and, for a
    pruning run that fine-tunes with another loss, the fine-tuning loss's."""
    text = loss_readings(run["loss"])
    finetune = run.get("finetune_loss")
    if finetune is not None and finetune != run["loss"]:
        text += f"; fine-tuning ({finetune['name']}): {loss_readings(finetune)}"
    return text


def trained_epochs(model: str, epochs: int) -> int | None:
    """The epochs a model was trained from scratch (None for a pruned model: its epochs are fine-tuning, for
    which the paper gives no budget)."""
    return None if parse_pruned(model) is not None else int(epochs)


def judgeable(teacher_mae: float, without_kd: dict[str, float], label: str, epochs: list[int], paper_epochs: int,
              seeds: int) -> str:
    """'yes', or why a verdict row cannot judge its claim, the reasons joined by '; ': the teacher (its MAE at
    this horizon) is not better than the model without KD (`without_kd`: its MAE per hyper-parameter source,
    `label` its name), a model was trained fewer `epochs` than the paper's, or one seed gives no spread."""
    reasons = []
    beaten = {source: mae for source, mae in without_kd.items() if not teacher_mae < mae}
    if beaten:
        values = ", ".join(f"{source} values {mae:.2f}" for source, mae in beaten.items())
        reasons.append(f"the teacher (MAE {teacher_mae:.2f}) is not better than the {label} ({values})")
    if epochs and min(epochs) < paper_epochs:
        reasons.append(f"fewer epochs than the paper ({min(epochs)} of {paper_epochs})")
    if seeds < 2:
        reasons.append("one seed, so no spread")
    return "; ".join(reasons) or "yes"


def without_kd_label(model: str) -> str:
    """How the reasons name the model without KD: 'student without KD', or the baseline's paper label."""
    return "student without KD" if model == "student_task" else paper_label(model)


def source_means(frames: dict[str, pd.DataFrame], horizon: int) -> dict[str, float]:
    """Each source's mean MAE at `horizon` (`frames`: source -> a spread summary indexed by horizon_min)."""
    return {source: float(frames[source].loc[horizon, "ours"]) for source in HYPERPARAMETER_SOURCES}
