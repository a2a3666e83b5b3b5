"""Forecasts from the last hour of raw readings with a model's exported files, on ONNX Runtime (no torch):

    python -m kdstgcn.predict RUN_DIR READINGS.csv [-o forecast.csv] [--all-steps] [--allow-out-of-range]

RUN_DIR is a model's run folder (results/<dataset>/seed<seed>/<model>) holding model_card.json and its ONNX
files. READINGS.csv has a `timestamp` column and one column per station id of the card, at least the last
n_his steps (12 five-minute steps), oldest first; a missing reading is an empty cell, NaN, inf or 0. The readings
are filled as the pipeline cleaned its data (the card's `fill`), normalised with the training days' mean and std,
rolled out n_pred steps with stream.onnx and de-normalised. Output: station, timestamp, horizon_min, forecast at
the card's horizons (15, 30 and 45 minutes; every step with --all-steps), to forecast.csv or to standard output.
Bad input stops with one line naming what is wrong and how to fix it, exit status 2, and nothing is written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kdstgcn.deploy.model_card import CardError, read_card
from kdstgcn.deploy.readings import (ALLOW_OUT_OF_RANGE, PLAUSIBLE_FACTOR, ReadingsError, forecast_table,
                                     read_window)
from kdstgcn.deploy.session import ORT_ERRORS, open_stream, ort_reason
from kdstgcn.runtime.io import write_table

OUTPUT_SUFFIXES = (".csv", ".parquet")


class OutputError(ValueError):
    """An output file `predict` cannot write; the message names it and the fix."""


class Forecaster:
    """A model's exported files (its run folder), loaded once: `forecast` for each readings file."""

    def __init__(self, run_dir: str | Path, threads: int = 1):
        self.card = read_card(run_dir)
        self.stream = open_stream(self.card, threads)

    def forecast(self, readings: str | Path, all_steps: bool = False,
                 allow_out_of_range: bool = False) -> pd.DataFrame:
        """The forecast table for the readings in `readings` (see the module docstring); a forecast that is not
        finite is refused."""
        card = self.card
        window = read_window(readings, card, allow_out_of_range)
        with np.errstate(over="ignore", invalid="ignore"):  # what overflows is refused below
            normalised = ((window.values.astype(np.float64) - card.mean) / card.std).astype(np.float32)
            try:
                steps = self.stream.rollout(normalised[None], card.n_pred)[0]
            except ORT_ERRORS as exc:
                raise CardError(f"{card.folder}: ONNX Runtime cannot run the files ({ort_reason(exc)}); export the "
                                f"model again with `snakemake {card.path('start')}`") from exc
            forecast = steps.astype(np.float64) * card.std + card.mean
            finite = np.isfinite(forecast.astype(np.float32)).all()  # float32, as written
        if not finite:
            raise ReadingsError(f"{readings}: the forecast is not finite: the readings lie too far outside those of "
                                "the training days (model_card.json training_max) for the model; correct them")
        return forecast_table(forecast, window, card, all_steps)


def output_path(output: str, readings: str) -> Path:
    """`-o` checked before any work: a .csv or .parquet file (any case) that is neither the readings nor a folder."""
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"-o {output}: name a .csv (or .parquet) file")
    same = path.exists() and Path(readings).exists() and os.path.samefile(path, readings)  # links included
    if same or path.resolve() == Path(readings).resolve():
        raise OutputError(f"-o {output} is the readings file {readings}; name another file for the forecasts")
    if path.is_dir():
        raise OutputError(f"-o {output} is a folder; name a file, e.g. {path / 'forecast.csv'}")
    return path


def write_forecast(table: pd.DataFrame, path: Path) -> None:
    """Write the forecast table (atomically: nothing is left behind when writing fails)."""
    try:
        write_table(table, path)
    except ImportError as exc:
        raise OutputError(f"-o {path}: writing parquet needs pyarrow (pip install pyarrow); or name a .csv "
                          "file") from exc
    except OSError as exc:
        raise OutputError(f"-o {path}: cannot write it ({exc.strerror or exc}: {exc.filename}); name a file in a "
                          "folder you can write to") from exc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdstgcn.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a model's run folder with model_card.json and its ONNX files")
    ap.add_argument("readings", metavar="READINGS.csv", help="timestamp column and one column per station id")
    ap.add_argument("-o", "--output", help="write the forecasts to this CSV file (default: standard output)")
    ap.add_argument("--all-steps", action="store_true", help="every step up to n_pred, not only the horizons")
    ap.add_argument(ALLOW_OUT_OF_RANGE, action="store_true",
                    help=f"use readings below 0 or above {PLAUSIBLE_FACTOR} times the largest reading of the "
                         "training days (model_card.json training_max) instead of stopping")
    args = ap.parse_args(argv)
    try:
        output = args.output and output_path(args.output, args.readings)
        table = Forecaster(args.run_dir).forecast(args.readings, args.all_steps, args.allow_out_of_range)
        if output:
            write_forecast(table, output)
            return 0
    except (CardError, ReadingsError, OutputError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    try:
        table.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error, and nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
