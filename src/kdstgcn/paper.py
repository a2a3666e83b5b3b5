"""The paper's published numbers (paper_tables/tableN.csv, typed in from Izadi et al.) and the mapping from
our run names to its rows."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

TABLES = Path(__file__).with_name("paper_tables")
METRICS = ("MAE", "RMSE", "MAPE")
HORIZONS_MIN = (15, 30, 45)


@cache
def table(number: int) -> pd.DataFrame:
    return pd.read_csv(TABLES / f"table{number}.csv")


def paper_model_name(model: str) -> str:
    """Our run name -> the paper's row name (teacher, student_no_kd, student_ord, base_model, ...)."""
    if model == "student_task":
        return "student_no_kd"
    if model == "pruning_base":
        return "base_model"
    return model


def metric_rows(paper_name: str, model: str) -> pd.DataFrame:
    """Long table (horizon_min, metric, paper) of the paper's metrics for one model, empty if it has none."""
    name = paper_model_name(model)
    for number in (2, 4, 5, 8):
        t = table(number)
        hit = t[(t["dataset"] == paper_name) & (t["model"] == name)]
        if len(hit):
            row = hit.iloc[0]
            return pd.DataFrame([{"horizon_min": h, "metric": m, "paper": float(row[f"{m}_{h}"])}
                                 for m in METRICS for h in HORIZONS_MIN])
    return pd.DataFrame(columns=["horizon_min", "metric", "paper"])


def long_metrics(ours: pd.DataFrame) -> pd.DataFrame:
    """Our wide metric table (horizon_min, MAE, RMSE, MAPE) -> long (horizon_min, metric, ours)."""
    return ours.melt(id_vars="horizon_min", value_vars=list(METRICS), var_name="metric", value_name="ours")


def beside_paper(ours: pd.DataFrame, paper_name: str, model: str) -> pd.DataFrame:
    """Our metrics with the paper's value and the difference (ours - paper) for each cell."""
    merged = long_metrics(ours).merge(metric_rows(paper_name, model), on=["horizon_min", "metric"], how="left")
    merged["diff"] = merged["ours"] - merged["paper"]
    return merged
