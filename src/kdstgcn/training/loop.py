"""Training loop shared by teachers, students and pruned models: any loss object, resumable per epoch."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from kdstgcn.config.runspec import RolloutTraining, TrainSettings
from kdstgcn.data.samples import PreparedData, WindowedSeries
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.losses.base import Loss, Outputs, counted_step
from kdstgcn.runtime.console import CONSOLE, duration
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.precision import in_precision, resolve_precision
from kdstgcn.runtime.tensor_files import save_torch
from kdstgcn.training.anatomy import epoch_anatomy
from kdstgcn.training.checkpoint import cpu_copy, load_checkpoint, restore_rng, resume, rng_state
from kdstgcn.training.optim import make_optimizer
from kdstgcn.training.rollout_training import counted_rollout_step, rollout_targets
from kdstgcn.training.teacher import TeacherSource

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


def use_compile(setting: str, device: torch.device) -> bool:
    """Config key training.compile: `on`, `off`, or `auto` (compiled on a GPU, eager on the CPU)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class FirstNonFinite:
    """The first batch whose loss is NaN or infinite, recorded on the device without a host sync per step and
    read at the points where the loop reports anyway."""

    def __init__(self, device: torch.device):
        self.batch = torch.zeros((), dtype=torch.long, device=device)  # 0: none so far
        self.value = torch.zeros((), device=device)

    def record(self, value: torch.Tensor, batch: int) -> None:
        first = (self.batch == 0) & ~torch.isfinite(value)
        self.batch = torch.where(first, batch, self.batch)
        self.value = torch.where(first, value.detach().to(self.value.dtype), self.value)

    def check(self, epoch: int) -> None:
        batch = int(self.batch)
        if batch:
            raise NonFiniteLoss(f"loss is {self.value.item()} at epoch {epoch}, batch {batch}; no model written. "
                                "Lower the learning rate or check the input data.")


def training_step(model, teacher, loss: Loss, optimizer, compiled: bool, device: torch.device,
                  precision: str = "fp32", teacher_precision: str = "fp32", rollout: RolloutTraining | None = None):
    """step(x, y, teacher_out) -> loss of the batch (a device tensor, not synced): counted_step, backward, optimiser
    step, and the batch counted in the loss's share (ORD's counters, outside any compiled graph).

    With `rollout` the loss is `counted_rollout_step`'s over the steps of the targets `y` [B, k, N]; without, `y`
    is the one-step target [B, N].

    `precision`, `teacher_precision` (kdstgcn.runtime.precision): the model's and the live teacher's forward
    passes run in bfloat16 autocast where bf16, the loss on their outputs cast to float32.

    `compiled` captures counted_step's forward and backward with torch.compile: CUDA graphs on a GPU
    (mode reduce-overhead: one launch per graph instead of one per kernel), fused C++ loops on the CPU. If
    compiling or a compiled step raises, one warning names the error, and that step and every later one run
    eager from the state before it (weights, gradients, random numbers): the numbers of `compile: off`."""
    student_forward = in_precision(model, precision, device)
    teacher_forward = in_precision(teacher, teacher_precision, device)

    def forward_loss(x, y, teacher_out):
        if rollout is None:
            return counted_step(student_forward, teacher_forward, loss, x, y, teacher_out)
        return counted_rollout_step(model, teacher_forward, loss, x, y, teacher_out, rollout.feedback_gradient,
                                    precision)

    graphs = compiled and device.type == "cuda"
    compiled_loss = (torch.compile(forward_loss, mode="reduce-overhead" if graphs else None, dynamic=False)
                     if compiled else None)

    def backward(fn, x, y, teacher_out):
        value, taken = fn(x, y, teacher_out)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        return value, taken

    def compiled_backward(x, y, teacher_out):
        nonlocal compiled_loss
        before = rng_state(device)
        try:
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            return backward(compiled_loss, x, y, teacher_out)
        except Exception as exc:  # whatever the compiler raised: the step runs eager instead
            first_line = (str(exc).strip().splitlines() or [""])[0]
            log.warning("training.compile: the compiled step failed (%s: %s); training continues eager, as with "
                        "compile: off", type(exc).__name__, first_line)
            compiled_loss = None
            restore_rng(before, device)
            return backward(forward_loss, x, y, teacher_out)

    def step(x: torch.Tensor, y: torch.Tensor, teacher_out: Outputs | None = None) -> torch.Tensor:
        if compiled_loss is None:
            value, taken = backward(forward_loss, x, y, teacher_out)
        else:
            value, taken = compiled_backward(x, y, teacher_out)
        optimizer.step()
        loss.record(taken, x.shape[0] * x.shape[2])  # the entries of one step: windows x nodes
        return value

    return step


def freeze(teacher: torch.nn.Module, device: torch.device) -> None:
    """The teacher on `device`, in eval mode, without gradients."""
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)


def resume_if_same(path: Path, fingerprint: str, settings: TrainSettings, model, optimizer, scheduler, loss: Loss,
                   device: torch.device) -> tuple[list[dict], dict, int]:
    """(history, best epoch, first epoch to train): from the checkpoint at `path` when it has `fingerprint` and
    does not exceed the epoch budget (restored into the model, optimiser, scheduler and loss), else a fresh start."""
    history: list[dict] = []
    best = {"val_mae": math.inf, "epoch": -1, "state": None}
    if not path.exists():
        return history, best, 1
    ckpt = load_checkpoint(path)
    if ckpt["fingerprint"] == fingerprint and ckpt["epoch"] <= settings.epochs:
        resume(ckpt, model, optimizer, scheduler, loss, device)
        log.info("resuming from %s after epoch %d", path, ckpt["epoch"])
        return ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
    log.warning("ignoring checkpoint %s: it belongs to other settings", path)
    return history, best, 1


def train_epoch(step, x_train: WindowedSeries, y_train: WindowedSeries | torch.Tensor,
                teacher: TeacherSource | None, settings: TrainSettings, epoch: int, tic: float,
                device: torch.device) -> torch.Tensor:
    """One pass over the training windows in the epoch's seeded order, each batch gathered from `x_train` and
    `y_train` by its window ids; returns the summed batch losses (float64, on `device`). Raises NonFiniteLoss at
    the quarter-epoch reports and at the end."""
    n = x_train.shape[0]
    n_batches = math.ceil(n / settings.batch_size)
    report_every = max(1, n_batches // 4)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 100003 + epoch))
    order = order.to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    non_finite = FirstNonFinite(device)
    for batch, start in enumerate(range(0, n, settings.batch_size), start=1):
        idx = order[start:start + settings.batch_size]
        cached = None if teacher is None else teacher.batch(idx, device)
        value = step(x_train[idx], y_train[idx], cached)
        total += value.detach()
        non_finite.record(value, batch)
        if batch % report_every == 0 and batch < n_batches:
            non_finite.check(epoch)
            elapsed = time.perf_counter() - tic
            epoch_estimate = elapsed / batch * n_batches
            log.info("epoch %d batch %d/%d loss %.5f (%.1fs, ETA %s)", epoch, batch, n_batches,
                     float(total) / batch, elapsed,
                     duration(epoch_estimate - elapsed + (settings.epochs - epoch) * epoch_estimate))
    non_finite.check(epoch)
    return total


def train(model: torch.nn.Module, data: PreparedData, loss: Loss, settings: TrainSettings,
          checkpoint_path: str | Path, teacher: TeacherSource | None = None,
          device: torch.device | None = None, run_config: dict | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train with the one-step target, or over a rollout (`settings.rollout`, kdstgcn.training.rollout_training);
    keep the epoch with the best validation MAE (mean over horizons).

    After every epoch a checkpoint is written atomically and kept; if one with the same fingerprint exists,
    training resumes after its epoch and ends exactly where an uninterrupted run would. A finished run's
    checkpoint lets a larger `epochs` budget continue it instead of starting over. Returns the best model
    (on CPU) and the per-epoch history. `run_config` (loss, data, seed...) goes into the fingerprint.
    The training split's normalised days live on `device` for the whole run, and each batch's windows are gathered
    there (`WindowedSeries`); a checkpoint written on one device resumes on another. `teacher`: the frozen teacher
    of a distilling run and where its outputs come from, a forward per batch or outputs computed once
    (kdstgcn.training.teacher).
    `on_epoch(epoch, row)` is called after each epoch's checkpoint with its history row; an exception it
    raises (e.g. optuna.TrialPruned) ends training there.
    """
    device = device or pick_device()
    if loss.uses_teacher and teacher is None:
        raise ValueError("this loss distils from a teacher, but no teacher model was given")
    teacher_model = None if teacher is None else teacher.model
    if teacher_model is not None:
        freeze(teacher_model, device)
    teacher_precision = ("fp32" if teacher_model is None
                         else resolve_precision(settings.precision, device, teacher_model.arch.widest_layer))
    settings = replace(settings, precision=resolve_precision(settings.precision, device, model.arch.widest_layer))
    torch.manual_seed(settings.seed)
    model = model.to(device)
    loss = loss.to(device)
    optimizer = make_optimizer(model.parameters(), settings)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_epochs, settings.lr_decay)
    fingerprint = settings.fingerprint(model.arch.to_dict(), run_config or {})
    checkpoint_path = Path(checkpoint_path)
    history, best, start_epoch = resume_if_same(checkpoint_path, fingerprint, settings, model, optimizer, scheduler,
                                                loss, device)

    train_data = data.with_split_on("train", device)
    x_train, y_train = train_data.inputs("train"), train_data.one_step_targets("train")
    if teacher is not None:
        teacher = teacher.on_device(loss, y_train, device)
    rollout = settings.rollout
    targets = (None if rollout is None else rollout_targets(rollout, train_data, teacher_model,
                                                            settings.eval_batch_size, teacher_precision).to(device))
    n_batches = math.ceil(len(x_train) / settings.batch_size)
    step = training_step(model, teacher_model, loss, optimizer, use_compile(settings.compile, device), device,
                         settings.precision, teacher_precision, rollout)
    run_seconds, epochs_here = 0.0, 0
    for epoch in range(start_epoch, settings.epochs + 1):
        model.train()
        tic = time.perf_counter()
        y_epoch = y_train if rollout is None else targets.narrow(1, 0, rollout.steps(epoch))
        total = train_epoch(step, x_train, y_epoch, teacher, settings, epoch, tic, device)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - tic
        val, _, _ = evaluate(model, data, "val", settings.horizons, batch_size=settings.eval_batch_size,
                             precision=settings.precision)
        val_mae = float(val["MAE"].mean())
        row = {"epoch": epoch, "train_loss": float(total) / n_batches, "val_mae": val_mae, "lr": lr,
               "train_seconds": train_seconds, "epoch_seconds": time.perf_counter() - tic,
               "teacher_share_pct": loss.share_pct(), "precision": settings.precision}
        if rollout is not None:
            row["rollout_steps"] = rollout.steps(epoch)
        row.update({f"val_mae_{int(h)}min": float(v) for h, v in zip(val["horizon_min"], val["MAE"])})
        row.update(epoch_anatomy(model, teacher_model, loss, x_train, y_epoch, settings.batch_size, settings.seed,
                                 device, rollout))
        history.append(row)
        if val_mae < best["val_mae"]:
            best = {"val_mae": val_mae, "epoch": epoch, "state": cpu_copy(model.state_dict())}
        run_seconds, epochs_here = run_seconds + row["epoch_seconds"], epochs_here + 1
        log.info("epoch %d/%d loss %.5f val MAE %.4f (best %.4f @ %d) lr %.2e %s %.1fs/epoch, ETA %s%s",
                 epoch, settings.epochs, row["train_loss"], val_mae, best["val_mae"], best["epoch"], lr,
                 settings.precision,
                 row["epoch_seconds"], duration(run_seconds / epochs_here * (settings.epochs - epoch)),
                 "" if row["teacher_share_pct"] is None else f" teacher share {row['teacher_share_pct']:.2f}%",
                 extra=CONSOLE)
        save_torch({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "loss": loss.state_dict(), "history": history, "best": best, **rng_state(device)}, checkpoint_path)
        if on_epoch is not None:
            on_epoch(epoch, row)

    if best["state"] is None:
        raise RuntimeError("no epoch was trained (epochs must be >= 1)")
    model.load_state_dict(best["state"])
    return model.cpu(), pd.DataFrame(history)
