"""The paper's tables and figures from our runs: every number beside the published one.

All tables share one long format (TABLE_COLUMNS): one row per dataset x model x quantity, with our mean and
spread over seeds, the paper's value, the difference, and for claim rows the comparison they rest on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import paper  # noqa: E402
from .config import pruned_name, run_dir, tuned_path  # noqa: E402

TABLE_COLUMNS = ["table", "dataset", "paper_dataset", "model", "paper_model", "param_pct", "kept_pct", "metric",
                 "horizon_min",
                 "ours", "ours_std", "n_seeds", "paper", "diff", "compared_with", "diff_vs_compared",
                 "exceeds_spread", "parameters", "epochs", "paper_epochs", "note"]


@dataclass(frozen=True)
class TableRow:
    """One model of a paper table: our run name, the paper's row name, and (Tables 7-8) its pruning level."""

    model: str
    paper_model: str
    param_pct: int | None = None
    compared_with: str | None = None


KD_COMPARISON = "student_task"


def _kd(model: str) -> TableRow:
    return TableRow(model, paper.paper_model_name(model), compared_with=KD_COMPARISON)


REFERENCE_ROWS = [TableRow("teacher", "teacher"), TableRow("student_task", "student_no_kd")]
KD_TABLES = {
    2: REFERENCE_ROWS + [_kd(m) for m in ("student_rd_l2", "student_rd_kl", "student_ord")],
    4: REFERENCE_ROWS + [_kd(m) for m in ("student_rd_l2", "student_rd_kl", "student_skd", "student_stcd")],
    5: REFERENCE_ROWS + [_kd(m) for m in ("student_ord", "student_tcd", "student_scd", "student_stcd")],
}
SHARE_MODELS = ["student_ord", "student_scd", "student_tcd", "student_stcd"]


def pruning_rows(number: int, config: dict) -> list[TableRow]:
    """Table 7 (teacher pruned by Algorithm 1 vs the fixed STCD student) or Table 8 (base pruned, both methods)."""
    pr = config["pruning"]
    if number == 7:
        pruned = pruned_name("kd_taylor", "teacher", pr["teacher_ratio"])
        return [TableRow("teacher", "teacher", 100), TableRow("student_stcd", "student_without_pruning", 3),
                TableRow(pruned, "student_with_pruning", 3, compared_with="student_stcd")]
    rows = [TableRow("pruning_base", "base_model", 100)]
    for ratio in pr["base_ratios"]:
        baseline = pruned_name("taylor", "pruning_base", ratio)
        if "taylor" in pr["methods"]:
            rows.append(TableRow(baseline, "pruned_no_kd", ratio))
        if "kd_taylor" in pr["methods"]:
            rows.append(TableRow(pruned_name("kd_taylor", "pruning_base", ratio), "pruned_stcd", ratio,
                                 compared_with=baseline if "taylor" in pr["methods"] else None))
    return rows


def table_rows(number: int, config: dict) -> list[TableRow]:
    """The models a metric table needs, restricted to the students the config trains."""
    if number in (7, 8):
        return pruning_rows(number, config)
    trained = {f"student_{loss}" for loss in config["distillation"]["losses"]}
    return [r for r in KD_TABLES[number] if not r.model.startswith("student_") or r.model in trained]


def note(config: dict, dataset: str, epochs, model: str | None = None) -> str:
    """The data, a cut-short budget and, for a student or pruned model, where its hyper-parameters come from."""
    t = config["training"]
    text = config["datasets"][dataset]["description"]
    if epochs is not None and not pd.isna(epochs) and int(epochs) < t["paper_epochs"]:
        text += f"; cut short: {int(epochs)} epochs (paper {t['paper_epochs']})"
    for prefix, section, table in (("student_", "distillation", 6), ("pruned_", "pruning", 9)):
        if model is not None and model.startswith(prefix):
            study = model[len(prefix):] if prefix == "student_" else model
            text += (f"; hyper-parameters tuned on validation MAE: {tuned_path(dataset, study)}"
                     if config[section]["hyperparameter_source"] == "tuned" else
                     f"; hyper-parameters of the paper (Table {table})")
    return text


def seed_metrics(dataset: str, model: str, seeds) -> pd.DataFrame:
    """Our long metric table of one model over all seeds (column `seed`)."""
    frames = []
    for seed in seeds:
        df = pd.read_csv(Path(run_dir(dataset, seed, model)) / "metrics.csv")
        frames.append(df.assign(seed=seed))
    return pd.concat(frames, ignore_index=True)


def spread_summary(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, sample standard deviation and count of `ours` over seeds."""
    g = df.groupby(keys, sort=False)["ours"]
    return g.agg(ours="mean", ours_std=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan,
                 n_seeds="count").reset_index()


def compare(result: pd.DataFrame) -> pd.DataFrame:
    """For rows with a comparison model: difference of means and whether it exceeds the summed spreads."""
    ref = result[["dataset", "model", "metric", "horizon_min", "ours", "ours_std"]].rename(
        columns={"model": "compared_with", "ours": "ref_ours", "ours_std": "ref_std"})
    merged = result.merge(ref, on=["dataset", "compared_with", "metric", "horizon_min"], how="left")
    merged["diff_vs_compared"] = merged["ours"] - merged["ref_ours"]
    spread = merged["ours_std"] + merged["ref_std"]
    merged["exceeds_spread"] = np.where(spread.notna() & merged["diff_vs_compared"].notna(),
                                        np.where(merged["diff_vs_compared"].abs() > spread, "yes", "no"),
                                        np.where(merged["diff_vs_compared"].notna(), "n/a (one seed)", ""))
    return merged.drop(columns=["ref_ours", "ref_std"])


def metric_table(number: int, rows: list[TableRow], config: dict) -> pd.DataFrame:
    """A metric table (2, 4, 5, 7, 8): MAE/RMSE/MAPE at 15/30/45 min per dataset and model.

    `kept_pct` is each model's parameter count as a share of the first row's model (teacher or pruning base),
    counted on the compact model that was evaluated.
    """
    seeds = config["seeds"]
    parts = []
    for dataset in config["run_datasets"]:
        paper_name = config["datasets"][dataset]["paper_name"]
        for row in rows:
            ours = seed_metrics(dataset, row.model, seeds)
            summary = spread_summary(ours, ["horizon_min", "metric"])
            published = paper.metric_rows(paper_name, row.paper_model, (number,), row.param_pct)
            summary = summary.merge(published, on=["horizon_min", "metric"], how="left")
            epochs = ours["epochs_run"].min()
            summary = summary.assign(
                table=number, dataset=dataset, paper_dataset=paper_name, model=row.model,
                paper_model=row.paper_model, param_pct=row.param_pct, compared_with=row.compared_with,
                parameters=int(ours["parameters"].iloc[0]), epochs=epochs,
                paper_epochs=config["training"]["paper_epochs"], note=note(config, dataset, epochs, row.model))
            parts.append(summary)
    result = compare(pd.concat(parts, ignore_index=True))
    result["diff"] = result["ours"] - result["paper"]
    reference = result[result["model"] == rows[0].model].groupby("dataset")["parameters"].first()
    result["kept_pct"] = 100.0 * result["parameters"] / result["dataset"].map(reference)
    return finish(result)


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Put a table's columns in the common order (missing ones empty)."""
    for col in TABLE_COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[TABLE_COLUMNS].reset_index(drop=True)


def teacher_share_table(config: dict) -> pd.DataFrame:
    """Table 3: share (%) of target entries that the ORD switch took from the teacher, per student."""
    published = paper.table(3).set_index("model")
    trained = {f"student_{loss}" for loss in config["distillation"]["losses"]}
    rows = []
    for dataset in config["run_datasets"]:
        paper_name = config["datasets"][dataset]["paper_name"]
        for model in SHARE_MODELS:
            if model not in trained:
                continue
            infos = [json.loads((Path(run_dir(dataset, s, model)) / "info.json").read_text())
                     for s in config["seeds"]]
            values = pd.Series([i["teacher_share_pct"] for i in infos], dtype=float)
            epochs = min(i["epochs_run"] for i in infos)
            rows.append({"table": 3, "dataset": dataset, "paper_dataset": paper_name, "model": model,
                         "paper_model": model, "metric": "teacher_share_pct", "ours": values.mean(),
                         "ours_std": values.std(ddof=1) if len(values) > 1 else np.nan, "n_seeds": len(values),
                         "paper": float(published.loc[model, f"{paper_name}_pct"]),
                         "parameters": infos[0]["parameters"], "epochs": epochs,
                         "paper_epochs": config["training"]["paper_epochs"],
                         "note": note(config, dataset, epochs, model)})
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df)


HYPERPARAMETERS = ("batch_size", "learning_rate", "alpha1", "alpha2", "alpha3", "alpha", "beta")


def hyperparameter_rows(number: int, config: dict, section: str, row_key) -> pd.DataFrame:
    """Hyper-parameters used (config `section`.hyperparameters) beside the paper's Table `number`.

    `row_key(paper_row)` gives (config key, our model name, paper model name, param_pct) of a published row.
    """
    published = paper.table(number)
    rows = []
    for dataset in config["run_datasets"]:
        paper_name = config["datasets"][dataset]["paper_name"]
        ours_all = config[section]["hyperparameters"][paper_name]
        for _, prow in published[published["dataset"] == paper_name].iterrows():
            key, model, paper_model, param_pct = row_key(prow)
            ours = ours_all.get(key, {})
            for name in HYPERPARAMETERS:
                if name not in prow or (pd.isna(prow[name]) and name not in ours):
                    continue
                rows.append({"table": number, "dataset": dataset, "paper_dataset": paper_name, "model": model,
                             "paper_model": paper_model, "param_pct": param_pct, "metric": name,
                             "ours": ours.get(name, np.nan), "paper": prow[name], "n_seeds": len(config["seeds"]),
                             "note": config["datasets"][dataset]["description"]})
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df)


def hyperparameter_table(config: dict) -> pd.DataFrame:
    """Table 6: the KD hyper-parameters this run used beside the paper's."""
    return hyperparameter_rows(6, config, "distillation",
                               lambda r: (r["model"], f"student_{r['model']}", r["model"], None))


def pruning_hyperparameter_table(config: dict) -> pd.DataFrame:
    """Table 9: the pruning hyper-parameters this run used beside the paper's."""
    return hyperparameter_rows(9, config, "pruning",
                               lambda r: (str(int(r["pruned_pct"])), "pruned", "pruned", int(r["pruned_pct"])))


def mean_prediction_figure(dataset: str, seed: int, models: list[str], figures: dict, quantity: str,
                           title: str, path: str | Path) -> None:
    """Figure 5: mean predicted value of one station over the configured test windows, per model, vs the truth."""
    from .io import atomic_path

    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    names, means = [], []
    for model in models:
        pred = load_predictions(dataset, seed, model)
        window = slice(start, start + points)
        if not names:
            names.append("ground truth")
            means.append(float(pred["truth"][window, h - 1, node].mean()))
        names.append(model)
        means.append(float(pred["prediction"][window, h - 1, node].mean()))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    colors = ["black"] + [f"C{i}" for i in range(len(models))]
    ax.bar(range(len(names)), means, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    low = min(means)
    ax.set_ylim(low - 0.1 * abs(low) - 1, max(means) + 0.05 * abs(max(means)) + 1)
    ax.set_ylabel(f"mean {quantity}")
    ax.set_title(f"{title}: station {node}, {points} test windows, {dataset}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load_predictions(dataset: str, seed: int, model: str) -> dict:
    with np.load(Path(run_dir(dataset, seed, model)) / "predictions.npz") as z:
        return {k: z[k] for k in ("prediction", "truth")}


def prediction_figure(dataset: str, seed: int, models: list[str], labels: dict[str, str], figures: dict,
                      step_minutes: int, quantity: str, title: str, path: str | Path) -> None:
    """Figures 3-5: one station's prediction at the configured horizon over consecutive test windows."""
    from .io import atomic_path

    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    truth = None
    for model in models:
        pred = load_predictions(dataset, seed, model)
        stop = min(start + points, pred["prediction"].shape[0])
        if truth is None:
            truth = pred["truth"][start:stop, h - 1, node]
            ax.plot(truth, color="black", lw=2.2, label="ground truth")
        ax.plot(pred["prediction"][start:stop, h - 1, node], lw=1.2, label=labels.get(model, model))
    ax.set_xlabel(f"test window (5-min steps from window {start})")
    ax.set_ylabel(quantity)
    ax.set_title(f"{title}: station {node}, {h * step_minutes}-min ahead, {dataset}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def tsne_figure(hidden_student: np.ndarray, hidden_reference: np.ndarray, labels: tuple[str, str], title: str,
                path: str | Path, seed: int = 0) -> None:
    """t-SNE of the hidden representation (input of the output layer), student red, reference blue.

    Student and teacher differ in channel count, so each window is described by its channel-mean map
    [time, nodes], which has the same size for both; both sets are embedded together.
    """
    from sklearn.manifold import TSNE

    from .io import atomic_path

    both = np.concatenate([hidden_student, hidden_reference])
    perplexity = min(30.0, (len(both) - 1) / 3)
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(both)
    n = len(hidden_student)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(emb[n:, 0], emb[n:, 1], c="tab:blue", s=18, label=labels[1])
    ax.scatter(emb[:n, 0], emb[:n, 1], c="tab:red", s=18, label=labels[0])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


TABLE1_EXTRA = ["ours_ratio_to_teacher", "paper_ratio_to_teacher", "full_recompute_s", "full_recompute_std_s",
                "full_recompute_ratio_to_teacher", "device"]
TABLE1_PAPER_MODELS = {"teacher": "teacher", "pruning_base": "pruning_base", "student_task": "student"}


def cost_table(costs: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Table 1 from measured costs (dataset, model, parameters, flops, mean_s, std_s, runs, batch, device_name,
    full_recompute_mean_s, full_recompute_std_s): long rows per metric with the paper's value and, in their own
    columns, ratios to the teacher. `test_time_s` is the streaming rollout (what evaluation runs); its row also
    carries the full-recompute time (what the paper measured) and its ratio to the teacher's."""
    published = paper.table(1)
    rows = []
    for _, c in costs.iterrows():
        paper_name = config["datasets"][c["dataset"]]["paper_name"]
        prow = published[(published["dataset"] == paper_name)
                         & (published["model"] == TABLE1_PAPER_MODELS.get(c["model"], ""))]
        pteacher = published[(published["dataset"] == paper_name) & (published["model"] == "teacher")].iloc[0]
        teacher = costs[(costs["dataset"] == c["dataset"]) & (costs["model"] == "teacher")].iloc[0]
        for metric, ours, std, paper_col, teacher_value in (
                ("parameters", c["parameters"], np.nan, "parameters", teacher["parameters"]),
                ("flops", c["flops"], np.nan, "flops", teacher["flops"]),
                ("test_time_s", c["mean_s"], c["std_s"], "test_time_s", teacher["mean_s"])):
            published_value = float(prow.iloc[0][paper_col]) if len(prow) else np.nan
            rows.append({
                "table": 1, "dataset": c["dataset"], "paper_dataset": paper_name, "model": c["model"],
                "paper_model": TABLE1_PAPER_MODELS.get(c["model"], ""), "metric": metric, "ours": float(ours),
                "ours_std": std, "n_seeds": 1, "paper": published_value, "parameters": int(c["parameters"]),
                "kept_pct": 100.0 * c["parameters"] / teacher["parameters"],
                "ours_ratio_to_teacher": float(ours) / float(teacher_value),
                "paper_ratio_to_teacher": published_value / float(pteacher[paper_col]),
                "device": c["device_name"],
                **_full_recompute_columns(c, teacher, metric == "test_time_s"),
                "note": (f"{config['datasets'][c['dataset']]['description']}; FLOPs of one forward pass of "
                         f"{int(c['batch'])} windows (torch FlopCounterMode: matmul/conv/einsum, 2 per MAC); "
                         f"test time = 9-step rollout of that batch (streaming; full recompute in full_recompute_s), "
                         f"mean of {int(c['runs'])} runs on {c['device_name']}"),
            })
    df = pd.DataFrame(rows)
    df["diff"] = df["ours"] - df["paper"]
    return finish(df).join(df[TABLE1_EXTRA])


def _full_recompute_columns(cost: pd.Series, teacher: pd.Series, timed: bool) -> dict:
    """Full-recompute rollout time, spread and ratio to the teacher's, on the test-time row (NaN elsewhere, and
    for costs measured before the column existed)."""
    mean, std = cost.get("full_recompute_mean_s", np.nan), cost.get("full_recompute_std_s", np.nan)
    if not timed:
        mean = std = np.nan
    return {"full_recompute_s": float(mean), "full_recompute_std_s": float(std),
            "full_recompute_ratio_to_teacher": float(mean) / float(teacher.get("full_recompute_mean_s", np.nan))}


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: `better` should beat `worse` on `metric` (lower is better) in table `table`."""

    table: int
    text: str
    better: str
    worse: str
    metric: str = "MAE"


def claims(config: dict) -> list[Claim]:
    pr = config["pruning"]
    found = [
        Claim(4, "The student trained with L_STCD beats the student trained without KD", "student_stcd", "student_task"),
        Claim(2, "L_ORD beats L_RD(L2)", "student_ord", "student_rd_l2"),
        Claim(2, "L_ORD beats L_RD(KL)", "student_ord", "student_rd_kl"),
        Claim(4, "L_STCD beats SKD", "student_stcd", "student_skd"),
        Claim(5, "L_STCD beats its ablation with the temporal term only", "student_stcd", "student_tcd"),
        Claim(5, "L_STCD beats its ablation with the spatial term only", "student_stcd", "student_scd"),
        Claim(7, f"Pruning the teacher by {pr['teacher_ratio']} % with Algorithm 1 beats the fixed STCD student",
              pruned_name("kd_taylor", "teacher", pr["teacher_ratio"]), "student_stcd"),
    ]
    found += [Claim(8, f"Algorithm 1 beats the Molchanov baseline at {r} % pruning",
                    pruned_name("kd_taylor", "pruning_base", r), pruned_name("taylor", "pruning_base", r))
              for r in pr["base_ratios"]]
    return found


def claim_rows(tables: dict[int, pd.DataFrame], config: dict) -> pd.DataFrame:
    """Each claim per dataset and horizon: the paper's two values, ours, and whether ours supports it."""
    rows = []
    for claim in claims(config):
        t = tables.get(claim.table)
        if t is None:
            continue
        for dataset in t["dataset"].unique():
            sub = t[(t["dataset"] == dataset) & (t["metric"] == claim.metric)]
            better, worse = (sub[sub["model"] == m].set_index("horizon_min") for m in (claim.better, claim.worse))
            if better.empty or worse.empty:
                continue
            for h in better.index:
                gap = better.loc[h, "ours"] - worse.loc[h, "ours"]
                spread = better.loc[h, "ours_std"] + worse.loc[h, "ours_std"]
                rows.append({
                    "claim": claim.text, "table": claim.table, "dataset": dataset, "metric": claim.metric,
                    "horizon_min": int(h), "paper_better": better.loc[h, "paper"], "paper_worse": worse.loc[h, "paper"],
                    "ours_better": better.loc[h, "ours"], "ours_worse": worse.loc[h, "ours"],
                    "supported": "yes" if gap < 0 else "no",
                    "beyond_spread": "n/a (one seed)" if pd.isna(spread) else ("yes" if abs(gap) > spread else "no"),
                    "epochs": better.loc[h, "epochs"],
                })
    return pd.DataFrame(rows)


def cost_claim_rows(table1: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 claims: the student's test time and FLOPs as a share of the teacher's."""
    sub = table1[(table1["model"] == "student_task") & table1["metric"].isin(["test_time_s", "flops", "parameters"])]
    return sub[["dataset", "metric", "paper_ratio_to_teacher", "ours_ratio_to_teacher", "device"]]


def summary_markdown(claim_table: pd.DataFrame, cost_claims: pd.DataFrame, config: dict) -> str:
    """results/summary.md: each claim, the paper's numbers, ours and whether ours supports it."""
    lines = ["# Summary: the paper's claims against this run", "",
             f"Datasets: {', '.join(config['run_datasets'])}; seeds: {config['seeds']}; "
             f"epochs: {config['training']['epochs']} (paper {config['training']['paper_epochs']}). "
             "Lower MAE is better. 'supported' compares our two means; 'beyond spread' says whether the gap "
             "exceeds the summed standard deviations over seeds.", ""]
    for text, group in claim_table.groupby("claim", sort=False):
        votes = (group["supported"] == "yes").sum()
        lines += [f"## {text} (Table {group['table'].iloc[0]})", "",
                  f"Supported at {votes} of {len(group)} dataset-horizon points.", "",
                  "| dataset | horizon | paper: claimed better | paper: other | ours: claimed better | ours: other "
                  "| supported | beyond spread |", "|---|---|---|---|---|---|---|---|"]
        for _, r in group.iterrows():
            lines.append(f"| {r['dataset']} | {r['horizon_min']} min | {r['paper_better']:.3f} | "
                         f"{r['paper_worse']:.3f} | {r['ours_better']:.3f} | {r['ours_worse']:.3f} | "
                         f"{r['supported']} | {r['beyond_spread']} |")
        lines.append("")
    if len(cost_claims):
        lines += ["## The student costs a fraction of the teacher (Table 1)", "",
                  "| dataset | quantity | paper: student / teacher | ours: student / teacher | device |",
                  "|---|---|---|---|---|"]
        for _, r in cost_claims.iterrows():
            lines.append(f"| {r['dataset']} | {r['metric']} | {r['paper_ratio_to_teacher']:.3f} | "
                         f"{r['ours_ratio_to_teacher']:.3f} | {r['device']} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------- loss anatomy (issue 12, figure)

ANATOMY_STATISTICS = {"value": "term_{}", "weighted": "term_{}_weighted", "grad_norm": "grad_norm_{}",
                      "grad_share": "grad_share_{}"}


def anatomy_table(dataset: str, histories: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Per distillation loss and term (columns of kdstgcn.anatomy in each seed's history): each statistic at
    the last epoch and its mean over epochs, both averaged over seeds. Losses without such columns (one term)
    are left out."""
    rows = []
    for loss, frames in histories.items():
        terms = sorted({c[len("grad_share_"):] for f in frames for c in f.columns if c.startswith("grad_share_")})
        for term in terms:
            row = {"dataset": dataset, "loss": loss, "term": term, "n_seeds": len(frames),
                   "last_epoch": int(min(f["epoch"].max() for f in frames))}
            for statistic, pattern in ANATOMY_STATISTICS.items():
                column = pattern.format(term)
                row[statistic] = float(np.mean([f[column].iloc[-1] for f in frames]))
                row[f"{statistic}_mean_over_epochs"] = float(np.mean([f[column].mean() for f in frames]))
            rows.append(row)
    columns = ["dataset", "loss", "term", "n_seeds", "last_epoch"] + [
        f"{s}{suffix}" for s in ANATOMY_STATISTICS for suffix in ("", "_mean_over_epochs")]
    return pd.DataFrame(rows, columns=columns)


def anatomy_figure(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Weighted value (log scale) and gradient share of each term, one group of bars per distillation loss."""
    from .io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    if table.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no distillation loss of more than one term was run", ha="center", va="center")
            ax.set_axis_off()
    else:
        losses = list(dict.fromkeys(table["loss"]))
        terms = sorted(set(table["term"]))
        width = 0.8 / len(terms)
        for ax, statistic, label in [(axes[0], "weighted", "weighted term value"),
                                     (axes[1], "grad_share", "share of the student's gradient")]:
            for k, term in enumerate(terms):
                sub = table[table["term"] == term].set_index("loss")
                x = [i + (k - (len(terms) - 1) / 2) * width for i, loss in enumerate(losses) if loss in sub.index]
                ax.bar(x, [sub.loc[loss, statistic] for loss in losses if loss in sub.index], width,
                       color=f"C{k}", label=term)
            ax.set_xticks(range(len(losses)), losses)
            ax.set_ylabel(label)
            ax.axhline(0, color="black", lw=0.6)
        axes[0].set_yscale("log")
        positive = table["weighted"][table["weighted"] > 0]
        if len(positive):
            axes[0].set_ylim(bottom=positive.min() / 3)
        axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
