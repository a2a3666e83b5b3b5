"""Training loop shared by teachers, students and pruned models: any loss object, resumable per epoch."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from kdstgcn.training.anatomy import epoch_anatomy
from kdstgcn.runtime.console import CONSOLE, duration
from kdstgcn.data.prepare import PreparedData
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.runtime.io import save_torch
from kdstgcn.losses.core import Loss, Outputs
from kdstgcn.training.optim import make_optimizer
from kdstgcn.training.teacher_cache import TeacherFeatureStore

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
    compile: str = "auto"
    teacher_features: str = "live"

    def fingerprint(self, *parts) -> str:
        """Identity of a run for resuming: everything but the epoch budget (so a run can also be extended) and
        whether the step is compiled (the same arithmetic); the teacher's features only where they are read from
        a store (`live`, the teacher forward per batch, is what runs without the key)."""
        settings = asdict(self)
        settings.pop("epochs")
        settings.pop("compile")
        if settings["teacher_features"] == "live":
            settings.pop("teacher_features")
        blob = json.dumps([settings, *parts], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class DeviceError(ValueError):
    """The configured device does not exist on this machine; the message names the key and what is there."""


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_free_bytes(index: int) -> int:
    """Free memory of visible GPU `index`: from NVML where it is installed (no CUDA context is created on the
    GPUs that are not picked), else from cudaMemGetInfo."""
    try:
        return torch.cuda.get_device_properties(index).total_memory - torch.cuda.device_memory_used(index)
    except Exception:  # noqa: BLE001 - no NVML: ask CUDA itself
        return torch.cuda.mem_get_info(index)[0]


SAME_FREE_MEMORY = 1 << 30  # GPUs within 1 GiB of the most free memory count as equally free


def freest(free_bytes: list[int], salt: int = 0) -> int:
    """Index of a GPU with the most free memory. Those within SAME_FREE_MEMORY of the most are equal, and `salt`
    (the job's process id) picks among them, so that jobs started at the same moment spread over idle GPUs."""
    most = max(free_bytes)
    candidates = [i for i, free in enumerate(free_bytes) if free >= most - SAME_FREE_MEMORY]
    return candidates[salt % len(candidates)]


def pick_device(name: str = "auto") -> torch.device:
    """The torch device of config key `device`: `auto` is a visible GPU with the most free memory at the time
    of the call (see `freest`; the CPU when there is none), `cpu`, `cuda` (the current GPU), `cuda:N` (the
    N-th visible GPU)."""
    if name == "auto":
        n = visible_gpus()
        if n < 2:
            return torch.device("cuda", 0) if n else torch.device("cpu")
        return torch.device("cuda", freest([gpu_free_bytes(i) for i in range(n)], salt=os.getpid()))
    device = torch.device(name)
    if device.type == "cuda":
        n = visible_gpus()
        if n == 0 or (device.index is not None and device.index >= n):
            choices = f"auto, cpu or cuda:0 to cuda:{n - 1}" if n else "auto or cpu"
            raise DeviceError(f"device: {name!r}, but this machine has {n} visible GPU(s) (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Use device: {choices}.")
    return device


def use_compile(setting: str, device: torch.device) -> bool:
    """Config key training.compile: `on`, `off`, or `auto` (compiled on a GPU, eager on the CPU)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def forward(model: torch.nn.Module, x: torch.Tensor, features: bool) -> Outputs:
    if features:
        return Outputs(*model(x, return_features=True))
    return Outputs(model(x))


def teacher_forward(teacher: torch.nn.Module, x: torch.Tensor, features: bool) -> Outputs:
    """The frozen teacher's outputs in inference mode. The prediction is cloned into a normal tensor, since
    response losses keep it for their backward; features stay inference tensors, which the feature losses
    only read (copied into groups, or under no_grad), never keep for autograd."""
    with torch.inference_mode():
        out = forward(teacher, x, features)
    return Outputs(out.prediction.clone(), out.features)


def loss_step(model, teacher, loss: Loss, x: torch.Tensor, y: torch.Tensor,
              teacher_out: Outputs | None = None) -> torch.Tensor:
    """One forward of the student (and, without gradients, of the frozen teacher) and the loss.
    `teacher_out`: the teacher's stored outputs for this batch (kdstgcn.training.teacher_cache), which replace the
    teacher forward."""
    if teacher_out is None and loss.uses_teacher:
        teacher_out = teacher_forward(teacher, x, loss.uses_features)
    return loss(forward(model, x, loss.uses_features), y, teacher_out)


def cpu_copy(state_dict: dict) -> dict:
    """A snapshot of a state dict on the CPU (the best epoch's weights), independent of the live tensors."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint read onto the CPU, whatever device wrote it: the RNG state must stay a CPU tensor, and the
    model, optimiser and loss states are copied to their own device when restored."""
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(device: torch.device) -> dict:
    """The random number generators a run draws from: the CPU's, and the GPU's it trains on."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def resume(checkpoint: dict, model, optimizer, scheduler, loss: Loss, device: torch.device) -> None:
    """Restore a run from `checkpoint` (as load_checkpoint returns it) onto `device`: weights and loss buffers are
    copied into the tensors there, the optimiser state follows its parameters, RNG states stay CPU tensors
    (a GPU generator is restored only on a GPU; a run moved to another kind of device draws anew there)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    loss.load_state_dict(checkpoint["loss"])
    torch.set_rng_state(checkpoint["rng"])
    if device.type == "cuda" and "cuda_rng" in checkpoint:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)


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


def training_step(model, teacher, loss: Loss, optimizer, compiled: bool, device: torch.device):
    """step(x, y, teacher_out) -> loss of the batch (a device tensor, not synced): loss_step, backward, optimiser step.

    `compiled` captures loss_step's forward and backward with torch.compile: CUDA graphs on a GPU
    (mode reduce-overhead: one launch per graph instead of one per kernel), fused C++ loops on the CPU."""
    def forward_loss(x, y, teacher_out):
        return loss_step(model, teacher, loss, x, y, teacher_out)

    graphs = compiled and device.type == "cuda"
    if compiled:
        forward_loss = torch.compile(forward_loss, mode="reduce-overhead" if graphs else None, dynamic=False)

    def step(x: torch.Tensor, y: torch.Tensor, teacher_out: Outputs | None = None) -> torch.Tensor:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        value = forward_loss(x, y, teacher_out)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return value

    return step


def train(model: torch.nn.Module, data: PreparedData, loss: Loss, settings: TrainSettings,
          checkpoint_path: str | Path, teacher: torch.nn.Module | None = None,
          device: torch.device | None = None, run_config: dict | None = None,
          teacher_predictions: torch.Tensor | None = None, teacher_store: TeacherFeatureStore | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train with the one-step target; keep the epoch with the best validation MAE (mean over horizons).

    After every epoch a checkpoint is written atomically and kept; if one with the same fingerprint exists,
    training resumes after its epoch and ends exactly where an uninterrupted run would. A finished run's
    checkpoint lets a larger `epochs` budget continue it instead of starting over. Returns the best model
    (on CPU) and the per-epoch history. `run_config` (loss, data, seed...) goes into the fingerprint.
    The training split lives on `device` for the whole run; a checkpoint written on one device resumes on
    another. `teacher_predictions` [W, N]: the teacher's predictions for the training windows
    (`teacher_cache.cached_teacher_predictions`), used instead of a teacher forward per batch; `teacher_store`
    the same for a feature loss (`teacher_cache.TeacherFeatureStore`: prediction and hidden-layer outputs).
    `on_epoch(epoch, row)` is called after each epoch's checkpoint with its history row; an exception it
    raises (e.g. optuna.TrialPruned) ends training there.
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
    loss = loss.to(device)
    optimizer = make_optimizer(model.parameters(), settings)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_epochs, settings.lr_decay)
    fingerprint = settings.fingerprint(model.arch.to_dict(), run_config or {})
    checkpoint_path = Path(checkpoint_path)
    history: list[dict] = []
    best = {"val_mae": math.inf, "epoch": -1, "state": None}
    start_epoch = 1
    if checkpoint_path.exists():
        ckpt = load_checkpoint(checkpoint_path)
        if ckpt["fingerprint"] == fingerprint and ckpt["epoch"] <= settings.epochs:
            resume(ckpt, model, optimizer, scheduler, loss, device)
            history, best, start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
            log.info("resuming from %s after epoch %d", checkpoint_path, ckpt["epoch"])
        else:
            log.warning("ignoring checkpoint %s: it belongs to other settings", checkpoint_path)

    x_train, y_train = data.inputs("train").to(device), data.one_step_targets("train").to(device)
    n = x_train.shape[0]
    if teacher_predictions is not None and (loss.uses_features or teacher_predictions.shape != y_train.shape):
        raise ValueError(f"cached teacher predictions {tuple(teacher_predictions.shape)} serve a response-only "
                         f"loss on training targets {tuple(y_train.shape)}; this loss or data needs the teacher")
    if teacher_predictions is not None:
        teacher_predictions = teacher_predictions.to(device)
    n_batches = math.ceil(n / settings.batch_size)
    report_every = max(1, n_batches // 4)
    step = training_step(model, teacher, loss, optimizer, use_compile(settings.compile, device), device)
    run_seconds, epochs_here = 0.0, 0
    for epoch in range(start_epoch, settings.epochs + 1):
        model.train()
        tic = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 100003 + epoch))
        order = order.to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        non_finite = FirstNonFinite(device)
        for batch, start in enumerate(range(0, n, settings.batch_size), start=1):
            idx = order[start:start + settings.batch_size]
            if teacher_store is not None:
                cached = teacher_store.batch(idx, device)
            else:
                cached = None if teacher_predictions is None else Outputs(teacher_predictions[idx])
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
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - tic
        val, _, _ = evaluate(model, data, "val", settings.horizons, batch_size=settings.eval_batch_size)
        val_mae = float(val["MAE"].mean())
        row = {"epoch": epoch, "train_loss": float(total) / n_batches, "val_mae": val_mae, "lr": lr,
               "train_seconds": train_seconds, "epoch_seconds": time.perf_counter() - tic,
               "teacher_share_pct": loss.share_pct()}
        row.update({f"val_mae_{int(h)}min": float(v) for h, v in zip(val["horizon_min"], val["MAE"])})
        row.update(epoch_anatomy(model, teacher, loss, x_train, y_train, settings.batch_size, settings.seed, device))
        history.append(row)
        if val_mae < best["val_mae"]:
            best = {"val_mae": val_mae, "epoch": epoch, "state": cpu_copy(model.state_dict())}
        run_seconds, epochs_here = run_seconds + row["epoch_seconds"], epochs_here + 1
        log.info("epoch %d/%d loss %.5f val MAE %.4f (best %.4f @ %d) lr %.2e %.1fs/epoch, ETA %s%s",
                 epoch, settings.epochs, row["train_loss"], val_mae, best["val_mae"], best["epoch"], lr,
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
