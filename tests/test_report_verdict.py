"""The verdict (kdstgcn.report.verdict) on three seeds of metrics written by hand with known means and spreads:
every number of a verdict row follows, and the summary's verdict section says how often each claim holds."""
import pandas as pd
import pytest

from conftest import merged_config, write_fake_metrics
from kdstgcn.report import published
from kdstgcn.report.pages import markdown_text
from kdstgcn.report.rows import dataset_facts, verdict_claims, verdict_runs
from kdstgcn.report.runs import read_runs
from kdstgcn.report.summary import verdict_blocks
from kdstgcn.report.verdict import VERDICT_COLUMNS, verdict_table


def test_verdict_sets_paper_and_tuned_effects_beside_the_paper_with_spread_and_anatomy(tmp_path):
    config = merged_config("config/demo.yaml")
    config["seeds"] = [0, 1, 2]
    config["verdict"] = {"losses": ["task", "stcd"], "pruning_ratios": [50]}
    # better model: 10 + seed (mean 11, std 1); other: 12 (std 0) with paper values, 10.5 + 0.1 seed when tuned
    runs = {"student_stcd": lambda s: 10 + s, "student_task": lambda s: 12.0,
            "student_stcd_tuned": lambda s: 10 + s, "student_task_tuned": lambda s: 10.5 + 0.1 * s,
            "pruned_kd_taylor_pruning_base_50": lambda s: 20.0, "pruned_taylor_pruning_base_50": lambda s: 19.0,
            "pruned_kd_taylor_pruning_base_50_tuned": lambda s: 18.0,
            "pruned_taylor_pruning_base_50_tuned": lambda s: 19.0}
    for model, mae in runs.items():
        for seed in config["seeds"]:
            write_fake_metrics(tmp_path, "demo", seed, model, {h: mae(seed) + h / 100 for h in (15, 30, 45)},
                               epochs=3 if model == "student_task" else 2)
    metrics = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/metrics.csv")), pd.read_csv)
    history = pd.DataFrame({"epoch": [1, 2], "grad_share_ord": [0.9, 0.6], "grad_share_scd": [0.08, 0.22],
                            "grad_share_tcd": [0.02, 0.18]})
    facts = dataset_facts(config)
    table = verdict_table(verdict_claims(config["verdict"]), verdict_runs(config), metrics,
                          {("demo", "student_stcd"): [history] * 3}, facts, config["seeds"],
                          config["training"]["paper_epochs"], config["pruning"])
    assert list(table.columns) == VERDICT_COLUMNS
    assert len(table) == 2 * 3
    row = table[(table["better"] == "student_stcd") & (table["horizon_min"] == 15)].iloc[0]
    table4 = published.table(4).set_index(["dataset", "model"])
    assert row["published_better"] == table4.loc[("PeMSD7", "student_stcd"), "MAE_15"]
    assert row["published_other"] == table4.loc[("PeMSD7", "student_no_kd"), "MAE_15"]
    assert row["published_effect"] == pytest.approx(row["published_better"] - row["published_other"])
    assert (row["paper_values_better"], row["paper_values_better_std"], row["paper_values_other"]) == pytest.approx(
        (11.15, 1.0, 12.15))
    assert (row["paper_values_effect"], row["paper_values_spread"]) == pytest.approx((-1.0, 1.0))
    assert (row["paper_values_supported"], row["paper_values_beyond_spread"]) == ("yes", "no")
    assert (row["tuned_values_other"], row["tuned_values_other_std"]) == pytest.approx((10.75, 0.1))
    assert (row["tuned_values_effect"], row["tuned_values_supported"], row["tuned_values_beyond_spread"]) == (
        pytest.approx(0.4), "no", "no")
    assert (row["paper_values_seeds"], row["tuned_values_better_epochs"], row["tuned_values_other_epochs"]) == (3, 2, 2)
    assert (row["paper_values_better_epochs"], row["paper_values_other_epochs"]) == (2, 3)
    assert row["anatomy"].startswith("Student L_STCD (ours) (paper values): ORD leads; share of the student's "
                                     "gradient, mean over 2 epochs and 3 seed(s): ORD 75 %, SCD 15 %, TCD 10 %.")
    assert "(tuned values): one loss term, no anatomy." in row["anatomy"]
    pruning = table[table["better"] == "pruned_kd_taylor_pruning_base_50"].iloc[0]
    table8 = published.table(8)
    paper8 = table8[(table8["dataset"] == "PeMSD7") & (table8["param_pct"] == 50)].set_index("model")["MAE_15"]
    assert (pruning["published_better"], pruning["published_other"]) == (paper8["pruned_stcd"],
                                                                          paper8["pruned_no_kd"])
    assert (pruning["paper_values_effect"], pruning["paper_values_supported"]) == (pytest.approx(1.0), "no")
    assert (pruning["tuned_values_effect"], pruning["tuned_values_supported"],
            pruning["tuned_values_beyond_spread"]) == (pytest.approx(-1.0), "yes", "yes")
    text = markdown_text(verdict_blocks(table, facts))
    assert "| 15 min | " in text and "11.15 ± 1.00" in text
    assert ("With paper values (2 vs 3 epochs, paper 50; 3 seed(s)): holds at 3 of 3 horizons, beyond the spread "
            "at 0") in text
    assert ("With tuned values (2 epochs, paper 50; 3 seed(s)): holds at 0 of 3 horizons, beyond the spread at 0; "
            "contradicted beyond the spread at 0.") in text
    assert ("With tuned values (fine-tuned 2 epochs after pruning; 3 seed(s)): holds at 3 of 3 horizons, beyond the "
            "spread at 3") in text
