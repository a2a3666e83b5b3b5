"""Training loop shared by teachers, students and pruned models: any loss object, resumable per epoch."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from .console import CONSOLE, duration
from .data import PreparedData
from .evaluate import evaluate
from .io import save_torch
from .losses import Loss, Outputs

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 50
    learning_rate: float = 1e-3
    lr_decay: float = 0.7
    lr_step_epochs: int = 5
    optimizer: str = "rmsprop"
    seed: int = 0
    horizons: tuple[int, ...] = (3, 6, 9)
    eval_batch_size: int = 1140

    def fingerprint(self, *parts) -> str:
        """Identity of a run for resuming: everything but the epoch budget, so a run can also be extended."""
        settings = asdict(self)
        settings.pop("epochs")
        blob = json.dumps([settings, *parts], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(params, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=settings.learning_rate)
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.learning_rate)
    raise ValueError(f"unknown optimizer {settings.optimizer!r} (rmsprop, adam)")


def forward(model: torch.nn.Module, x: torch.Tensor, features: bool) -> Outputs:
    if features:
        return Outputs(*model(x, return_features=True))
    return Outputs(model(x))


def loss_step(model, teacher, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One forward of the student (and, without gradients, of the frozen teacher) and the loss."""
    teacher_out = None
    if loss.uses_teacher:
        with torch.no_grad():
            teacher_out = forward(teacher, x, loss.uses_features)
    return loss(forward(model, x, loss.uses_features), y, teacher_out)


def train(model: torch.nn.Module, data: PreparedData, loss: Loss, settings: TrainSettings,
          checkpoint_path: str | Path, teacher: torch.nn.Module | None = None,
          device: torch.device | None = None, run_config: dict | None = None
          ) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train with the one-step target; keep the epoch with the best validation MAE (mean over horizons).

    After every epoch a checkpoint is written atomically and kept; if one with the same fingerprint exists,
    training resumes after its epoch and ends exactly where an uninterrupted run would. A finished run's
    checkpoint lets a larger `epochs` budget continue it instead of starting over. Returns the best model
    (on CPU) and the per-epoch history. `run_config` (loss, data, seed...) goes into the fingerprint.
    """
    device = device or pick_device()
    if loss.uses_teacher and teacher is None:
        raise ValueError("this loss distils from a teacher, but no teacher model was given")
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    torch.manual_seed(settings.seed)
    model = model.to(device)
    optimizer = make_optimizer(model.parameters(), settings)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_epochs, settings.lr_decay)
    fingerprint = settings.fingerprint(model.arch.to_dict(), run_config or {})
    checkpoint_path = Path(checkpoint_path)
    history: list[dict] = []
    best = {"val_mae": math.inf, "epoch": -1, "state": None}
    start_epoch = 1
    if checkpoint_path.exists():
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if ckpt["fingerprint"] == fingerprint and ckpt["epoch"] <= settings.epochs:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"])
            loss.load_state_dict(ckpt["loss"])
            history, best, start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
            log.info("resuming from %s after epoch %d", checkpoint_path, ckpt["epoch"])
        else:
            log.warning("ignoring checkpoint %s: it belongs to other settings", checkpoint_path)

    x_train, y_train = data.inputs("train"), data.one_step_targets("train")
    n = x_train.shape[0]
    n_batches = math.ceil(n / settings.batch_size)
    report_every = max(1, n_batches // 4)
    for epoch in range(start_epoch, settings.epochs + 1):
        model.train()
        tic = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 100003 + epoch))
        total, batches = 0.0, 0
        for batch, start in enumerate(range(0, n, settings.batch_size), start=1):
            idx = order[start:start + settings.batch_size]
            x, y = x_train[idx].to(device), y_train[idx].to(device)
            value = loss_step(model, teacher, loss, x, y)
            if not torch.isfinite(value):
                raise NonFiniteLoss(f"loss is {value.item()} at epoch {epoch}, batch {batch}; no model written. "
                                    "Lower the learning rate or check the input data.")
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.item()
            batches += 1
            if batch % report_every == 0 and batch < n_batches:
                log.info("epoch %d batch %d/%d loss %.5f (%.1fs)", epoch, batch, n_batches, total / batches,
                         time.perf_counter() - tic)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - tic
        val, _, _ = evaluate(model, data, "val", settings.horizons, batch_size=settings.eval_batch_size)
        val_mae = float(val["MAE"].mean())
        row = {"epoch": epoch, "train_loss": total / batches, "val_mae": val_mae, "lr": lr,
               "train_seconds": train_seconds, "epoch_seconds": time.perf_counter() - tic,
               "teacher_share_pct": loss.share_pct()}
        row.update({f"val_mae_{int(h)}min": float(v) for h, v in zip(val["horizon_min"], val["MAE"])})
        history.append(row)
        if val_mae < best["val_mae"]:
            best = {"val_mae": val_mae, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        run_seconds = sum(r["epoch_seconds"] for r in history[-(epoch - start_epoch + 1):])
        eta = duration(run_seconds / (epoch - start_epoch + 1) * (settings.epochs - epoch))
        log.info("epoch %d/%d loss %.5f val MAE %.4f (best %.4f @ %d) lr %.2e %.1fs/epoch ETA %s%s",
                 epoch, settings.epochs, row["train_loss"], val_mae, best["val_mae"], best["epoch"], lr,
                 row["epoch_seconds"], eta,
                 "" if row["teacher_share_pct"] is None else f" teacher share {row['teacher_share_pct']:.2f}%",
                 extra=CONSOLE)
        save_torch({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(), "loss": loss.state_dict(),
                    "history": history, "best": best}, checkpoint_path)

    if best["state"] is None:
        raise RuntimeError("no epoch was trained (epochs must be >= 1)")
    model.load_state_dict(best["state"])
    return model.cpu(), pd.DataFrame(history)
