"""Table 1 from the measured costs: parameters, FLOPs and test time per model beside the paper's, with ratios to
the teacher."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kdstgcn.config.layout import parse_pruned
from kdstgcn.report import published
from kdstgcn.report.tables import finish

TABLE1_EXTRA = ["ours_ratio_to_teacher", "paper_ratio_to_teacher", "full_recompute_s", "full_recompute_std_s",
                "full_recompute_ratio_to_teacher", "device", "precision"]
TABLE1_PAPER_MODELS = {"teacher": "teacher", "pruning_base": "pruning_base", "student_task": "student"}


def kept_share(costs: pd.DataFrame, row: pd.Series) -> float:
    """A pruned model's parameter count as a share (%) of its base model's; NaN for a model that was not pruned."""
    pruned = parse_pruned(row["model"])
    if pruned is None:
        return np.nan
    base_row = costs[(costs["dataset"] == row["dataset"]) & (costs["model"] == pruned.base)]
    return 100.0 * row["parameters"] / base_row["parameters"].iloc[0] if len(base_row) else np.nan


def cost_table(costs: pd.DataFrame, datasets: dict[str, dict]) -> pd.DataFrame:
    """Table 1 from measured costs (dataset, model, parameters, flops, mean_s, std_s, runs, batch, device_name,
    full_recompute_mean_s, full_recompute_std_s, onnx_mean_s, onnx_std_s, onnx_device_name): long rows per metric
    with the paper's value and, in their own columns, ratios to the teacher. `test_time_s` is the streaming
    rollout (what evaluation runs); its row also carries the full-recompute time (what the paper measured) and
    its ratio to the teacher's. `onnx_test_time_s` is the same streaming rollout of the model's ONNX files on
    ONNX Runtime on the CPU, beside the paper's test time (no row for costs measured before it existed).
    `datasets` gives each dataset's paper name and description (rows.dataset_facts)."""
    paper = published.table(1)
    rows = []
    for _, c in costs.iterrows():
        paper_name = datasets[c["dataset"]]["paper_name"]
        prow = paper[(paper["dataset"] == paper_name) & (paper["model"] == TABLE1_PAPER_MODELS.get(c["model"], ""))]
        pteacher = paper[(paper["dataset"] == paper_name) & (paper["model"] == "teacher")].iloc[0]
        teacher = costs[(costs["dataset"] == c["dataset"]) & (costs["model"] == "teacher")].iloc[0]
        for metric, ours, std, paper_col, teacher_value, device in (
                ("parameters", c["parameters"], np.nan, "parameters", teacher["parameters"], c["device_name"]),
                ("flops", c["flops"], np.nan, "flops", teacher["flops"], c["device_name"]),
                ("test_time_s", c["mean_s"], c["std_s"], "test_time_s", teacher["mean_s"], c["device_name"]),
                *_onnx_time(c, teacher)):
            published_value = float(prow.iloc[0][paper_col]) if len(prow) else np.nan
            rows.append({
                "table": 1, "dataset": c["dataset"], "paper_dataset": paper_name, "model": c["model"],
                "paper_model": TABLE1_PAPER_MODELS.get(c["model"], ""), "metric": metric, "ours": float(ours),
                "ours_std": std, "n_seeds": 1, "paper": published_value, "parameters": int(c["parameters"]),
                "kept_pct": kept_share(costs, c),
                "ours_ratio_to_teacher": float(ours) / float(teacher_value),
                "paper_ratio_to_teacher": published_value / float(pteacher[paper_col]),
                "device": device, "precision": timed_precision(c, metric),
                **_full_recompute_columns(c, teacher, metric == "test_time_s"),
                "note": (f"{datasets[c['dataset']]['description']}; FLOPs of one forward pass of "
                         f"{int(c['batch'])} windows (torch FlopCounterMode: matmul/conv/einsum, 2 per MAC); "
                         f"test time = 9-step rollout of that batch (streaming; full recompute in full_recompute_s; "
                         f"the model's ONNX files on ONNX Runtime in the onnx_test_time_s rows), "
                         f"mean of {int(c['runs'])} runs on {c['device_name']}"),
            })
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df).join(df[TABLE1_EXTRA])


def timed_precision(cost: pd.Series, metric: str) -> str | None:
    """The arithmetic a time row was measured in: the model's rollout in the cost's precision (fp32 for costs
    measured before it was recorded), its ONNX files in float32; None for rows that are not times."""
    if metric == "test_time_s":
        return cost.get("precision") if isinstance(cost.get("precision"), str) else "fp32"
    return "fp32" if metric == "onnx_test_time_s" else None


def _onnx_time(cost: pd.Series, teacher: pd.Series) -> list[tuple]:
    """The ONNX Runtime test time row's values (none for costs measured before it was timed)."""
    if pd.isna(cost.get("onnx_mean_s", np.nan)):
        return []
    return [("onnx_test_time_s", cost["onnx_mean_s"], cost["onnx_std_s"], "test_time_s", teacher["onnx_mean_s"],
             cost["onnx_device_name"])]


def _full_recompute_columns(cost: pd.Series, teacher: pd.Series, timed: bool) -> dict:
    """Full-recompute rollout time, spread and ratio to the teacher's, on the test-time row (NaN elsewhere, and
    for costs measured before the column existed)."""
    mean, std = cost.get("full_recompute_mean_s", np.nan), cost.get("full_recompute_std_s", np.nan)
    if not timed:
        mean = std = np.nan
    return {"full_recompute_s": float(mean), "full_recompute_std_s": float(std),
            "full_recompute_ratio_to_teacher": float(mean) / float(teacher.get("full_recompute_mean_s", np.nan))}
