"""Structure knowledge distillation (SKD, Bian et al. 2021): the student learns the teacher's cosine similarities
between nodes in the last hidden layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdstgcn.losses.base import Loss, Readings, scalar_gap


def node_similarity(hidden: torch.Tensor) -> torch.Tensor:
    """[B, C, T, N] -> [B, N, N] cosine similarity between the nodes' hidden vectors."""
    v = F.normalize(hidden.permute(0, 3, 1, 2).flatten(2), dim=-1)
    return v @ v.transpose(1, 2)


class StructureKD(Loss):
    """SKD (no equation in the paper), our reading: alpha * MSE of node similarities + (1 - alpha) * task loss, the
    task term under the scalar_norm reading as every student's."""

    name = "skd"
    feature_groups = ("hidden",)

    def __init__(self, alpha: float, readings: Readings = Readings()):
        super().__init__()
        self.alpha, self.readings = alpha, readings

    def terms(self, student, target, teacher):
        with torch.no_grad():
            sim_t = node_similarity(teacher.features["hidden"])
        structure = F.mse_loss(node_similarity(student.features["hidden"]), sim_t)
        return {"structure": (self.alpha, structure),
                "task": (1 - self.alpha, scalar_gap(student.prediction, target, self.readings.scalar_norm))}
