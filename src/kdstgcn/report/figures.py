"""The paper's figures and ours, drawn with matplotlib: one station's predictions (Figures 3-4), their means
(Figure 5), the t-SNE of hidden representations, the loss anatomy, the verdict and the deployable models."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdstgcn.config.layout import parse_deployable, parse_pruned  # noqa: E402
from kdstgcn.report.labels import math_label, paper_label  # noqa: E402
from kdstgcn.runtime.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Lay a figure out tightly, write it as PNG, atomically, and release it from pyplot (the returned Figure stays
    readable)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load_predictions(path: str | Path) -> dict:
    """Prediction and truth of a run's predictions.npz."""
    with np.load(path) as z:
        return {k: z[k] for k in ("prediction", "truth")}


def model_color(model: str, index: int) -> str:
    """One colour per kind of model in Figure 5: base, baseline pruning, Algorithm 1; others by position."""
    pruned = parse_pruned(model)
    if model == "pruning_base":
        return "tab:gray"
    if pruned is not None:
        return {"taylor": "tab:orange", "kd_taylor": "tab:blue"}[pruned.method]
    return f"C{index}"


def mean_prediction_figure(dataset: str, predictions: dict[str, str | Path], figures: dict, quantity: str,
                           title: str, path: str | Path) -> plt.Figure:
    """Figure 5: mean predicted value of one station over the configured test windows, per model (`predictions`:
    model -> its predictions.npz, in the figure's order), vs the truth.

    Bars start at zero and carry their value; a second panel shows each model's mean minus the truth's, where
    the small differences between models are seen.
    """
    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    names, means, colors = ["Ground truth"], [], ["black"]
    for i, (model, file) in enumerate(predictions.items()):
        pred = load_predictions(file)
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
    save_figure(fig, path)
    return fig


def prediction_figure(dataset: str, predictions: dict[str, str | Path], labels: dict[str, str], figures: dict,
                      step_minutes: int, quantity: str, title: str, path: str | Path) -> plt.Figure:
    """Figures 3-4: one station's prediction at the configured horizon over consecutive test windows, one panel
    per model (`predictions`: model -> its predictions.npz, in panel order; `labels`: the panels' titles).

    As in the paper, the panels share their axes, each against the ground truth, so models whose curves overlap
    are still told apart; the prediction is dashed with markers, the truth solid black.
    """
    node, start, points, h = figures["node"], figures["start_window"], figures["points"], figures["horizon"]
    ncols = 2 if len(predictions) <= 4 else 3
    nrows = -(-len(predictions) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 2.6 * nrows + 0.9), sharex=True, sharey=True,
                             squeeze=False)
    for i, (ax, (model, file)) in enumerate(zip(axes.flat, predictions.items())):
        pred = load_predictions(file)
        stop = min(start + points, pred["prediction"].shape[0])
        steps = np.arange(start, stop)
        truth_line, = ax.plot(steps, pred["truth"][start:stop, h - 1, node], color="black", lw=1.8)
        ax.plot(steps, pred["prediction"][start:stop, h - 1, node], color=f"C{i}", lw=1.2, ls="--", marker="o",
                ms=2.5)
        ax.set_title(math_label(labels.get(model, paper_label(model))), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(predictions):]:
        ax.set_visible(False)
    prediction_key = matplotlib.lines.Line2D([], [], color="gray", lw=1.2, ls="--", marker="o", ms=2.5)
    fig.legend([truth_line, prediction_key], ["ground truth", "prediction of the panel's model"],
               loc="upper right", fontsize=8, ncol=2)
    fig.supxlabel(f"test window (consecutive {step_minutes}-min steps)", fontsize=9)
    fig.supylabel(quantity, fontsize=9)
    fig.suptitle(f"{title}: station {node}, {h * step_minutes}-min ahead, {dataset}", fontsize=10, x=0.02,
                 ha="left")
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
    save_figure(fig, path)
    return fig


def anatomy_figure(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Weighted value (log scale) and gradient share of each term (anatomy.anatomy_table), one group of bars per
    distillation loss."""
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
    save_figure(fig, path)


VERDICT_BARS = (("published_effect", None, "published (paper's data)", "tab:gray"),
                ("paper_values_effect", "paper_values_", "ours, paper values", "tab:blue"),
                ("tuned_values_effect", "tuned_values_", "ours, tuned values", "tab:orange"))


def interval_bars(group: pd.DataFrame, column: str, prefix: str | None) -> np.ndarray | None:
    """Error bars [2, horizons] from each effect down to its interval's low end and up to its high end (none where
    no row has an interval)."""
    if prefix is None or group[prefix + "ci_low"].isna().all():
        return None
    effect = group[column].to_numpy()
    return np.clip(np.stack([effect - group[prefix + "ci_low"].to_numpy(),
                             group[prefix + "ci_high"].to_numpy() - effect]), 0.0, None)


def verdict_figure(table: pd.DataFrame, path: str | Path) -> plt.Figure:
    """Each claim of the verdict (verdict.verdict_table) on each dataset, one panel: per horizon its effect
    (claimed better - other MAE; below 0 favours it), ours with the paper's and with tuned values, each with its 95 %
    confidence interval, beside the published effect. A panel whose rows cannot all be judged says so."""
    groups = list(table.groupby(["claim", "dataset"], sort=False)) if len(table) else []
    fig, axes = plt.subplots(max(len(groups), 1), 1, figsize=(7.5, 3.0 * max(len(groups), 1)), squeeze=False)
    if not groups:
        axes[0, 0].text(0.5, 0.5, "the verdict holds no claim (verdict.losses and verdict.pruning_ratios are empty)",
                        ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, ((claim, dataset), group) in zip(axes[:, 0], groups):
        x = np.arange(len(group))
        for k, (column, prefix, label, color) in enumerate(VERDICT_BARS):
            if prefix is not None and group[column].isna().all():
                label += " (not run)"
            ax.bar(x + (k - 1) * 0.27, group[column], 0.27, yerr=interval_bars(group, column, prefix), capsize=3,
                   color=color, label=label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, [f"{h} min" for h in group["horizon_min"]])
        ax.set_ylabel("effect on MAE\n(below 0 favours the claim)", fontsize=8)
        judged = "" if (group["judgeable"] == "yes").all() else " - NOT JUDGEABLE (see verdict.csv)"
        ax.set_title("\n".join(textwrap.wrap(f"{math_label(claim)} ({dataset}){judged}", 90)), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("The verdict: each claim's effect per horizon\nerror bars: its 95 % confidence interval over the "
                 "test days and seeds (none for one test day)", fontsize=10)
    save_figure(fig, path)
    return fig


def deployable_figure(table: pd.DataFrame, path: str | Path) -> plt.Figure:
    """Test MAE against the horizon on each dataset (report.deployable.deployable_table), mean over seeds with
    their std as error bars: the teacher, the paper's students, and the best deployable model in bold; the other
    deployable models faint."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(6.5 * max(len(datasets), 1), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = table[table["dataset"] == dataset]
        for k, (model, group) in enumerate(rows.groupby("model", sort=False)):
            best, deployable = bool(group["best"].iloc[0]), parse_deployable(model) is not None
            label = f"{paper_label(model)}: {group['parameters'].iloc[0]:,} parameters"
            style = ({"lw": 2.6, "color": "black", "label": label + " (best deployable)"} if best else
                     {"lw": 0.9, "alpha": 0.45, "color": f"C{k}", "label": label} if deployable else
                     {"lw": 1.6, "color": f"C{k}", "label": label})
            ax.errorbar(group["horizon_min"], group["mae"], yerr=group["mae_std"].fillna(0), capsize=3,
                        marker="o", ms=4, **style)
        ax.set_xticks(sorted(rows["horizon_min"].unique()))
        ax.set_xlabel("horizon (min)")
        ax.set_ylabel("test MAE")
        ax.set_title(f"{dataset}: MAE against the horizon", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Beyond the paper: the best deployable student (lowest validation MAE within the parameter budget)"
                 "\nbeside the teacher and the paper's students; error bars: std over seeds", fontsize=10)
    save_figure(fig, path)
    return fig
