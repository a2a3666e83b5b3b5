"""Raw PeMS files -> cleaned speed table: the values and distances read from their file formats, timestamps for
the steps, and gaps filled (`kdstgcn.data.gaps`) with a per-station fill report."""
from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kdstgcn.config.datasets import DEFAULT_FILL
from kdstgcn.data.gaps import fill_gaps, missing_readings
from kdstgcn.runtime.sizes import DENSE_MAX_NODES

if TYPE_CHECKING:
    from kdstgcn.data.graph import DistancePairs

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
            import scipy.io  # here: the jobs that read prepared data run without it

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


def read_distances(path: str | Path, fmt: str, n_nodes: int) -> np.ndarray | DistancePairs:
    """Distance matrix in metres: a headerless N x N CSV, or an edge list 'from,to,cost' (inf where no edge); an
    edge list of more than `DENSE_MAX_NODES` stations as `DistancePairs` (no N x N array)."""
    from kdstgcn.data.graph import distance_pairs_from_edges, distances_from_edges

    path = Path(path)
    if fmt == "matrix_csv":
        d = pd.read_csv(path, header=None).to_numpy(dtype=float)
        if d.shape != (n_nodes, n_nodes):
            raise DataError(f"{path}: distance matrix has shape {d.shape}, expected ({n_nodes}, {n_nodes})")
        return d
    if fmt == "edge_list":
        edges = pd.read_csv(path)
        return distances_from_edges(edges, n_nodes) if n_nodes <= DENSE_MAX_NODES else distance_pairs_from_edges(
            edges, n_nodes)
    raise DataError(f"{path}: unknown distance format {fmt!r} (matrix_csv, edge_list)")


def timestamps(n_steps: int, steps_per_day: int, start: str, weekdays_only: bool) -> pd.DatetimeIndex:
    """One timestamp per step: consecutive (week)days from `start`, `steps_per_day` slots each."""
    n_days = n_steps // steps_per_day
    days = pd.bdate_range(start, periods=n_days) if weekdays_only else pd.date_range(start, periods=n_days)
    slot = pd.to_timedelta(np.arange(steps_per_day) * (86400 // steps_per_day), unit="s")
    return pd.DatetimeIndex((days.values[:, None] + slot.values[None, :]).ravel(), name="time")


def clean(values: np.ndarray, index: pd.DatetimeIndex, fill: str = DEFAULT_FILL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treat 0, NaN and inf as missing; fill per station as `fill` says (`kdstgcn.data.gaps.fill_gaps`).

    A station with no reading at all is filled with the mean of all readings and flagged `all_missing`; one
    whose filled series never changes is flagged `constant`. Both stay in the table; evaluation leaves them
    out. Returns the cleaned table and a per-station fill report.
    """
    if len(index) != values.shape[0]:
        raise DataError(f"{values.shape[0]} steps do not fill whole days ({len(index)} steps in whole days)")
    missing = missing_readings(values)
    frame = pd.DataFrame(np.where(missing, np.nan, values), index=index,
                         columns=[str(i) for i in range(values.shape[1])])
    filled = fill_gaps(frame, fill)
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
