"""Losses on the models' predictions alone: the task loss, response distillation (Eq. 1-3) and the overseen
response distillation ORD (Eq. 4-6), which learns from the teacher only where it is far from the target."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdstgcn.losses.base import Loss, Readings, scalar_gap


class TaskLoss(Loss):
    """Eq. 3 at beta = 0: ||y_s - T||_2 under the scalar_norm reading (no KD; the teachers take the default)."""

    name = "task"

    def __init__(self, readings: Readings = Readings()):
        super().__init__()
        self.readings = readings

    def terms(self, student, target, teacher=None):
        return {"task": (1.0, scalar_gap(student.prediction, target, self.readings.scalar_norm))}


class ResponseL2(Loss):
    """Eq. 3: beta * ||y_s - y_t||_2 + (1 - beta) * ||y_s - T||_2."""

    name = "rd_l2"

    def __init__(self, beta: float, readings: Readings = Readings()):
        super().__init__()
        self.beta, self.readings = beta, readings

    def terms(self, student, target, teacher):
        norm = self.readings.scalar_norm
        return {"response": (self.beta, scalar_gap(student.prediction, teacher.prediction, norm)),
                "task": (1 - self.beta, scalar_gap(student.prediction, target, norm))}


class ResponseKL(Loss):
    """Eq. 1-2: beta * tau^2 * KL(p_t || p_s), softmax over nodes at temperature tau, + (1 - beta) * ||y_s - T||_2."""

    name = "rd_kl"

    def __init__(self, beta: float, temperature: float = 1.0, readings: Readings = Readings()):
        super().__init__()
        self.beta, self.temperature, self.readings = beta, temperature, readings

    def terms(self, student, target, teacher):
        tau = self.temperature
        log_ps = F.log_softmax(student.prediction / tau, dim=-1)
        log_pt = F.log_softmax(teacher.prediction / tau, dim=-1)
        kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau ** 2
        return {"kl": (self.beta, kl),
                "task": (1 - self.beta, scalar_gap(student.prediction, target, self.readings.scalar_norm))}


class OverseenResponse(Loss):
    """Eq. 4-6: learn from y_t where the min-max normalised |y_t - T| of a node exceeds alpha1, else from T."""

    name = "ord"

    def __init__(self, alpha1: float, readings: Readings = Readings()):
        super().__init__()
        self.alpha1, self.readings = alpha1, readings
        # entries learnt from the teacher and all entries so far: the share of Table 3, kept in the checkpoint
        self.register_buffer("teacher_entries", torch.zeros((), dtype=torch.long))
        self.register_buffer("entries", torch.zeros((), dtype=torch.long))

    def switch(self, target: torch.Tensor, teacher) -> torch.Tensor:
        """Eq. 4-5: True where the entry is learnt from the teacher's prediction."""
        gap = (teacher.prediction - target).abs()
        low = gap.min(dim=-1, keepdim=True).values
        span = gap.max(dim=-1, keepdim=True).values - low
        normalised = torch.where(span > 0, (gap - low) / span.clamp_min(1e-12), torch.zeros_like(gap))
        return normalised > self.alpha1

    def terms(self, student, target, teacher):
        goal = torch.where(self.switch(target, teacher), teacher.prediction, target)
        readings = self.readings
        return {"ord": (1.0, scalar_gap(student.prediction, goal, readings.scalar_norm, readings.ord_reduction))}

    def taken(self, target, teacher):
        return self.switch(target, teacher).sum()

    def record(self, taken, entries):
        self.teacher_entries += taken
        self.entries += entries

    def share_pct(self) -> float:
        return 100.0 * int(self.teacher_entries) / max(int(self.entries), 1)
