"""Multi-step rollout (each prediction fed back as the newest input) and masked MAE / RMSE / MAPE."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import PreparedData, Scaler


@torch.no_grad()
def rollout(model: torch.nn.Module, inputs: torch.Tensor, steps: int, batch_size: int = 1140) -> torch.Tensor:
    """Predict `steps` steps ahead for windows [W, n_his, N] by feeding predictions back: [W, steps, N]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        window = inputs[start:start + batch_size].to(device)
        preds = []
        for _ in range(steps):
            y = model(window)
            preds.append(y)
            window = torch.cat([window[:, 1:], y.unsqueeze(1)], dim=1)
        out.append(torch.stack(preds, dim=1).cpu())
    return torch.cat(out)


def horizon_metrics(pred: np.ndarray, truth: np.ndarray, horizons, step_minutes: int,
                    station_mask: np.ndarray | None = None) -> pd.DataFrame:
    """MAE, RMSE and MAPE (%) at each horizon (in steps) on de-normalised values [W, steps, N].

    MAPE uses only entries whose truth is > 0; stations outside `station_mask` are left out of every metric.
    """
    if station_mask is not None:
        pred, truth = pred[..., station_mask], truth[..., station_mask]
    rows = []
    for h in horizons:
        p, t = pred[:, h - 1], truth[:, h - 1]
        err = p - t
        positive = t > 0
        rows.append({
            "horizon_min": h * step_minutes,
            "MAE": float(np.abs(err).mean()),
            "RMSE": float(np.sqrt((err ** 2).mean())),
            "MAPE": float(100.0 * np.abs(err[positive] / t[positive]).mean()) if positive.any() else float("nan"),
        })
    return pd.DataFrame(rows)


def denormalise(x: torch.Tensor, scaler: Scaler) -> np.ndarray:
    return scaler.inverse(x.double().numpy())


def evaluate(model: torch.nn.Module, data: PreparedData, split: str, horizons, step_minutes: int = 5,
             batch_size: int = 1140) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Roll the model over a split; return the metric table, predictions and truth in original units."""
    steps = max(horizons)
    pred = denormalise(rollout(model, data.inputs(split), steps, batch_size), data.scaler)
    truth = denormalise(data.future(split)[:, :steps], data.scaler)
    table = horizon_metrics(pred, truth, horizons, step_minutes, data.station_mask.numpy())
    return table, pred, truth
