"""Multi-step rollout (each prediction fed back as the newest input) and masked MAE / RMSE / MAPE."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kdstgcn.data.samples import PreparedData, Scaler, WindowedSeries
from kdstgcn.runtime.precision import autocast
from kdstgcn.runtime.sizes import cpu_chunk_windows

ROLLOUT_MODES = ("streaming", "full")


def cpu_chunk(model: torch.nn.Module, batch_size: int) -> int:
    """Windows per pass of `rollout` on a CPU (`cpu_chunk_windows` of the model's largest activation)."""
    return cpu_chunk_windows(4 * model.largest_activation_floats(), batch_size)


@torch.no_grad()
def rollout(model: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, steps: int, batch_size: int = 1140,
            mode: str = "streaming", precision: str = "fp32") -> torch.Tensor:
    """Predict `steps` steps ahead for windows [W, n_his, N] by feeding predictions back: [W, steps, N] on the CPU.

    At most `batch_size` windows pass through the model at once; on a CPU fewer (`cpu_chunk`, faster there). Of
    windows given as a `WindowedSeries`, each batch is gathered as it passes.

    mode "full" recomputes the whole forward pass of each moved window (what the paper timed); "streaming"
    (default) runs the full pass once and then only the newest time position of each layer per step
    (`STGCN.stream_step`): the same predictions to float rounding, several times fewer FLOPs. Both stay on
    the model's device until a batch is done (one copy to the host per batch, no host sync in between).
    `precision` (kdstgcn.runtime.precision): the forward passes run in bfloat16 autocast for bf16; the
    predictions, and so the inputs fed back, are float32 either way.
    """
    if mode not in ROLLOUT_MODES:
        raise ValueError(f"rollout mode {mode!r} is not one of {ROLLOUT_MODES}")
    model.eval()
    device = next(model.parameters()).device
    if device.type == "cpu":
        batch_size = cpu_chunk(model, batch_size)
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        window = inputs[start:start + batch_size].to(device, non_blocking=True)
        preds = torch.empty(window.shape[0], steps, window.shape[2], device=device)
        with autocast(precision, device):
            if mode == "full":
                for step in range(steps):
                    preds[:, step] = model(window)
                    window = torch.cat([window[:, 1:], preds[:, step, None]], dim=1)
            elif steps > 0:
                preds[:, 0], state = model.start_stream(window)
                for step in range(1, steps):
                    preds[:, step] = model.stream_step(preds[:, step - 1], state)
        out.append(preds.cpu())
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
             batch_size: int = 1140, mode: str = "streaming", precision: str = "fp32"
             ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Roll the model over a split (`rollout` in `mode` and `precision`); return the metric table, predictions
    and truth in original units."""
    steps = max(horizons)
    pred = denormalise(rollout(model, data.inputs(split), steps, batch_size, mode, precision), data.scaler)
    truth = denormalise(data.future(split, steps)[:], data.scaler)  # every window at once: the metrics take all
    table = horizon_metrics(pred, truth, horizons, step_minutes, data.station_mask.numpy())
    return table, pred, truth
