"""The verdict (kdstgcn.report.verdict) on three seeds of runs written by hand (metrics.csv and test predictions
over three test days) with known means, spreads and daily errors: every number of a verdict row follows, each
effect's interval and outcome, whether it can be judged (teacher, epochs of every model trained from scratch,
seeds), the readings each model was trained with, and the summary's verdict section."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import merged_config, write_fake_metrics
from kdstgcn.config import runspec
from kdstgcn.config.layout import parse_pruned, parse_student, run_file
from kdstgcn.config.tuned import apply_tuned
from kdstgcn.report import published
from kdstgcn.report.caveats import caveat_lines
from kdstgcn.report.effects import NOT_RUN, daily_mae
from kdstgcn.report.figures import verdict_figure
from kdstgcn.report.pages import markdown_text
from kdstgcn.report.rows import budget, dataset_facts, verdict_claims, verdict_runs
from kdstgcn.report.runs import read_runs
from kdstgcn.report.summary import judgeable_lines, verdict_blocks
from kdstgcn.report.verdict import VERDICT_COLUMNS, verdict_table

TUNED = {"hyperparameters": {}, "switches": {"distillation.scalar_norm": "absolute",
                                             "distillation.distance_scale": "mean_normalised"}}
DAYS, WINDOWS, STATIONS = 3, 4, 16  # test days of the runs written by hand, windows per day, stations
HORIZONS = (15, 30, 45)


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


def write_run(root, seed: int, model: str, mae: float, epochs: int, day_offsets=(0.0, 0.0, 0.0)) -> None:
    """metrics.csv with MAE `mae` + h / 100 at horizon h, and test predictions whose MAE on test day d is that plus
    day_offsets[d] (offsets summing to 0, so that the days average to the metrics' MAE)."""
    maes = {h: mae + h / 100 for h in HORIZONS}
    write_fake_metrics(root, "demo", seed, model, maes, epochs=epochs)
    prediction = np.zeros((DAYS * WINDOWS, 9, STATIONS))
    for h, value in maes.items():
        prediction[:, h // 5 - 1] = value + np.repeat(day_offsets, WINDOWS)[:, None]
    np.savez(root / run_file("demo", seed, model, "predictions.npz"), prediction=prediction,
             truth=np.zeros_like(prediction))


def verdict_of(root, config: dict, histories=None) -> pd.DataFrame:
    """The verdict table from the runs under `root`, as the verdict_table rule makes it."""
    metrics = read_runs(sorted(root.glob("results/demo/seed*/*/metrics.csv")), pd.read_csv)
    daily = read_runs(sorted(root.glob("results/demo/seed*/*/predictions.npz")),
                      lambda p: daily_mae(p, np.ones(STATIONS, bool), DAYS, (3, 6, 9), 5))
    infos = read_runs(sorted(root.glob("results/demo/seed*/*/info.json")), lambda p: json.loads(p.read_text()))
    return verdict_table(verdict_claims(config["verdict"]), verdict_runs(config), metrics, daily, histories or {},
                         infos, dataset_facts(config), config["seeds"], config["training"]["paper_epochs"],
                         config["pruning"])


def t_half_width(seed_means, day_means) -> float:
    """The interval's half-width (kdstgcn.report.effects) written out for three seeds and three days."""
    t2 = stats.t.ppf(0.975, 2)
    return float(np.sqrt(t2 ** 2 * np.var(day_means, ddof=1) / 3 + t2 ** 2 * np.var(seed_means, ddof=1) / 3))


def test_verdict_sets_paper_and_tuned_effects_with_their_intervals_beside_the_paper(tmp_path):
    config = merged_config("config/demo.yaml")
    config["seeds"] = [0, 1, 2]
    config["verdict"] = {"losses": ["task", "stcd"], "pruning_ratios": [50]}
    # better model: 10 + seed (mean 11, std 1); other: 12 (std 0) with paper values, 10.5 + 0.1 seed when tuned.
    # The better models' days differ by -0.3 / 0 / +0.3 (L_STCD) and -0.1 / 0 / +0.1 (pruned), the others' not.
    runs = {"student_stcd": (lambda s: 10 + s, (-0.3, 0.0, 0.3)), "student_task": (lambda s: 12.0, (0, 0, 0)),
            "student_stcd_tuned": (lambda s: 10 + s, (-0.3, 0.0, 0.3)),
            "student_task_tuned": (lambda s: 10.5 + 0.1 * s, (0, 0, 0)),
            "pruned_kd_taylor_pruning_base_50": (lambda s: 20.0, (-0.1, 0.0, 0.1)),
            "pruned_taylor_pruning_base_50": (lambda s: 19.0, (0, 0, 0)),
            "pruned_kd_taylor_pruning_base_50_tuned": (lambda s: 18.0, (-0.1, 0.0, 0.1)),
            "pruned_taylor_pruning_base_50_tuned": (lambda s: 19.0, (0, 0, 0))}
    for model, (mae, days) in runs.items():
        for seed in config["seeds"]:
            write_run(tmp_path, seed, model, mae(seed), epochs=3 if model == "student_task" else 2, day_offsets=days)
            write_info(tmp_path, config, seed, model)
    for seed in config["seeds"]:  # the teacher: better than the student without KD with paper values only
        write_fake_metrics(tmp_path, "demo", seed, "teacher", {h: 10.8 + h / 100 for h in HORIZONS}, epochs=50)
        write_fake_metrics(tmp_path, "demo", seed, "pruning_base", {h: 15.0 for h in HORIZONS}, epochs=50)
    history = pd.DataFrame({"epoch": [1, 2], "grad_share_ord": [0.9, 0.6], "grad_share_scd": [0.08, 0.22],
                            "grad_share_tcd": [0.02, 0.18]})
    facts = dataset_facts(config)
    table = verdict_of(tmp_path, config, {("demo", "student_stcd"): [history] * 3})
    assert list(table.columns) == VERDICT_COLUMNS
    assert len(table) == 2 * 3
    row = table[(table["better"] == "student_stcd") & (table["horizon_min"] == 15)].iloc[0]
    table4 = published.table(4).set_index(["dataset", "model"])
    assert row["published_better"] == table4.loc[("PeMSD7", "student_stcd"), "MAE_15"]
    assert row["published_other"] == table4.loc[("PeMSD7", "student_no_kd"), "MAE_15"]
    assert row["published_effect"] == pytest.approx(row["published_better"] - row["published_other"])
    assert (row["paper_values_better"], row["paper_values_better_std"], row["paper_values_other"]) == pytest.approx(
        (11.15, 1.0, 12.15))
    assert row["test_days"] == DAYS
    # per seed the differences are -2, -1, 0, per day they move by -0.3, 0, +0.3: an interval holding 0
    half = t_half_width([-2, -1, 0], [-1.3, -1.0, -0.7])
    assert (row["paper_values_effect"], row["paper_values_ci_low"], row["paper_values_ci_high"]) == pytest.approx(
        (-1.0, -1.0 - half, -1.0 + half))
    assert row["paper_values_outcome"] == "inconclusive"
    assert (row["tuned_values_other"], row["tuned_values_other_std"]) == pytest.approx((10.75, 0.1))
    assert (row["tuned_values_effect"], row["tuned_values_outcome"]) == (pytest.approx(0.4), "inconclusive")
    assert (row["paper_values_seeds"], row["tuned_values_better_epochs"], row["tuned_values_other_epochs"]) == (3, 2, 2)
    assert (row["paper_values_better_epochs"], row["paper_values_other_epochs"]) == (2, 3)
    assert row["anatomy"].startswith("Student L_STCD (ours) (paper values): ORD leads; share of the student's "
                                     "gradient, mean over 2 epochs and 3 seed(s): ORD 75 %, SCD 15 %, TCD 10 %.")
    assert "(tuned values): one loss term, no anatomy." in row["anatomy"]
    assert row["teacher_mae"] == pytest.approx(10.95)
    assert row["judgeable"] == ("the teacher (MAE 10.95) is not better than the student without KD (tuned values "
                                "10.75); fewer epochs than STGCN's 50 (2 of 50; the paper gives no epoch count)")
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
    half = t_half_width([1, 1, 1], [0.9, 1.0, 1.1])
    assert (pruning["paper_values_effect"], pruning["paper_values_ci_low"]) == pytest.approx((1.0, 1.0 - half))
    assert pruning["paper_values_outcome"] == "refuted"
    assert (pruning["tuned_values_effect"], pruning["tuned_values_ci_high"]) == pytest.approx((-1.0, -1.0 + half))
    assert pruning["tuned_values_outcome"] == "supported"
    assert pruning["judgeable"] == "yes"  # teacher better than the baseline, 50 epochs of base and teacher, 3 seeds
    assert pruning["tuned_values_other_readings"] == "scalar_norm=absolute"
    text = markdown_text(verdict_blocks(table, facts))
    assert "| 15 min | 10.95 | " in text and "11.15 ± 1.00" in text
    assert f"| -1.00 [{-1 - t_half_width([-2, -1, 0], [-1.3, -1.0, -0.7]):+.2f}, " in text
    assert ("Readings with tuned values: Student L_STCD (ours): scalar_norm=absolute, ord_reduction=mean, "
            "distance_scale=mean_normalised (beyond the paper); Student W/O KD: scalar_norm=absolute.") in text
    lead = judgeable_lines(table)
    assert lead[0] == ("**Could not be judged:** The student trained with L_STCD beats the student without KD "
                       "(`demo`): at 15 min: the teacher (MAE 10.95) is not better than the student without KD "
                       "(tuned values 10.75); fewer epochs than STGCN's 50 (2 of 50; the paper gives no epoch "
                       "count); at 30 min: the teacher (MAE 11.10) is not better than the student without KD (tuned "
                       "values 10.90); fewer epochs than STGCN's 50 (2 of 50; the paper gives no epoch count); at 45 "
                       "min: the teacher (MAE 11.25) is not better than the student without KD (tuned values 11.05); "
                       "fewer epochs than STGCN's 50 (2 of 50; the paper gives no epoch count).")
    assert lead[1] == ("**Could be judged:** Algorithm 1 beats the Molchanov baseline at 50 % pruning (`demo`), at "
                       "every horizon.")
    assert ("With paper values (2 vs 3 epochs, STGCN's 50; 3 seed(s), 3 test day(s)): supported at 0 of 3 horizons, "
            "refuted at 0, inconclusive at 3; the means favour the claim at 3.") in text
    assert ("With tuned values (fine-tuned 2 epochs after pruning; 3 seed(s), 3 test day(s)): supported at 3 of 3 "
            "horizons, refuted at 0, inconclusive at 0; the means favour the claim at 3.") in text


def test_a_pruning_claim_counts_the_epochs_of_the_base_it_prunes(tmp_path):
    """The pruning base is trained from scratch like the teacher: a base cut short makes a Table 8 row as
    unjudgeable as a teacher cut short would (fewer epochs than STGCN's budget), whatever the fine-tuning."""
    config = merged_config("config/demo.yaml")
    config["seeds"] = [0, 1]
    config["verdict"] = {"losses": [], "pruning_ratios": [50]}
    config["training"]["teacher_epochs"] = 50
    for seed in config["seeds"]:
        for model, mae in (("pruned_kd_taylor_pruning_base_50", 18.0), ("pruned_taylor_pruning_base_50", 19.0),
                           ("pruned_kd_taylor_pruning_base_50_tuned", 18.0),
                           ("pruned_taylor_pruning_base_50_tuned", 19.0)):
            write_run(tmp_path, seed, model, mae, epochs=2, day_offsets=(-0.1, 0.0, 0.1))
            write_info(tmp_path, config, seed, model)
        write_fake_metrics(tmp_path, "demo", seed, "teacher", {h: 10.0 for h in HORIZONS}, epochs=50)
        write_fake_metrics(tmp_path, "demo", seed, "pruning_base", {h: 15.0 for h in HORIZONS}, epochs=30)
    table = verdict_of(tmp_path, config)
    assert set(table["judgeable"]) == {"fewer epochs than STGCN's 50 (30 of 50; the paper gives no epoch count)"}


def test_one_seed_and_one_test_day_say_what_the_interval_cannot_cover(tmp_path):
    """One seed still has an interval over the test days, but it does not cover training's randomness; one test
    day has none, and the row says so, as the budget caveat says where the 50 epochs come from."""
    config = merged_config("config/demo.yaml")
    config["verdict"] = {"losses": [], "pruning_ratios": [50]}
    for model, mae in (("pruned_kd_taylor_pruning_base_50", 18.0), ("pruned_taylor_pruning_base_50", 19.0),
                       ("pruned_kd_taylor_pruning_base_50_tuned", 18.0), ("pruned_taylor_pruning_base_50_tuned", 19.0)):
        write_run(tmp_path, 0, model, mae, epochs=2, day_offsets=(-0.1, 0.0, 0.1))
        write_info(tmp_path, config, 0, model)
    for model in ("teacher", "pruning_base"):
        write_fake_metrics(tmp_path, "demo", 0, model, {h: 10.0 for h in HORIZONS}, epochs=50)
    row = verdict_of(tmp_path, config).iloc[0]
    assert row["judgeable"] == "one seed: the interval covers the test days, not the randomness of training"
    assert row["paper_values_outcome"] == row["tuned_values_outcome"] == "supported"
    daily = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/predictions.npz")),
                      lambda p: daily_mae(p, np.ones(STATIONS, bool), DAYS, (3, 6, 9), 5))
    one_day = {place: frame[frame["day"] == 0] for place, frame in daily.items()}
    metrics = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/metrics.csv")), pd.read_csv)
    infos = read_runs(sorted(tmp_path.glob("results/demo/seed*/*/info.json")), lambda p: json.loads(p.read_text()))
    row = verdict_table(verdict_claims(config["verdict"]), verdict_runs(config), metrics, one_day, {}, infos,
                        dataset_facts(config), config["seeds"], 50, config["pruning"]).iloc[0]
    assert row["test_days"] == 1 and np.isnan(row["paper_values_ci_low"])
    assert row["paper_values_outcome"] == "n/a (one test day)"
    assert row["judgeable"].endswith("; one test day, so no interval")
    assert "(STGCN's 50; the paper gives no epoch count), cut short" in caveat_lines(dataset_facts(config),
                                                                                    budget(config))[-1]


def test_a_claim_left_out_of_tuned_claims_is_judged_with_the_paper_values_only(tmp_path):
    """verdict.tuned_claims without pruning: no tuned pruned model is asked for, the pruning rows judge the paper's
    values alone (their tuned columns empty, the outcome says why) and the summary and figure say it was not run."""
    config = merged_config("config/demo.yaml")
    config["seeds"] = [0, 1]
    config["verdict"] = {"losses": [], "pruning_ratios": [50], "tuned_claims": ["distillation"]}
    assert verdict_runs(config)["pruned_kd_taylor_pruning_base_50"] == {"paper": "pruned_kd_taylor_pruning_base_50"}
    for seed in config["seeds"]:
        for model, mae in (("pruned_kd_taylor_pruning_base_50", 18.0), ("pruned_taylor_pruning_base_50", 19.0)):
            write_run(tmp_path, seed, model, mae, epochs=2, day_offsets=(-0.1, 0.0, 0.1))
            write_info(tmp_path, config, seed, model)
        write_fake_metrics(tmp_path, "demo", seed, "teacher", {h: 10.0 for h in HORIZONS}, epochs=50)
        write_fake_metrics(tmp_path, "demo", seed, "pruning_base", {h: 15.0 for h in HORIZONS}, epochs=50)
    table = verdict_of(tmp_path, config)
    assert list(table.columns) == VERDICT_COLUMNS and len(table) == 3
    assert set(table["paper_values_outcome"]) == {"supported"} and set(table["judgeable"]) == {"yes"}
    assert set(table["tuned_values_outcome"]) == {NOT_RUN} and table["tuned_values_effect"].isna().all()
    text = markdown_text(verdict_blocks(table, dataset_facts(config)))
    assert "With tuned values: not run (the config's verdict.tuned_claims leaves this claim out)." in text
    assert "tuned: effect" not in text
    figure = verdict_figure(table, tmp_path / "verdict.png")
    assert "ours, tuned values (not run)" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
