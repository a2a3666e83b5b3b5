"""Where a distilling run takes its frozen teacher's outputs from, batch by batch: a forward of the live teacher,
the teacher's predictions computed once for the run, or the teacher's feature store (both kept on disk by
kdstgcn.training.teacher_cache). `teacher_source` picks one for a run, for as long as the run trains."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from kdstgcn.config.runspec import TrainSettings
from kdstgcn.data.samples import PreparedData, WindowedSeries
from kdstgcn.losses.base import Loss, Outputs
from kdstgcn.training.teacher_cache import STORE_FOLDER, TeacherFeatureStore, cached_teacher_predictions, store_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TeacherSource:
    """The frozen teacher model of a run (which the per-epoch anatomy also reads) and its outputs per batch."""

    model: torch.nn.Module

    def on_device(self, loss: Loss, targets: WindowedSeries, device: torch.device) -> TeacherSource:
        """This source with what it holds on `device`, checked against the loss and the training targets."""
        return self

    def batch(self, idx: torch.Tensor, device: torch.device) -> Outputs | None:
        """The teacher's outputs for training windows `idx`; None: `loss_step` runs the teacher forward."""
        return None


@dataclass(frozen=True, eq=False)
class LiveTeacher(TeacherSource):
    """A teacher forward in every batch, by `loss_step`."""


@dataclass(frozen=True, eq=False)
class CachedPredictions(TeacherSource):
    """The teacher's predictions [W, N] for every training window (`cached_teacher_predictions`), for a
    response-only loss."""

    predictions: torch.Tensor

    def on_device(self, loss: Loss, targets: WindowedSeries, device: torch.device) -> CachedPredictions:
        if loss.uses_features or self.predictions.shape != targets.shape:
            raise ValueError(f"cached teacher predictions {tuple(self.predictions.shape)} serve a response-only "
                             f"loss on training targets {tuple(targets.shape)}; this loss or data needs the teacher")
        return replace(self, predictions=self.predictions.to(device))

    def batch(self, idx: torch.Tensor, device: torch.device) -> Outputs:
        return Outputs(self.predictions[idx])


@dataclass(frozen=True, eq=False)
class StoredFeatures(TeacherSource):
    """The teacher's prediction and hidden-layer outputs for every training window (`TeacherFeatureStore`), for a
    feature loss."""

    store: TeacherFeatureStore

    def batch(self, idx: torch.Tensor, device: torch.device) -> Outputs:
        return self.store.batch(idx, device)


@contextmanager
def teacher_source(loss: Loss, settings: TrainSettings, teacher: torch.nn.Module | None, teacher_path: str | None,
                   data: PreparedData, checkpoint: str, device: torch.device) -> Iterator[TeacherSource | None]:
    """How a run reads its teacher (None: it has none), for the `with` block that trains the run. Where the loss
    lets the teacher's outputs be computed once instead of a teacher forward per batch: a response-only loss caches
    the predictions beside the run's checkpoint; a feature loss reads the teacher's store (beside the teacher,
    shared by all who distil from it) when `settings.teacher_features` names a store that fits
    `settings.teacher_features_max_bytes` (`store_fits`), and holds it open, so that no other job removes it,
    until the block ends."""
    if teacher is None:
        yield None
    elif loss.uses_teacher and not loss.uses_features:
        predictions = cached_teacher_predictions(teacher, data.inputs("train"), Path(checkpoint).parent,
                                                 settings.batch_size, device)
        yield CachedPredictions(teacher, predictions)
    elif (loss.uses_features and settings.reads_feature_store
          and store_fits(teacher, data.inputs("train"), loss.feature_groups, settings)):
        with TeacherFeatureStore.open(teacher, data.inputs("train"), Path(teacher_path).parent / STORE_FOLDER,
                                      settings.teacher_features, loss.feature_groups, settings.batch_size,
                                      device) as store:
            yield StoredFeatures(teacher, store)
    else:
        yield LiveTeacher(teacher)


def store_fits(teacher: torch.nn.Module, inputs: WindowedSeries, groups: tuple[str, ...],
               settings: TrainSettings) -> bool:
    """Whether the teacher's feature store on `inputs` (`store_bytes`) stays within
    `settings.teacher_features_max_bytes`; where it does not, one warning names both and the setting."""
    size = store_bytes(teacher, inputs, groups, settings.teacher_features)
    if size <= settings.teacher_features_max_bytes:
        return True
    log.warning("the teacher feature store of %d training windows would take %.3g GB, more than "
                "distillation.teacher_features_max_bytes (%.3g GB): this run reads its teacher live, a forward per "
                "batch; raise the setting to read the store", len(inputs), size / 1e9,
                settings.teacher_features_max_bytes / 1e9)
    return False
