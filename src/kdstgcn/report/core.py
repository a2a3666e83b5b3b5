"""The paper's tables and figures from our runs: every number beside the published one.

All tables share one long format (TABLE_COLUMNS): one row per dataset x model x quantity, with our mean and
spread over seeds, the paper's value, the difference, and for claim rows the comparison they rest on.
"""
from __future__ import annotations

import html
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdstgcn import paper  # noqa: E402
from kdstgcn.config.core import pruned_name, quantity, run_dir, sourced_model, tuned_path  # noqa: E402

TABLE_COLUMNS = ["table", "dataset", "paper_dataset", "model", "paper_model", "param_pct", "kept_pct", "metric",
                 "horizon_min",
                 "ours", "ours_std", "n_seeds", "paper", "diff", "compared_with", "diff_vs_compared",
                 "exceeds_spread", "parameters", "epochs", "paper_epochs", "note"]


@dataclass(frozen=True)
class TableRow:
    """One model of a paper table: our run name, the paper's row name, and (Tables 7-8) its pruning level and,
    for a pruned model, the model it was pruned from."""

    model: str
    paper_model: str
    param_pct: int | None = None
    compared_with: str | None = None
    base: str | None = None


KD_COMPARISON = "student_task"
PRUNED_NAME = re.compile(r"pruned_(?P<method>[a-z0-9_]+)_(?P<base>teacher|pruning_base)_(?P<ratio>\d+)")


PAPER_LABELS = {"teacher": "Teacher", "student_task": "Student W/O KD", "pruning_base": "Base Model",
                "pruned": "Pruned"}
PAPER_LOSSES = {"rd_l2": "RD(L2)", "rd_kl": "RD(KL)"}
OUR_LOSSES = ("ord", "stcd")
PRUNING_LABELS = {"taylor": "Pruned W/O KD", "kd_taylor": "Pruned W L_STCD (ours)"}


def paper_label(model: str) -> str:
    """The paper's name of one of our models (its tables' row names), e.g. student_stcd -> 'Student L_STCD (ours)'.

    Loss names are written L_NAME; `math_label` and `html_label` set NAME as a subscript.
    """
    if model in PAPER_LABELS:
        return PAPER_LABELS[model]
    match = PRUNED_NAME.fullmatch(model)
    if match:
        method = PRUNING_LABELS.get(match["method"], f"Pruned ({match['method']})")
        if match["base"] == "teacher":
            method = "Student W pruning algorithm" if match["method"] == "kd_taylor" else method
            return f"{method} (teacher pruned {match['ratio']} %)"
        return f"{method} {match['ratio']} %"
    if model.startswith("student_"):
        loss = model[len("student_"):]
        return f"Student L_{PAPER_LOSSES.get(loss, loss.upper())}" + (" (ours)" if loss in OUR_LOSSES else "")
    return model


LOSS_SUBSCRIPT = re.compile(r"L_([A-Z0-9]+(?:\([A-Z0-9]+\))?)")


def math_label(label: str) -> str:
    r"""A paper label for matplotlib: L_STCD -> $L_{\mathrm{STCD}}$."""
    return LOSS_SUBSCRIPT.sub(lambda m: f"$L_{{\\mathrm{{{m[1]}}}}}$", label)


def html_label(label: str) -> str:
    """A paper label as HTML: L_STCD -> L<sub>STCD</sub>."""
    return LOSS_SUBSCRIPT.sub(r"L<sub>\1</sub>", html.escape(label, quote=False))


def pruned_base(model: str) -> str | None:
    """The model a pruned model was pruned from (the inverse of config.pruned_name); None if not pruned."""
    match = PRUNED_NAME.fullmatch(model)
    return match["base"] if match else None


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
                TableRow(pruned, "student_with_pruning", 3, compared_with="student_stcd", base="teacher")]
    rows = [TableRow("pruning_base", "base_model", 100)]
    for ratio in pr["base_ratios"]:
        baseline = pruned_name("taylor", "pruning_base", ratio)
        if "taylor" in pr["methods"]:
            rows.append(TableRow(baseline, "pruned_no_kd", ratio, base="pruning_base"))
        if "kd_taylor" in pr["methods"]:
            rows.append(TableRow(pruned_name("kd_taylor", "pruning_base", ratio), "pruned_stcd", ratio,
                                 compared_with=baseline if "taylor" in pr["methods"] else None,
                                 base="pruning_base"))
    return rows


def table_rows(number: int, config: dict) -> list[TableRow]:
    """The models a metric table needs, restricted to the students the config trains."""
    if number in (7, 8):
        return pruning_rows(number, config)
    trained = {f"student_{loss}" for loss in config["distillation"]["losses"]}
    return [r for r in KD_TABLES[number] if not r.model.startswith("student_") or r.model in trained]


def epochs_text(n) -> str:
    """'1 epoch', '3 epochs'."""
    n = int(n)
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def note(config: dict, dataset: str, epochs, finetune_epochs: int | None = None, model: str | None = None) -> str:
    """The data and the training budget: whether it was cut short of the paper's epochs and, for a pruned model
    (`epochs` = its base model's epochs + `finetune_epochs`), that it trained more epochs than its base; for a
    student or pruned `model`, where its hyper-parameters come from."""
    paper_epochs = config["training"]["paper_epochs"]
    text = config["datasets"][dataset]["description"]
    for prefix, section, table in (("student_", "distillation", 6), ("pruned_", "pruning", 9)):
        if model is not None and model.startswith(prefix):
            study = model[len(prefix):] if prefix == "student_" else model
            text += (f"; hyper-parameters tuned on validation MAE: {tuned_path(dataset, study)}"
                     if config[section]["hyperparameter_source"] == "tuned" else
                     f"; hyper-parameters of the paper (Table {table})")
    if epochs is None or pd.isna(epochs):
        return text
    base_epochs = int(epochs) - (finetune_epochs or 0)
    if base_epochs < paper_epochs:
        text += f"; cut short: {epochs_text(base_epochs)} (paper {paper_epochs})"
    if finetune_epochs:
        text += (f"; pruned from a base model trained {epochs_text(base_epochs)}, then fine-tuned "
                 f"{epochs_text(finetune_epochs)}: {epochs_text(epochs)} in all, more than its base model")
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

    On pruned rows only, `kept_pct` is the parameter count as a share of the base model's (counted on the compact
    model that was evaluated) and `epochs` counts the base model's epochs plus the fine-tuning after pruning.
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
            parameters = int(ours["parameters"].iloc[0])
            epochs, finetune, kept_pct = ours["epochs_run"].min(), None, np.nan
            if row.base is not None:
                base = seed_metrics(dataset, row.base, seeds)
                finetune = int(epochs)
                epochs = int(base["epochs_run"].min()) + finetune
                kept_pct = 100.0 * parameters / int(base["parameters"].iloc[0])
            summary = summary.assign(
                table=number, dataset=dataset, paper_dataset=paper_name, model=row.model,
                paper_model=row.paper_model, param_pct=row.param_pct, compared_with=row.compared_with,
                parameters=parameters, kept_pct=kept_pct, epochs=epochs,
                paper_epochs=config["training"]["paper_epochs"], note=note(config, dataset, epochs, finetune, row.model))
            parts.append(summary)
    result = compare(pd.concat(parts, ignore_index=True))
    result["diff"] = result["ours"] - result["paper"]
    return finish(result)


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Put a table's columns in the common order (missing ones empty)."""
    for col in TABLE_COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[TABLE_COLUMNS].reset_index(drop=True)


CORE_COLUMNS = ["table", "dataset", "paper_dataset", "model", "paper_model", "metric", "ours", "n_seeds", "paper",
                "diff", "note"]
CLAIM_COLUMNS = ["compared_with", "diff_vs_compared", "exceeds_spread"]


def rows_with(df: pd.DataFrame, column: str) -> pd.Series:
    """The rows a column is meant for: pruned models for `kept_pct`, rows with a comparison model for the
    comparison columns, every row otherwise."""
    if column == "kept_pct":
        return df["model"].str.startswith("pruned_")
    if column in CLAIM_COLUMNS:
        return df["compared_with"].notna()
    return pd.Series(True, index=df.index)


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as a person reads it (the CSV): without the optional columns that are empty on most of the
    rows they are meant for (`rows_with`); the parquet file keeps every column."""
    keep = []
    for col in df.columns:
        values = df.loc[rows_with(df, col), col]
        filled = values.notna() & (values.astype(str) != "")
        if col in CORE_COLUMNS or (len(values) and filled.mean() > 0.5):
            keep.append(col)
    return df[keep]


def write_table_files(df: pd.DataFrame, csv_path: str | Path, parquet_path: str | Path) -> None:
    """A paper table as CSV (readable_table) and as parquet (every column, the same rows)."""
    from kdstgcn.runtime.io import write_table

    write_table(readable_table(df), csv_path)
    write_table(df, parquet_path)


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
                         "note": note(config, dataset, epochs, model=model)})
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


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Write a figure as PNG, atomically, and release it from pyplot (the returned Figure stays readable)."""
    from kdstgcn.runtime.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def model_color(model: str, index: int) -> str:
    """One colour per kind of model in Figure 5: base, baseline pruning, Algorithm 1; others by position."""
    match = PRUNED_NAME.fullmatch(model)
    if model == "pruning_base":
        return "tab:gray"
    if match:
        return {"taylor": "tab:orange", "kd_taylor": "tab:blue"}.get(match["method"], f"C{index}")
    return f"C{index}"


def mean_prediction_figure(dataset: str, seed: int, models: list[str], figures: dict, quantity: str,
                           title: str, path: str | Path) -> plt.Figure:
    """Figure 5: mean predicted value of one station over the configured test windows, per model, vs the truth.

    Bars start at zero and carry their value; a second panel shows each model's mean minus the truth's, where
    the small differences between models are seen.
    """
    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    names, means, colors = ["Ground truth"], [], ["black"]
    for i, model in enumerate(models):
        pred = load_predictions(dataset, seed, model)
        window = slice(start, start + points)
        if not means:
            means.append(float(pred["truth"][window, h - 1, node].mean()))
        names.append(paper_label(model))
        means.append(float(pred["prediction"][window, h - 1, node].mean()))
        colors.append(model_color(model, i))
    x = np.arange(len(names))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 1.1 * len(names)), 6.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    bars = top.bar(x, means, color=colors)
    top.bar_label(bars, [f"{m:.2f}" for m in means], fontsize=8, padding=2)
    top.set_ylim(0, max(means) * 1.12 if max(means) > 0 else 1)
    top.set_ylabel(f"mean {quantity}\n(axis from 0)", fontsize=9)
    top.set_title(f"{title}: mean prediction of station {node}, {h} steps ahead, over {points} test windows, "
                  f"{dataset}", fontsize=10)
    gaps = np.array(means) - means[0]
    bottom.bar(x[1:], gaps[1:], color=colors[1:])
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel("mean minus\nground truth", fontsize=9)
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(x, ["\n".join(math_label(line) for line in textwrap.wrap(n, 13)) for n in names], fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def load_predictions(dataset: str, seed: int, model: str) -> dict:
    with np.load(Path(run_dir(dataset, seed, model)) / "predictions.npz") as z:
        return {k: z[k] for k in ("prediction", "truth")}


def prediction_figure(dataset: str, seed: int, models: list[str], labels: dict[str, str], figures: dict,
                      step_minutes: int, quantity: str, title: str, path: str | Path) -> plt.Figure:
    """Figures 3-4: one station's prediction at the configured horizon over consecutive test windows.

    As in the paper, one panel per model (shared axes), each against the ground truth, so models whose curves
    overlap are still told apart; the prediction is dashed with markers, the truth solid black.
    """
    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    ncols = 2 if len(models) <= 4 else 3
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 2.6 * nrows + 0.9), sharex=True, sharey=True,
                             squeeze=False)
    for i, (ax, model) in enumerate(zip(axes.flat, models)):
        pred = load_predictions(dataset, seed, model)
        stop = min(start + points, pred["prediction"].shape[0])
        steps = np.arange(start, stop)
        truth_line, = ax.plot(steps, pred["truth"][start:stop, h - 1, node], color="black", lw=1.8)
        ax.plot(steps, pred["prediction"][start:stop, h - 1, node], color=f"C{i}", lw=1.2, ls="--", marker="o",
                ms=2.5)
        ax.set_title(math_label(labels.get(model, paper_label(model))), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    prediction_key = matplotlib.lines.Line2D([], [], color="gray", lw=1.2, ls="--", marker="o", ms=2.5)
    fig.legend([truth_line, prediction_key], ["ground truth", "prediction of the panel's model"],
               loc="upper right", fontsize=8, ncol=2)
    fig.supxlabel(f"test window (consecutive {step_minutes}-min steps)", fontsize=9)
    fig.supylabel(quantity, fontsize=9)
    fig.suptitle(f"{title}: station {node}, {h * step_minutes}-min ahead, {dataset}", fontsize=10, x=0.02,
                 ha="left")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def tsne_figure(hidden_student: np.ndarray, hidden_reference: np.ndarray, labels: tuple[str, str], title: str,
                path: str | Path, seed: int = 0) -> plt.Figure:
    """t-SNE of the hidden representation (input of the output layer), student red, reference blue.

    Student and teacher differ in channel count, so each window is described by its channel-mean map
    [time, nodes], which has the same size for both; both sets are embedded together, on one thread (a hundred
    points: OpenMP threads only cost time, above all on busy cores).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    both = np.concatenate([hidden_student, hidden_reference])
    perplexity = min(30.0, (len(both) - 1) / 3)
    with threadpool_limits(1):
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(both)
    n = len(hidden_student)
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    ax.scatter(emb[n:, 0], emb[n:, 1], c="tab:blue", s=18, label=f"reference: {math_label(labels[1])}")
    ax.scatter(emb[:n, 0], emb[:n, 1], c="tab:red", s=18, label=f"student: {math_label(labels[0])}")
    ax.set_title(f"{title}\neach point: one test window's hidden representation (input of the output layer),\n"
                 f"averaged over channels (a time x station map); {n} windows per model", fontsize=8)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


TABLE1_EXTRA = ["ours_ratio_to_teacher", "paper_ratio_to_teacher", "full_recompute_s", "full_recompute_std_s",
                "full_recompute_ratio_to_teacher", "device"]


def kept_share(costs: pd.DataFrame, row: pd.Series) -> float:
    """A pruned model's parameter count as a share (%) of its base model's; NaN for a model that was not pruned."""
    base = pruned_base(row["model"])
    if base is None:
        return np.nan
    base_row = costs[(costs["dataset"] == row["dataset"]) & (costs["model"] == base)]
    return 100.0 * row["parameters"] / base_row["parameters"].iloc[0] if len(base_row) else np.nan
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
                "kept_pct": kept_share(costs, c),
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
                judged = judge_claim(better.loc[h], worse.loc[h])
                rows.append({
                    "claim": claim.text, "table": claim.table, "dataset": dataset, "metric": claim.metric,
                    "horizon_min": int(h), "paper_better": better.loc[h, "paper"], "paper_worse": worse.loc[h, "paper"],
                    "ours_better": better.loc[h, "ours"], "ours_worse": worse.loc[h, "ours"],
                    "supported": judged["supported"], "beyond_spread": judged["beyond_spread"],
                    "epochs_better": better.loc[h, "epochs"], "epochs_worse": worse.loc[h, "epochs"],
                })
    return pd.DataFrame(rows)


def judge_claim(better: pd.Series, other: pd.Series) -> dict:
    """A lower-is-better claim on our two means (`ours`, `ours_std` over seeds): the effect (better - other), the
    summed spread, whether the means support it, and whether the effect's size exceeds the spread."""
    effect, spread = better["ours"] - other["ours"], better["ours_std"] + other["ours_std"]
    return {"effect": effect, "spread": spread, "supported": "yes" if effect < 0 else "no",
            "beyond_spread": "n/a (one seed)" if pd.isna(spread) else ("yes" if abs(effect) > spread else "no")}


def cost_claim_rows(table1: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 claims: the student's test time and FLOPs as a share of the teacher's."""
    sub = table1[(table1["model"] == "student_task") & table1["metric"].isin(["test_time_s", "flops", "parameters"])]
    return sub[["dataset", "metric", "paper_ratio_to_teacher", "ours_ratio_to_teacher", "device"]]


PAPER_QUANTITY = "speed (mph)"


def comparable(config: dict, dataset: str) -> bool:
    """Whether our numbers on a dataset can be set against the paper's: real data of the paper's quantity."""
    return quantity(config, dataset) == PAPER_QUANTITY


def data_tag(config: dict, dataset: str) -> str:
    """A few words on what a dataset's numbers are, for headings."""
    ds = config["datasets"][dataset]
    if comparable(config, dataset):
        return f"{dataset}: the paper's {ds['paper_name']} data"
    if ds["source"] == "synthetic":
        return f"{dataset}: synthetic data, not comparable with the paper's {ds['paper_name']}"
    return f"{dataset}: {quantity(config, dataset)}, not comparable with the paper's {ds['paper_name']} speed"


def caveat_lines(config: dict) -> list[str]:
    """What our numbers can be compared with and the epoch budget: the first lines of the summary and of every
    table page."""
    lines = []
    for dataset in config["run_datasets"]:
        ds = config["datasets"][dataset]
        if comparable(config, dataset):
            lines.append(f"**Data:** `{dataset}` is {ds['description']}, the paper's {ds['paper_name']}.")
        else:
            lines.append(f"**Not comparable with the paper's numbers:** `{dataset}` is {ds['description']}. The "
                         f"paper's {ds['paper_name']} values stand beside ours only to show which model each claim "
                         "says is better: compare directions, not values.")
    t, pr = config["training"], config["pruning"]
    budget = f"**Epoch budget:** {epochs_text(t['epochs'])} per model (paper {t['paper_epochs']})"
    if t["epochs"] < t["paper_epochs"]:
        budget += ", cut short: expect larger errors than the paper's"
    lines.append(f"{budget}; a pruned model is fine-tuned {epochs_text(pr['finetune_epochs'])} after pruning its "
                 f"base model, so it trains more epochs than that base. Seeds: {config['seeds']}.")
    return lines


def budget_tag(epochs_better: pd.Series, epochs_worse: pd.Series, paper_epochs: int) -> str:
    """The epochs behind a claim's two models, e.g. '2 epochs, paper 50' or '3 vs 2 epochs, paper 50'."""
    better, worse = int(epochs_better.min()), int(epochs_worse.min())
    trained = epochs_text(better) if better == worse else f"{better} vs {epochs_text(worse)}"
    return f"{trained}, paper {paper_epochs}"


def summary_blocks(claim_table: pd.DataFrame, cost_claims: pd.DataFrame, config: dict,
                   verdict: pd.DataFrame | None = None) -> list[tuple[str, object]]:
    """results/summary.md and .html as blocks (kind, content): the caveats first, then the verdict (`verdict_table`,
    when given), then each claim of the tables with the paper's numbers, ours and whether ours supports it.
    Kinds: h1, h2, caveat, p (text), table (DataFrame of strings)."""
    datasets = config["run_datasets"]
    title = "Summary: the paper's claims against this run"
    if not all(comparable(config, d) for d in datasets):
        title += " (not comparable with the paper's numbers)"
    blocks: list[tuple[str, object]] = [("h1", title)] + [("caveat", line) for line in caveat_lines(config)]
    if verdict is not None:
        blocks += verdict_blocks(verdict, config)
        blocks.append(("h2", "Every claim of the tables (the hyper-parameters the study is configured with)"))
    blocks.append(("p", "Lower MAE is better. 'supported' compares our two means; 'beyond spread' says whether the "
                        "gap exceeds the summed standard deviations over seeds."))
    paper_epochs = config["training"]["paper_epochs"]
    for text, group in claim_table.groupby("claim", sort=False):
        votes = (group["supported"] == "yes").sum()
        tags = "; ".join(data_tag(config, d) for d in group["dataset"].unique())
        budget = budget_tag(group["epochs_better"], group["epochs_worse"], paper_epochs)
        rows = pd.DataFrame({
            "dataset": group["dataset"], "horizon": group["horizon_min"].map(lambda h: f"{h} min"),
            **{label: group[col].map(lambda v: f"{v:.3f}") for label, col in (
                ("paper: claimed better", "paper_better"), ("paper: other", "paper_worse"),
                ("ours: claimed better", "ours_better"), ("ours: other", "ours_worse"))},
            "supported": group["supported"], "beyond spread": group["beyond_spread"]})
        blocks += [("h2", f"{text} (Table {group['table'].iloc[0]}; {tags}; {budget})"),
                   ("p", f"Supported at {votes} of {len(group)} dataset-horizon points."), ("table", rows)]
    if len(cost_claims):
        tags = "; ".join(data_tag(config, d) for d in cost_claims["dataset"].unique())
        rows = pd.DataFrame({
            "dataset": cost_claims["dataset"], "quantity": cost_claims["metric"],
            "paper: student / teacher": cost_claims["paper_ratio_to_teacher"].map(lambda v: f"{v:.3f}"),
            "ours: student / teacher": cost_claims["ours_ratio_to_teacher"].map(lambda v: f"{v:.3f}"),
            "device": cost_claims["device"]})
        blocks += [("h2", f"The student costs a fraction of the teacher (Table 1; {tags})"), ("table", rows)]
    return blocks


def markdown_text(blocks: list[tuple[str, object]]) -> str:
    """Blocks (summary_blocks) as Markdown."""
    lines = []
    for kind, content in blocks:
        if kind == "table":
            lines += ["| " + " | ".join(content.columns) + " |", "|" + "---|" * len(content.columns)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in content.itertuples(index=False)]
        else:
            lines.append({"h1": "# ", "h2": "## "}.get(kind, "") + str(content))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------- loss anatomy (issue 12, figure)

ANATOMY_STATISTICS = {"value": "term_{}", "weighted": "term_{}_weighted", "grad_norm": "grad_norm_{}",
                      "grad_share": "grad_share_{}"}


def anatomy_table(dataset: str, histories: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Per distillation loss and term (columns of kdstgcn.training.anatomy in each seed's history): each statistic at
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
    save_figure(fig, path)


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em 1.5em; color: #222; }
h1 { font-size: 1.35em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.caveat { background: #fff4e0; border-left: 4px solid #e09000; padding: .4em .8em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; text-align: center; }
td.model { text-align: left; } td.model code { display: block; color: #777; font-size: 11px; }
td.paper { color: #555; } td.diff { color: #777; } td.ours { border-left: 2px solid #999; }
"""


def inline_html(text: str) -> str:
    """Text of a block as HTML: **bold**, `code` and L_NAME subscripts."""
    out = html_label(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def html_page(blocks: list[tuple[str, object]], title: str) -> str:
    """Blocks as a self-contained HTML page (what the Snakemake report shows inline). Kinds as summary_blocks
    (a caveat is a highlighted paragraph), plus html: markup written by the caller."""
    parts = []
    for kind, content in blocks:
        if kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in content.columns)
            body = "".join("<tr>" + "".join(f"<td>{inline_html(str(v))}</td>" for v in row) + "</tr>"
                           for row in content.itertuples(index=False))
            parts.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                         "</div>")
        elif kind == "html":
            parts.append(str(content))
        elif kind == "caveat":
            parts.append(f"<p class='caveat'>{inline_html(str(content))}</p>")
        else:
            parts.append(f"<{kind}>{inline_html(str(content))}</{kind}>")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


TABLE_TITLES = {
    1: "Parameters, FLOPs and test time", 2: "L_ORD against L_RD(L2) and L_RD(KL)",
    3: "Share of targets the overseen switch took from the teacher", 4: "L_STCD against other distillation losses",
    5: "Ablation of L_STCD", 6: "Distillation hyper-parameters",
    7: "Pruning the teacher with Algorithm 1 against the fixed STCD student",
    8: "Algorithm 1 against the pruning baseline without KD", 9: "Pruning hyper-parameters"}
METRIC_ORDER = ("MAPE", "MAE", "RMSE")
METRIC_LABELS = {"MAPE": "MAPE (%)", "teacher_share_pct": "share from the teacher (%)", "flops": "FLOPs",
                 "test_time_s": "test time (s)"}
ROW_COLUMNS = {"param_pct": ("paper's parameter %", "{:.0f}"), "kept_pct": ("kept % of base", "{:.1f}"),
               "parameters": ("parameters", "{:,.0f}"), "epochs": ("epochs", "{:.0f}")}
CELL_COLUMNS = {"ours": "ours", "paper": "paper", "diff": "diff"}


def number_text(value, signed: bool = False) -> str:
    """A table number as the report pages print it: whole numbers with thousands separators, others with 3
    decimals, very large and small ones in 3 significant digits, '–' when missing."""
    if value is None or pd.isna(value):
        return "–"
    x, sign = float(value), "+" if signed else ""
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x:{sign}#.3g}"
    if abs(x) < 0.1:
        return f"{x:{sign}.3g}"
    if x == round(x):
        return f"{x:{sign},.0f}"
    return f"{x:{sign}.3f}"


def cell_columns(table: pd.DataFrame) -> dict[str, str]:
    """Values shown under each metric: ours, the paper's, the difference and any further numeric columns a table
    adds to the common format (Table 1's ratios to the teacher)."""
    extra = [c for c in table.columns if c not in TABLE_COLUMNS and pd.api.types.is_numeric_dtype(table[c])]
    return CELL_COLUMNS | {c: c.replace("_ratio_to_", " ÷ ").replace("_", " ") for c in extra}


def wide_table_html(sub: pd.DataFrame) -> str:
    """One dataset's rows of a paper table in the paper's layout: a row per model, a column group per metric
    (and horizon) holding ours beside the paper's and the difference."""
    has_horizon = sub["horizon_min"].notna().any()
    metrics = list(dict.fromkeys(sub["metric"]))
    metrics = [m for m in METRIC_ORDER if m in metrics] + [m for m in metrics if m not in METRIC_ORDER]
    horizons = sorted(sub["horizon_min"].dropna().unique()) if has_horizon else [None]
    cells = cell_columns(sub)
    row_cols = [c for c in ROW_COLUMNS if sub[c].notna().any() and c not in metrics]
    keys = ["model", "param_pct"]
    models = sub[keys].drop_duplicates()
    depth = 3 if has_horizon else 2
    head = [f"<th rowspan='{depth}'>model</th>"] + [f"<th rowspan='{depth}'>{ROW_COLUMNS[c][0]}</th>"
                                                     for c in row_cols]
    head += [f"<th colspan='{len(horizons) * len(cells)}'>{html.escape(METRIC_LABELS.get(m, m))}</th>"
             for m in metrics]
    rows = ["<tr>" + "".join(head) + "</tr>"]
    if has_horizon:
        rows.append("<tr>" + "".join(f"<th colspan='{len(cells)}'>{int(h)} min</th>"
                                     for _ in metrics for h in horizons) + "</tr>")
    rows.append("<tr>" + "".join(f"<th>{label}</th>" for _ in metrics for _ in horizons
                                 for label in cells.values()) + "</tr>")
    body = []
    for _, key in models.iterrows():
        mine = sub[(sub["model"] == key["model"]) & ((sub["param_pct"] == key["param_pct"])
                                                      | (sub["param_pct"].isna() & pd.isna(key["param_pct"])))]
        first = mine.iloc[0]
        tds = [f"<td class='model'>{html_label(paper_label(first['model']))} <code>{html.escape(first['model'])}"
               "</code></td>"]
        tds += [f"<td>{'–' if pd.isna(first[c]) else ROW_COLUMNS[c][1].format(first[c])}</td>" for c in row_cols]
        for metric in metrics:
            for h in horizons:
                hit = mine[(mine["metric"] == metric) & ((mine["horizon_min"] == h) if has_horizon else True)]
                r = hit.iloc[0] if len(hit) else pd.Series(dtype=object)
                for col in cells:
                    text = number_text(r.get(col), signed=col == "diff")
                    if col == "ours" and r.get("n_seeds", 1) > 1 and pd.notna(r.get("ours_std")):
                        text += f" ± {number_text(r['ours_std'])}"
                    tds.append(f"<td class='{col}'>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f"<div class='scroll'><table><thead>{''.join(rows)}</thead><tbody>{''.join(body)}</tbody></table></div>")


def table_page(table: pd.DataFrame, number: int, config: dict) -> str:
    """results/tableN.html: the caveats, then per dataset the table in the paper's layout (wide_table_html) and its
    notes; the CSV and parquet files beside it hold every column."""
    title = f"Table {number}: {TABLE_TITLES.get(number, '')}"
    blocks: list[tuple[str, object]] = [("h1", title)] + [("caveat", line) for line in caveat_lines(config)]
    for dataset, sub in table.groupby("dataset", sort=False):
        blocks += [("h2", data_tag(config, dataset)),
                   ("html", wide_table_html(sub))]
        notes = list(dict.fromkeys(sub["note"].dropna()))
        extra = [c for c in table.columns if c not in TABLE_COLUMNS and c not in cell_columns(sub)]
        notes += [f"{c}: {', '.join(map(str, sub[c].dropna().unique()))}" for c in extra]
        blocks += [("p", f"Note: {n}") for n in notes]
    blocks.append(("p", f"diff = ours − paper. Every column (spread over seeds, comparisons, notes) is in "
                        f"`results/table{number}.csv` and `.parquet`."))
    return html_page(blocks, title)


# ------------------------------------------------------------------------- the verdict (issue 12)

VERDICT_SOURCES = ("paper", "tuned")
VERDICT_METRIC = "MAE"


def verdict_claims(config: dict) -> list[Claim]:
    """The paper's two central claims as the config asks for them: L_STCD beats each other student of
    verdict.losses (Tables 4-5) and Algorithm 1 beats the Molchanov baseline at each of verdict.pruning_ratios
    (Table 8)."""
    verdict = config["verdict"]
    found = [Claim(4 if loss in ("task", "rd_l2", "rd_kl", "skd") else 5,
                   f"The student trained with L_STCD beats {'the student without KD' if loss == 'task' else paper_label(f'student_{loss}')}",
                   "student_stcd", f"student_{loss}")
             for loss in verdict["losses"] if loss != "stcd"]
    found += [Claim(8, f"Algorithm 1 beats the Molchanov baseline at {r} % pruning",
                    pruned_name("kd_taylor", "pruning_base", r), pruned_name("taylor", "pruning_base", r))
              for r in verdict["pruning_ratios"]]
    return found


def paper_values(config: dict, dataset: str, number: int, model: str) -> pd.DataFrame:
    """The paper's MAE per horizon (horizon_min, paper) of one of our models in table `number`."""
    row = next(r for r in [*KD_TABLES.get(number, []), *(pruning_rows(number, config) if number in (7, 8) else [])]
               if r.model == model)
    published = paper.metric_rows(config["datasets"][dataset]["paper_name"], row.paper_model, (number,), row.param_pct)
    return published[published["metric"] == VERDICT_METRIC][["horizon_min", "paper"]]


def seed_spread(dataset: str, model: str, seeds) -> pd.DataFrame:
    """Our MAE per horizon over seeds: mean, sample std (NaN for one seed), seeds and the epochs trained."""
    ours = seed_metrics(dataset, model, seeds)
    ours = ours[ours["metric"] == VERDICT_METRIC]
    return spread_summary(ours, ["horizon_min"]).assign(epochs=int(ours["epochs_run"].min()))


def gradient_shares(histories: list[pd.DataFrame]) -> dict[str, float]:
    """Each loss term's share of the student's gradient (kdstgcn.training.anatomy), averaged over epochs and seeds."""
    terms = sorted({c[len("grad_share_"):] for h in histories for c in h.columns if c.startswith("grad_share_")})
    return {t: float(np.mean([h[f"grad_share_{t}"].mean() for h in histories if f"grad_share_{t}" in h])) for t in terms}


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


def verdict_table(config: dict, histories: dict[tuple[str, str], list[pd.DataFrame]]) -> pd.DataFrame:
    """One row per claim, dataset and horizon: the paper's two published MAEs and effect, then for the paper's and
    the tuned values (columns paper_values_*, tuned_values_*) our two means, their spreads over seeds, the effect (claimed better - other; below 0 supports the
    claim), whether it exceeds the summed spreads, and a sentence per source on the better model's loss anatomy.

    `histories` maps (dataset, better model as run) to its seeds' histories."""
    seeds = config["seeds"]
    rows = []
    for claim in verdict_claims(config):
        for dataset in config["run_datasets"]:
            paper_better = paper_values(config, dataset, claim.table, claim.better).set_index("horizon_min")["paper"]
            paper_worse = paper_values(config, dataset, claim.table, claim.worse).set_index("horizon_min")["paper"]
            ours, anatomy = {}, []
            for source in VERDICT_SOURCES:
                better, worse = (sourced_model(config, m, source) for m in (claim.better, claim.worse))
                ours[source] = (seed_spread(dataset, better, seeds).set_index("horizon_min"),
                                seed_spread(dataset, worse, seeds).set_index("horizon_min"))
                anatomy.append(anatomy_sentence(f"{paper_label(claim.better)} ({source} values)",
                                                histories.get((dataset, better), [])))
            for h in ours["paper"][0].index:
                row = {"claim": claim.text, "table": claim.table, "dataset": dataset, "metric": VERDICT_METRIC,
                       "horizon_min": int(h), "better": claim.better, "other": claim.worse,
                       "published_better": paper_better.get(h, np.nan), "published_other": paper_worse.get(h, np.nan)}
                row["published_effect"] = row["published_better"] - row["published_other"]
                for source, (b, w) in ours.items():
                    row.update({
                        f"{source}_values_{key}": value for key, value in {
                            "better": b.loc[h, "ours"], "better_std": b.loc[h, "ours_std"],
                            "other": w.loc[h, "ours"], "other_std": w.loc[h, "ours_std"],
                            **judge_claim(b.loc[h], w.loc[h]),
                            "seeds": int(min(b.loc[h, "n_seeds"], w.loc[h, "n_seeds"])),
                            "better_epochs": int(b["epochs"].min()), "other_epochs": int(w["epochs"].min())}.items()})
                row["anatomy"] = " ".join(anatomy)
                row["paper_epochs"] = config["training"]["paper_epochs"]
                rows.append(row)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


VERDICT_COLUMNS = (["claim", "table", "dataset", "metric", "horizon_min", "better", "other", "published_better",
                    "published_other", "published_effect"]
                   + [f"{s}_values_{c}" for s in VERDICT_SOURCES for c in ("better", "better_std", "other", "other_std",
                                                                    "effect", "spread", "supported", "beyond_spread",
                                                                    "seeds", "better_epochs", "other_epochs")]
                   + ["paper_epochs", "anatomy"])


def mean_std_text(mean: float, std: float) -> str:
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def verdict_blocks(table: pd.DataFrame, config: dict) -> list[tuple[str, object]]:
    """The verdict as summary blocks: per claim a table of the paper's and our numbers at each horizon for both
    sources of hyper-parameters, a line saying how often it holds and beyond the spread, and the anatomy."""
    if table.empty:
        return []
    blocks: list[tuple[str, object]] = [
        ("h2", "Verdict: the paper's central claims with its hyper-parameters and with tuned ones"),
        ("p", "MAE, mean ± std over seeds. Effect = claimed better - other: below 0 supports the claim; 'beyond "
              "spread' when its size exceeds the two standard deviations summed. Tuned values come from the "
              "`tuning` studies on the validation days (the test days are never used for tuning).")]
    for (text, dataset), group in table.groupby(["claim", "dataset"], sort=False):
        cells = {"horizon": group["horizon_min"].map(lambda h: f"{h} min"),
                 "published: better / other": [f"{b:.2f} / {o:.2f}" for b, o in zip(group["published_better"],
                                                                                      group["published_other"])]}
        lines = []
        for source in VERDICT_SOURCES:
            col = f"{source}_values_"
            cells[f"ours, {source} values: better"] = [mean_std_text(m, s) for m, s in
                                                       zip(group[col + "better"], group[col + "better_std"])]
            cells[f"ours, {source} values: other"] = [mean_std_text(m, s) for m, s in
                                                      zip(group[col + "other"], group[col + "other_std"])]
            cells[f"{source}: effect"] = group[col + "effect"].map(lambda v: f"{v:+.2f}")
            cells[f"{source}: beyond spread"] = group[col + "beyond_spread"]
            held = (group[col + "supported"] == "yes").sum()
            beyond = ((group[col + "supported"] == "yes") & (group[col + "beyond_spread"] == "yes")).sum()
            against = ((group[col + "supported"] == "no") & (group[col + "beyond_spread"] == "yes")).sum()
            better_epochs, other_epochs = group[col + "better_epochs"].min(), group[col + "other_epochs"].min()
            trained = epochs_text(better_epochs) if better_epochs == other_epochs else (
                f"{better_epochs} vs {epochs_text(other_epochs)}")
            trained = (f"fine-tuned {trained} after pruning" if group["better"].iloc[0].startswith("pruned_") else
                       f"{trained}, paper {group['paper_epochs'].iloc[0]}")
            lines.append(f"With {source} values ({trained}; {group[col + 'seeds'].min()} seed(s)): holds at "
                         f"{held} of {len(group)} horizons, beyond the spread at {beyond}; contradicted beyond the "
                         f"spread at {against}.")
        blocks += [("h2", f"{text} ({data_tag(config, dataset)})"), ("table", pd.DataFrame(cells))]
        blocks += [("p", line) for line in lines]
        blocks.append(("p", f"Loss anatomy: {group['anatomy'].iloc[0]}"))
    return blocks
