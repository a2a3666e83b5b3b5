"""Raw files -> cleaned table -> day split, training-only scaler and windows that never cross a day."""
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_file
from kdstgcn.data.clean import DataError, clean, read_values, timestamps
from kdstgcn.data.samples import NORMALISED_FOLDER, WindowedSeries, prepare, split_days
from kdstgcn.runtime.io import write_table


# ---------------------------------------------------------------- cleaning

def test_clean_interpolates_per_station_and_fills_edges_by_nearest_value():
    values = np.array([
        # station 0: zero / NaN gaps inside and at both ends; station 1 complete; station 2 never reads
        [0.0, 1.0, 0.0],
        [2.0, 2.0, np.nan],
        [np.nan, 3.0, 0.0],
        [np.nan, 4.0, 0.0],
        [8.0, 5.0, 0.0],
        [0.0, 6.0, 0.0],
    ])
    index = timestamps(6, 3, "2024-01-01", False)
    table, report = clean(values, index)
    np.testing.assert_allclose(table["0"].to_numpy(), [2, 2, 4, 6, 8, 8])
    np.testing.assert_allclose(table["1"].to_numpy(), [1, 2, 3, 4, 5, 6])
    assert np.isfinite(table.to_numpy()).all()
    assert report["missing"].tolist() == [4, 0, 6]
    np.testing.assert_allclose(report["missing_pct"], [400 / 6, 0.0, 100.0])
    assert report["all_missing"].tolist() == [False, False, True]
    # the dead station is filled with one finite value (the mean of all readings) and flagged
    readings = values[np.isfinite(values) & (values != 0)]
    np.testing.assert_allclose(table["2"].to_numpy(), readings.mean(), rtol=1e-6)


def test_clean_interpolates_in_time_not_across_stations():
    rng = np.random.default_rng(0)
    values = rng.uniform(40, 70, size=(8, 4))
    values[3, 1] = 0.0
    table, report = clean(values, timestamps(8, 4, "2024-01-01", False))
    assert table.iloc[3, 1] == pytest.approx((values[2, 1] + values[4, 1]) / 2, rel=1e-6)
    keep = np.ones_like(values, bool)
    keep[3, 1] = False
    np.testing.assert_allclose(table.to_numpy()[keep], values[keep], rtol=1e-6)
    assert report["missing"].sum() == 1


def test_clean_rejects_partial_days():
    with pytest.raises(DataError):
        clean(np.ones((7, 2)), timestamps(7, 3, "2024-01-01", False))


def test_timestamps_weekdays_only_skip_weekends():
    idx = timestamps(288 * 6, 288, "2012-05-01", True)  # Tue 1 May 2012
    days = pd.DatetimeIndex(idx.normalize().unique())
    assert len(idx) == 288 * 6 and len(days) == 6
    assert (days.day_of_week < 5).all() and days[-1] == pd.Timestamp("2012-05-08")
    assert idx[1] - idx[0] == pd.Timedelta(minutes=5)


# ---------------------------------------------------------------- split, scaler, windows

def step_numbers(n_days: int, steps_per_day: int, n_nodes: int) -> np.ndarray:
    return np.repeat(np.arange(n_days * steps_per_day, dtype=float)[:, None], n_nodes, axis=1)


def test_split_whole_days_in_order():
    parts = split_days(step_numbers(7, 10, 2), 10, (4, 2, 1))
    assert [parts[k].shape for k in ("train", "val", "test")] == [(4, 10, 2), (2, 10, 2), (1, 10, 2)]
    assert parts["train"][0, 0, 0] == 0 and parts["train"][-1, -1, 0] == 39
    assert parts["val"][0, 0, 0] == 40 and parts["val"][-1, -1, 0] == 59
    assert parts["test"][0, 0, 0] == 60 and parts["test"][-1, -1, 0] == 69
    with pytest.raises(DataError, match="split"):
        split_days(step_numbers(7, 10, 2), 10, (5, 2, 1))


def test_windows_never_cross_a_day():
    steps = 288
    days = step_numbers(3, steps, 2).reshape(3, steps, 2)
    windows = WindowedSeries.cut(torch.from_numpy(days), 21)
    assert windows.shape == (3 * 268, 21, 2)
    t = windows[:][:, :, 0].numpy()
    assert (np.diff(t, axis=1) == 1).all()                            # consecutive steps
    assert (t[:, 0] // steps == t[:, -1] // steps).all()              # start and end on the same day
    assert sorted(set((t[:, 0] // steps).astype(int))) == [0, 1, 2]
    np.testing.assert_array_equal(np.bincount((t[:, 0] // steps).astype(int)), [268, 268, 268])
    assert t[:, 0].max() % steps == steps - 21                       # last window ends on the last slot


def write_clean(folder, values: np.ndarray, steps_per_day: int, all_missing=None):
    index = timestamps(values.shape[0], steps_per_day, "2024-01-01", False)
    frame = pd.DataFrame(values.astype("float32"), index=index, columns=[str(i) for i in range(values.shape[1])])
    report = pd.DataFrame({"station": np.arange(values.shape[1]), "missing": 0, "missing_pct": 0.0,
                           "all_missing": all_missing if all_missing is not None else False, "constant": False})
    write_table(frame, folder / "values.parquet", index=True)
    write_table(report, folder / "fill_report.csv")
    return folder / "values.parquet", folder / "fill_report.csv"


def test_scaler_uses_training_days_only(tmp_path):
    spd, split = 30, (3, 1, 2)
    rng = np.random.default_rng(1)
    values = rng.uniform(40, 70, size=(spd * sum(split), 4))
    data = prepare(*write_clean(tmp_path, values, spd), spd, split, 12, 9)
    train = values[: 3 * spd]
    assert data.scaler.mean == pytest.approx(train.mean(), rel=1e-5)
    assert data.scaler.std == pytest.approx(train.std(), rel=1e-4)

    changed = values.copy()
    changed[3 * spd:] = changed[3 * spd:] * 5 + 100  # validation and test days only
    (tmp_path / "b").mkdir()
    moved = prepare(*write_clean(tmp_path / "b", changed, spd), spd, split, 12, 9)
    assert moved.scaler == data.scaler
    assert torch.equal(moved.windows["train"][:], data.windows["train"][:])
    assert not torch.equal(moved.windows["test"][:], data.windows["test"][:])

    changed = values.copy()
    changed[0, 0] += 500.0  # a training reading does move it
    (tmp_path / "c").mkdir()
    assert prepare(*write_clean(tmp_path / "c", changed, spd), spd, split, 12, 9).scaler.mean != data.scaler.mean


def test_prepare_windows_and_targets(tmp_path):
    spd, split = 30, (2, 1, 1)
    values = step_numbers(4, spd, 3) + 1.0
    data = prepare(*write_clean(tmp_path, values, spd, all_missing=[False, True, False]), spd, split, 12, 9)
    per_day = spd - 21 + 1
    assert {k: tuple(v.shape) for k, v in data.windows.items()} == {
        "train": (2 * per_day, 21, 3), "val": (per_day, 21, 3), "test": (per_day, 21, 3)}
    raw = data.scaler.inverse(data.windows["test"][:].double().numpy())
    np.testing.assert_allclose(raw[0, :, 0], np.arange(3 * spd, 3 * spd + 21) + 1.0, rtol=1e-5)
    assert tuple(data.inputs("train").shape) == (2 * per_day, 12, 3)
    assert torch.equal(data.one_step_targets("train")[:], data.windows["train"][:][:, 12])
    assert tuple(data.future("val").shape) == (per_day, 9, 3)
    assert data.station_mask.tolist() == [True, False, True]


def sliding_windows(days: np.ndarray, length: int) -> np.ndarray:
    """The windows copied out of the days [D, S, N], day by day and in each day by first step: [W, length, N]."""
    per_day = np.lib.stride_tricks.sliding_window_view(days, length, axis=1)  # [D, S - length + 1, N, length]
    return per_day.transpose(0, 1, 3, 2).reshape(-1, length, days.shape[2])


def test_indexed_windows_are_the_windows_copied_out_of_the_days():
    days = np.random.default_rng(4).standard_normal((3, 30, 5)).astype(np.float32)
    expected = sliding_windows(days, 21)
    windows = WindowedSeries.cut(torch.from_numpy(days), 21)
    assert windows.shape == expected.shape == (30, 21, 5) and len(windows) == 30
    idx = torch.tensor([29, 0, 7, 7, 13])
    for got, want in ((windows[:], expected), (windows[idx], expected[idx.numpy()]), (windows[3], expected[3]),
                      (windows[4:9], expected[4:9])):
        np.testing.assert_array_equal(got.numpy(), want)
    inputs, target, future = windows.narrow(1, 0, 12), windows.select(1, 12), windows.narrow(1, 12, 9)
    assert inputs.shape == (30, 12, 5) and target.shape == (30, 5) and future.narrow(1, 0, 4).shape == (30, 4, 5)
    np.testing.assert_array_equal(inputs[idx].numpy(), expected[idx.numpy(), :12])
    np.testing.assert_array_equal(target[idx].numpy(), expected[idx.numpy(), 12])
    np.testing.assert_array_equal(future.narrow(1, 0, 4)[idx].numpy(), expected[idx.numpy(), 12:16])
    with pytest.raises(IndexError, match="inside them"):
        windows.narrow(1, 12, 10)


def test_prepared_windows_hold_the_days_normalised_in_float64_then_cast(tmp_path):
    spd, split = 30, (2, 1, 1)
    values = np.random.default_rng(5).uniform(40, 70, size=(spd * sum(split), 3))
    data = prepare(*write_clean(tmp_path, values, spd), spd, split, 12, 9)
    table = pd.read_parquet(tmp_path / "values.parquet").to_numpy(np.float64)
    days = ((table - data.scaler.mean) / data.scaler.std).astype(np.float32).reshape(sum(split), spd, 3)
    for name, part in zip(("train", "val", "test"), np.split(days, np.cumsum(split)[:-1])):
        np.testing.assert_array_equal(data.windows[name][:].numpy(), sliding_windows(part, 21))


def test_memory_mapped_days_give_the_batches_of_days_in_memory(tmp_path, caplog):
    """Above the size threshold (here 0 bytes) the normalised days are written once to a file named by the digest
    of the table and the cut, and mapped from it: the same scaler and batches; a changed table gets its own file."""
    spd, split = 30, (2, 1, 1)
    values = np.random.default_rng(6).uniform(40, 70, size=(spd * sum(split), 4))
    paths = write_clean(tmp_path, values, spd)
    in_memory = prepare(*paths, spd, split, 12, 9)
    assert not (tmp_path / NORMALISED_FOLDER).exists()
    with caplog.at_level(logging.INFO, logger="kdstgcn"):
        mapped = prepare(*paths, spd, split, 12, 9, mmap_min_bytes=0)
        again = prepare(*paths, spd, split, 12, 9, mmap_min_bytes=0)
    assert caplog.text.count("written to") == 1  # the second reads the file back
    assert sorted(p.suffix for p in (tmp_path / NORMALISED_FOLDER).iterdir()) == [".json", ".npy"]  # no .part left
    assert mapped.scaler == again.scaler == in_memory.scaler
    idx = torch.tensor([9, 0, 4, 4, 7])
    for data in (mapped, again):
        for name in ("train", "val", "test"):
            for view in ("inputs", "one_step_targets", "future"):
                assert torch.equal(getattr(data, view)(name)[idx], getattr(in_memory, view)(name)[idx])

    changed = values.copy()
    changed[-1, 0] += 1.0  # a test reading
    write_clean(tmp_path, changed, spd)
    moved = prepare(*paths, spd, split, 12, 9, mmap_min_bytes=0)
    assert len(list((tmp_path / NORMALISED_FOLDER).glob("*.npy"))) == 2
    assert not torch.equal(moved.windows["test"][:], mapped.windows["test"][:])
    assert torch.equal(moved.windows["train"][:], mapped.windows["train"][:])


# ---------------------------------------------------------------- reading raw files

def test_read_values_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "speeds.csv"
    np.savetxt(path, np.ones((10, 5)), delimiter=",")
    assert read_values(path, "csv_matrix", 5, steps=10).shape == (10, 5)
    with pytest.raises(DataError, match="speeds.csv") as info:
        read_values(path, "csv_matrix", 4, steps=10)
    assert "(10, 5)" in str(info.value)
    with pytest.raises(DataError, match="speeds.csv"):
        read_values(path, "csv_matrix", 5, steps=12)


def test_read_values_truncated_csv_names_the_file(tmp_path):
    full = tmp_path / "full.csv"
    np.savetxt(full, np.arange(60.0).reshape(12, 5), delimiter=",")
    cut = tmp_path / "cut.csv"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(DataError, match="cut.csv"):
        read_values(cut, "csv_matrix", 5, steps=12)


def test_read_values_truncated_mat_names_the_file(tmp_path, shared_data):
    source = shared_file(shared_data, "pems08/pems08_288_62_170.mat").read_bytes()
    cut = tmp_path / "flow.mat"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(DataError, match="flow.mat"):
        read_values(cut, "mat_day_major", 170, 17856, key="T")


def test_read_values_truncated_npz_names_the_file(tmp_path):
    full = tmp_path / "full.npz"
    np.savez(full, data=np.ones((50, 4, 3)))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(DataError, match="cut.npz"):
        read_values(cut, "npz", 4, 50, key="data", channel=2)


def test_read_values_not_a_data_file(tmp_path):
    path = tmp_path / "page.npz"
    path.write_bytes(b"<!DOCTYPE html><html>GitHub: not found</html>")  # a saved web page, not data
    with pytest.raises(DataError, match="page.npz"):
        read_values(path, "npz", 4, key="data", channel=2)


def test_read_real_pems08_speed_slice(shared_data):
    path = shared_file(shared_data, "pems08/pems08_speed_first1282.npz")
    speed = read_values(path, "npz", 170, steps=1282, key="data", channel=2)
    assert speed.shape == (1282, 170) and speed.dtype == np.float64
    assert speed.min() == pytest.approx(3.9, abs=0.05) and speed.max() == pytest.approx(79.9, abs=0.05)
    assert speed.mean() == pytest.approx(65.09, abs=0.01)
    with pytest.raises(DataError, match="pems08_speed_first1282.npz"):
        read_values(path, "npz", 170, steps=17856, key="data", channel=2)


def test_read_real_pems08_flow_mat_day_major(shared_data):
    flow = read_values(shared_file(shared_data, "pems08/pems08_288_62_170.mat"), "mat_day_major", 170,
                       steps=17856, key="T")
    assert flow.shape == (17856, 170)
    np.testing.assert_array_equal(flow[0, :4], [133, 210, 124, 145])
    assert flow.mean() == pytest.approx(230.68, abs=0.01)
    # day-major order agrees with channel 0 (flow) of the real PEMS08 prefix
    prefix = shared_file(shared_data, "pems08/pems08_speed_first1282.npz")
    np.testing.assert_array_equal(flow[:1282], read_values(prefix, "npz", 170, 1282, key="data", channel=0))
