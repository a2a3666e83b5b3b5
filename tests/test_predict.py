"""`python -m kdstgcn.predict` (kdstgcn.predict): on the raw readings ending at a test window it gives the pipeline's
own forecasts for that window (predictions.npz) in raw units, without torch, and with `fill: causal` on every test
window; the horizons and their timestamps, UTC offsets included; and every kind of bad input (readings, model
files, output) stops with one line naming what is wrong and what to change, writing nothing."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime", reason="predict needs ONNX Runtime (a bare GPU machine may lack it)")

from conftest import REPO
from helpers import ring_model
from kdstgcn.config import datasets, layout
from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.runspec import LossSpec, RunSpec, TrainSettings
from kdstgcn.deploy.export import export_bytes
from kdstgcn.jobs.data import build_adjacency, clean_values, synthesize
from kdstgcn.jobs.evaluate import evaluate_run
from kdstgcn.jobs.export import export_run
from kdstgcn.jobs.train import train_run
from kdstgcn.model.architecture import Architecture
from kdstgcn.predict import Forecaster, main

pytestmark = pytest.mark.usefixtures("single_thread")

NAME, MODEL, SEED = "tiny", "student_task", 0
DATASET = {"source": "synthetic", "n_nodes": 10, "steps_per_day": 288, "start": "2024-01-01", "weekdays_only": False,
           "split": [2, 1, 1], "synthetic": {"days": 4, "seed": 5, "area_km": 5.0, "missing_pct": 2.0},
           "sigma2": 10.0, "epsilon": 0.5, "description": "synthetic test network"}
DATA = DataSpec(288, (2, 1, 1), n_his=12, n_pred=9)
HORIZONS = [3, 6, 9]


def prepare_values(root: Path, raw_values: Path, dataset: dict) -> dict[str, str]:
    """The clean job on the raw values, as `dataset` (a config section) says: the prepared files under `root`."""
    prepared = {k: str(root / v) for k, v in layout.prepared(NAME).items()}
    clean_values(str(raw_values), datasets.values_source({"datasets": {NAME: dataset}}, NAME), dataset,
                 prepared["values"], prepared["fill_report"],
                 str(root / layout.clean_path(NAME, "fill_report.parquet")))
    return prepared


def evaluate_and_export(root: Path, prepared: dict[str, str], fill: str) -> None:
    """The evaluate and export jobs on the model.pt in `root`'s run folder, with data cleaned as `fill` says."""
    def out(name: str) -> str:
        return str(root / layout.run_file(NAME, SEED, MODEL, name))

    evaluate_run(out("model.pt"), prepared["values"], prepared["fill_report"], DATA, HORIZONS, 5, "cpu", 600,
                 "PeMSD7", MODEL, out("metrics.csv"), out("metrics.parquet"), out("predictions.npz"))
    export_run(out("model.pt"), out("metrics.csv"), prepared["values"], prepared["fill_report"], DATA, "speed",
               DATASET["description"], fill, HORIZONS, 5,
               {part: str(root / path) for part, path in layout.deploy_files(NAME, SEED, MODEL).items()})


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A student trained 1 epoch on a small synthetic dataset, evaluated and exported by the pipeline's jobs, in
    the study's folder layout under the returned root."""
    root = tmp_path_factory.mktemp("deploy")
    config = {"datasets": {NAME: DATASET}}
    raw = {kind: root / layout.raw_path(NAME, name)
           for kind, name in (("values", datasets.SYNTHETIC_VALUES), ("distance", datasets.SYNTHETIC_DISTANCE))}
    synthesize(DATASET, str(raw["values"]), str(raw["distance"]))
    prepared = prepare_values(root, raw["values"], DATASET)
    build_adjacency(str(raw["distance"]), datasets.distance_source(config, NAME), DATASET, prepared["adjacency"],
                    str(root / layout.graph_path(NAME, "stats.json")))
    run = RunSpec(NAME, MODEL, DATA, TrainSettings(epochs=1, batch_size=50, eval_batch_size=600),
                  LossSpec("task", {}), "cpu", arch=Architecture(10, ((1, 2, 4), (4, 2, 8))))
    out = {name: str(root / layout.run_file(NAME, SEED, MODEL, name))
           for name in ("model.pt", "history.parquet", "info.json", "checkpoint.pt")}
    train_run(run, prepared["values"], prepared["fill_report"], prepared["adjacency"], *out.values())
    evaluate_and_export(root, prepared, "interpolate")
    return root


@pytest.fixture(scope="module")
def causal_study(study, tmp_path_factory) -> Path:
    """The study's raw values cleaned with `fill: causal`, and its model evaluated and exported on them by the
    pipeline's jobs (the model trained on the interpolated data: what is compared here is predict with the
    pipeline on the same model and data)."""
    root = tmp_path_factory.mktemp("causal")
    prepared = prepare_values(root, study / layout.raw_path(NAME, datasets.SYNTHETIC_VALUES),
                              {**DATASET, "fill": "causal"})
    model = root / layout.run_file(NAME, SEED, MODEL, "model.pt")
    model.parent.mkdir(parents=True)
    shutil.copy(study / layout.run_file(NAME, SEED, MODEL, "model.pt"), model)
    evaluate_and_export(root, prepared, "causal")
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


def _spaced_station(t):
    return t.rename(columns={"3": " 3"})


def _short(t):
    return t.tail(7)


def _uneven(t):
    t.loc[t.index[5], "timestamp"] = str(pd.Timestamp(t["timestamp"].iloc[5]) + pd.Timedelta(minutes=1))
    return t


def _out_of_order(t):
    return t.iloc[[0, 1, 2, 4, 3, *range(5, len(t))]]


def _duplicate(t):
    t.loc[t.index[4], "timestamp"] = t["timestamp"].iloc[3]
    return t


def _timestamp(text):
    def spoil(t):
        t.loc[t.index[3], "timestamp"] = text
        return t
    return spoil


def _some_offsets(t):
    t.loc[t.index[10:], "timestamp"] = t["timestamp"].iloc[10:] + "+00:00"
    return t


def _silent_station(t):
    t["2"] = t["2"].astype(object)
    t.loc[t.index[-12:], "2"] = ""
    return t


def _reading(station, row, text):
    def spoil(t):
        t[station] = t[station].astype(object)
        t.loc[t.index[row], station] = text
        return t
    return spoil


def _extra_field(t):
    lines = t.to_csv(index=False).splitlines()
    lines[6] += ",61.5"
    return "\n".join(lines) + "\n"


def _separated_by(sep):
    return lambda t: t.to_csv(index=False, sep=sep)


NEWEST = "2024-01-04 19:35:00"  # the time of the newest of the readings below (raw steps 1080-1099)
OUT_OF_RANGE = "or pass --allow-out-of-range to use them"
BAD_READINGS = {
    "missing station": (_drop_station, "missing stations 3"),
    "extra station": (_extra_station, "unknown stations 99"),
    "station id with a space": (_spaced_station, "missing stations 3; unknown stations ' 3';"),
    "too few steps": (_short, "7 time steps; the model reads the last 12"),
    "uneven steps": (_uneven, "timestamps not 5 minutes apart"),
    "out of order": (_out_of_order, "timestamps out of order"),
    "duplicate timestamp": (_duplicate, "duplicate timestamp 2024-01-04 18:15:00 (lines 5 and 6); give each step "
                                        "once"),
    "date in words": (_timestamp("yesterday"), "timestamp 'yesterday' on line 5 is not a date and time in ISO 8601 "
                                               "form; write each as e.g. 2024-01-05 07:20:00"),
    "epoch seconds": (_timestamp("1704393900"), "timestamp '1704393900' on line 5 is not a date and time"),
    "day first": (_timestamp("01/05/2024 07:20"), "timestamp '01/05/2024 07:20' on line 5 is not a date and time"),
    "empty timestamp": (_timestamp(""), "timestamp '' on line 5 is not a date and time"),
    "offsets on some timestamps": (_some_offsets, "timestamps with a UTC offset ('2024-01-04 18:50:00+00:00' on "
                                                  "line 12) and without ('2024-01-04 18:00:00' on line 2)"),
    "station without readings": (_silent_station, "no reading in the last 12 steps for station 2"),
    "not a number": (_reading("4", 6, "fast"), "not numbers: station 4 at 2024-01-04 18:30:00 ('fast')"),
    "reading beyond float32": (_reading("3", -1, "1e39"), f"station 3 at {NEWEST} ('1e39'); correct them"),
    "reading beyond float64 range": (_reading("3", -1, "1e300"), f"station 3 at {NEWEST} ('1e300')"),
    "reading far above the training days'": (_reading("3", -1, "1000"),
                                             f"readings outside 0 to {{limit:g}} (2 times the largest reading of "
                                             f"the training days, model_card.json training_max): station 3 at "
                                             f"{NEWEST} ('1000'); correct them"),
    "negative reading": (_reading("3", 2, "-5"), f"station 3 at 2024-01-04 18:10:00 ('-5'); correct them (leave a "
                                                 f"missing reading empty), {OUT_OF_RANGE}"),
    "extra field": (_extra_field, "line 7 has 12 fields, the header 11; give one value per column in every row"),
    "semicolons": (_separated_by(";"), "no 'timestamp' column (the header is ';'-separated: write the file with "
                                       "commas)"),
    "tabs": (_separated_by("\t"), "no 'timestamp' column (the header is tab-separated"),
}


@pytest.mark.parametrize("case", BAD_READINGS)
def test_bad_readings_give_one_message_and_no_forecast(study, tmp_path, capsys, case):
    spoil, message = BAD_READINGS[case]
    content = spoil(raw_readings(study, 1100, start=1080))
    readings = tmp_path / "readings.csv"
    if isinstance(content, str):
        readings.write_text(content)
    else:
        content.to_csv(readings, index=False)
    output = tmp_path / "forecast.csv"
    assert main([str(run_dir(study)), str(readings), "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    if "{limit" in message:
        message = message.format(limit=2 * json.loads((run_dir(study) / "model_card.json").read_text())["training_max"])
    assert err.startswith(f"predict: {readings}: ") and "\n" not in err and message in err, err
    assert not output.exists() and not list(tmp_path.glob(".forecast.csv.*"))


def test_line_numbers_in_messages_are_lines_of_the_file(study, tmp_path, capsys):
    lines = _uneven(raw_readings(study, 1100, start=1080)).to_csv(index=False).splitlines()
    lines.insert(3, "")  # a blank line: skipped as a row, counted as a line
    (tmp_path / "readings.csv").write_text("\n".join(lines) + "\n")
    assert main([str(run_dir(study)), str(tmp_path / "readings.csv")]) == 2
    err = capsys.readouterr().err
    first, second = (int(n) for n in re.search(r"lines (\d+) and (\d+)", err).groups())
    earlier, later = re.search(r"apart: (.+) then (.+) \(lines", err).groups()
    assert lines[first - 1].startswith(earlier + ",") and lines[second - 1].startswith(later + ","), err


def test_readings_out_of_range_are_used_when_allowed_and_a_forecast_that_is_not_finite_is_refused(study, tmp_path,
                                                                                                    capsys):
    limit = 2 * json.loads((run_dir(study) / "model_card.json").read_text())["training_max"]
    forecasts = {}
    for reading in (f"{1.5 * limit:g}", "1e300"):
        readings, output = tmp_path / f"{reading}.csv", tmp_path / f"{reading}-forecast.csv"
        _reading("3", -1, reading)(raw_readings(study, 1100, start=1080)).to_csv(readings, index=False)
        forecasts[reading] = main([str(run_dir(study)), str(readings), "-o", str(output), "--allow-out-of-range"])
        assert output.exists() == (forecasts[reading] == 0)
    assert forecasts == {f"{1.5 * limit:g}": 0, "1e300": 2}
    assert np.isfinite(pd.read_csv(tmp_path / f"{1.5 * limit:g}-forecast.csv")["forecast"]).all()
    err = capsys.readouterr().err.strip()
    assert err == (f"predict: {tmp_path / '1e300.csv'}: the forecast is not finite: the readings lie too far outside "
                   "those of the training days (model_card.json training_max) for the model; correct them")


def test_an_inf_reading_is_a_missing_one(study, tmp_path, capsys):
    printed = []
    for missing in ("", "inf", "-inf", "0"):
        _reading("5", -3, missing)(raw_readings(study, 1100, start=1080)).to_csv(tmp_path / "r.csv", index=False)
        assert main([str(run_dir(study)), str(tmp_path / "r.csv")]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[1:] == printed[:1] * 3


def test_utc_offsets_that_change_at_a_daylight_saving_switch_are_accepted(study, tmp_path, capsys):
    table = raw_readings(study, 1100, start=1080)
    table.to_csv(tmp_path / "local.csv", index=False)
    # 20 steps across 2024-03-10 02:00 PST, when Los Angeles moved to PDT (-08:00 -> -07:00)
    utc = pd.date_range("2024-03-10 09:10", periods=len(table), freq="5min", tz="UTC")
    table["timestamp"] = [t.isoformat() for t in utc.tz_convert("America/Los_Angeles")]
    assert table["timestamp"].iloc[0].endswith("-08:00") and table["timestamp"].iloc[-1].endswith("-07:00")
    table.to_csv(tmp_path / "offsets.csv", index=False)
    forecasts = []
    for name in ("local.csv", "offsets.csv"):
        assert main([str(run_dir(study)), str(tmp_path / name)]) == 0, capsys.readouterr().err
        forecasts.append(pd.read_csv(io.StringIO(capsys.readouterr().out)))
    np.testing.assert_array_equal(forecasts[1]["forecast"], forecasts[0]["forecast"])
    newest = pd.Timestamp(table["timestamp"].iloc[-1])
    assert forecasts[1]["timestamp"].iloc[:3].tolist() == [str(newest + pd.Timedelta(minutes=m)) for m in (15, 30, 45)]
    assert forecasts[1]["timestamp"].iloc[0].endswith("-07:00")


def test_the_output_suffix_may_be_upper_case(study, tmp_path):
    raw_readings(study, 1100, start=1080).to_csv(tmp_path / "readings.csv", index=False)
    assert main([str(run_dir(study)), str(tmp_path / "readings.csv"), "-o", str(tmp_path / "forecast.CSV")]) == 0
    assert pd.read_csv(tmp_path / "forecast.CSV").columns.tolist() == ["station", "timestamp", "horizon_min",
                                                                       "forecast"]


def test_an_output_that_is_the_readings_file_is_refused_and_the_readings_kept(study, tmp_path, capsys, monkeypatch):
    raw_readings(study, 1100, start=1080).to_csv(tmp_path / "readings.csv", index=False)
    before = (tmp_path / "readings.csv").read_bytes()
    monkeypatch.chdir(tmp_path)
    same = f"{tmp_path}/./readings.csv"  # the same file, named another way
    assert main([str(run_dir(study)), "readings.csv", "-o", same]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"predict: -o {same} is the readings file readings.csv; name another file for the forecasts"
    assert (tmp_path / "readings.csv").read_bytes() == before
    assert list(tmp_path.iterdir()) == [tmp_path / "readings.csv"]


def _without_onnx_files(folder: Path) -> None:
    for name in ("model.onnx", "start.onnx", "stream.onnx"):
        (folder / name).unlink()


def _truncated_stream(folder: Path) -> None:
    blob = (folder / "stream.onnx").read_bytes()
    (folder / "stream.onnx").write_bytes(blob[:len(blob) // 2])


def _one_more_station_on_the_card(folder: Path) -> None:
    card = json.loads((folder / "model_card.json").read_text())
    (folder / "model_card.json").write_text(json.dumps({**card, "stations": [*card["stations"], "99"]}))


def _stream_of_another_model(folder: Path) -> None:
    # the same stations and steps, other channels: its streaming state does not fit start.onnx's
    other = export_bytes(ring_model(DATASET["n_nodes"], ((1, 4, 8), (8, 4, 16))))
    (folder / "stream.onnx").write_bytes(other["stream"])


BROKEN_RUN_FOLDERS = {
    "no ONNX files": (_without_onnx_files, "start.onnx not found beside its model card; export the model again with "
                                           "`snakemake {run}/start.onnx`"),
    "truncated stream.onnx": (_truncated_stream, "{run}: ONNX Runtime cannot use the files (Load model from "
                                                 "{run}/stream.onnx failed:Protobuf parsing failed.); export the "
                                                 "model again"),
    "card of another station count": (_one_more_station_on_the_card,
                                      "{run}/start.onnx: input 'window' of shape [batch, 12, 10], but its model "
                                      "card's 12 steps of 11 stations need [batch, 12, 11]: not the same model"),
    "stream.onnx of another model": (_stream_of_another_model, "{run}: ONNX Runtime cannot run the files ("),
}


@pytest.mark.parametrize("case", BROKEN_RUN_FOLDERS)
def test_a_run_folder_with_broken_model_files_gives_one_message_and_no_forecast(study, tmp_path, capsys, case):
    spoil, message = BROKEN_RUN_FOLDERS[case]
    run = shutil.copytree(run_dir(study), tmp_path / "run")
    spoil(run)
    raw_readings(study, 1100, start=1080).to_csv(tmp_path / "readings.csv", index=False)
    assert main([str(run), str(tmp_path / "readings.csv"), "-o", str(tmp_path / "forecast.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("predict: ") and "\n" not in err and message.format(run=run) in err, err
    assert not (tmp_path / "forecast.csv").exists()


BAD_OUTPUTS = {
    "an existing folder": ("forecast.csv", "is a folder; name a file, e.g. {output}/forecast.csv"),
    "a path under a file": ("readings.csv/forecast.csv", "cannot write it (File exists: {tmp}/readings.csv); name a "
                                                         "file in a folder you can write to"),
    "parquet without pyarrow": ("forecast.parquet", "writing parquet needs pyarrow (pip install pyarrow); or name a "
                                                    ".csv file"),
    "another suffix": ("forecast.txt", "name a .csv (or .parquet) file"),
}


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_an_output_that_cannot_be_written_gives_one_message_and_leaves_nothing(study, tmp_path, capsys, monkeypatch,
                                                                                case):
    name, message = BAD_OUTPUTS[case]
    raw_readings(study, 1100, start=1080).to_csv(tmp_path / "readings.csv", index=False)
    output = tmp_path / name
    if case == "an existing folder":
        output.mkdir()
    for module in ("pyarrow.parquet", "fastparquet") if case == "parquet without pyarrow" else ():
        monkeypatch.setitem(sys.modules, module, None)  # no parquet engine to import (pandas itself uses pyarrow)
    before = sorted(tmp_path.rglob("*"))
    assert main([str(run_dir(study)), str(tmp_path / "readings.csv"), "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"predict: -o {output}" + (" " if case == "an existing folder" else ": ") + \
        message.format(output=output, tmp=tmp_path), err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_folder_without_a_model_card_names_the_file_and_how_to_make_it(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "readings.csv")]) == 2
    err = capsys.readouterr().err
    assert "model_card.json not found" in err and "snakemake" in err


def test_with_causal_fill_predict_gives_the_pipelines_forecasts_of_every_test_window(study, causal_study, tmp_path):
    card = json.loads((run_dir(causal_study) / "model_card.json").read_text())
    assert card["fill"] == "causal"
    forecaster = Forecaster(run_dir(causal_study))
    test_start = sum(DATA.split[:2]) * DATA.steps_per_day
    per_day = DATA.steps_per_day - DATA.n_his - DATA.n_pred + 1
    history = 6 * DATA.n_his  # readings before each window: enough for a reading before every gap in it
    header, *lines = raw_readings(study, test_start + per_day + DATA.n_his, start=test_start - history).to_csv(
        index=False).splitlines()
    ours = []
    for window in range(per_day):
        (tmp_path / "readings.csv").write_text("\n".join([header, *lines[window:window + history + DATA.n_his]]))
        forecast = forecaster.forecast(tmp_path / "readings.csv", all_steps=True)["forecast"].to_numpy()
        ours.append(forecast.reshape(DATASET["n_nodes"], DATA.n_pred).T)
    pipeline = np.load(run_dir(causal_study) / "predictions.npz")["prediction"]
    assert pipeline.shape == (per_day, DATA.n_pred, DATASET["n_nodes"])
    np.testing.assert_allclose(np.stack(ours), pipeline, rtol=1e-5, atol=1e-4)
