"""Whether a verdict row can judge its claim at all: a teacher better than the model trained without KD, the
reference epoch budget (STGCN's: the paper gives none), more than one seed, more than one test day; and which of
the paper's open readings each model was trained with, those that leave the paper's equations marked."""
from __future__ import annotations

import pandas as pd

from kdstgcn.losses.registry import LOSSES, READING_CHOICES, SCALE_READINGS, beyond_paper
from kdstgcn.report.effects import ONE_TEST_DAY
from kdstgcn.report.labels import paper_label
from kdstgcn.report.tables import reference_budget

BEYOND_PAPER_TAG = " (beyond the paper)"


def loss_readings(loss: dict) -> str:
    """The readings a loss spec (its dict form) trains with, those its loss uses only, e.g. 'scalar_norm=squared';
    a reading that leaves the paper's equations is marked; 'none' for a loss that takes none. A spec that
    records no readings takes the defaults (each reading's first choice); a scale reading is named only where
    recorded (set to a count, the registry's SCALE_READINGS)."""
    recorded = loss.get("readings") or {}
    parts = []
    for key in LOSSES[loss["name"]].readings:
        if key in SCALE_READINGS and key not in recorded:
            continue
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


def judgeable(teacher_mae: float, without_kd: dict[str, float], label: str, epochs: list[int],
              reference_epochs: int, seeds: int, test_days: int) -> str:
    """'yes', or why a verdict row cannot judge its claim, the reasons joined by '; ': the teacher (its MAE at
    this horizon) is not better than the model without KD (`without_kd`: its MAE per hyper-parameter source,
    `label` its name); a model trained from scratch (`epochs`: the teacher's, each claim model's or, for a pruned
    one, its base's) trained fewer epochs than the reference budget (`training.paper_epochs`, STGCN's); one seed,
    whose interval covers the test days but not the randomness of training; one test day, which gives no
    interval (kdstgcn.report.effects)."""
    reasons = []
    beaten = {source: mae for source, mae in without_kd.items() if not teacher_mae < mae}
    if beaten:
        values = ", ".join(f"{source} values {mae:.2f}" for source, mae in beaten.items())
        reasons.append(f"the teacher (MAE {teacher_mae:.2f}) is not better than the {label} ({values})")
    if epochs and min(epochs) < reference_epochs:
        reasons.append(f"fewer epochs than {reference_budget(reference_epochs)} ({min(epochs)} of "
                       f"{reference_epochs}; the paper gives no epoch count)")
    if seeds < 2:
        reasons.append("one seed: the interval covers the test days, not the randomness of training")
    if test_days < 2:
        reasons.append(f"{ONE_TEST_DAY}, so no interval")
    return "; ".join(reasons) or "yes"


def without_kd_label(model: str) -> str:
    """How the reasons name the model without KD: 'student without KD', or the baseline's paper label."""
    return "student without KD" if model == "student_task" else paper_label(model)


def source_means(frames: dict[str, pd.DataFrame], horizon: int) -> dict[str, float]:
    """Each source's mean MAE at `horizon` (`frames`: source -> a spread summary indexed by horizon_min)."""
    return {source: float(frame.loc[horizon, "ours"]) for source, frame in frames.items()}
