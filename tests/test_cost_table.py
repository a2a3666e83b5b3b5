"""Table 1 (kdstgcn.report.costs.cost_table): the full recompute time of the rollout and its time on ONNX Runtime
beside the streaming one."""
import pandas as pd
import pytest

from kdstgcn.report.costs import cost_table


def test_table1_has_the_full_recompute_and_onnx_runtime_times_beside_the_streaming_one():
    costs = pd.DataFrame([
        {"dataset": "d", "model": model_name, "parameters": p, "flops": f, "mean_s": s, "std_s": 0.1 * s,
         "runs": 3, "batch": 1140, "device_name": "cpu: test", "full_recompute_mean_s": full,
         "full_recompute_std_s": 0.1 * full, "onnx_mean_s": onnx, "onnx_std_s": 0.1 * onnx,
         "onnx_device_name": "cpu: test, ONNX Runtime"}
        for model_name, p, f, s, full, onnx in (("teacher", 1000, 1e9, 2.0, 8.0, 1.5),
                                                ("student_task", 10, 1e7, 0.1, 0.5, 0.03))])
    table = cost_table(costs, {"d": {"paper_name": "PeMSD7", "description": "test data"}})
    time_rows = table[table["metric"] == "test_time_s"].set_index("model")
    assert time_rows.loc["student_task", "ours"] == 0.1
    assert time_rows.loc["student_task", "full_recompute_s"] == 0.5
    assert time_rows.loc["student_task", "full_recompute_ratio_to_teacher"] == pytest.approx(0.5 / 8.0)
    assert table[table["metric"] != "test_time_s"]["full_recompute_s"].isna().all()
    onnx = table[table["metric"] == "onnx_test_time_s"].set_index("model")  # beside the paper's test time
    assert onnx.loc["student_task", ["ours", "ours_std", "device"]].tolist() == [0.03, 0.003, "cpu: test, ONNX Runtime"]
    assert onnx.loc["student_task", "paper"] == time_rows.loc["student_task", "paper"]
    assert onnx.loc["student_task", "diff"] == pytest.approx(0.03 - onnx.loc["student_task", "paper"])
    assert onnx.loc["student_task", "ours_ratio_to_teacher"] == pytest.approx(0.03 / 1.5)
