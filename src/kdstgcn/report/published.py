"""The paper's published numbers: paper_tables/tableN.csv, typed in from Izadi et al., read by table number or
by one row of its metric tables."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from kdstgcn.report.rows import paper_model_name

TABLES = Path(__file__).with_name("paper_tables")
METRICS = ("MAE", "RMSE", "MAPE")
HORIZONS_MIN = (15, 30, 45)
METRIC_TABLES = (2, 4, 5, 7, 8)


@cache
def table(number: int) -> pd.DataFrame:
    return pd.read_csv(TABLES / f"table{number}.csv")


def metric_rows(paper_name: str, paper_model: str, numbers=METRIC_TABLES, param_pct: int | None = None
                ) -> pd.DataFrame:
    """Long table (horizon_min, metric, paper) of one row of the paper's metric tables, empty if none."""
    for number in numbers:
        t = table(number)
        hit = t[(t["dataset"] == paper_name) & (t["model"] == paper_model)]
        if param_pct is not None and "param_pct" in t:
            hit = hit[hit["param_pct"] == param_pct]
        if len(hit):
            row = hit.iloc[0]
            return pd.DataFrame([{"horizon_min": h, "metric": m, "paper": float(row[f"{m}_{h}"])}
                                 for m in METRICS for h in HORIZONS_MIN])
    return pd.DataFrame({"horizon_min": pd.Series(dtype=int), "metric": pd.Series(dtype=str),
                         "paper": pd.Series(dtype=float)})


def long_metrics(ours: pd.DataFrame) -> pd.DataFrame:
    """Our wide metric table (horizon_min, MAE, RMSE, MAPE) -> long (horizon_min, metric, ours)."""
    return ours.melt(id_vars="horizon_min", value_vars=list(METRICS), var_name="metric", value_name="ours")


def beside_paper(ours: pd.DataFrame, paper_name: str, model: str) -> pd.DataFrame:
    """Our metrics with the paper's value and the difference (ours - paper) for each cell."""
    paper = metric_rows(paper_name, paper_model_name(model), numbers=(2, 4, 5, 8))
    merged = long_metrics(ours).merge(paper, on=["horizon_min", "metric"], how="left")
    merged["diff"] = merged["ours"] - merged["paper"]
    return merged
