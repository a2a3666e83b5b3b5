"""Each claim of the paper judged on our tables: the paper's two values, ours, and whether ours supports it."""
from __future__ import annotations

import pandas as pd

from kdstgcn.report.rows import Claim


def judge_claim(better: pd.Series, other: pd.Series) -> dict:
    """A lower-is-better claim on our two means (`ours`, `ours_std` over seeds): whether the means support it, and
    whether the gap's size exceeds the summed spreads (a description, not a test: the verdict's interval is
    kdstgcn.report.effects)."""
    effect, spread = better["ours"] - other["ours"], better["ours_std"] + other["ours_std"]
    return {"supported": "yes" if effect < 0 else "no",
            "beyond_spread": "n/a (one seed)" if pd.isna(spread) else ("yes" if abs(effect) > spread else "no")}


def claim_rows(tables: dict[int, pd.DataFrame], claims: list[Claim]) -> pd.DataFrame:
    """Each claim (rows.claims) per dataset and horizon: the paper's two values, ours, and whether ours supports
    it; claims of a table not given, or of a model the table lacks, are left out."""
    rows = []
    for claim in claims:
        t = tables.get(claim.table)
        if t is None:
            continue
        for dataset in t["dataset"].unique():
            sub = t[(t["dataset"] == dataset) & (t["metric"] == claim.metric)]
            better, worse = (sub[sub["model"] == m].set_index("horizon_min") for m in (claim.better, claim.worse))
            if better.empty or worse.empty:
                continue
            for h in better.index:
                judged = judge_claim(better.loc[h], worse.loc[h])
                rows.append({
                    "claim": claim.text, "table": claim.table, "dataset": dataset, "metric": claim.metric,
                    "horizon_min": int(h), "paper_better": better.loc[h, "paper"], "paper_worse": worse.loc[h, "paper"],
                    "ours_better": better.loc[h, "ours"], "ours_worse": worse.loc[h, "ours"],
                    "supported": judged["supported"], "beyond_spread": judged["beyond_spread"],
                    "epochs_better": better.loc[h, "epochs"], "epochs_worse": worse.loc[h, "epochs"],
                })
    return pd.DataFrame(rows)


def cost_claim_rows(table1: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 claims: the student's test time and FLOPs as a share of the teacher's."""
    sub = table1[(table1["model"] == "student_task") & table1["metric"].isin(["test_time_s", "flops", "parameters"])]
    return sub[["dataset", "metric", "paper_ratio_to_teacher", "ours_ratio_to_teacher", "device"]]
