"""What every loss is made of: a model's `Outputs`, the paper's open `Readings`, the `Loss` base class (a sum of
named, weighted terms), and the forward passes that feed a loss during training (`step_outputs`, `counted_step`,
`loss_step`).

A loss sees the student's and (frozen) teacher's `Outputs` and the target. Which losses exist, what they take
and whether they read the teacher or its hidden layers is said once, in kdstgcn.losses.registry.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdstgcn.losses.registry import READING_CHOICES, loss_info, reading_allowed, reading_options


@dataclass
class Outputs:
    """A model's one-step prediction [B, N] and, when asked for, its hidden-layer outputs."""

    prediction: torch.Tensor
    features: dict | None = None


@dataclass(frozen=True)
class Readings:
    """The paper's open readings (docs/method.md); the defaults are the original ones."""

    scalar_norm: str = "squared"  # every ||a - b||_2 of a scalar in Eq. 2, 3, 6, 8, 10: squared or absolute error
    ord_reduction: str = "mean"  # Eq. 6 averaged over batch and nodes, or summed as written
    distance_scale: str = "raw"  # the distance matrices of Eq. 7 / 9 raw, or divided by their mean per group
    scd_stations: str | int = "all"  # Eq. 9-10 over all stations, or over K sampled per batch (beyond the paper)

    def __post_init__(self):
        for key in READING_CHOICES:
            if not reading_allowed(key, getattr(self, key)):
                raise ValueError(f"unknown reading {key}={getattr(self, key)!r}; choose {reading_options(key)}")


def scalar_gap(a: torch.Tensor, b: torch.Tensor, norm: str, reduction: str = "mean") -> torch.Tensor:
    """||a - b||_2 of per-entry scalars: squared error or absolute error, averaged or summed over all entries."""
    if norm == "squared":
        return F.mse_loss(a, b, reduction=reduction)
    return F.l1_loss(a, b, reduction=reduction)


class Loss(nn.Module):
    """A loss: the sum over its terms of weight * unweighted value.

    A loss of the registry sets `name` (its key in kdstgcn.losses.registry.LOSSES) and takes `uses_teacher` and
    `uses_features` from there. A part of such a loss (one term of it) has no name and is not trained alone.
    """

    name: str
    uses_teacher: bool
    uses_features: bool
    feature_groups: tuple[str, ...] = ()  # the teacher's hidden-layer outputs the loss reads (Outputs.features)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in vars(cls):
            info = loss_info(cls.name)
            cls.uses_teacher, cls.uses_features = info.uses_teacher, info.reads_features

    def terms(self, student: Outputs, target: torch.Tensor, teacher: Outputs | None = None
              ) -> dict[str, tuple[float, torch.Tensor]]:
        """Each term by name: (weight, unweighted value). Terms of weight 0 may be left out."""
        raise NotImplementedError

    def forward(self, student: Outputs, target: torch.Tensor, teacher: Outputs | None = None) -> torch.Tensor:
        return sum(weight * value for weight, value in self.terms(student, target, teacher).values())

    def taken(self, target: torch.Tensor, teacher: Outputs | None) -> torch.Tensor | None:
        """How many entries of this batch a loss with a switch (ORD, Eq. 4-5) learns from the teacher's prediction,
        as a device tensor; None for losses without a switch. Computing it changes nothing: `record` counts it."""
        return None

    def record(self, taken: torch.Tensor | None, entries: int) -> None:
        """Count a batch for the share (`share_pct`): `taken` of its `entries` learnt from the teacher."""

    def share_pct(self) -> float | None:
        """Share of entries learnt from the teacher's prediction (Table 3); None for losses without a switch."""
        return None


def forward(model: torch.nn.Module, x: torch.Tensor, features: bool) -> Outputs:
    """The model's outputs for inputs `x`, with its hidden-layer outputs if `features`."""
    if features:
        return Outputs(*model(x, return_features=True))
    return Outputs(model(x))


def teacher_forward(teacher: torch.nn.Module, x: torch.Tensor, features: bool) -> Outputs:
    """The frozen teacher's outputs in inference mode. The prediction is cloned into a normal tensor, since
    response losses keep it for their backward; features stay inference tensors, which the feature losses
    only read (copied into groups, or under no_grad), never keep for autograd. Inside torch.compile the forward
    runs under no_grad instead (the same numbers): AOTAutograd cannot trace inference tensors, and its failure
    there leaves torch's dispatch state broken for the rest of the process."""
    with torch.no_grad() if torch.compiler.is_compiling() else torch.inference_mode():
        out = forward(teacher, x, features)
    return Outputs(out.prediction.clone(), out.features)


def step_outputs(model, teacher, loss: Loss, x: torch.Tensor, teacher_out: Outputs | None = None
                 ) -> tuple[Outputs, Outputs | None]:
    """What `loss` reads of a batch `x`: the student's outputs and the frozen teacher's (where the loss reads the
    teacher: `teacher_out`, its stored outputs for this batch from kdstgcn.training.teacher_cache, else a forward
    of it without gradients, run first)."""
    if teacher_out is None and loss.uses_teacher:
        teacher_out = teacher_forward(teacher, x, loss.uses_features)
    return forward(model, x, loss.uses_features), teacher_out


def counted_step(model, teacher, loss: Loss, x: torch.Tensor, y: torch.Tensor,
                 teacher_out: Outputs | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward of the student (and, without gradients, of the frozen teacher; `step_outputs`): the loss and the
    batch's entries learnt from the teacher (`Loss.taken`), with no state changed, so that a compiled training step
    can return the count and record it outside the compiled graph. `teacher_out`: the teacher's stored outputs for
    this batch (kdstgcn.training.teacher_cache), which replace the teacher forward."""
    student, teacher_out = step_outputs(model, teacher, loss, x, teacher_out)
    return loss(student, y, teacher_out), loss.taken(y, teacher_out)


def loss_step(model, teacher, loss: Loss, x: torch.Tensor, y: torch.Tensor,
              teacher_out: Outputs | None = None) -> torch.Tensor:
    """`counted_step`'s loss, the batch counted in the loss's share (`Loss.record`)."""
    value, taken = counted_step(model, teacher, loss, x, y, teacher_out)
    loss.record(taken, y.numel())
    return value
