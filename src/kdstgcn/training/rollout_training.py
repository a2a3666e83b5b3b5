"""Rollout training (beyond the paper): the loss over a k-step rollout of the model's own predictions, each fed back
as the newest input, as the model is judged (kdstgcn.evaluation.rollout), instead of the one-step loss.

The first step takes the run's own loss (a distillation loss with its teacher outputs, or the task loss), so that
k = 1 is the one-step loss, bit for bit. Each later step takes the task term `||y_s - T||` under the loss's
`scalar_norm` reading, against the truth or the teacher's rollout from the same window; the loss is the mean over
the k steps. A distillation loss thus reads the teacher at the first step only.
"""
from __future__ import annotations

import torch

from kdstgcn.config.runspec import RolloutTraining
from kdstgcn.data.samples import PreparedData, WindowedSeries
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.losses.base import Loss, Outputs, scalar_gap, step_outputs


def rollout_targets(settings: RolloutTraining, data: PreparedData, teacher: torch.nn.Module | None,
                    batch_size: int, precision: str = "fp32") -> WindowedSeries | torch.Tensor:
    """The targets of every training window for the longest rollout of `settings` [W, last_steps, N]: the truth at
    the first step; at the later steps the truth (then all of them are a view of the training windows, gathered
    batch by batch where the training days are), or the frozen `teacher`'s rollout from the window (`rollout`,
    streamed: exact there, since the teacher runs in eval mode without gradients), computed once for the run in
    `precision` and held on the CPU."""
    steps = settings.last_steps
    if steps > data.n_pred:
        raise ValueError(f"a rollout of {steps} steps needs targets {steps} steps ahead; the windows hold "
                         f"{data.n_pred} (model.n_pred)")
    if settings.targets == "truth":
        return data.future("train", steps)
    if teacher is None:
        raise ValueError("rollout targets 'teacher' need a teacher, but this run has none")
    later = rollout(teacher, data.inputs("train"), steps, batch_size, precision=precision)[:, 1:]
    return torch.cat([data.future("train", 1)[:].cpu(), later], dim=1)


def counted_rollout_step(model, teacher, loss: Loss, x: torch.Tensor, targets: torch.Tensor,
                         teacher_out: Outputs | None = None, feedback_gradient: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`counted_step` over a rollout of k = targets.shape[1] steps from windows `x` [B, n_his, N]: the mean over
    the steps of the run's loss at the first step and the task term at each later one, and the first step's
    entries learnt from the teacher (`Loss.taken`). Without `feedback_gradient` the predictions fed back are
    detached: each step's gradient takes only its own one-step path.

    Each step recomputes the whole moved window. The streaming step (`STGCN.stream_step`) is not used here: its
    position rings are written in place, which autograd cannot differentiate through, and in training mode
    dropout would keep the draws of the older positions, where the full recompute draws anew."""
    first, teacher_out = step_outputs(model, teacher, loss, x, teacher_out)
    total = loss(first, targets[:, 0], teacher_out)
    prediction, window = first.prediction, x
    for step in range(1, targets.shape[1]):
        fed = prediction if feedback_gradient else prediction.detach()
        window = torch.cat([window[:, 1:], fed[:, None]], dim=1)
        prediction = model(window)
        total = total + scalar_gap(prediction, targets[:, step], loss.readings.scalar_norm)
    return total / targets.shape[1], loss.taken(targets[:, 0], teacher_out)
