"""The training job: one model (teacher, pruning base or student) trained from its run spec."""
from __future__ import annotations

import logging

import pandas as pd
import torch

from kdstgcn.config.runspec import RunSpec
from kdstgcn.data.graph import load_cheb
from kdstgcn.data.samples import load_data
from kdstgcn.jobs.memory import check_train_memory
from kdstgcn.jobs.records import resume_identity, run_summary
from kdstgcn.losses.base import Loss
from kdstgcn.losses.build import build_loss
from kdstgcn.model.persist import count_parameters, read_model, save_model
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import write_json, write_table
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import teacher_source

log = logging.getLogger(__name__)

RESUME_KEYS = ("dataset", "role", "data", "loss")


def fit_run(run: RunSpec, values: str, fill_report: str, adjacency: str, checkpoint: str,
            teacher_path: str | None = None, on_epoch=None, memory_check: bool = False
            ) -> tuple[STGCN, pd.DataFrame, Loss]:
    """Train one model from its run spec, writing only its checkpoint: the best model, its per-epoch history
    and the loss object (`on_epoch` as in `train`). With `memory_check` it first stops where the job's estimate
    exceeds the memory it may use (`check_train_memory`), before it loads its data."""
    saved_teacher = read_model(teacher_path) if teacher_path else None
    if memory_check:
        check_train_memory(run, saved_teacher)
    data = load_data(values, fill_report, run.data)
    torch.manual_seed(run.train.seed)
    model = STGCN(run.arch, load_cheb(adjacency, run.arch.ks))
    loss = build_loss(**run.loss.to_dict())
    teacher = saved_teacher.build() if saved_teacher else None
    del saved_teacher  # the weights read: the teacher holds its own copy now
    device = pick_device(run.device)
    log.info("%s on %s: %s, %d parameters, loss %s, %d training windows, device %s", run.role, run.dataset,
             [list(b) for b in run.arch.blocks], count_parameters(model), run.loss.to_dict(),
             data.inputs("train").shape[0], device)
    identity = resume_identity(run, RESUME_KEYS, teacher)
    with teacher_source(loss, run.train, teacher, teacher_path, data, checkpoint, device) as source:
        model, history = train(model, data, loss, run.train, checkpoint, source, device, run_config=identity,
                               on_epoch=on_epoch)
    return model, history, loss


def train_run(run: RunSpec, values: str, fill_report: str, adjacency: str, model_out: str, history_out: str,
              info_out: str, checkpoint: str, teacher_path: str | None = None) -> STGCN:
    """Train one model from its run spec; write the whole model, its per-epoch history and a summary."""
    model, history, loss = fit_run(run, values, fill_report, adjacency, checkpoint, teacher_path, memory_check=True)
    extra = run_summary(run, history, loss, model)
    write_table(history, history_out)
    write_json(extra, info_out)
    save_model(model, model_out, extra)
    log.info("best epoch %d (val MAE %.4f); model written to %s", extra["best_epoch"], extra["best_val_mae"], model_out)
    return model
