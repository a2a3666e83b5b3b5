"""The loss anatomy of the distilled students: each loss term's value, gradient norm and share of the student's
gradient (the history columns kdstgcn.training.anatomy writes), over epochs and seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd

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


def gradient_shares(histories: list[pd.DataFrame]) -> dict[str, float]:
    """Each loss term's share of the student's gradient, averaged over epochs and seeds."""
    terms = sorted({c[len("grad_share_"):] for h in histories for c in h.columns if c.startswith("grad_share_")})
    return {t: float(np.mean([h[f"grad_share_{t}"].mean() for h in histories if f"grad_share_{t}" in h]))
            for t in terms}
