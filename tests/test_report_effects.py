"""The effect's interval (kdstgcn.report.effects): how often it excludes 0 when there is no effect, simulated over
the seeds and test days of the study's datasets; that pairing by seed removes what both models of a seed share;
its value written out by hand; and the daily errors it rests on, which average to the test metrics."""
import numpy as np
import pytest
from scipy import stats

from kdstgcn.evaluation.rollout import horizon_metrics
from kdstgcn.report.effects import daily_mae, outcome, paired_interval

SIMULATIONS = 40_000


def excluding_zero(seeds: int, days: int, seed_sd: float, day_sd: float, cell_sd: float, rng) -> float:
    """Share of simulated studies without any effect whose interval excludes 0: each seed's difference moves by a
    draw of the seed (training), each day's by a draw of the day shared by all seeds (traffic), each cell by its
    own; day draws from a Student t with 3 degrees of freedom (heavy-tailed days)."""
    differences = (seed_sd * rng.standard_normal((SIMULATIONS, seeds, 1))
                   + day_sd * rng.standard_t(3, (SIMULATIONS, 1, days))
                   + cell_sd * rng.standard_normal((SIMULATIONS, seeds, days)))
    low, high = paired_interval(differences)
    return float(np.mean((low > 0) | (high < 0)))


@pytest.mark.parametrize("seeds, days, seed_sd, day_sd, cell_sd", [
    (1, 5, 0.0, 1.0, 1.0), (1, 6, 0.0, 0.0, 1.0),  # one seed: a fixed pair of models, the days vary
    (2, 6, 1.0, 0.0, 0.2), (2, 6, 1.0, 1.0, 1.0), (2, 5, 3.0, 1.0, 0.5),
    (3, 5, 1.0, 0.0, 0.2), (3, 6, 0.3, 1.0, 2.0), (5, 6, 1.0, 1.0, 1.0), (5, 5, 1.0, 0.0, 0.2)])
def test_the_interval_excludes_zero_at_most_five_percent_of_the_time_without_an_effect(seeds, days, seed_sd, day_sd,
                                                                                       cell_sd):
    """The error rate the verdict promises: at most 5 % of studies without any effect are called supported or
    refuted, within three standard errors of the simulation (0.3 % at 40 000 studies), for one to five seeds and
    the five (PeMSD7(M)) or six (PEMS08) test days. The rule it replaces, 'effect beyond the summed spreads over
    seeds', exceeded 0 in 22 % of such studies with two seeds."""
    rate = excluding_zero(seeds, days, seed_sd, day_sd, cell_sd, np.random.default_rng(seeds * 100 + days))
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / SIMULATIONS), rate


def test_a_percentile_bootstrap_over_six_days_would_exclude_zero_far_more_often():
    """Why the interval takes Student t quantiles: resampling six test days and taking the 2.5 and 97.5 %
    quantiles of the resampled means excludes 0 in about 14 % of studies without an effect."""
    rng = np.random.default_rng(0)
    days = rng.standard_normal((2_000, 6))
    resampled = days[np.arange(2_000)[:, None, None], rng.integers(0, 6, (2_000, 500, 6))].mean(axis=-1)
    low, high = np.quantile(resampled, [0.025, 0.975], axis=1)
    assert np.mean((low > 0) | (high < 0)) > 0.10
    ours_low, ours_high = paired_interval(days[:, None, :])
    assert np.mean((ours_low > 0) | (ours_high < 0)) <= 0.06


def test_pairing_by_seed_removes_what_both_models_of_a_seed_share():
    """Each seed's teacher (or base) moves both of its models alike; their difference is then steady although
    each model's MAE spreads widely over seeds: the spread rule could not tell, the paired interval can."""
    shared = np.array([[0.0], [3.0], [-2.0]])  # per seed, what both models owe their seed
    days = np.array([[0.1, -0.05, 0.0, -0.05], [0.0, 0.05, -0.05, 0.0], [0.05, 0.0, 0.0, -0.05]])
    better, other = 10 + shared + days, 10.2 + shared
    assert abs(better.mean() - other.mean()) < better.mean(axis=1).std(ddof=1) + other.mean(axis=1).std(ddof=1)
    low, high = paired_interval(better - other)
    assert low < -0.2 < high < 0 and outcome(low, high) == "supported"


def test_the_interval_written_out_for_one_and_for_three_seeds():
    one = np.array([[1.0, 2.0, 3.0]])  # one seed: the t interval over the days
    half = stats.t.ppf(0.975, 2) * np.sqrt(1.0 / 3)
    assert paired_interval(one) == pytest.approx((2 - half, 2 + half))
    three = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])  # day means 1, 2; seed means 0.5, 1.5, 2.5
    half = np.sqrt(stats.t.ppf(0.975, 1) ** 2 * 0.5 / 2 + stats.t.ppf(0.975, 2) ** 2 * 1.0 / 3)
    assert paired_interval(three) == pytest.approx((1.5 - half, 1.5 + half))
    assert all(np.isnan(paired_interval(np.array([[-1.0], [-2.0]]))))  # one test day: no interval
    assert [outcome(-2, -1), outcome(1, 2), outcome(-1, 1), outcome(np.nan, np.nan)] == [
        "supported", "refuted", "inconclusive", "n/a (one test day)"]


def test_the_daily_errors_average_to_the_test_metrics_over_the_scored_stations(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 60, (3 * 5, 9, 6)).astype(np.float32)  # 3 test days of 5 windows, 6 stations
    prediction = (truth + rng.normal(0, 4, truth.shape)).astype(np.float32)
    prediction[5:10, :, 0] += 50  # a large error on day 1 at a station the metrics leave out
    np.savez(tmp_path / "predictions.npz", prediction=prediction, truth=truth)
    scored = np.array([False, True, True, True, True, True])
    daily = daily_mae(tmp_path / "predictions.npz", scored, 3, (3, 6, 9), 5)
    assert list(daily.columns) == ["day", "horizon_min", "mae"] and len(daily) == 9
    metrics = horizon_metrics(prediction.astype(np.float64), truth.astype(np.float64), (3, 6, 9), 5, scored)
    means = daily.groupby("horizon_min")["mae"].mean()
    assert means.to_numpy() == pytest.approx(metrics["MAE"].to_numpy(), rel=1e-12)
    with pytest.raises(ValueError, match="15 test windows do not split into 4 test days"):
        daily_mae(tmp_path / "predictions.npz", scored, 4, (3,), 5)
