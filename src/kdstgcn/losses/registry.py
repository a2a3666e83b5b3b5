"""Every loss by name, with what it takes: its hyper-parameters (Table 6's columns), the paper's open readings
that change it, and whether it reads the teacher and the teacher's hidden layers; and the correlation kernels.
Importable without torch: the config checks, the tuning space, the report and the memory estimate read it."""
from __future__ import annotations

from dataclasses import dataclass

READING_CHOICES = {"scalar_norm": ("squared", "absolute"), "ord_reduction": ("mean", "sum"),
                   "distance_scale": ("raw", "mean_normalised"), "scd_stations": ("all",)}
# the reading values that leave the paper's equations rather than read them (docs/method.md): the report marks
# a model trained with one as "beyond the paper"
BEYOND_PAPER = {"distance_scale": ("mean_normalised",)}
# readings that trade the paper's exact loss for a cost that grows slower with the network, with the smallest
# count each takes: the first choice is the paper's equation, a count leaves it (scd_stations: SCD over that many
# stations sampled per batch). A run spec records one only where it is set to a count, so that a run without it
# keeps the identity (info.json, resume fingerprint) it had before the reading existed.
SCALE_READINGS = {"scd_stations": 2}


def is_count(key: str, value) -> bool:
    """Whether `value` is a count the scale reading `key` takes (an integer of at least its smallest count)."""
    return key in SCALE_READINGS and type(value) is int and value >= SCALE_READINGS[key]


def reading_allowed(key: str, value) -> bool:
    """Whether `value` is one of the reading `key`'s choices, or a count it takes."""
    return value in READING_CHOICES[key] or is_count(key, value)


def reading_options(key: str) -> str:
    """What the reading `key` takes, for an error message."""
    count = f" or an integer >= {SCALE_READINGS[key]}" if key in SCALE_READINGS else ""
    return f"one of {list(READING_CHOICES[key])}{count}"


def beyond_paper(key: str, value) -> bool:
    """Whether the reading `key` = `value` leaves the paper's equations."""
    return value in BEYOND_PAPER.get(key, ()) or is_count(key, value)


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


# The correlation kernels by name (config key distillation.correlation_kernel; kdstgcn.losses.kernels computes them)
# and whether each runs torch.compile: "compiled" always, "auto" where it builds (elsewhere it falls back to cdist).
CORRELATION_KERNEL_COMPILES = {"auto": True, "compiled": True, "cdist": False}

CORRELATION_READINGS = ("scalar_norm", "ord_reduction", "distance_scale")
SPATIAL_READINGS = (*CORRELATION_READINGS, "scd_stations")  # the losses with an SCD term

LOSSES = {
    "task": LossInfo(readings=("scalar_norm",), uses_teacher=False),
    "rd_l2": LossInfo(("beta",), ("scalar_norm",)),
    "rd_kl": LossInfo(("beta", "temperature"), ("scalar_norm",)),
    "ord": LossInfo(("alpha1",), ("scalar_norm", "ord_reduction")),
    "skd": LossInfo(("alpha",), ("scalar_norm",), reads_features=True),
    "stcd": LossInfo(("alpha1", "alpha2", "alpha3"), SPATIAL_READINGS, reads_features=True, correlation=True),
    "tcd": LossInfo(("alpha1", "alpha3"), CORRELATION_READINGS, reads_features=True, correlation=True),
    "scd": LossInfo(("alpha1", "alpha3"), SPATIAL_READINGS, reads_features=True, correlation=True),
}


def stcd_feature_groups(alpha2: float) -> tuple[str, ...]:
    """The teacher's hidden-layer outputs L_STCD reads (Eq. 11): the temporal convs' where L_TCD has weight
    (alpha2 < 1), the graph convs' where L_SCD has (alpha2 > 0)."""
    return (("temporal",) if alpha2 < 1 else ()) + (("spatial",) if alpha2 > 0 else ())


def loss_info(name: str) -> LossInfo:
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
