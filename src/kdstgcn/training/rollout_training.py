"""Rollout training (beyond the paper): the loss over a k-step rollout of the model's own predictions, each fed back
as the newest input, as the model is judged (kdstgcn.evaluation.rollout), instead of the one-step loss.

The first step takes the run's own loss (a distillation loss with its teacher outputs, or the task loss), so that
k = 1 is the one-step loss, bit for bit. Each later step takes the task term `||y_s - T||` under the loss's
`scalar_norm` reading, against the truth or the teacher's rollout from the same window; the loss is the mean over
the k steps. A distillation loss thus reads the teacher at the first step only. The later steps stream (one time
position per layer) where that equals recomputing the moved window, so a k-step rollout costs far less than k
one-step passes.
"""
from __future__ import annotations

import torch

from kdstgcn.config.runspec import RolloutTraining
from kdstgcn.data.samples import PreparedData, WindowedSeries
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.losses.base import Loss, Outputs, scalar_gap, step_outputs
from kdstgcn.runtime.precision import as_float32, autocast, in_precision


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


class _Streamed:
    """A model rolled out step by step on its streaming state (`STGCN.start_stream` with differentiable rings,
    then `stream_step`): called like the model on the first windows, then `step(newest)`; each forward pass in
    `precision`, its outputs float32. Each step computes one time position per layer, not the whole window."""

    def __init__(self, model: torch.nn.Module, precision: str):
        self.model, self.precision, self.state = model, precision, None

    def __call__(self, x: torch.Tensor, return_features: bool = False):
        with autocast(self.precision, x.device):
            out, self.state = self.model.start_stream(x, return_features, differentiable=True)
        return as_float32(out)

    def step(self, newest: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, newest.device):
            return self.model.stream_step(newest, self.state).float()


class _Recomputed:
    """A model rolled out by recomputing each moved window in full (where a stream would not equal it: dropout
    draws anew over the whole window): called like the model on the first windows, then `step(newest)`."""

    def __init__(self, model: torch.nn.Module, precision: str):
        self.model, self.precision, self.forward, self.window = model, precision, None, None

    def __call__(self, x: torch.Tensor, return_features: bool = False):
        self.forward, self.window = in_precision(self.model, self.precision, x.device), x
        return self.forward(x, return_features=return_features)

    def step(self, newest: torch.Tensor) -> torch.Tensor:
        self.window = torch.cat([self.window[:, 1:], newest[:, None]], dim=1)
        return self.forward(self.window)


def streams_exactly(model: torch.nn.Module) -> bool:
    """Whether `model`'s streaming step equals the full recompute of its moved window here: where no dropout
    draws (eval mode, or dropout 0)."""
    return not model.training or model.arch.dropout == 0


def rollout_terms(model: torch.nn.Module, teacher, loss: Loss, x: torch.Tensor, targets: torch.Tensor,
                  teacher_out: Outputs | None = None, feedback_gradient: bool = True, precision: str = "fp32"
                  ) -> tuple[dict[str, tuple[float, torch.Tensor]], Outputs | None]:
    """Each term of the loss over a rollout of k = targets.shape[1] steps from windows `x` [B, n_his, N], by name:
    (weight, unweighted value), the weighted terms summing to the loss. The run's loss's terms at the first step
    under their own names, and `step<s>`, the task term at step s = 2..k; every weight divided by k (the mean over
    the steps). Also the teacher's outputs for the first step (`teacher`: its forward, `teacher_out`: its stored
    outputs; `step_outputs`).

    The model runs in `precision` (kdstgcn.runtime.precision). For k > 1 it streams (`_Streamed`) where that is
    exact (`streams_exactly`), else recomputes each moved window. Without `feedback_gradient` the predictions fed
    back are detached: each step's gradient takes only its own one-step path."""
    steps = targets.shape[1]
    rolled = (_Streamed if steps > 1 and streams_exactly(model) else _Recomputed)(model, precision)
    first, teacher_out = step_outputs(rolled, teacher, loss, x, teacher_out)
    terms = {name: (weight / steps, value)
             for name, (weight, value) in loss.terms(first, targets[:, 0], teacher_out).items()}
    prediction = first.prediction
    for step in range(1, steps):
        prediction = rolled.step(prediction if feedback_gradient else prediction.detach())
        terms[f"step{step + 1}"] = (1.0 / steps, scalar_gap(prediction, targets[:, step], loss.readings.scalar_norm))
    return terms, teacher_out


def counted_rollout_step(model: torch.nn.Module, teacher, loss: Loss, x: torch.Tensor, targets: torch.Tensor,
                         teacher_out: Outputs | None = None, feedback_gradient: bool = True,
                         precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor | None]:
    """`counted_step` over a rollout (`rollout_terms`): the loss, and the first step's entries learnt from the
    teacher (`Loss.taken`)."""
    terms, teacher_out = rollout_terms(model, teacher, loss, x, targets, teacher_out, feedback_gradient, precision)
    return sum(weight * value for weight, value in terms.values()), loss.taken(targets[:, 0], teacher_out)
