"""results/summary.md and .html as blocks: whether each central claim could be judged at all, the caveats, the
verdict on the central claims (each effect with its 95 % confidence interval), then every claim of the tables with
the paper's numbers, ours and whether our means favour it.

A block is (kind, content); kinds: h1, h2, caveat, p (text), table (DataFrame of strings) and html (markup).
"""
from __future__ import annotations

import pandas as pd

from kdstgcn.config.layout import HYPERPARAMETER_SOURCES
from kdstgcn.report.caveats import caveat_lines, comparable, data_tag
from kdstgcn.report.effects import (INCONCLUSIVE, NO_INTERVAL, NOT_RUN, NOT_TRAINED, ONE_TEST_DAY, REFUTED,
                                    SUPPORTED)
from kdstgcn.report.labels import paper_label
from kdstgcn.report.tables import epochs_text, reference_budget

Blocks = list[tuple[str, object]]


# why a verdict row leaves a source of values out (its outcome)
NOT_RUN_REASONS = {NOT_RUN: "the config's verdict.tuned_claims leaves this claim out",
                   NOT_TRAINED: "a deployable model trains with the values its entry names"}


def budget_tag(epochs_better: pd.Series, epochs_worse: pd.Series, paper_epochs: int) -> str:
    """The epochs behind a claim's two models, e.g. "2 epochs, STGCN's 50" or "3 vs 2 epochs, STGCN's 50"."""
    better, worse = int(epochs_better.min()), int(epochs_worse.min())
    trained = epochs_text(better) if better == worse else f"{better} vs {epochs_text(worse)}"
    return f"{trained}, {reference_budget(paper_epochs)}"


def summary_blocks(claim_table: pd.DataFrame, cost_claims: pd.DataFrame, datasets: dict[str, dict], budget: dict,
                   verdict: pd.DataFrame | None = None) -> Blocks:
    """The summary: whether each claim of the verdict could be judged (verdict.verdict_table, when given), the
    caveats (`datasets`: rows.dataset_facts, `budget`: rows.budget), then the verdict, then each claim of the
    tables (claims.claim_rows) and the cost claims (claims.cost_claim_rows)."""
    title = "Summary: the paper's claims against this run"
    if not all(comparable(facts) for facts in datasets.values()):
        title += " (not comparable with the paper's numbers)"
    blocks: Blocks = [("h1", title)]
    if verdict is not None:
        blocks += [("caveat", line) for line in judgeable_lines(verdict)]
    blocks += [("caveat", line) for line in caveat_lines(datasets, budget)]
    if verdict is not None:
        blocks += verdict_blocks(verdict, datasets)
        blocks.append(("h2", "Every claim of the tables (the hyper-parameters the study is configured with)"))
    blocks.append(("p", "Lower MAE is better. 'supported' compares our two means; 'beyond spread' says whether the "
                        "gap exceeds the summed standard deviations over seeds. Both describe, neither tests: only "
                        "the verdict's confidence intervals have a known error rate."))
    for text, group in claim_table.groupby("claim", sort=False):
        votes = (group["supported"] == "yes").sum()
        tags = "; ".join(data_tag(d, datasets[d]) for d in group["dataset"].unique())
        trained = budget_tag(group["epochs_better"], group["epochs_worse"], budget["paper_epochs"])
        rows = pd.DataFrame({
            "dataset": group["dataset"], "horizon": group["horizon_min"].map(lambda h: f"{h} min"),
            **{label: group[col].map(lambda v: f"{v:.3f}") for label, col in (
                ("paper: claimed better", "paper_better"), ("paper: other", "paper_worse"),
                ("ours: claimed better", "ours_better"), ("ours: other", "ours_worse"))},
            "supported": group["supported"], "beyond spread": group["beyond_spread"]})
        blocks += [("h2", f"{text} (Table {group['table'].iloc[0]}; {tags}; {trained})"),
                   ("p", f"Supported at {votes} of {len(group)} dataset-horizon points."), ("table", rows)]
    if len(cost_claims):
        tags = "; ".join(data_tag(d, datasets[d]) for d in cost_claims["dataset"].unique())
        rows = pd.DataFrame({
            "dataset": cost_claims["dataset"], "quantity": cost_claims["metric"],
            "paper: student / teacher": cost_claims["paper_ratio_to_teacher"].map(lambda v: f"{v:.3f}"),
            "ours: student / teacher": cost_claims["ours_ratio_to_teacher"].map(lambda v: f"{v:.3f}"),
            "device": cost_claims["device"]})
        blocks += [("h2", f"The student costs a fraction of the teacher (Table 1; {tags})"), ("table", rows)]
    return blocks


def judgeable_lines(table: pd.DataFrame) -> list[str]:
    """One line per verdict claim and dataset: whether it could be judged, and if not why, at which horizons."""
    lines = []
    for (text, dataset), group in table.groupby(["claim", "dataset"], sort=False):
        if (group["judgeable"] == "yes").all():
            lines.append(f"**Could be judged:** {text} (`{dataset}`), at every horizon.")
            continue
        reasons = group.groupby("judgeable", sort=False)["horizon_min"].agg(list)
        why = "; ".join(f"at {', '.join(map(str, horizons))} min: {'judgeable' if reason == 'yes' else reason}"
                        for reason, horizons in reasons.items())
        lines.append(f"**Could not be judged:** {text} (`{dataset}`): {why}.")
    return lines


def readings_line(group: pd.DataFrame, source: str) -> str:
    """The readings the two models of a claim were trained with under one source's values."""
    col, first = f"{source}_values_", group.iloc[0]
    return (f"Readings with {source} values: {paper_label(first['better'])}: {first[col + 'better_readings']}; "
            f"{paper_label(first['other'])}: {first[col + 'other_readings']}.")


def mean_std_text(mean: float, std: float) -> str:
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def effect_text(effect: float, low: float, high: float) -> str:
    """An effect with its 95 % confidence interval, e.g. '-0.12 [-0.30, +0.05]'."""
    interval = "no interval" if pd.isna(low) else f"{low:+.2f}, {high:+.2f}"
    return f"{effect:+.2f} [{interval}]"


def verdict_blocks(table: pd.DataFrame, datasets: dict[str, dict]) -> Blocks:
    """The verdict (verdict.verdict_table): per claim a table of the paper's and our numbers at each horizon for
    both sources of hyper-parameters with each effect's interval and outcome, a line saying at how many horizons
    the interval supports or refutes the claim, the readings, and the anatomy."""
    if table.empty:
        return []
    blocks: Blocks = [
        ("h2", "Verdict: the paper's central claims with its hyper-parameters and with tuned ones"),
        ("p", "MAE, mean ± std over seeds. Effect = claimed better - other (below 0 favours the claim), in brackets "
              "its 95 % confidence interval over the test days and seeds, each seed's two models paired: the "
              "claim is supported where the interval lies below 0, refuted where it lies above 0, inconclusive "
              "where it holds 0. Tuned values come from the `tuning` studies on the validation days (the test "
              "days are never used for tuning).")]
    for (text, dataset), group in table.groupby(["claim", "dataset"], sort=False):
        cells = {"horizon": group["horizon_min"].map(lambda h: f"{h} min"),
                 "teacher": group["teacher_mae"].map(lambda v: f"{v:.2f}"),
                 "published: better / other": [published_text(b, o) for b, o in zip(group["published_better"],
                                                                                       group["published_other"])]}
        lines = []
        for source in HYPERPARAMETER_SOURCES:
            col = f"{source}_values_"
            first = group[col + "outcome"].iloc[0]
            if first in NOT_RUN_REASONS and (group[col + "outcome"] == first).all():
                lines.append(f"With {source} values: not run ({NOT_RUN_REASONS[first]}).")
                continue
            cells[f"ours, {source} values: better"] = [mean_std_text(m, s) for m, s in
                                                       zip(group[col + "better"], group[col + "better_std"])]
            cells[f"ours, {source} values: other"] = [mean_std_text(m, s) for m, s in
                                                      zip(group[col + "other"], group[col + "other_std"])]
            cells[f"{source}: effect [95 % CI]"] = [effect_text(*values) for values in zip(
                group[col + "effect"], group[col + "ci_low"], group[col + "ci_high"])]
            cells[f"{source}: outcome"] = group[col + "outcome"]
            lines += [verdict_line(group, source), readings_line(group, source)]
        blocks += [("h2", f"{text} ({data_tag(dataset, datasets[dataset])})"), ("table", pd.DataFrame(cells))]
        blocks += [("p", line) for line in lines]
        blocks.append(("p", f"Loss anatomy: {group['anatomy'].iloc[0]}"))
    return blocks


def published_text(better: float, other: float) -> str:
    """The published MAEs of a claim's two models, or that the paper has none (a claim beyond the paper)."""
    return "none (beyond the paper)" if pd.isna(better) and pd.isna(other) else f"{better:.2f} / {other:.2f}"


def verdict_line(group: pd.DataFrame, source: str) -> str:
    """At how many horizons one claim's interval on one dataset with one source's values supports it, refutes it
    or neither, and at how many the means favour it."""
    col = f"{source}_values_"
    count = group[col + "outcome"].value_counts()
    favoured = (group[col + "effect"] < 0).sum()
    better_epochs, other_epochs = group[col + "better_epochs"].min(), group[col + "other_epochs"].min()
    trained = epochs_text(better_epochs) if better_epochs == other_epochs else (
        f"{better_epochs} vs {epochs_text(other_epochs)}")
    trained = (f"fine-tuned {trained} after pruning" if group["better"].iloc[0].startswith("pruned_") else
               f"{trained}, {reference_budget(group['paper_epochs'].iloc[0])}")
    missing = count.get(NO_INTERVAL, 0)
    return (f"With {source} values ({trained}; {group[col + 'seeds'].min()} seed(s), "
            f"{group['test_days'].min()} test day(s)): supported at {count.get(SUPPORTED, 0)} of {len(group)} "
            f"horizons, refuted at {count.get(REFUTED, 0)}, inconclusive at {count.get(INCONCLUSIVE, 0)}"
            + (f", without an interval at {missing} ({ONE_TEST_DAY})" if missing else "")
            + f"; the means favour the claim at {favoured}.")
