"""Every loss of the registry by name: `build_loss` makes one from a run's hyper-parameters and readings."""
from __future__ import annotations

from kdstgcn.losses.base import Loss, Readings
from kdstgcn.losses.correlation import SpatialOnlySTCD, SpatioTemporalCorrelation, TemporalOnlySTCD
from kdstgcn.losses.registry import LOSSES, loss_info
from kdstgcn.losses.response import OverseenResponse, ResponseKL, ResponseL2, TaskLoss
from kdstgcn.losses.structure import StructureKD

LOSS_CLASSES: dict[str, type[Loss]] = {cls.name: cls for cls in (
    TaskLoss, ResponseL2, ResponseKL, OverseenResponse, StructureKD, SpatioTemporalCorrelation, TemporalOnlySTCD,
    SpatialOnlySTCD)}
assert LOSS_CLASSES.keys() == LOSSES.keys(), "every loss of the registry needs a class, and every class a name there"


def build_loss(name: str, params: dict | None = None, correlation_kernel: str = "auto",
               readings: dict | None = None) -> Loss:
    """Build a loss by name from its hyper-parameters (extra keys such as batch_size are ignored); the
    correlation losses compute their distance matrices with `correlation_kernel` (a name in
    kdstgcn.losses.kernels.CORRELATION_KERNELS), and the losses that take readings (registry) take the paper's
    open readings from `readings` (Readings' fields; missing fields keep their defaults)."""
    params = params or {}
    info = loss_info(name)
    kwargs = {k: params[k] for k in info.parameters if k in params}
    if info.correlation:
        kwargs["kernel"] = correlation_kernel
    if info.readings:
        kwargs["readings"] = Readings(**(readings or {}))
    return LOSS_CLASSES[name](**kwargs)
