"""Every loss by name, with what it takes: its hyper-parameters (Table 6's columns), the paper's open readings
that change it, and whether it reads the teacher and the teacher's hidden layers. Importable without torch: the
config checks, the tuning space and the report read it."""
from __future__ import annotations

from dataclasses import dataclass

READING_CHOICES = {"scalar_norm": ("squared", "absolute"), "ord_reduction": ("mean", "sum"),
                   "distance_scale": ("raw", "mean_normalised")}
# the reading values that leave the paper's equations rather than read them (docs/method.md): the report marks
# a model trained with one as "beyond the paper"
BEYOND_PAPER = {"distance_scale": ("mean_normalised",)}


def beyond_paper(key: str, value: str) -> bool:
    """Whether the reading `key` = `value` leaves the paper's equations."""
    return value in BEYOND_PAPER.get(key, ())


@dataclass(frozen=True)
class LossInfo:
    parameters: tuple[str, ...] = ()
    readings: tuple[str, ...] = ()
    uses_teacher: bool = True
    reads_features: bool = False
    correlation: bool = False  # computes distance matrices with distillation.correlation_kernel

    @property
    def tuned_parameters(self) -> tuple[str, ...]:
        """The weights a study tunes: every parameter but the KL temperature, which is a fixed reading."""
        return tuple(p for p in self.parameters if p != "temperature")


CORRELATION_READINGS = ("scalar_norm", "ord_reduction", "distance_scale")

LOSSES = {
    "task": LossInfo(readings=("scalar_norm",), uses_teacher=False),
    "rd_l2": LossInfo(("beta",), ("scalar_norm",)),
    "rd_kl": LossInfo(("beta", "temperature"), ("scalar_norm",)),
    "ord": LossInfo(("alpha1",), ("scalar_norm", "ord_reduction")),
    "skd": LossInfo(("alpha",), ("scalar_norm",), reads_features=True),
    "stcd": LossInfo(("alpha1", "alpha2", "alpha3"), CORRELATION_READINGS, reads_features=True, correlation=True),
    "tcd": LossInfo(("alpha1", "alpha3"), CORRELATION_READINGS, reads_features=True, correlation=True),
    "scd": LossInfo(("alpha1", "alpha3"), CORRELATION_READINGS, reads_features=True, correlation=True),
}


def loss_info(name: str) -> LossInfo:
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
