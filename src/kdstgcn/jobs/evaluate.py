"""The evaluation job: a trained model rolled over the test days, its metrics beside the paper's."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from kdstgcn.config.datasets import DataSpec
from kdstgcn.data.samples import load_data
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.jobs.memory import check_evaluate_memory
from kdstgcn.model.persist import count_parameters, load_model
from kdstgcn.report.published import beside_paper
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import atomic_path, write_tables

log = logging.getLogger(__name__)


def evaluate_run(model_path: str, values: str, fill_report: str, data: DataSpec, horizons, step_minutes: int,
                 device: str, eval_batch_size: int, paper_name: str, model_name: str,
                 metrics_csv: str, metrics_parquet: str, predictions_out: str) -> pd.DataFrame:
    """Roll the model over the test days; write metrics beside the paper's and the de-normalised predictions."""
    model, extra = load_model(model_path)
    check_evaluate_memory(model, model_path, data, horizons, eval_batch_size, device)
    prepared = load_data(values, fill_report, data)
    model.to(pick_device(device))
    table, pred, truth = evaluate(model, prepared, "test", horizons, step_minutes, eval_batch_size)
    table = beside_paper(table, paper_name, model_name)
    table.insert(0, "model", model_name)
    table["parameters"] = count_parameters(model)
    table["epochs_run"] = extra.get("epochs_run")
    table["best_epoch"] = extra.get("best_epoch")
    for _, row in table.iterrows():
        log.info("%s %2d min %-4s ours %.4f paper %s", model_name, row["horizon_min"], row["metric"], row["ours"],
                 "-" if pd.isna(row["paper"]) else f"{row['paper']:.3f}")
    write_tables(table, metrics_csv, metrics_parquet)
    with atomic_path(predictions_out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, prediction=pred.astype(np.float32), truth=truth.astype(np.float32),
                                extra=json.dumps({k: v for k, v in extra.items() if k != "run"}))
    return table
