"""Forecasts from the last hour of raw readings with a model's exported files, on ONNX Runtime (no torch):

    python -m kdstgcn.predict RUN_DIR READINGS.csv [-o forecast.csv] [--all-steps]

RUN_DIR is a model's run folder (results/<dataset>/seed<seed>/<model>) holding model_card.json and its ONNX
files. READINGS.csv has a `timestamp` column and one column per station id of the card, at least the last
n_his steps (12 five-minute steps), oldest first; a missing reading is an empty cell, NaN or 0. The readings are
filled as the pipeline cleans its data, normalised with the training days' mean and std, rolled out n_pred steps
with stream.onnx and de-normalised. Output: station, timestamp, horizon_min, forecast at the card's horizons
(15, 30 and 45 minutes; every step with --all-steps), to forecast.csv or to standard output. Bad input stops
with one message naming what is wrong, and nothing is written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kdstgcn.deploy.model_card import CardError, read_card
from kdstgcn.deploy.readings import ReadingsError, forecast_table, read_window
from kdstgcn.deploy.session import OnnxStream
from kdstgcn.runtime.io import write_table


def forecast(run_dir: str | Path, readings: str | Path, all_steps: bool = False, threads: int = 1) -> pd.DataFrame:
    """The forecast table of the model in `run_dir` for the readings in `readings` (see the module docstring)."""
    card = read_card(run_dir)
    window = read_window(readings, card)
    stream = OnnxStream(card.path("start"), card.path("stream"), threads)
    normalised = ((window.values.astype(np.float64) - card.mean) / card.std).astype(np.float32)
    steps = stream.rollout(normalised[None], card.n_pred)[0]
    return forecast_table(steps.astype(np.float64) * card.std + card.mean, window, card, all_steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdstgcn.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a model's run folder with model_card.json and its ONNX files")
    ap.add_argument("readings", metavar="READINGS.csv", help="timestamp column and one column per station id")
    ap.add_argument("-o", "--output", help="write the forecasts to this CSV file (default: standard output)")
    ap.add_argument("--all-steps", action="store_true", help="every step up to n_pred, not only the horizons")
    args = ap.parse_args(argv)
    if args.output and Path(args.output).suffix not in (".csv", ".parquet"):
        ap.error(f"-o {args.output}: name a .csv (or .parquet) file")
    try:
        table = forecast(args.run_dir, args.readings, args.all_steps)
    except (CardError, ReadingsError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    if args.output:
        write_table(table, args.output)
        return 0
    try:
        table.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error, and nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
