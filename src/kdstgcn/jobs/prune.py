"""The pruning job: a trained model pruned (Algorithm 1 or the Molchanov baseline), compacted, and the compact
model fine-tuned."""
from __future__ import annotations

import logging

import pandas as pd
import torch

from kdstgcn.config.runspec import RunSpec
from kdstgcn.data.samples import PreparedData, load_data
from kdstgcn.jobs.memory import check_prune_memory
from kdstgcn.jobs.records import resume_identity, run_summary
from kdstgcn.losses.base import Loss, loss_step
from kdstgcn.losses.build import build_loss
from kdstgcn.model.persist import count_parameters, read_model, save_model, weights_digest
from kdstgcn.model.stgcn import STGCN
from kdstgcn.pruning.prune import compact, expand, prune
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import write_json, write_table
from kdstgcn.training.loop import train
from kdstgcn.training.optim import make_optimizer
from kdstgcn.training.teacher import teacher_source

log = logging.getLogger(__name__)

RESUME_KEYS = ("dataset", "role", "data", "loss", "finetune_loss", "ratio", "ranking", "step_fraction",
               "pruning_minibatch", "importance_memory")


def training_batches(data: PreparedData, batch_size: int, seed: int):
    """Endless one-step training batches, reshuffled on every pass with a seed-derived order."""
    x, y = data.inputs("train"), data.one_step_targets("train")
    n, epoch = x.shape[0], 0
    while True:
        epoch += 1
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def fit_prune(run: RunSpec, values: str, fill_report: str, base_path: str, teacher_path: str | None,
              checkpoint: str, on_epoch=None, memory_check: bool = False
              ) -> tuple[STGCN, STGCN, pd.DataFrame, Loss, list[dict], int]:
    """Prune a trained model (Algorithm 1 or the baseline), compact it and fine-tune the compact model, writing
    only the checkpoint. Returns the compact and the masked model (on the CPU), the fine-tuning history and loss,
    the pruning steps and the base's parameter count (`on_epoch` as in `train`). With `memory_check` it first stops
    where the job's estimate exceeds the memory it may use (`check_prune_memory`), before it loads its data.

    Fine-tuning the compact model is fine-tuning under the mask, at the compact model's cost: the same weights
    to float rounding (tested with dropout 0 and the same seed). Under the mask every weight that feeds only
    removed channels gets a zero gradient (the channel's output is multiplied by 0), so RMSprop and Adam leave it
    where it is with a zero state: the removed filters' own weights stay zero, their coupled input weights and
    LayerNorm entries keep their values and never matter. The masked LayerNorm takes its statistics over the kept
    channels, as the compact one does, so the kept weights get the same gradients, and `train` starts the same
    fresh optimiser for both. Only dropout differs: it draws over the full width under the mask, over the kept
    channels here, so with dropout > 0 the two are different draws of the same procedure. The checkpoint holds
    the compact model; its architecture (kept channels) is part of what it must match to be resumed.
    """
    pruning, settings = run.prune, run.train
    saved_base = read_model(base_path)
    saved_teacher = read_model(teacher_path) if teacher_path else None
    if memory_check:
        check_prune_memory(run, saved_base, saved_teacher)
    data = load_data(values, fill_report, run.data)
    device = pick_device(run.device)
    torch.manual_seed(settings.seed)
    model = saved_base.build()
    base_digest = weights_digest(model)
    base_parameters = count_parameters(model)
    teacher = saved_teacher.build().to(device).eval() if saved_teacher else None
    del saved_base, saved_teacher  # the weights read: the models hold their own copies now
    loss = build_loss(**run.loss.to_dict())
    model.to(device)
    optimizer = make_optimizer(model.parameters(), settings)

    def loss_fn(m, x, y):
        return loss_step(m, teacher, loss, x.to(device), y.to(device))

    steps: list[dict] = []
    log.info("%s: pruning %s (%d parameters) by %d %% with %s, %s ranking, a step every %d minibatches, "
             "importance %s", run.role, pruning.base, base_parameters, pruning.ratio, run.loss.name, pruning.ranking,
             pruning.pruning_minibatch, pruning.importance_memory)
    prune(model, training_batches(data, settings.batch_size, settings.seed), loss_fn, optimizer,
          pruning.ratio / 100.0, pruning.pruning_minibatch, pruning.step_fraction, pruning.ranking, log=log.info,
          history=steps, importance_memory=pruning.importance_memory)
    model.eval()
    # a loss of its own, even where it is the importance loss: its teacher share counts fine-tuning only
    finetune_loss = build_loss(**pruning.finetune_loss.to_dict())
    log.info("fine-tuning the compact model with %s (the pruning phase above ran in fp32)",
             pruning.finetune_loss.name)
    identity = resume_identity(run, RESUME_KEYS, teacher, base=base_digest)
    start = compact(model)
    with teacher_source(finetune_loss, settings, teacher, teacher_path, data, checkpoint, device) as source:
        dense, history = train(start, data, finetune_loss, settings, checkpoint, source, device,
                               run_config=identity, on_epoch=on_epoch)
    dense = dense.cpu().eval()
    return dense, expand(dense, model).cpu(), history, finetune_loss, steps, base_parameters


def prune_run(run: RunSpec, values: str, fill_report: str, base_path: str, teacher_path: str | None, out: dict,
              checkpoint: str) -> STGCN:
    """Prune a trained model (Algorithm 1 or the baseline) and fine-tune its compact form (`fit_prune`).

    Writes the compact model (`out["model"]`, what evaluation and timing use), the masked model (the fine-tuned
    compact model expanded back to full width), the pruning steps, the fine-tuning history and a summary with the
    kept parameter share and channels. All on the CPU, whatever `run.device`.
    """
    dense, masked, history, finetune_loss, steps, base_parameters = fit_prune(
        run, values, fill_report, base_path, teacher_path, checkpoint, memory_check=True)
    kept = dense.arch.kept
    extra = {**run_summary(run, history, finetune_loss, dense), "base_parameters": base_parameters,
             "kept_pct": 100.0 * count_parameters(dense) / base_parameters, "pruning_steps": len(steps),
             "kept_channels": {k: list(v) for k, v in kept.items()}}
    write_table(pd.DataFrame(steps), out["steps"])
    write_table(history, out["history"])
    write_json(extra, out["info"])
    save_model(masked, out["masked"], extra)
    save_model(dense, out["model"], extra)
    log.info("compact model: %d of %d parameters kept (%.2f %%), widths %s", extra["parameters"],
             base_parameters, extra["kept_pct"], {k: len(v) for k, v in kept.items()})
    return dense
