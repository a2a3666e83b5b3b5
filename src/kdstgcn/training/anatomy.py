"""Loss anatomy: each term of a distillation loss, unweighted and weighted, and how much of the student's
gradient it makes, on a few fixed training batches. Tells whether a feature term swamps the task term. Under
rollout training (kdstgcn.training.rollout_training) the terms are those of the rollout's loss: the run's loss's at
the first step, and `step<s>` for each later step s.

Columns, each the mean over the batches:
  term_<name>            the term's unweighted value
  term_<name>_weighted   weight * value (the weighted terms sum to the loss)
  grad_norm_<name>       ||g_name||, g_name the gradient of the weighted term w.r.t. the student's parameters
  grad_share_<name>      <g_name, g> / ||g||^2 with g = sum of all g_name: the term's part of the gradient along
                         the direction the step takes. The shares sum to 1; a term whose gradient is orthogonal
                         to the others gets ||g_name||^2 / ||g||^2, one that opposes them a negative share.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from kdstgcn.config.runspec import RolloutTraining
from kdstgcn.data.samples import WindowedSeries
from kdstgcn.losses.base import Loss
from kdstgcn.training.rollout_training import rollout_terms

ANATOMY_BATCHES = 4
ANATOMY_SEED_OFFSET = 7907  # keeps the anatomy's batches apart from the training order of the same seed


def loss_anatomy(model: torch.nn.Module, teacher: torch.nn.Module | None, loss: Loss, batches,
                 rollout: RolloutTraining | None = None) -> dict[str, float]:
    """The anatomy of `loss` for `model` on `batches` [(x, y), ...] (on the model's device): one forward and one
    backward per term per batch. With `rollout`, of the rollout's loss over the steps of the targets y [B, k, N]
    (`rollout_terms`); without, of the one-step loss (y [B, N]). The model's mode and gradients, the loss's
    state (ORD's counters) and the random number generators are left as they were: training continues exactly
    as without it."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    loss_state = {k: v.clone() for k, v in loss.state_dict().items()}
    model.eval()  # no dropout draws
    sums: dict[str, float] = defaultdict(float)
    try:
        for x, y in batches:
            terms, _ = rollout_terms(model, teacher, loss, x, y if rollout is not None else y[:, None],
                                     feedback_gradient=rollout is None or rollout.feedback_gradient)
            grads = {}
            for left, (name, (weight, value)) in enumerate(terms.items(), start=1):
                parts = torch.autograd.grad(weight * value, params, retain_graph=left < len(terms), allow_unused=True)
                grads[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                         for g, p in zip(parts, params)])
                sums[f"term_{name}"] += value.item()
                sums[f"term_{name}_weighted"] += weight * value.item()
            total = torch.stack(list(grads.values())).sum(0)
            total_squared = torch.dot(total, total).item()
            for name, g in grads.items():
                sums[f"grad_norm_{name}"] += g.norm().item()
                sums[f"grad_share_{name}"] += (torch.dot(g, total).item() / total_squared if total_squared > 0
                                               else math.nan)
    finally:
        model.train(was_training)
        loss.load_state_dict(loss_state)
    return {column: value / len(batches) for column, value in sums.items()}


def anatomy_batches(x: WindowedSeries, y: WindowedSeries, batch_size: int, seed: int,
                    count: int = ANATOMY_BATCHES) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` training batches drawn by `seed` alone (the same every epoch; the global RNG is not touched)."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed + ANATOMY_SEED_OFFSET))
    return [(x[idx], y[idx]) for idx in order[:count * batch_size].split(batch_size)]


def epoch_anatomy(model: torch.nn.Module, teacher: torch.nn.Module | None, loss: Loss, x: WindowedSeries,
                  y: WindowedSeries | torch.Tensor, batch_size: int, seed: int, device: torch.device,
                  rollout: RolloutTraining | None = None) -> dict[str, float]:
    """The columns a training epoch adds to its history row: the anatomy on the seed's fixed training batches
    (targets `y` of the epoch: one step [W, N], or with `rollout` its steps [W, k, N]) for a distillation loss
    or a rollout of more than one term, else nothing."""
    if not loss.uses_teacher and rollout is None:
        return {}
    batches = [(bx.to(device), by.to(device)) for bx, by in anatomy_batches(x, y, batch_size, seed)]
    columns = loss_anatomy(model, teacher, loss, batches, rollout)
    return columns if sum(c.startswith("grad_share_") for c in columns) > 1 else {}
