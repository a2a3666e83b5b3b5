"""Raw readings as `predict` takes them (a CSV: a timestamp column and one column per station id) -> the
model's input window, checked and filled as the pipeline cleans its data; and the forecast table. Torch-free."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kdstgcn.data.gaps import fill_gaps, missing_readings
from kdstgcn.deploy.model_card import ModelCard

TIMESTAMP = "timestamp"
FORECAST_COLUMNS = ["station", TIMESTAMP, "horizon_min", "forecast"]
SHOWN = 5  # names listed in a message before "and N more"
# A reading above this many times the largest reading of the training days (the card's training_max) is refused as
# implausible, as is a negative one, unless the caller allows readings out of range
PLAUSIBLE_FACTOR = 2
ALLOW_OUT_OF_RANGE = "--allow-out-of-range"  # predict's option that accepts them
TIMESTAMP_EXAMPLE = "2024-01-05 07:20:00"
SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}  # what a header without a comma may be separated by


class ReadingsError(ValueError):
    """Readings `predict` cannot use; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Window:
    """The last n_his steps of raw readings, gaps filled ([n_his, N] float32, stations in the card's order), and
    the time of the newest one (with its UTC offset, where the readings give one)."""

    values: np.ndarray
    last_time: pd.Timestamp


def _shown(name) -> str:
    """A station id or cell as a message shows it: quoted where spaces at either end would not show."""
    name = str(name)
    return repr(name) if name != name.strip() or not name else name


def _names(items) -> str:
    items = [_shown(i) for i in items]
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _line(table: pd.DataFrame, row: int) -> int:
    """The line of the file that holds the table's row `row` (the header is line 1)."""
    return int(table.index[row]) + 2


def _separator_hint(path: Path) -> str:
    """' (the header is ';'-separated: ...)' where the file's first line has another separator and no comma."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            header = f.readline()
    except OSError:
        return ""
    found = [name for sep, name in SEPARATORS.items() if sep in header]
    return f" (the header is {found[0]}-separated: write the file with commas)" if found and "," not in header else ""


def _table(path: Path, card: ModelCard) -> pd.DataFrame:
    """The CSV as text cells, its station columns in the card's order; blank lines left out, the index counting
    the lines after the header."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        what = (f"line {fields[2]} has {fields[3]} fields, the header {fields[1]}" if fields
                else str(exc).strip().splitlines()[0])
        raise ReadingsError(f"{path}: {what}{_separator_hint(path)}; give one value per column in every row, "
                            "separated by commas") from exc
    except (OSError, ValueError) as exc:
        raise ReadingsError(f"{path}: cannot read as CSV ({exc})") from exc
    if TIMESTAMP not in table.columns:
        raise ReadingsError(f"{path}: no '{TIMESTAMP}' column{_separator_hint(path)}; the first row must name a "
                            f"'{TIMESTAMP}' column and one column per station id, separated by commas")
    columns = [c for c in table.columns if c != TIMESTAMP]
    missing = [s for s in card.stations if s not in columns]
    extra = [c for c in columns if c not in card.stations]
    if missing or extra:
        parts = ([f"missing stations {_names(missing)}"] if missing else []) + \
                ([f"unknown stations {_names(extra)}"] if extra else [])
        raise ReadingsError(f"{path}: {'; '.join(parts)}; the model reads exactly its {len(card.stations)} "
                            "stations of model_card.json (stations)")
    table = table[[TIMESTAMP, *card.stations]]
    return table[(table.to_numpy() != "").any(axis=1)]


def _check_times(table: pd.DataFrame, path: Path, card: ModelCard) -> None:
    """Check the timestamps to be `step_minutes` apart in increasing order: compared in UTC where they have UTC
    offsets (which change across a daylight-saving switch), as given where they have none."""
    cells = table[TIMESTAMP].str.strip()
    in_utc = pd.to_datetime(cells, format="ISO8601", utc=True, errors="coerce")
    if in_utc.isna().any():
        k = int(np.flatnonzero(in_utc.isna())[0])
        raise ReadingsError(f"{path}: timestamp {cells.iloc[k]!r} on line {_line(table, k)} is not a date and time "
                            f"in ISO 8601 form; write each as e.g. {TIMESTAMP_EXAMPLE} (a UTC offset such as "
                            "-08:00 may follow)")
    with_offset = np.array([pd.Timestamp(cell).tzinfo is not None for cell in cells])
    if with_offset.any() and not with_offset.all():
        a, b = int(np.flatnonzero(with_offset)[0]), int(np.flatnonzero(~with_offset)[0])
        raise ReadingsError(f"{path}: timestamps with a UTC offset ({cells.iloc[a]!r} on line {_line(table, a)}) "
                            f"and without ({cells.iloc[b]!r} on line {_line(table, b)}); give every timestamp an "
                            "offset, or none")
    gaps = np.asarray(in_utc.iloc[1:].to_numpy() - in_utc.iloc[:-1].to_numpy())
    step = pd.Timedelta(minutes=card.step_minutes)
    for wrong in (gaps <= pd.Timedelta(0), gaps != step):
        if wrong.any():
            k = int(np.flatnonzero(wrong)[0])
            lines = f"lines {_line(table, k)} and {_line(table, k + 1)}"
            if gaps[k] == pd.Timedelta(0):
                raise ReadingsError(f"{path}: duplicate timestamp {cells.iloc[k]} ({lines}); give each step once")
            what = "out of order" if gaps[k] < pd.Timedelta(0) else f"not {card.step_minutes} minutes apart"
            raise ReadingsError(f"{path}: timestamps {what}: {cells.iloc[k]} then {cells.iloc[k + 1]} ({lines}); "
                                f"give consecutive {card.step_minutes}-minute steps, oldest first")


def _values(table: pd.DataFrame, path: Path) -> np.ndarray:
    """The readings as numbers [steps, stations], an empty cell as missing (NaN)."""
    readings = table.drop(columns=TIMESTAMP)
    cells = pd.Series(readings.to_numpy().ravel()).str.strip()
    numbers = pd.to_numeric(cells, errors="coerce")
    bad = (numbers.isna() & (cells != "") & ~cells.str.lower().isin(["nan", "na"])).to_numpy()
    if bad.any():
        found = _cells(table, bad.reshape(readings.shape))
        raise ReadingsError(f"{path}: readings that are not numbers: station {found}; leave a missing reading empty")
    return numbers.to_numpy(dtype=np.float64).reshape(readings.shape)


def _cells(table: pd.DataFrame, where) -> str:
    """"4 at <time> ('fast'), ...": the station, time and text of the readings `where` marks ([steps, stations])."""
    rows, cols = np.nonzero(np.asarray(where))
    return _names(f"{_shown(table.columns[1 + c])} at {table[TIMESTAMP].iloc[r].strip()} "
                  f"({table.iat[r, 1 + c].strip()!r})" for r, c in zip(rows, cols))


def _check_range(values: np.ndarray, table: pd.DataFrame, path: Path, card: ModelCard) -> None:
    """Refuse negative readings, and readings above PLAUSIBLE_FACTOR times the training days' largest one where the
    card holds it (cards written before it was recorded: the negative check only)."""
    limit = np.inf if card.training_max is None else PLAUSIBLE_FACTOR * card.training_max
    outside = np.isfinite(values) & ((values < 0) | (values > limit))  # inf is a missing reading
    if outside.any():
        what = ("below 0" if card.training_max is None else
                f"outside 0 to {limit:g} ({PLAUSIBLE_FACTOR} times the largest reading of the training days, "
                "model_card.json training_max)")
        raise ReadingsError(f"{path}: readings {what}: station {_cells(table, outside)}; correct them (leave a "
                            f"missing reading empty), or pass {ALLOW_OUT_OF_RANGE} to use them")


def read_window(path: str | Path, card: ModelCard, allow_out_of_range: bool = False) -> Window:
    """The model's input window from a readings CSV: at least n_his steps, `step_minutes` apart; missing readings
    (empty, NaN, inf or 0, as the pipeline treats them) filled as the card's `fill` says over all rows given.
    Readings outside the plausible range (`_check_range`) are refused unless `allow_out_of_range`."""
    path = Path(path)
    table = _table(path, card)
    if len(table) < card.n_his:
        raise ReadingsError(f"{path}: {len(table)} time steps; the model reads the last {card.n_his} "
                            f"({card.step_minutes} minutes apart)")
    _check_times(table, path, card)
    values = _values(table, path)
    if not allow_out_of_range:
        _check_range(values, table, path, card)
    missing = missing_readings(values)
    silent = missing[-card.n_his:].all(axis=0)
    if silent.any():
        raise ReadingsError(f"{path}: no reading in the last {card.n_his} steps for station "
                            f"{_names(np.asarray(card.stations)[silent])}; the model needs at least one per station")
    frame = pd.DataFrame(np.where(missing, np.nan, values))
    with np.errstate(over="ignore"):  # a reading beyond float32 becomes inf, and its forecast is refused
        filled = fill_gaps(frame, card.fill).to_numpy()[-card.n_his:].astype(np.float32)  # as the cleaned table
    return Window(filled, pd.Timestamp(table[TIMESTAMP].iloc[-1].strip()))


def forecast_table(forecast: np.ndarray, window: Window, card: ModelCard, all_steps: bool) -> pd.DataFrame:
    """Forecasts [n_pred, N] in raw units -> rows station, timestamp, horizon_min, forecast (float32, as the
    pipeline's predictions.npz): the card's horizons, or every step with `all_steps`; stations in the card's
    order; timestamps in the newest reading's UTC offset, if it has one."""
    steps = np.arange(1, forecast.shape[0] + 1) if all_steps else np.asarray(card.horizons)
    stations = len(card.stations)
    times = [window.last_time + pd.Timedelta(minutes=int(h) * card.step_minutes) for h in steps]
    return pd.DataFrame({"station": np.repeat(card.stations, len(steps)), TIMESTAMP: times * stations,
                         "horizon_min": np.tile(steps * card.step_minutes, stations),
                         "forecast": forecast[steps - 1].T.ravel().astype(np.float32)}, columns=FORECAST_COLUMNS)
