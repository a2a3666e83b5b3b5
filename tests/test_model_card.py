"""The model card (kdstgcn.deploy.model_card): what it records, read back as `predict` reads it, a card written
before the fill and the training maximum were recorded still read, and a missing, outdated or broken card refused
with a message naming the file and the fix."""
import json
import re

import pandas as pd
import pytest

from kdstgcn.config.layout import DEPLOY_FILES
from kdstgcn.deploy.model_card import (CARD_VERSION, CardError, build_card, code_version, metrics_by_horizon,
                                       read_card, split_days, write_card)


def card(**changes) -> dict:
    index = pd.date_range("2024-01-01", periods=5 * 288, freq="5min")
    metrics = pd.DataFrame([{"horizon_min": h, "metric": m, "ours": h / 10 + k}
                            for h in (15, 30, 45) for k, m in enumerate(("MAE", "RMSE", "MAPE"))])
    values = dict(dataset="demo", seed=0, model="student_stcd", stations=["400001", "400017", "7"], mean=58.25,
                  std=9.5, training_max=81.5, fill="causal", units="speed (mph)", description="a test network",
                  precision="bf16",
                  steps_per_day=288, step_minutes=5, n_his=12, n_pred=9, horizons=[3, 6, 9],
                  days=split_days(index, 288, (3, 1, 1)), test_metrics=metrics_by_horizon(metrics))
    return build_card(**(values | changes))


def test_a_card_holds_what_predict_needs_and_reads_back(tmp_path):
    written = card()
    write_card(written, tmp_path / DEPLOY_FILES["card"])
    read = read_card(tmp_path)
    assert read.stations == ["400001", "400017", "7"]  # input order, ids as text
    assert (read.mean, read.std, read.step_minutes, read.n_his, read.n_pred) == (58.25, 9.5, 5, 12, 9)
    assert read.horizons == [3, 6, 9] and read.units == "speed (mph)"
    assert (read.fill, read.training_max) == ("causal", 81.5)
    assert read.path("stream") == tmp_path / "stream.onnx" and read.path("start") == tmp_path / "start.onnx"
    on_disk = json.loads((tmp_path / "model_card.json").read_text())
    assert on_disk["normalisation"]["fitted_on"] == "training days"
    assert on_disk["trained_on"]["days"] == {"train": {"days": 3, "first": "2024-01-01", "last": "2024-01-03"},
                                             "val": {"days": 1, "first": "2024-01-04", "last": "2024-01-04"},
                                             "test": {"days": 1, "first": "2024-01-05", "last": "2024-01-05"}}
    assert on_disk["trained_on"]["precision"] == "bf16"
    assert on_disk["test_metrics"][1] == {"horizon_min": 30, "MAE": 3.0, "RMSE": 4.0, "MAPE": 5.0}
    assert set(on_disk) == {"card_version", "model", "dataset", "seed", "files", "stations", "units",
                            "normalisation", "training_max", "fill", "steps_per_day", "step_minutes", "n_his",
                            "n_pred", "horizons", "trained_on", "test_metrics", "code_version"}


def test_the_code_version_names_the_package_and_the_commit():
    assert re.match(r"kdstgcn \S+, git [0-9a-f]{40}( \+ uncommitted changes)?$", code_version())


def test_a_card_without_fill_or_training_max_reads_as_interpolated_with_no_upper_bound(tmp_path):
    old = {k: v for k, v in card().items() if k not in ("fill", "training_max")}
    (tmp_path / "model_card.json").write_text(json.dumps(old))
    read = read_card(tmp_path)
    assert (read.fill, read.training_max) == ("interpolate", None)


@pytest.mark.parametrize("content, message", [
    (None, "model_card.json not found"),
    ({**card(), "card_version": CARD_VERSION + 1}, "export the model again"),
    ("{not json", "not a readable model card"),
    ({k: v for k, v in card().items() if k != "normalisation"}, "not a readable model card (KeyError"),
    ({**card(), "normalisation": {"mean": 58.25, "std": 0.0}}, "std 0; the std must be a positive number"),
    ({**card(), "fill": "cubic"}, "fill 'cubic', this code knows interpolate, causal"),
])
def test_a_missing_outdated_or_broken_card_is_refused_naming_it(tmp_path, content, message):
    if content is not None:
        (tmp_path / "model_card.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CardError, match=re.escape(message)) as info:
        read_card(tmp_path)
    assert str(tmp_path / "model_card.json") in str(info.value)
