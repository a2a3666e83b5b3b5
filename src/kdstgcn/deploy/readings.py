"""Raw readings as `predict` takes them (a CSV: a timestamp column and one column per station id) -> the
model's input window, checked and filled as the pipeline cleans its data; and the forecast table. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kdstgcn.data.gaps import fill_gaps, missing_readings
from kdstgcn.deploy.model_card import ModelCard

TIMESTAMP = "timestamp"
FORECAST_COLUMNS = ["station", TIMESTAMP, "horizon_min", "forecast"]
SHOWN = 5  # names listed in a message before "and N more"


class ReadingsError(ValueError):
    """Readings `predict` cannot use; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Window:
    """The last n_his steps of raw readings, gaps filled ([n_his, N] float32, stations in the card's order), and
    the time of the newest one."""

    values: np.ndarray
    last_time: pd.Timestamp


def _names(items) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _table(path: Path, card: ModelCard) -> pd.DataFrame:
    """The CSV as text cells, its station columns in the card's order."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ReadingsError(f"{path}: cannot read as CSV ({exc})") from exc
    if TIMESTAMP not in table.columns:
        raise ReadingsError(f"{path}: no '{TIMESTAMP}' column; the first row must name a '{TIMESTAMP}' column and "
                            "one column per station id")
    columns = [c for c in table.columns if c != TIMESTAMP]
    missing = [s for s in card.stations if s not in columns]
    extra = [c for c in columns if c not in card.stations]
    if missing or extra:
        parts = ([f"missing stations {_names(missing)}"] if missing else []) + \
                ([f"unknown stations {_names(extra)}"] if extra else [])
        raise ReadingsError(f"{path}: {'; '.join(parts)}; the model reads exactly its {len(card.stations)} "
                            "stations of model_card.json (stations)")
    return table[[TIMESTAMP, *card.stations]]


def _times(table: pd.DataFrame, path: Path, card: ModelCard) -> pd.DatetimeIndex:
    """The timestamps, checked to be `step_minutes` apart in increasing order."""
    try:
        times = pd.DatetimeIndex(pd.to_datetime(table[TIMESTAMP], format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise ReadingsError(f"{path}: a timestamp is not a date and time ({exc})") from exc
    gaps = np.asarray(times[1:] - times[:-1])
    for wrong, what in ((gaps <= pd.Timedelta(0), "out of order"),
                        (gaps != pd.Timedelta(minutes=card.step_minutes), f"not {card.step_minutes} minutes apart")):
        if wrong.any():
            k = int(np.flatnonzero(wrong)[0])
            raise ReadingsError(f"{path}: timestamps {what}: {times[k]} then {times[k + 1]} (rows {k + 2} and "
                                f"{k + 3} after the header); give consecutive {card.step_minutes}-minute steps, "
                                "oldest first")
    return times


def _values(table: pd.DataFrame, path: Path) -> np.ndarray:
    """The readings as numbers, an empty cell as missing (NaN)."""
    cells = table.drop(columns=TIMESTAMP).apply(lambda col: col.str.strip())
    numbers = cells.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() & (cells != "") & ~cells.apply(lambda col: col.str.lower().isin(["nan", "na"]))
    if bad.to_numpy().any():
        rows, cols = np.nonzero(bad.to_numpy())
        found = [f"{cells.columns[c]} at {table[TIMESTAMP].iloc[r]} ({cells.iat[r, c]!r})" for r, c in zip(rows, cols)]
        raise ReadingsError(f"{path}: readings that are not numbers: station {_names(found)}; leave a missing "
                            "reading empty")
    return numbers.to_numpy(dtype=np.float64)


def read_window(path: str | Path, card: ModelCard) -> Window:
    """The model's input window from a readings CSV: at least n_his steps, `step_minutes` apart; missing readings
    (empty, NaN or 0, as the pipeline treats them) filled linearly in time per station over all rows given."""
    path = Path(path)
    table = _table(path, card)
    if len(table) < card.n_his:
        raise ReadingsError(f"{path}: {len(table)} time steps; the model reads the last {card.n_his} "
                            f"({card.step_minutes} minutes apart)")
    times = _times(table, path, card)
    values = _values(table, path)
    missing = missing_readings(values)
    silent = missing[-card.n_his:].all(axis=0)
    if silent.any():
        raise ReadingsError(f"{path}: no reading in the last {card.n_his} steps for station "
                            f"{_names(np.asarray(card.stations)[silent])}; the model needs at least one per station")
    frame = pd.DataFrame(np.where(missing, np.nan, values))
    filled = fill_gaps(frame).to_numpy()[-card.n_his:].astype(np.float32)  # float32, as the cleaned table
    return Window(filled, times[-1])


def forecast_table(forecast: np.ndarray, window: Window, card: ModelCard, all_steps: bool) -> pd.DataFrame:
    """Forecasts [n_pred, N] in raw units -> rows station, timestamp, horizon_min, forecast (float32, as the
    pipeline's predictions.npz): the card's horizons, or every step with `all_steps`; stations in the card's
    order."""
    steps = range(1, forecast.shape[0] + 1) if all_steps else card.horizons
    step = pd.Timedelta(minutes=card.step_minutes)
    rows = [{"station": station, TIMESTAMP: window.last_time + h * step, "horizon_min": h * card.step_minutes,
             "forecast": float(forecast[h - 1, n])}
            for n, station in enumerate(card.stations) for h in steps]
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS).astype({"forecast": np.float32})
