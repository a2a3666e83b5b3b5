"""`python -m kdstgcn.predict` (kdstgcn.predict): on the raw readings ending at a test window it gives the pipeline's
own forecasts for that window (predictions.npz) in raw units, without torch; the horizons and their timestamps;
and every kind of bad input stops with one message naming what is wrong, writing nothing."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime", reason="predict needs ONNX Runtime (a bare GPU machine may lack it)")

from conftest import REPO
from kdstgcn.config import datasets, layout
from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.runspec import LossSpec, RunSpec, TrainSettings
from kdstgcn.jobs.data import build_adjacency, clean_values, synthesize
from kdstgcn.jobs.evaluate import evaluate_run
from kdstgcn.jobs.export import export_run
from kdstgcn.jobs.train import train_run
from kdstgcn.model.architecture import Architecture
from kdstgcn.predict import main

pytestmark = pytest.mark.usefixtures("single_thread")

NAME, MODEL, SEED = "tiny", "student_task", 0
DATASET = {"source": "synthetic", "n_nodes": 10, "steps_per_day": 288, "start": "2024-01-01", "weekdays_only": False,
           "split": [2, 1, 1], "synthetic": {"days": 4, "seed": 5, "area_km": 5.0, "missing_pct": 2.0},
           "sigma2": 10.0, "epsilon": 0.5, "description": "synthetic test network"}
DATA = DataSpec(288, (2, 1, 1), n_his=12, n_pred=9)
HORIZONS = [3, 6, 9]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A student trained 1 epoch on a small synthetic dataset, evaluated and exported by the pipeline's jobs, in
    the study's folder layout under the returned root."""
    root = tmp_path_factory.mktemp("deploy")
    config = {"datasets": {NAME: DATASET}}
    raw = {kind: root / layout.raw_path(NAME, name)
           for kind, name in (("values", datasets.SYNTHETIC_VALUES), ("distance", datasets.SYNTHETIC_DISTANCE))}
    prepared = {k: str(root / v) for k, v in layout.prepared(NAME).items()}
    synthesize(DATASET, str(raw["values"]), str(raw["distance"]))
    clean_values(str(raw["values"]), datasets.values_source(config, NAME), DATASET, prepared["values"],
                 prepared["fill_report"], str(root / layout.clean_path(NAME, "fill_report.parquet")))
    build_adjacency(str(raw["distance"]), datasets.distance_source(config, NAME), DATASET, prepared["adjacency"],
                    str(root / layout.graph_path(NAME, "stats.json")))

    def out(name: str) -> str:
        return str(root / layout.run_file(NAME, SEED, MODEL, name))

    run = RunSpec(NAME, MODEL, DATA, TrainSettings(epochs=1, batch_size=50, eval_batch_size=600),
                  LossSpec("task", {}), "cpu", arch=Architecture(10, ((1, 2, 4), (4, 2, 8))))
    train_run(run, prepared["values"], prepared["fill_report"], prepared["adjacency"], out("model.pt"),
              out("history.parquet"), out("info.json"), out("checkpoint.pt"))
    evaluate_run(out("model.pt"), prepared["values"], prepared["fill_report"], DATA, HORIZONS, 5, "cpu", 600,
                 "PeMSD7", MODEL, out("metrics.csv"), out("metrics.parquet"), out("predictions.npz"))
    export_run(out("model.pt"), out("metrics.csv"), prepared["values"], prepared["fill_report"], DATA, "speed",
               DATASET["description"], HORIZONS, 5,
               {part: str(root / path) for part, path in layout.deploy_files(NAME, SEED, MODEL).items()})
    return root


def run_dir(root: Path) -> Path:
    return root / layout.run_dir(NAME, SEED, MODEL)


def raw_readings(root: Path, end: int, start: int = 0) -> pd.DataFrame:
    """Raw steps start..end-1 of the synthetic values (0 = missing) as predict takes them."""
    values = np.load(root / layout.raw_path(NAME, datasets.SYNTHETIC_VALUES))["data"]
    times = pd.date_range(DATASET["start"], periods=values.shape[0], freq="5min")
    table = pd.DataFrame(values[start:end], columns=[str(i) for i in range(values.shape[1])])
    table.insert(0, "timestamp", times[start:end].strftime("%Y-%m-%d %H:%M:%S"))
    return table


def test_predict_gives_the_pipelines_forecasts_of_a_test_window_without_torch(study, tmp_path):
    values = np.load(study / layout.raw_path(NAME, datasets.SYNTHETIC_VALUES))["data"]
    test_start = sum(DATA.split[:2]) * DATA.steps_per_day
    per_day = DATA.steps_per_day - DATA.n_his - DATA.n_pred + 1
    # a window whose newest step has every reading: the pipeline filled earlier gaps from readings before it
    window = next(w for w in range(40, per_day) if (values[test_start + w + DATA.n_his - 1] > 0).all()
                  and (values[test_start + w:test_start + w + DATA.n_his] == 0).any())
    end = test_start + window + DATA.n_his
    raw_readings(study, end).to_csv(tmp_path / "readings.csv", index=False)
    code = ("import sys; from kdstgcn.predict import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'predict imported torch'; sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir(study)), str(tmp_path / "readings.csv"), "-o",
                           str(tmp_path / "forecast.csv"), "--all-steps"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    forecast = pd.read_csv(tmp_path / "forecast.csv", dtype={"station": str})
    assert list(forecast.columns) == ["station", "timestamp", "horizon_min", "forecast"]
    ours = forecast.pivot(index="horizon_min", columns="station", values="forecast")
    ours = ours[[str(i) for i in range(DATASET["n_nodes"])]].to_numpy()
    pipeline = np.load(run_dir(study) / "predictions.npz")["prediction"][window]
    assert ours.shape == pipeline.shape == (DATA.n_pred, DATASET["n_nodes"])
    np.testing.assert_allclose(ours, pipeline, rtol=1e-3)


def test_predict_writes_the_horizons_after_the_newest_reading_in_station_order(study, tmp_path, capsys):
    raw_readings(study, 1100, start=1088).to_csv(tmp_path / "hour.csv", index=False)
    assert main([str(run_dir(study)), str(tmp_path / "hour.csv")]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"station": str})
    card = json.loads((run_dir(study) / "model_card.json").read_text())
    assert printed["station"].tolist() == [s for s in card["stations"] for _ in HORIZONS]
    assert printed["horizon_min"].tolist() == [15, 30, 45] * len(card["stations"])
    newest = pd.Timestamp(raw_readings(study, 1100, start=1099)["timestamp"].iloc[0])
    assert pd.to_datetime(printed["timestamp"]).tolist() == [newest + pd.Timedelta(minutes=m)
                                                             for _ in card["stations"] for m in (15, 30, 45)]
    assert np.isfinite(printed["forecast"]).all()


def _drop_station(t):
    return t.drop(columns="3")


def _extra_station(t):
    return t.assign(**{"99": 60.0})


def _short(t):
    return t.tail(7)


def _uneven(t):
    t.loc[t.index[5], "timestamp"] = str(pd.Timestamp(t["timestamp"].iloc[5]) + pd.Timedelta(minutes=1))
    return t


def _out_of_order(t):
    return t.iloc[[0, 1, 2, 4, 3, *range(5, len(t))]]


def _silent_station(t):
    t["2"] = t["2"].astype(object)
    t.loc[t.index[-12:], "2"] = ""
    return t


def _not_a_number(t):
    t["4"] = t["4"].astype(object)
    t.loc[t.index[6], "4"] = "fast"
    return t


BAD_READINGS = {
    "missing station": (_drop_station, "missing stations 3"),
    "extra station": (_extra_station, "unknown stations 99"),
    "too few steps": (_short, "7 time steps; the model reads the last 12"),
    "uneven steps": (_uneven, "timestamps not 5 minutes apart"),
    "out of order": (_out_of_order, "timestamps out of order"),
    "station without readings": (_silent_station, "no reading in the last 12 steps for station 2"),
    "not a number": (_not_a_number, "not numbers: station 4 at 2024-01-04 18:30:00 ('fast')"),
}


@pytest.mark.parametrize("case", BAD_READINGS)
def test_bad_readings_give_one_message_and_no_forecast(study, tmp_path, capsys, case):
    spoil, message = BAD_READINGS[case]
    spoil(raw_readings(study, 1100, start=1080)).to_csv(tmp_path / "readings.csv", index=False)
    output = tmp_path / "forecast.csv"
    assert main([str(run_dir(study)), str(tmp_path / "readings.csv"), "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("predict: ") and "\n" not in err and message in err, err
    assert str(tmp_path / "readings.csv") in err
    assert not output.exists() and not list(tmp_path.glob(".forecast.csv.*"))


def test_a_folder_without_a_model_card_names_the_file_and_how_to_make_it(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "readings.csv")]) == 2
    err = capsys.readouterr().err
    assert "model_card.json not found" in err and "snakemake" in err
