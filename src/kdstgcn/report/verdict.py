"""The verdict on the paper's central claims: each claim with the paper's and with tuned hyper-parameters, over
seeds, beside the published numbers, its effect with a 95 % confidence interval (kdstgcn.report.effects), whether
it can be judged at all, the readings each model was trained with, and a sentence on the loss anatomy of the model
claimed better."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from kdstgcn.config.layout import HYPERPARAMETER_SOURCES, RunPlace
from kdstgcn.report import published
from kdstgcn.report.anatomy import gradient_shares
from kdstgcn.report.effects import NOT_RUN, outcome, paired_interval
from kdstgcn.report.labels import paper_label
from kdstgcn.report.preconditions import judgeable, run_readings, source_means, without_kd_label
from kdstgcn.report.rows import KD_TABLES, Claim, pruning_rows, trained_from_scratch, without_kd
from kdstgcn.report.runs import seed_metrics, spread_summary
from kdstgcn.report.tables import epochs_text

VERDICT_METRIC = "MAE"
SOURCE_COLUMNS = ("better", "better_std", "other", "other_std", "effect", "ci_low", "ci_high", "outcome", "seeds",
                  "better_epochs", "other_epochs", "better_readings", "other_readings")
VERDICT_COLUMNS = (["claim", "table", "dataset", "metric", "horizon_min", "judgeable", "better", "other",
                    "published_better", "published_other", "published_effect", "teacher_mae", "test_days"]
                   + [f"{s}_values_{c}" for s in HYPERPARAMETER_SOURCES for c in SOURCE_COLUMNS]
                   + ["paper_epochs", "anatomy"])


def paper_values(paper_name: str, number: int, model: str, pruning: dict) -> pd.DataFrame:
    """The paper's MAE per horizon (horizon_min, paper) of one of our models in table `number` (`pruning`: the
    config section that names the models of Tables 7-8)."""
    row = next(r for r in [*KD_TABLES.get(number, []), *(pruning_rows(number, pruning) if number in (7, 8) else [])]
               if r.model == model)
    paper = published.metric_rows(paper_name, row.paper_model, (number,), row.param_pct)
    return paper[paper["metric"] == VERDICT_METRIC][["horizon_min", "paper"]]


def seed_spread(metrics: Mapping[RunPlace, pd.DataFrame], dataset: str, model: str, seeds) -> pd.DataFrame:
    """Our MAE per horizon over seeds: mean, sample std (NaN for one seed), seeds and the epochs trained."""
    ours = seed_metrics(metrics, dataset, model, seeds)
    ours = ours[ours["metric"] == VERDICT_METRIC]
    return spread_summary(ours, ["horizon_min"]).assign(epochs=int(ours["epochs_run"].min()))


def anatomy_sentence(label: str, histories: list[pd.DataFrame]) -> str:
    """One sentence on where the gradient of the model said to be better comes from (or that it has one term)."""
    shares = gradient_shares(histories)
    if not shares:
        return f"{label}: one loss term, no anatomy."
    epochs = int(min(h["epoch"].max() for h in histories))
    parts = ", ".join(f"{term.upper()} {round(100 * share):d} %" for term, share in
                      sorted(shares.items(), key=lambda kv: -abs(kv[1])))
    top, share = max(shares.items(), key=lambda kv: kv[1])
    verdict = (f"{top.upper()} dominates" if share > 0.8 else f"{top.upper()} leads" if share > 0.5
               else "no term dominates")
    return (f"{label}: {verdict}; share of the student's gradient, mean over {epochs_text(epochs)} and "
            f"{len(histories)} seed(s): {parts}.")


def paired_differences(daily: Mapping[RunPlace, pd.DataFrame], dataset: str, better: str, other: str,
                       seeds, other_scale: float = 1.0) -> dict[int, np.ndarray]:
    """Per horizon (minutes), the claimed-better model's MAE minus the other's (times `other_scale`) per seed and
    test day [seeds, days], from their runs' daily MAE (effects.daily_mae), each seed's two runs paired."""
    gaps = [(daily[RunPlace(dataset, int(seed), better)].set_index(["horizon_min", "day"])["mae"]
             - other_scale * daily[RunPlace(dataset, int(seed), other)].set_index(["horizon_min", "day"])["mae"])
            for seed in seeds]
    return {int(h): np.stack([gap.loc[h].sort_index().to_numpy() for gap in gaps])
            for h in gaps[0].index.unique("horizon_min")}


def verdict_table(claims: list[Claim], runs: Mapping[str, Mapping[str, str]],
                  metrics: Mapping[RunPlace, pd.DataFrame], daily: Mapping[RunPlace, pd.DataFrame],
                  histories: Mapping[tuple[str, str], list[pd.DataFrame]], infos: Mapping[RunPlace, dict],
                  datasets: dict[str, dict], seeds: list, paper_epochs: int, pruning: dict) -> pd.DataFrame:
    """One row per claim (rows.verdict_claims), dataset and horizon: whether the row can judge the claim at all
    (preconditions.judgeable) with the teacher's MAE it is checked against and the number of test days, the
    paper's two published MAEs and effect, then for the paper's and the tuned values (columns paper_values_*,
    tuned_values_*) our two means and their spreads over seeds, the effect (claimed better - other; below 0 favours
    the claim) with its 95 % confidence interval (`ci_low`, `ci_high`: effects.paired_interval) and what the
    interval says (`outcome`: supported, refuted or inconclusive), the epochs and readings each model was trained
    with, and a sentence per source on the better model's loss anatomy. A source the claim is not judged with
    (`Claim.sources`, from verdict.tuned_claims) leaves its columns empty with the outcome `NOT_RUN`.

    `runs` names each model's run folder per source (rows.verdict_runs), `metrics` holds their metrics.csv, the
    teacher's and the pruning bases' (runs.read_runs), `daily` the daily MAE of each claim model's run
    (effects.daily_mae), `histories` maps (dataset, better model's run folder) to its seeds' histories, `infos`
    holds their info.json, `datasets` gives each dataset's paper name (rows.dataset_facts), `paper_epochs` the
    reference budget (training.paper_epochs)."""
    rows = []
    for claim in claims:
        for dataset, facts in datasets.items():
            rows += verdict_rows(claim, dataset, facts["paper_name"], runs, metrics, daily, histories, infos, seeds,
                                 paper_epochs, pruning)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def verdict_rows(claim: Claim, dataset: str, paper_name: str, runs, metrics, daily, histories, infos, seeds: list,
                 paper_epochs: int, pruning: dict) -> list[dict]:
    """The verdict rows of one claim on one dataset, one per horizon (see `verdict_table`)."""
    paper_better, paper_worse = (paper_values(paper_name, claim.table, m, pruning).set_index("horizon_min")["paper"]
                                 for m in (claim.better, claim.worse))
    teacher = seed_spread(metrics, dataset, "teacher", seeds).set_index("horizon_min")
    reference = without_kd(claim)
    ours, differences, no_kd, readings, anatomy = {}, {}, {}, {}, []
    for source in claim.sources:
        better, worse = runs[claim.better][source], runs[claim.worse][source]
        ours[source] = (seed_spread(metrics, dataset, better, seeds).set_index("horizon_min"),
                        seed_spread(metrics, dataset, worse, seeds).set_index("horizon_min"))
        differences[source] = paired_differences(daily, dataset, better, worse, seeds)
        no_kd[source] = seed_spread(metrics, dataset, runs[reference][source], seeds).set_index("horizon_min")
        readings[source] = [run_readings(infos[RunPlace(dataset, int(seeds[0]), folder)]["run"])
                            for folder in (better, worse)]
        anatomy.append(anatomy_sentence(f"{paper_label(claim.better)} ({source} values)",
                                        histories.get((dataset, better), [])))
    scratch = {"teacher"} | {trained_from_scratch(runs[m][source]) for m in (claim.better, claim.worse)
                             for source in claim.sources}
    epochs = [int(seed_spread(metrics, dataset, model, seeds)["epochs"].min()) for model in sorted(scratch)]
    rows = []
    for h in ours["paper"][0].index:
        test_days = min(gaps[h].shape[1] for gaps in differences.values())
        row = {"claim": claim.text, "table": claim.table, "dataset": dataset, "metric": VERDICT_METRIC,
               "horizon_min": int(h), "better": claim.better, "other": claim.worse,
               "published_better": paper_better.get(h, np.nan), "published_other": paper_worse.get(h, np.nan),
               "teacher_mae": teacher.loc[h, "ours"], "test_days": test_days}
        row["published_effect"] = row["published_better"] - row["published_other"]
        for source in HYPERPARAMETER_SOURCES:
            row.update(source_columns(source, ours, differences, readings, h))
        seeds_judged = min(row[f"{source}_values_seeds"] for source in claim.sources)
        row["judgeable"] = judgeable(row["teacher_mae"], source_means(no_kd, h), without_kd_label(reference),
                                     epochs, paper_epochs, seeds_judged, test_days)
        row["anatomy"] = " ".join(anatomy)
        row["paper_epochs"] = paper_epochs
        rows.append(row)
    return rows


def source_columns(source: str, ours, differences, readings, h: int) -> dict:
    """One source's columns of a verdict row at horizon `h` (see `verdict_table`); for a source its claim is not
    judged with (`Claim.sources`), empty numbers and the outcome `NOT_RUN`."""
    prefix = f"{source}_values_"
    if source not in ours:
        return {prefix + key: np.nan for key in SOURCE_COLUMNS} | {prefix + "outcome": NOT_RUN}
    b, w = ours[source]
    low, high = (float(end) for end in paired_interval(differences[source][h]))
    return {prefix + key: value for key, value in {
        "better": b.loc[h, "ours"], "better_std": b.loc[h, "ours_std"],
        "other": w.loc[h, "ours"], "other_std": w.loc[h, "ours_std"],
        "effect": b.loc[h, "ours"] - w.loc[h, "ours"], "ci_low": low, "ci_high": high,
        "outcome": outcome(low, high), "seeds": int(min(b.loc[h, "n_seeds"], w.loc[h, "n_seeds"])),
        "better_epochs": int(b["epochs"].min()), "other_epochs": int(w["epochs"].min()),
        "better_readings": readings[source][0], "other_readings": readings[source][1]}.items()}
