"""Table 1 (kdstgcn.report.costs.cost_table): the full recompute time of the rollout beside the streaming one."""
import pandas as pd
import pytest

from kdstgcn.report.costs import cost_table


def test_table1_has_the_full_recompute_time_beside_the_streaming_one():
    costs = pd.DataFrame([
        {"dataset": "d", "model": model_name, "parameters": p, "flops": f, "mean_s": s, "std_s": 0.1 * s,
         "runs": 3, "batch": 1140, "device_name": "cpu: test", "full_recompute_mean_s": full,
         "full_recompute_std_s": 0.1 * full}
        for model_name, p, f, s, full in (("teacher", 1000, 1e9, 2.0, 8.0), ("student_task", 10, 1e7, 0.1, 0.5))])
    table = cost_table(costs, {"d": {"paper_name": "PeMSD7", "description": "test data"}})
    time_rows = table[table["metric"] == "test_time_s"].set_index("model")
    assert time_rows.loc["student_task", "ours"] == 0.1
    assert time_rows.loc["student_task", "full_recompute_s"] == 0.5
    assert time_rows.loc["student_task", "full_recompute_ratio_to_teacher"] == pytest.approx(0.5 / 8.0)
    assert table[table["metric"] != "test_time_s"]["full_recompute_s"].isna().all()
