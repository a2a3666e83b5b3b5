"""Beyond the paper: the deployable models (config section `deployable`) beside the teacher and the paper's
students, and the best one under the parameter budget.

The best is the model with the lowest validation MAE (its best epoch's, mean over seeds) among those with at most
`parameter_budget_pct` % of the teacher's parameters: the test days never choose it. Its claim: at every horizon its
test MAE lies within `target_gap_pct` % of the teacher's. The margin tested is MAE - (1 + target / 100) x the
teacher's MAE (below 0: within the target), with the 95 % interval of kdstgcn.report.effects over the test days
and seeds, each seed's model paired with the teacher it was trained beside.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from kdstgcn.config.layout import HYPERPARAMETER_SOURCES, RunPlace, parse_deployable
from kdstgcn.model.notation import format_blocks
from kdstgcn.report.effects import NOT_TRAINED, outcome, paired_interval
from kdstgcn.report.preconditions import judgeable
from kdstgcn.report.verdict import (VERDICT_COLUMNS, VERDICT_METRIC, anatomy_sentence, paired_differences,
                                    seed_spread)

TEACHER = "teacher"
COLUMNS = ["dataset", "model", "loss", "architecture", "rollout", "values", "parameters", "param_pct", "within_budget",
           "val_mae", "horizon_min", "mae", "mae_std", "n_seeds", "epochs", "teacher_mae", "gap_pct", "margin",
           "ci_low", "ci_high", "outcome", "best"]


def claim_text(budget_pct: float, target_gap_pct: float) -> str:
    """The verdict's claim of the best deployable model; its effect is the margin, not a difference of two MAEs."""
    return (f"Beyond the paper: the best deployable student (at most {budget_pct:g} % of the teacher's parameters) "
            f"is within {target_gap_pct:g} % of the teacher's MAE (effect: its MAE - {1 + target_gap_pct / 100:g} "
            "x the teacher's)")


def rollout_text(train: dict) -> str:
    """How a run's settings say it was rolled out in training: 'one step', or its schedule and targets."""
    rollout = train.get("rollout")
    if rollout is None:
        return "one step"
    steps = (f"{rollout['first_steps']} steps" if rollout["first_steps"] == rollout["last_steps"] else
             f"{rollout['first_steps']} to {rollout['last_steps']} steps, one more every "
             f"{rollout['epochs_per_step']} epoch(s)")
    fed = "gradient through the fed-back predictions" if rollout["feedback_gradient"] else "fed back detached"
    return f"{steps}, later steps from the {rollout['targets']}, {fed}"


def model_rows(dataset: str, model: str, metrics, daily, infos, seeds, teacher: pd.DataFrame, teacher_params: int,
               budget_pct: float, target_gap_pct: float) -> list[dict]:
    """The rows of one model (one per horizon) of `deployable_table`."""
    info = infos[RunPlace(dataset, int(seeds[0]), model)]
    run = info["run"]
    params = int(info["parameters"])
    ours = teacher if model == TEACHER else seed_spread(metrics, dataset, model, seeds).set_index("horizon_min")
    val_mae = float(np.mean([infos[RunPlace(dataset, int(s), model)]["best_val_mae"] for s in seeds]))
    margins = (None if model == TEACHER else
               paired_differences(daily, dataset, model, TEACHER, seeds, 1 + target_gap_pct / 100))
    rows = []
    for h in ours.index:
        low, high = (np.nan, np.nan) if margins is None else (float(e) for e in paired_interval(margins[h]))
        mae, teacher_mae = float(ours.loc[h, "ours"]), float(teacher.loc[h, "ours"])
        rows.append({
            "dataset": dataset, "model": model, "loss": run["loss"]["name"],
            "architecture": format_blocks(run["arch"]["blocks"]), "rollout": rollout_text(run["train"]),
            "values": run.get("hyperparameter_source") or "paper", "parameters": params,
            "param_pct": 100 * params / teacher_params, "within_budget": 100 * params <= budget_pct * teacher_params,
            "val_mae": val_mae, "horizon_min": int(h), "mae": mae, "mae_std": float(ours.loc[h, "ours_std"]),
            "n_seeds": int(ours.loc[h, "n_seeds"]), "epochs": int(ours["epochs"].min()), "teacher_mae": teacher_mae,
            "gap_pct": 100 * (mae / teacher_mae - 1),
            "margin": np.nan if margins is None else float(margins[h].mean()), "ci_low": low, "ci_high": high,
            "outcome": "" if margins is None else outcome(low, high)})
    return rows


def deployable_table(datasets: list[str], models: list[str], metrics: Mapping[RunPlace, pd.DataFrame],
                     daily: Mapping[RunPlace, pd.DataFrame], infos: Mapping[RunPlace, dict], seeds: list,
                     budget_pct: float, target_gap_pct: float) -> pd.DataFrame:
    """One row per dataset, model and horizon: the teacher, the paper's students and the deployable models of
    `models` (run folders), each with what it is (loss, block shapes, rollout training, source of its values),
    its parameters (and their % of the teacher's; within the budget or not), its validation MAE (best epoch, mean
    over seeds), its test MAE over seeds (mean, std), its gap to the teacher in %, and the margin to the target
    with its interval and outcome (see the module). `best` marks the deployable model with the lowest validation
    MAE within the budget, on each dataset. `metrics` (metrics.csv), `daily` (effects.daily_mae of
    predictions.npz) and `infos` (info.json) are keyed by run."""
    rows = []
    for dataset in datasets:
        teacher = seed_spread(metrics, dataset, TEACHER, seeds).set_index("horizon_min")
        teacher_params = int(infos[RunPlace(dataset, int(seeds[0]), TEACHER)]["parameters"])
        for model in models:
            rows += model_rows(dataset, model, metrics, daily, infos, seeds, teacher, teacher_params, budget_pct,
                               target_gap_pct)
    table = pd.DataFrame(rows, columns=COLUMNS)
    candidates = table[table["model"].map(parse_deployable).notna() & table["within_budget"]]
    best = candidates.sort_values("val_mae", kind="stable").groupby("dataset", sort=False)["model"].first()
    table["best"] = [best.get(d) == m for d, m in zip(table["dataset"], table["model"])]
    return table


def verdict_rows(table: pd.DataFrame, histories: Mapping[tuple[str, str], list[pd.DataFrame]],
                 test_days: Mapping[str, int], paper_epochs: int, budget_pct: float, target_gap_pct: float
                 ) -> pd.DataFrame:
    """The verdict's rows (verdict.VERDICT_COLUMNS) of the best deployable model of each dataset against the
    teacher, one per horizon: its test MAE beside the teacher's, the margin to the target as the effect with its
    interval and outcome, under the source of values it was trained with (the other source: not run), whether
    the row can judge (preconditions.judgeable: the budgets of both models, seeds, test days) and the loss
    anatomy of the best model. No rows where no model is within the budget."""
    rows = []
    best = table[table["best"]]
    teacher = table[table["model"] == TEACHER].set_index(["dataset", "horizon_min"])
    for _, row in best.iterrows():
        source = "tuned" if row["values"] != "paper" else "paper"
        other = teacher.loc[(row["dataset"], row["horizon_min"])]
        verdict = {key: np.nan for key in VERDICT_COLUMNS} | {
            "claim": claim_text(budget_pct, target_gap_pct), "table": np.nan, "dataset": row["dataset"],
            "metric": VERDICT_METRIC, "horizon_min": row["horizon_min"], "better": row["model"], "other": TEACHER,
            "teacher_mae": row["teacher_mae"], "test_days": test_days[row["dataset"]], "paper_epochs": paper_epochs}
        for untrained in HYPERPARAMETER_SOURCES:
            if untrained != source:
                verdict[f"{untrained}_values_outcome"] = NOT_TRAINED
        prefix = f"{source}_values_"
        verdict |= {prefix + key: value for key, value in {
            "better": row["mae"], "better_std": row["mae_std"], "other": other["mae"], "other_std": other["mae_std"],
            "effect": row["margin"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "outcome": row["outcome"],
            "seeds": int(min(row["n_seeds"], other["n_seeds"])), "better_epochs": row["epochs"],
            "other_epochs": other["epochs"],
            "better_readings": f"{row['loss']}, {row['architecture']}, {row['rollout']}",
            "other_readings": "task, one step"}.items()}
        verdict["judgeable"] = judgeable(row["teacher_mae"], {}, TEACHER, [int(row["epochs"]), int(other["epochs"])],
                                         paper_epochs, verdict[prefix + "seeds"], verdict["test_days"])
        verdict["anatomy"] = anatomy_sentence(row["model"], histories.get((row["dataset"], row["model"]), []))
        rows.append(verdict)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
