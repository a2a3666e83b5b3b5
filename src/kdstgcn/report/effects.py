"""The effect of a claim with its 95 % confidence interval, and what the interval says about the claim.

The effect is the claimed-better model's MAE minus the other's. Its interval rests on the paired differences per
seed and test day: on each seed the two models share the teacher (or base) and their training seed, and on each
day they face the same traffic, so differences taken pair by pair are free of what the two share. Two things
make the mean difference uncertain: which days happened to be tested, and, with several seeds, the randomness of
training. The interval adds one term for each, scaled by its own Student t quantile:

    half-width^2 = t(n_days - 1)^2 * var(day means) / n_days + t(n_seeds - 1)^2 * var(seed means) / n_seeds

(the seed term only with two seeds or more; `var` is the sample variance over days of the differences averaged
over seeds, and over seeds of the differences averaged over days). Each term alone is the exact t interval of its
source; together they cover at least 95 % (Banerjee's bound; tests/test_report_effects.py simulates studies
without an effect and counts how often the interval excludes 0). A percentile bootstrap over 5 or 6 test days
would not: it excludes 0 in 14-17 % of such studies, since it reads the spread of a few days as if it were known.
The days are whole days, the unit the windows are cut from, so that the errors of one day stay together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
ONE_TEST_DAY = "one test day"  # too few days for an interval
NO_INTERVAL = f"n/a ({ONE_TEST_DAY})"
NOT_RUN = "not run (verdict.tuned_claims)"  # a source of values a claim is not judged with
NOT_TRAINED = "not run (deployable.models: values)"  # the source of values a deployable model is not trained with


def daily_mae(path: str | Path, station_mask: np.ndarray, test_days: int, horizons, step_minutes: int
              ) -> pd.DataFrame:
    """MAE per test day and horizon (columns day, horizon_min, mae) of one run's predictions.npz (`prediction`,
    `truth` [windows, steps, stations], the windows of each test day in turn, as kdstgcn.data.samples cuts them)
    over the stations that enter the metrics (`station_mask`): their mean over the days is the run's test MAE.
    `horizons` are in steps of `step_minutes`."""
    with np.load(path) as saved:
        prediction, truth = saved["prediction"], saved["truth"]
    if prediction.shape[0] % test_days:
        raise ValueError(f"{path}: {prediction.shape[0]} test windows do not split into {test_days} test days")
    rows = []
    for step in horizons:
        error = np.abs(prediction[:, step - 1, station_mask].astype(np.float64) - truth[:, step - 1, station_mask])
        per_day = error.reshape(test_days, -1).mean(axis=1)
        rows += [{"day": day, "horizon_min": step * step_minutes, "mae": mae} for day, mae in enumerate(per_day)]
    return pd.DataFrame(rows)


def paired_interval(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % confidence interval (low, high) of the mean of `differences` [..., seeds, test days] (claimed
    better minus other, per seed and test day), as the module says; NaN with one test day."""
    differences = np.asarray(differences, dtype=np.float64)
    seeds, days = differences.shape[-2:]
    mean = differences.mean(axis=(-2, -1))
    if days < 2:
        return np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    quantile = (1 + CONFIDENCE) / 2
    squared = stats.t.ppf(quantile, days - 1) ** 2 * differences.mean(axis=-2).var(axis=-1, ddof=1) / days
    if seeds > 1:
        squared = squared + stats.t.ppf(quantile, seeds - 1) ** 2 * differences.mean(axis=-1).var(axis=-1,
                                                                                                   ddof=1) / seeds
    half = np.sqrt(squared)
    return mean - half, mean + half


def outcome(low: float, high: float) -> str:
    """What an effect's interval says of a lower-is-better claim: supported where it lies below 0, refuted
    where above, else inconclusive."""
    if np.isnan(low):
        return NO_INTERVAL
    return SUPPORTED if high < 0 else REFUTED if low > 0 else INCONCLUSIVE
