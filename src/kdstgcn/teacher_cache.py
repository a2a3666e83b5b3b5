"""The frozen teacher's one-step predictions on the training windows, computed once per run and kept on disk.

Response-only distillation losses (rd_l2, rd_kl, ord) read nothing of the teacher but its prediction, and the
teacher never changes during a run, so a teacher forward in every batch of every epoch recomputes the same
numbers. The cache file (`teacher_predictions.pt` beside the student's checkpoint) holds the predictions for
all training windows with the digests of the teacher's weights and of the windows they belong to; a file with
other digests (a retrained teacher, other data) is recomputed and replaced.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from .io import save_torch
from .model import weights_digest

log = logging.getLogger(__name__)

CACHE_NAME = "teacher_predictions.pt"


def tensor_digest(x: torch.Tensor) -> str:
    """Short content hash of a tensor (shape, dtype and values): which data the predictions belong to."""
    digest = hashlib.sha256(f"{tuple(x.shape)} {x.dtype}".encode())
    digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def predict(teacher: torch.nn.Module, inputs: torch.Tensor, batch_size: int,
            device: torch.device) -> torch.Tensor:
    """Teacher predictions [W, N] for windows [W, n_his, N], in batches of the training batch size (the
    shapes the per-batch forward would see), on CPU."""
    teacher = teacher.to(device).eval()
    with torch.inference_mode():
        rows = [teacher(inputs[start:start + batch_size].to(device)).cpu()
                for start in range(0, inputs.shape[0], batch_size)]
    return torch.cat(rows).clone()  # clone: a normal tensor, usable in autograd outside inference mode


def cached_teacher_predictions(teacher: torch.nn.Module, inputs: torch.Tensor, folder: str | Path,
                               batch_size: int, device: torch.device) -> torch.Tensor:
    """The teacher's predictions for `inputs`, read from `folder/teacher_predictions.pt` when its digests
    match, else computed once and written there atomically. Returned on CPU, one row per window."""
    key = {"teacher": weights_digest(teacher), "inputs": tensor_digest(inputs)}
    path = Path(folder) / CACHE_NAME
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") == key:
            log.info("teacher predictions for %d training windows read from %s", inputs.shape[0], path)
            return blob["predictions"]
        log.info("%s belongs to another teacher or other data: recomputing it", path)
    predictions = predict(teacher, inputs, batch_size, device)
    save_torch({"key": key, "predictions": predictions}, path)
    log.info("teacher predictions for %d training windows computed once and written to %s", inputs.shape[0], path)
    return predictions
