"""What the training and evaluation entry points do, as plain functions of paths and specs (unit-testable)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import PreparedData, prepare
from .evaluate import evaluate
from .graph import chebyshev_polynomials
from .io import atomic_path, write_json, write_table, write_tables
from .losses import build_loss
from .model import STGCN, Architecture, count_parameters, load_model, save_model
from .paper import beside_paper
from .train import TrainSettings, pick_device, train

log = logging.getLogger(__name__)


def load_data(values: str, fill_report: str, data: dict) -> PreparedData:
    return prepare(values, fill_report, data["steps_per_day"], tuple(data["split"]), data["n_his"], data["n_pred"])


def load_cheb(adjacency: str, ks: int) -> torch.Tensor:
    return chebyshev_polynomials(pd.read_parquet(adjacency).to_numpy(), ks)


def train_run(run: dict, values: str, fill_report: str, adjacency: str, model_out: str, history_out: str,
              info_out: str, checkpoint: str, teacher_path: str | None = None) -> STGCN:
    """Train one model from its run spec; write the whole model, its per-epoch history and a summary."""
    data = load_data(values, fill_report, run["data"])
    arch = Architecture.from_dict(run["arch"])
    torch.manual_seed(run["train"]["seed"])
    model = STGCN(arch, load_cheb(adjacency, arch.ks))
    settings = TrainSettings(**{**run["train"], "horizons": tuple(run["train"]["horizons"])})
    loss = build_loss(run["loss"]["name"], run["loss"]["params"])
    teacher = load_model(teacher_path)[0] if teacher_path else None
    log.info("%s on %s: %s, %d parameters, loss %s, %d training windows, device %s", run["role"], run["dataset"],
             run["arch"]["blocks"], count_parameters(model), run["loss"], data.inputs("train").shape[0],
             pick_device(run["device"]))
    model, history = train(model, data, loss, settings, checkpoint, teacher, pick_device(run["device"]),
                           run_config={k: run[k] for k in ("dataset", "role", "data", "loss")})
    best = history.loc[history["val_mae"].idxmin()]
    extra = {"run": run, "best_epoch": int(best["epoch"]), "best_val_mae": float(best["val_mae"]),
             "epochs_run": int(history["epoch"].max()), "teacher_share_pct": loss.share_pct(),
             "parameters": count_parameters(model), "seconds_per_epoch": float(history["epoch_seconds"].mean())}
    write_table(history, history_out)
    write_json(extra, info_out)
    save_model(model, model_out, extra)
    Path(checkpoint).unlink(missing_ok=True)
    log.info("best epoch %d (val MAE %.4f); model written to %s", extra["best_epoch"], extra["best_val_mae"], model_out)
    return model


def evaluate_run(model_path: str, values: str, fill_report: str, data: dict, horizons, step_minutes: int,
                 device: str, eval_batch_size: int, paper_name: str, model_name: str,
                 metrics_csv: str, metrics_parquet: str, predictions_out: str) -> pd.DataFrame:
    """Roll the model over the test days; write metrics beside the paper's and the de-normalised predictions."""
    prepared = load_data(values, fill_report, data)
    model, extra = load_model(model_path)
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


@torch.no_grad()
def hidden_maps(model_path: str, values: str, fill_report: str, data: dict, start: int, count: int) -> np.ndarray:
    """Channel-mean hidden representation (input of the output layer) of `count` test windows: [count, T * N]."""
    prepared = load_data(values, fill_report, data)
    model, _ = load_model(model_path)
    model.eval()
    x = prepared.inputs("test")[start:start + count]
    _, features = model(x, return_features=True)
    return features["hidden"].mean(dim=1).flatten(1).numpy()
