"""The export job: a trained model -> its ONNX files, checked against the model on test windows, and its model
card."""
from __future__ import annotations

import logging

import pandas as pd

from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.layout import parse_run_path
from kdstgcn.data.samples import load_data
from kdstgcn.deploy.export import check_export, export_bytes, write_files
from kdstgcn.deploy.model_card import build_card, metrics_by_horizon, split_days, write_card
from kdstgcn.jobs.memory import check_export_memory
from kdstgcn.model.persist import load_model
from kdstgcn.runtime.sizes import export_check_windows

log = logging.getLogger(__name__)


def export_run(model_path: str, metrics_csv: str, values: str, fill_report: str, data: DataSpec, units: str,
               description: str, fill: str, horizons, step_minutes: int, outputs: dict[str, str]) -> dict:
    """Export the model at `model_path` (outputs: model, start, stream -> ONNX file, card -> model_card.json), whose
    data `values` had its gaps filled as `fill` says; return the card."""
    model, extra = load_model(model_path)
    check_export_memory(model, model_path, data)
    place = parse_run_path(model_path)
    prepared = load_data(values, fill_report, data)
    files = export_bytes(model)
    windows = prepared.inputs("test")[:export_check_windows(model.arch.n_nodes)]
    gap = check_export(model, files, windows, data.n_pred)
    log.info("%s: ONNX Runtime within %.2g of the model on %d test windows (one step and a %d-step rollout)",
             place.model, gap, len(windows), data.n_pred)
    table = pd.read_parquet(values)
    training_days = table.iloc[:data.split[0] * data.steps_per_day]  # the first days of the split
    card = build_card(dataset=place.dataset, seed=place.seed, model=place.model, stations=list(table.columns),
                      mean=prepared.scaler.mean, std=prepared.scaler.std,
                      training_max=float(training_days.to_numpy().max()), fill=fill, units=units,
                      description=description, precision=extra.get("precision", "fp32"),
                      steps_per_day=data.steps_per_day, step_minutes=step_minutes, n_his=data.n_his,
                      n_pred=data.n_pred, horizons=horizons,
                      days=split_days(pd.DatetimeIndex(table.index), data.steps_per_day, data.split),
                      test_metrics=metrics_by_horizon(pd.read_csv(metrics_csv)))
    write_files(files, outputs)
    write_card(card, outputs["card"])
    return card
