"""model_card.json: what a deployed model needs to be fed and read (station order, normalisation, how gaps are
filled, the largest training reading, time layout, its files) and what it is (the data and days it was trained
on, its test metrics, the code that made it). Torch-free: `predict` reads it."""
from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from kdstgcn.config.datasets import DEFAULT_FILL, FILLS
from kdstgcn.config.layout import CARD, DEPLOY_FILES
from kdstgcn.runtime.io import write_json

CARD_VERSION = 1
ONNX_PARTS = [part for part in DEPLOY_FILES if part != CARD]


class CardError(ValueError):
    """A model card, or the files it names, that cannot be used; the message names the file and the fix."""


def code_version() -> str:
    """The package version and, in a git checkout, its commit ('+ uncommitted changes' when the tracked files
    differ from it)."""
    try:
        version = f"kdstgcn {metadata.version('kdstgcn')}"
    except metadata.PackageNotFoundError:
        version = "kdstgcn (not installed)"
    here = Path(__file__).resolve().parent
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: no index refresh
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, env=env,
                                check=True, timeout=10).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                 capture_output=True, text=True, env=env, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}, git {commit}" + (" + uncommitted changes" if changes else "")


def split_days(index: pd.DatetimeIndex, steps_per_day: int, split) -> dict[str, dict]:
    """First and last date and number of days of each part of the day split (train, val, test)."""
    days, first = {}, 0
    for name, count in zip(("train", "val", "test"), split):
        dates = index[first * steps_per_day:(first + count) * steps_per_day:steps_per_day]
        days[name] = {"days": int(count), "first": str(dates[0].date()), "last": str(dates[-1].date())}
        first += count
    return days


def metrics_by_horizon(metrics: pd.DataFrame) -> list[dict]:
    """The test metrics of a run's metrics.csv as one dict per horizon: horizon_min, MAE, RMSE, MAPE."""
    wide = metrics.pivot_table(index="horizon_min", columns="metric", values="ours", aggfunc="first")
    return [{"horizon_min": int(h), **{m: float(v) for m, v in row.items()}} for h, row in wide.iterrows()]


def build_card(*, dataset: str, seed: int, model: str, stations: list[str], mean: float, std: float,
               training_max: float, fill: str, units: str, description: str, precision: str, steps_per_day: int,
               step_minutes: int, n_his: int, n_pred: int, horizons, days: dict, test_metrics: list[dict]) -> dict:
    """The card of one model (see the module docstring): `training_max` is the largest reading of the training
    days, `fill` how the data's gaps were filled (`kdstgcn.data.gaps.fill_gaps`), `precision` the arithmetic it
    was trained in (training.precision: fp32 or bf16; its weights and ONNX files are float32 either way)."""
    return {
        "card_version": CARD_VERSION,
        "model": model, "dataset": dataset, "seed": int(seed),
        "files": {part: DEPLOY_FILES[part] for part in ONNX_PARTS},
        "stations": [str(s) for s in stations],
        "units": units,
        "normalisation": {"mean": float(mean), "std": float(std), "fitted_on": "training days"},
        "training_max": float(training_max),
        "fill": fill,
        "steps_per_day": int(steps_per_day), "step_minutes": int(step_minutes),
        "n_his": int(n_his), "n_pred": int(n_pred), "horizons": [int(h) for h in horizons],
        "trained_on": {"data": description, "days": days, "precision": precision},
        "test_metrics": test_metrics,
        "code_version": code_version(),
    }


def write_card(card: dict, path: str | Path) -> None:
    write_json(card, path)


@dataclass(frozen=True)
class ModelCard:
    """What `predict` reads of a card: the files, the station order, the normalisation, how gaps are filled, the
    largest training reading and the time layout."""

    folder: Path
    stations: list[str]
    mean: float
    std: float
    units: str
    step_minutes: int
    n_his: int
    n_pred: int
    horizons: list[int]
    files: dict[str, str]
    fill: str = DEFAULT_FILL  # a card written before the fill was named: the only fill there was
    training_max: float | None = None  # None: a card written before the maximum was recorded

    def path(self, part: str) -> Path:
        return self.folder / self.files[part]


def read_card(run_dir: str | Path) -> ModelCard:
    """The card in a run folder, checked for what `predict` needs."""
    path = Path(run_dir) / DEPLOY_FILES[CARD]
    if not path.is_file():
        raise CardError(f"{path} not found: RUN_DIR must be a model's run folder with its exported files; make them "
                        f"with `snakemake {path}`")
    try:
        card = json.loads(path.read_text())
        if card.get("card_version") != CARD_VERSION:
            raise CardError(f"{path}: card version {card.get('card_version')!r}, this code reads version "
                            f"{CARD_VERSION}; export the model again with this code")
        scale = card["normalisation"]
        mean, std = float(scale["mean"]), float(scale["std"])
        training_max = card.get("training_max")
        training_max = None if training_max is None else float(training_max)
        fill = card.get("fill", DEFAULT_FILL)
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise CardError(f"{path}: normalisation mean {mean:g}, std {std:g}; the std must be a positive number "
                            "(and both finite): export the model again")
        if training_max is not None and not math.isfinite(training_max):
            raise CardError(f"{path}: training_max {training_max:g} is not a number; export the model again")
        if fill not in FILLS:
            raise CardError(f"{path}: fill {fill!r}, this code knows {', '.join(FILLS)}; export the model again")
        return ModelCard(path.parent, list(card["stations"]), mean, std, card["units"], int(card["step_minutes"]),
                         int(card["n_his"]), int(card["n_pred"]), [int(h) for h in card["horizons"]],
                         {part: str(card["files"][part]) for part in ONNX_PARTS}, fill, training_max)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CardError):
            raise
        raise CardError(f"{path}: not a readable model card ({type(exc).__name__}: {exc}); export the model "
                        "again") from exc
