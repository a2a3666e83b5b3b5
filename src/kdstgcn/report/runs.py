"""Our runs' files as a rule passes them: each file read once and keyed by its run (dataset, seed, model), and
one model's metrics over seeds with their mean and spread."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from kdstgcn.config.layout import RunPlace, parse_run_path

T = TypeVar("T")


def read_runs(paths: Iterable[str | Path], read: Callable[[str | Path], T]) -> dict[RunPlace, T]:
    """Each file of a run folder (results/<dataset>/seed<seed>/<model>/...) read by `read`, keyed by its run."""
    return {parse_run_path(path): read(path) for path in paths}


def seed_metrics(metrics: Mapping[RunPlace, pd.DataFrame], dataset: str, model: str, seeds) -> pd.DataFrame:
    """Our long metric table (metrics.csv) of one model over `seeds`, in their order (column `seed`)."""
    frames = [metrics[RunPlace(dataset, int(seed), model)].assign(seed=seed) for seed in seeds]
    return pd.concat(frames, ignore_index=True)


def spread_summary(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, sample standard deviation and count of `ours` over seeds."""
    g = df.groupby(keys, sort=False)["ours"]
    return g.agg(ours="mean", ours_std=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan,
                 n_seeds="count").reset_index()
