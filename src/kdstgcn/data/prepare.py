"""Raw PeMS files -> cleaned speed table -> day-based split, z-score scaler and windows that never cross a day."""
from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import torch

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Raw or cleaned data that cannot be used; the message names the file and the fix."""


def read_values(path: str | Path, fmt: str, n_nodes: int, steps: int | None = None,
                key: str | None = None, channel: int | None = None) -> np.ndarray:
    """Read a raw time x station matrix (float64) in one of the supported formats and check its shape."""
    path = Path(path)
    try:
        if fmt == "csv_matrix":
            values = pd.read_csv(path, header=None).to_numpy(dtype=float)
        elif fmt == "npz":
            with np.load(path) as z:
                values = np.asarray(z[key], dtype=float)
            if values.ndim == 3:
                values = values[..., channel]
        elif fmt == "mat_day_major":
            cube = scipy.io.loadmat(path)[key]  # (time of day, day, node)
            values = np.asarray(cube, dtype=float).transpose(1, 0, 2).reshape(-1, cube.shape[2])
        else:
            raise DataError(f"{path}: unknown raw format {fmt!r} (csv_matrix, npz, mat_day_major)")
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as {fmt} ({exc}). The file may be corrupt or truncated: "
                        "delete it and run the download rule again.") from exc
    if values.ndim != 2 or values.shape[1] != n_nodes or (steps is not None and values.shape[0] != steps):
        want = f"({steps if steps is not None else 'T'}, {n_nodes})"
        raise DataError(f"{path}: shape {values.shape}, expected {want}. Wrong file or wrong "
                        "datasets.<name> settings (n_nodes, steps, channel).")
    return values


def read_distances(path: str | Path, fmt: str, n_nodes: int) -> np.ndarray:
    """Distance matrix in metres: a headerless N x N CSV, or an edge list 'from,to,cost' (inf where no edge)."""
    from kdstgcn.data.graph import distances_from_edges

    path = Path(path)
    if fmt == "matrix_csv":
        d = pd.read_csv(path, header=None).to_numpy(dtype=float)
        if d.shape != (n_nodes, n_nodes):
            raise DataError(f"{path}: distance matrix has shape {d.shape}, expected ({n_nodes}, {n_nodes})")
        return d
    if fmt == "edge_list":
        return distances_from_edges(pd.read_csv(path), n_nodes)
    raise DataError(f"{path}: unknown distance format {fmt!r} (matrix_csv, edge_list)")


def timestamps(n_steps: int, steps_per_day: int, start: str, weekdays_only: bool) -> pd.DatetimeIndex:
    """One timestamp per step: consecutive (week)days from `start`, `steps_per_day` slots each."""
    n_days = n_steps // steps_per_day
    days = pd.bdate_range(start, periods=n_days) if weekdays_only else pd.date_range(start, periods=n_days)
    slot = pd.to_timedelta(np.arange(steps_per_day) * (86400 // steps_per_day), unit="s")
    return pd.DatetimeIndex((days.values[:, None] + slot.values[None, :]).ravel(), name="time")


def clean(values: np.ndarray, index: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treat 0 and NaN as missing; fill linearly in time per station (edges: nearest value).

    A station with no reading at all is filled with the mean of all readings and flagged `all_missing`; one
    whose filled series never changes is flagged `constant`. Both stay in the table; evaluation leaves them
    out. Returns the cleaned table and a per-station fill report.
    """
    if len(index) != values.shape[0]:
        raise DataError(f"{values.shape[0]} steps do not fill whole days ({len(index)} steps in whole days)")
    missing = ~np.isfinite(values) | (values == 0)
    frame = pd.DataFrame(np.where(missing, np.nan, values), index=index,
                         columns=[str(i) for i in range(values.shape[1])])
    filled = frame.interpolate(method="linear", axis=0, limit_direction="both")
    all_missing = missing.all(axis=0)
    if all_missing.any():
        ids = [int(i) for i in np.flatnonzero(all_missing)]
        log.warning("stations with no reading at all (filled with the global mean, left out of metrics): %s", ids)
        filled.iloc[:, ids] = float(np.nanmean(frame.to_numpy()))
    constant = (filled.std(axis=0) == 0) & ~all_missing
    if constant.any():
        log.warning("stations with a constant reading (kept, left out of metrics): %s",
                    [int(c) for c in filled.columns[constant]])
    report = pd.DataFrame({
        "station": np.arange(values.shape[1]),
        "missing": missing.sum(axis=0),
        "missing_pct": 100.0 * missing.mean(axis=0),
        "all_missing": all_missing,
        "constant": constant.to_numpy(),
    })
    return filled.astype("float32"), report


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
    windows = {name: torch.from_numpy(make_windows(scaler.transform(p), n_his + n_pred).astype(np.float32))
               for name, p in parts.items()}
    mask = torch.from_numpy(metric_mask(report, report_path))
    return PreparedData(windows, scaler, mask, n_his, n_pred)


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
