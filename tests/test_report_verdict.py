"""The verdict (kdstgcn.report.verdict) on three seeds of metrics written by hand with known means and spreads:
every number of a verdict row follows, whether it can be judged (teacher, epochs, seeds), the readings each model
was trained with, and the summary's verdict section says how often each claim holds."""
import json

import pandas as pd
import pytest

from conftest import merged_config, write_fake_metrics
from kdstgcn.config import runspec
from kdstgcn.config.layout import parse_pruned, parse_student, run_file
from kdstgcn.config.tuned import apply_tuned
from kdstgcn.report import published
from kdstgcn.report.pages import markdown_text
from kdstgcn.report.rows import dataset_facts, verdict_claims, verdict_runs
from kdstgcn.report.runs import read_runs
from kdstgcn.report.summary import judgeable_lines, verdict_blocks
from kdstgcn.report.verdict import VERDICT_COLUMNS, verdict_table

TUNED = {"hyperparameters": {}, "switches": {"distillation.scalar_norm": "absolute",
                                             "distillation.distance_scale": "mean_normalised"}}


def write_info(root, config: dict, seed: int, model: str) -> None:
    """info.json of one run with the spec the workflow gives it (a _tuned variant with TUNED's readings)."""
    student, pruned = parse_student(model), parse_pruned(model)
    if student is not None:
        run = runspec.student_run(config, "demo", student.loss, seed, role=model)
    else:
        run = runspec.prune_run(config, "demo", pruned.method, pruned.base, pruned.ratio, seed, role=model)
    if model.endswith("_tuned"):
        run = apply_tuned(run, TUNED)
    path = root / run_file("demo", seed, model, "info.json")
    path.write_text(json.dumps({"run": run.to_dict()}))


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
            write_info(tmp_path, config, seed, model)
    for seed in config["seeds"]:  # the teacher: better than the student without KD with paper values only
        write_fake_metrics(tmp_path, "demo", seed, "teacher", {h: 10.8 + h / 100 for h in (15, 30, 45)}, epochs=50)
    metrics = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/metrics.csv")), pd.read_csv)
    infos = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/info.json")), lambda p: json.loads(p.read_text()))
    history = pd.DataFrame({"epoch": [1, 2], "grad_share_ord": [0.9, 0.6], "grad_share_scd": [0.08, 0.22],
                            "grad_share_tcd": [0.02, 0.18]})
    facts = dataset_facts(config)
    table = verdict_table(verdict_claims(config["verdict"]), verdict_runs(config), metrics,
                          {("demo", "student_stcd"): [history] * 3}, infos, facts, config["seeds"],
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
    assert row["teacher_mae"] == pytest.approx(10.95)
    assert row["judgeable"] == ("the teacher (MAE 10.95) is not better than the student without KD (tuned values "
                                "10.75); fewer epochs than the paper (2 of 50)")
    assert row["paper_values_better_readings"] == "scalar_norm=squared, ord_reduction=mean, distance_scale=raw"
    assert row["tuned_values_better_readings"] == ("scalar_norm=absolute, ord_reduction=mean, "
                                                   "distance_scale=mean_normalised (beyond the paper)")
    assert (row["paper_values_other_readings"], row["tuned_values_other_readings"]) == (
        "scalar_norm=squared", "scalar_norm=absolute")  # the student without KD tuned on equal terms
    pruning = table[table["better"] == "pruned_kd_taylor_pruning_base_50"].iloc[0]
    table8 = published.table(8)
    paper8 = table8[(table8["dataset"] == "PeMSD7") & (table8["param_pct"] == 50)].set_index("model")["MAE_15"]
    assert (pruning["published_better"], pruning["published_other"]) == (paper8["pruned_stcd"],
                                                                          paper8["pruned_no_kd"])
    assert (pruning["paper_values_effect"], pruning["paper_values_supported"]) == (pytest.approx(1.0), "no")
    assert (pruning["tuned_values_effect"], pruning["tuned_values_supported"],
            pruning["tuned_values_beyond_spread"]) == (pytest.approx(-1.0), "yes", "yes")
    assert pruning["judgeable"] == "yes"  # teacher better than the baseline, 50 epochs, three seeds
    assert pruning["tuned_values_other_readings"] == "scalar_norm=absolute"
    text = markdown_text(verdict_blocks(table, facts))
    assert "| 15 min | 10.95 | " in text and "11.15 ± 1.00" in text
    assert ("Readings with tuned values: Student L_STCD (ours): scalar_norm=absolute, ord_reduction=mean, "
            "distance_scale=mean_normalised (beyond the paper); Student W/O KD: scalar_norm=absolute.") in text
    lead = judgeable_lines(table)
    assert lead[0] == ("**Could not be judged:** The student trained with L_STCD beats the student without KD "
                       "(`demo`): at 15 min: the teacher (MAE 10.95) is not better than the student without KD "
                       "(tuned values 10.75); fewer epochs than the paper (2 of 50); at 30 min: the teacher (MAE "
                       "11.10) is not better than the student without KD (tuned values 10.90); fewer epochs than "
                       "the paper (2 of 50); at 45 min: the teacher (MAE 11.25) is not better than the student "
                       "without KD (tuned values 11.05); fewer epochs than the paper (2 of 50).")
    assert lead[1] == ("**Could be judged:** Algorithm 1 beats the Molchanov baseline at 50 % pruning (`demo`), at "
                       "every horizon.")
    assert ("With paper values (2 vs 3 epochs, paper 50; 3 seed(s)): holds at 3 of 3 horizons, beyond the spread "
            "at 0") in text
    assert ("With tuned values (2 epochs, paper 50; 3 seed(s)): holds at 0 of 3 horizons, beyond the spread at 0; "
            "contradicted beyond the spread at 0.") in text
    assert ("With tuned values (fine-tuned 2 epochs after pruning; 3 seed(s)): holds at 3 of 3 horizons, beyond the "
            "spread at 3") in text
