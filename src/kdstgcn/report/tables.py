"""The paper's tables from our runs, every number beside the published one: metric Tables 2, 4, 5, 7 and 8, the
teacher share of Table 3 and the hyper-parameters of Tables 6 and 9 (Table 1, the costs, is in costs.py).

All tables share one long format (TABLE_COLUMNS): one row per dataset x model x quantity, with our mean and
spread over seeds, the paper's value, the difference, and for claim rows the comparison they rest on.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from kdstgcn.config.layout import RunPlace, tuned_path
from kdstgcn.report import published
from kdstgcn.report.rows import TableRow
from kdstgcn.report.runs import seed_metrics, spread_summary
from kdstgcn.runtime.io import write_table

TABLE_COLUMNS = ["table", "dataset", "paper_dataset", "model", "paper_model", "param_pct", "kept_pct", "metric",
                 "horizon_min",
                 "ours", "ours_std", "n_seeds", "paper", "diff", "compared_with", "diff_vs_compared",
                 "exceeds_spread", "parameters", "epochs", "paper_epochs", "note"]
CORE_COLUMNS = ["table", "dataset", "paper_dataset", "model", "paper_model", "metric", "ours", "n_seeds", "paper",
                "diff", "note"]
CLAIM_COLUMNS = ["compared_with", "diff_vs_compared", "exceeds_spread"]


def epochs_text(n) -> str:
    """'1 epoch', '3 epochs'."""
    n = int(n)
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def reference_budget(epochs) -> str:
    """The reference epoch budget (`training.paper_epochs`) as the report names it: STGCN's (Yu et al.), since the
    paper gives no epoch count."""
    return f"STGCN's {int(epochs)}"


def note(dataset: str, description: str, paper_epochs: int, epochs, finetune_epochs: int | None = None,
         model: str | None = None, hyperparameter_sources: Mapping[str, str] | None = None) -> str:
    """The data (`description`) and the training budget: whether it was cut short of STGCN's epochs and, for
    a pruned model (`epochs` = its base model's epochs + `finetune_epochs`), that it trained more epochs than its
    base; for a student or pruned `model`, where its hyper-parameters come from (`hyperparameter_sources`: the
    hyperparameter_source of the config sections distillation and pruning)."""
    text = description
    for prefix, section, table in (("student_", "distillation", 6), ("pruned_", "pruning", 9)):
        if model is not None and model.startswith(prefix):
            study = model[len(prefix):] if prefix == "student_" else model
            text += (f"; hyper-parameters tuned on validation MAE: {tuned_path(dataset, study)}"
                     if hyperparameter_sources[section] == "tuned" else
                     f"; hyper-parameters of the paper (Table {table})")
    if epochs is None or pd.isna(epochs):
        return text
    base_epochs = int(epochs) - (finetune_epochs or 0)
    if base_epochs < paper_epochs:
        text += f"; cut short: {epochs_text(base_epochs)} ({reference_budget(paper_epochs)})"
    if finetune_epochs:
        text += (f"; pruned from a base model trained {epochs_text(base_epochs)}, then fine-tuned "
                 f"{epochs_text(finetune_epochs)}: {epochs_text(epochs)} in all, more than its base model")
    return text


def compare(result: pd.DataFrame) -> pd.DataFrame:
    """For rows with a comparison model: difference of means and whether it exceeds the summed spreads."""
    ref = result[["dataset", "model", "metric", "horizon_min", "ours", "ours_std"]].rename(
        columns={"model": "compared_with", "ours": "ref_ours", "ours_std": "ref_std"})
    merged = result.merge(ref, on=["dataset", "compared_with", "metric", "horizon_min"], how="left")
    merged["diff_vs_compared"] = merged["ours"] - merged["ref_ours"]
    spread = merged["ours_std"] + merged["ref_std"]
    merged["exceeds_spread"] = np.where(spread.notna() & merged["diff_vs_compared"].notna(),
                                        np.where(merged["diff_vs_compared"].abs() > spread, "yes", "no"),
                                        np.where(merged["diff_vs_compared"].notna(), "n/a (one seed)", ""))
    return merged.drop(columns=["ref_ours", "ref_std"])


def metric_table(number: int, rows: list[TableRow], metrics: Mapping[RunPlace, pd.DataFrame],
                 datasets: dict[str, dict], seeds: list, paper_epochs: int,
                 hyperparameter_sources: Mapping[str, str]) -> pd.DataFrame:
    """A metric table (2, 4, 5, 7, 8): MAE/RMSE/MAPE at 15/30/45 min per dataset and model.

    `metrics` holds every run's metrics.csv (runs.read_runs), `datasets` the run's datasets (rows.dataset_facts).
    On pruned rows only, `kept_pct` is the parameter count as a share of the base model's (counted on the compact
    model that was evaluated) and `epochs` counts the base model's epochs plus the fine-tuning after pruning.
    """
    parts = []
    for dataset, facts in datasets.items():
        paper_name = facts["paper_name"]
        for row in rows:
            ours = seed_metrics(metrics, dataset, row.model, seeds)
            summary = spread_summary(ours, ["horizon_min", "metric"])
            paper = published.metric_rows(paper_name, row.paper_model, (number,), row.param_pct)
            summary = summary.merge(paper, on=["horizon_min", "metric"], how="left")
            parameters = int(ours["parameters"].iloc[0])
            epochs, finetune, kept_pct = ours["epochs_run"].min(), None, np.nan
            if row.base is not None:
                base = seed_metrics(metrics, dataset, row.base, seeds)
                finetune = int(epochs)
                epochs = int(base["epochs_run"].min()) + finetune
                kept_pct = 100.0 * parameters / int(base["parameters"].iloc[0])
            summary = summary.assign(
                table=number, dataset=dataset, paper_dataset=paper_name, model=row.model,
                paper_model=row.paper_model, param_pct=row.param_pct, compared_with=row.compared_with,
                parameters=parameters, kept_pct=kept_pct, epochs=epochs, paper_epochs=paper_epochs,
                note=note(dataset, facts["description"], paper_epochs, epochs, finetune, row.model,
                          hyperparameter_sources))
            parts.append(summary)
    result = compare(pd.concat(parts, ignore_index=True))
    result["diff"] = result["ours"] - result["paper"]
    return finish(result)


def teacher_share_table(infos: Mapping[RunPlace, dict], models: list[str], datasets: dict[str, dict],
                        seeds: list, paper_epochs: int, hyperparameter_sources: Mapping[str, str]) -> pd.DataFrame:
    """Table 3: share (%) of target entries that the ORD switch took from the teacher, per student of `models`
    (rows.share_models), from every run's info.json (`infos`, runs.read_runs)."""
    paper = published.table(3).set_index("model")
    rows = []
    for dataset, facts in datasets.items():
        paper_name = facts["paper_name"]
        for model in models:
            runs = [infos[RunPlace(dataset, int(s), model)] for s in seeds]
            values = pd.Series([i["teacher_share_pct"] for i in runs], dtype=float)
            epochs = min(i["epochs_run"] for i in runs)
            rows.append({"table": 3, "dataset": dataset, "paper_dataset": paper_name, "model": model,
                         "paper_model": model, "metric": "teacher_share_pct", "ours": values.mean(),
                         "ours_std": values.std(ddof=1) if len(values) > 1 else np.nan, "n_seeds": len(values),
                         "paper": float(paper.loc[model, f"{paper_name}_pct"]),
                         "parameters": runs[0]["parameters"], "epochs": epochs, "paper_epochs": paper_epochs,
                         "note": note(dataset, facts["description"], paper_epochs, epochs, model=model,
                                      hyperparameter_sources=hyperparameter_sources)})
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df)


HYPERPARAMETERS = ("batch_size", "learning_rate", "alpha1", "alpha2", "alpha3", "alpha", "beta")


def hyperparameter_rows(number: int, hyperparameters: dict, datasets: dict[str, dict], seeds: list,
                        row_key) -> pd.DataFrame:
    """Hyper-parameters used (a config section's `hyperparameters`, per paper dataset) beside the paper's Table
    `number`.

    `row_key(paper_row)` gives (config key, our model name, paper model name, param_pct) of a published row.
    """
    paper = published.table(number)
    rows = []
    for dataset, facts in datasets.items():
        paper_name = facts["paper_name"]
        ours_all = hyperparameters[paper_name]
        for _, prow in paper[paper["dataset"] == paper_name].iterrows():
            key, model, paper_model, param_pct = row_key(prow)
            ours = ours_all.get(key, {})
            for name in HYPERPARAMETERS:
                if name not in prow or (pd.isna(prow[name]) and name not in ours):
                    continue
                rows.append({"table": number, "dataset": dataset, "paper_dataset": paper_name, "model": model,
                             "paper_model": paper_model, "param_pct": param_pct, "metric": name,
                             "ours": ours.get(name, np.nan), "paper": prow[name], "n_seeds": len(seeds),
                             "note": facts["description"]})
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df)


def hyperparameter_table(hyperparameters: dict, datasets: dict[str, dict], seeds: list) -> pd.DataFrame:
    """Table 6: the KD hyper-parameters this run used (distillation.hyperparameters) beside the paper's."""
    return hyperparameter_rows(6, hyperparameters, datasets, seeds,
                               lambda r: (r["model"], f"student_{r['model']}", r["model"], None))


def pruning_hyperparameter_table(hyperparameters: dict, datasets: dict[str, dict], seeds: list) -> pd.DataFrame:
    """Table 9: the pruning hyper-parameters this run used (pruning.hyperparameters) beside the paper's."""
    return hyperparameter_rows(9, hyperparameters, datasets, seeds,
                               lambda r: (str(int(r["pruned_pct"])), "pruned", "pruned", int(r["pruned_pct"])))


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Put a table's columns in the common order (missing ones empty)."""
    for col in TABLE_COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[TABLE_COLUMNS].reset_index(drop=True)


def rows_with(df: pd.DataFrame, column: str) -> pd.Series:
    """The rows a column is meant for: pruned models for `kept_pct`, rows with a comparison model for the
    comparison columns, every row otherwise."""
    if column == "kept_pct":
        return df["model"].str.startswith("pruned_")
    if column in CLAIM_COLUMNS:
        return df["compared_with"].notna()
    return pd.Series(True, index=df.index)


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as a person reads it (the CSV): without the optional columns that are empty on most of the
    rows they are meant for (`rows_with`); the parquet file keeps every column."""
    keep = []
    for col in df.columns:
        values = df.loc[rows_with(df, col), col]
        filled = values.notna() & (values.astype(str) != "")
        if col in CORE_COLUMNS or (len(values) and filled.mean() > 0.5):
            keep.append(col)
    return df[keep]


def write_table_files(df: pd.DataFrame, csv_path: str | Path, parquet_path: str | Path) -> None:
    """A paper table as CSV (readable_table) and as parquet (every column, the same rows)."""
    write_table(readable_table(df), csv_path)
    write_table(df, parquet_path)
