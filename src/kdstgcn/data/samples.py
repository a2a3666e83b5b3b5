"""Cleaned speed table -> training samples: a day-based split, the z-score scaler of the training days and
windows that never cross a day, and the stations that enter the metrics."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdstgcn.config.datasets import DataSpec
from kdstgcn.data.clean import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scaler:
    """Z-score with the mean and std of the training days (Eq. 15)."""

    mean: float
    std: float

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


def split_days(values: np.ndarray, steps_per_day: int, split: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Cut [T, N] into consecutive whole days: train, val, test arrays of shape [days, steps_per_day, N]."""
    n_days = values.shape[0] // steps_per_day
    if sum(split) > n_days:
        raise DataError(f"split {list(split)} needs {sum(split)} days, the data has {n_days}; "
                        "lower datasets.<name>.split")
    days = values[: n_days * steps_per_day].reshape(n_days, steps_per_day, -1)
    bounds = np.cumsum([0, *split])
    return {name: days[bounds[k]:bounds[k + 1]] for k, name in enumerate(("train", "val", "test"))}


def make_windows(days: np.ndarray, length: int) -> np.ndarray:
    """All windows of `length` consecutive steps inside each day: [days * (S - length + 1), length, N]."""
    if days.shape[1] < length:
        raise DataError(f"a day has {days.shape[1]} steps, fewer than a window of {length}")
    per_day = np.lib.stride_tricks.sliding_window_view(days, length, axis=1)  # [D, W, N, length]
    return np.ascontiguousarray(per_day.transpose(0, 1, 3, 2).reshape(-1, length, days.shape[2]))


@dataclass
class PreparedData:
    """Normalised windows per split ([W, n_his + n_pred, N] float32) and what is needed to undo the scaling."""

    windows: dict[str, torch.Tensor]
    scaler: Scaler
    station_mask: torch.Tensor
    n_his: int
    n_pred: int

    def inputs(self, split: str) -> torch.Tensor:
        return self.windows[split][:, : self.n_his]

    def one_step_targets(self, split: str) -> torch.Tensor:
        return self.windows[split][:, self.n_his]

    def future(self, split: str) -> torch.Tensor:
        return self.windows[split][:, self.n_his:]


def prepare(clean_path: str | Path, report_path: str | Path, steps_per_day: int,
            split: tuple[int, int, int], n_his: int, n_pred: int) -> PreparedData:
    """Load a cleaned table, split it by days, fit the scaler on training days and cut windows."""
    frame = pd.read_parquet(clean_path)
    values = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{clean_path}: NaN or inf in the cleaned data; delete it and rerun the clean rule")
    parts = split_days(values, steps_per_day, split)
    if any(len(p) == 0 for p in parts.values()):
        raise DataError(f"split {list(split)}: every part needs at least one day")
    scaler = Scaler(float(parts["train"].mean()), float(parts["train"].std()))
    if scaler.std == 0:
        raise DataError(f"{clean_path}: the training days are constant; nothing to learn")
    report = pd.read_csv(report_path)
    # cast before cutting windows (the same values): each value is copied into up to 21 windows
    windows = {name: torch.from_numpy(make_windows(scaler.transform(p).astype(np.float32), n_his + n_pred))
               for name, p in parts.items()}
    mask = torch.from_numpy(metric_mask(report, report_path))
    return PreparedData(windows, scaler, mask, n_his, n_pred)


def load_data(clean_path: str | Path, report_path: str | Path, spec: DataSpec) -> PreparedData:
    """`prepare` with the days and windows of a run's data spec."""
    return prepare(clean_path, report_path, spec.steps_per_day, spec.split, spec.n_his, spec.n_pred)


def metric_mask(report: pd.DataFrame, report_path: str | Path = "fill report") -> np.ndarray:
    """Stations that enter the metrics: all but those the fill report flags as all-missing or constant.

    Flagged stations stay in the data (the model sees and predicts them); only their errors are left out,
    since their 'truth' is a fill value. Raises if no station is left to score.
    """
    all_missing = report["all_missing"].to_numpy(bool)
    constant = report["constant"].to_numpy(bool) if "constant" in report else np.zeros_like(all_missing)
    keep = ~(all_missing | constant)
    if not keep.any():
        raise DataError(f"{report_path}: every station is all-missing or constant; nothing to evaluate. "
                        "Check the raw values file.")
    if not keep.all():
        log.warning("stations left out of the metrics (kept in the data): all-missing %s, constant %s",
                    [int(k) for k in np.flatnonzero(all_missing)],
                    [int(k) for k in np.flatnonzero(constant & ~all_missing)])
    return keep
