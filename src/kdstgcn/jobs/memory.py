"""The memory of a training, pruning, evaluation or export job, from what the job is given: the `JobShape` of the
estimate (kdstgcn.runtime.memory) built from a run spec, and the pre-flight check each job makes before it loads
its data. Torch-free where it builds shapes: the workflow sizes each rule's `mem_mb` with it when it plans
(workflow/rules/common.smk), before any graph is built; the checks, given the models the job has read (their
architecture and graph), resolve the device and import torch when called.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.runspec import RunSpec, TrainSettings
from kdstgcn.losses.registry import CORRELATION_KERNEL_COMPILES, loss_info, stcd_feature_groups
from kdstgcn.model.architecture import Architecture
from kdstgcn.runtime.memory.check import check_memory, mem_mb
from kdstgcn.runtime.memory.estimate import estimate, teacher_output_bytes
from kdstgcn.runtime.memory.shapes import Estimate, GraphShape, JobShape, TeacherShape
from kdstgcn.runtime.sizes import DENSE_MAX_NODES, FEATURE_STORE_VALUE_BYTES, export_check_windows

if TYPE_CHECKING:
    import torch

    from kdstgcn.model.persist import SavedModel
    from kdstgcn.model.stgcn import STGCN

# What a job that may run on a GPU asks of the host at least (MB): what such jobs were always given; the host
# memory of a CUDA context is not part of the estimate.
GPU_JOB_MIN_MB = 8000


def feature_groups(loss: str, params: dict) -> tuple[str, ...]:
    """The teacher's hidden-layer outputs a loss reads (its `feature_groups`, kdstgcn.losses): SKD the last block's,
    STCD by its alpha2, TCD and SCD as STCD with alpha2 = 0 and 1 (kdstgcn.losses.correlation)."""
    if loss == "stcd":
        return stcd_feature_groups(params["alpha2"])
    return {"skd": ("hidden",), "tcd": stcd_feature_groups(0.0), "scd": stcd_feature_groups(1.0)}.get(loss, ())


def distance_terms(loss: str, params: dict) -> frozenset[str]:
    """The distance terms a loss computes: SCD and TCD where it reads those groups, SKD's similarities."""
    names = {"temporal": "tcd", "spatial": "scd", "hidden": "skd"}
    return frozenset(names[group] for group in feature_groups(loss, params))


def planned_graph(n_nodes: int) -> GraphShape:
    """The Chebyshev stack of a network not built yet: dense up to DENSE_MAX_NODES stations, sparse above."""
    return GraphShape(dense=n_nodes <= DENSE_MAX_NODES)


def _teacher(settings: TrainSettings, loss: str, params: dict, teacher: Architecture | None,
             shape: JobShape) -> TeacherShape | None:
    """Where a run's teacher outputs come from, as `kdstgcn.training.teacher.teacher_source` decides: none, the
    predictions computed once, the feature store where it fits `teacher_features_max_bytes`, else a live teacher."""
    info = loss_info(loss)
    if teacher is None or not info.uses_teacher:
        return None
    if not info.reads_features:
        return TeacherShape(teacher, "predictions")
    if settings.reads_feature_store:
        store = TeacherShape(teacher, "store", feature_groups(loss, params),
                             FEATURE_STORE_VALUE_BYTES[settings.teacher_features])
        if teacher_output_bytes(replace(shape, teacher=store)) <= settings.teacher_features_max_bytes:
            return store
    return TeacherShape(teacher)


def _shape(kind: str, model: Architecture, run: RunSpec, loss: str, params: dict, kernel: str | None,
           readings: dict | None, teacher: Architecture | None, device_type: str, graph: GraphShape | None) -> JobShape:
    """The shape of a training (or pruning) job of `run` on `model` with the loss `loss`."""
    settings = run.train
    scd = (readings or {}).get("scd_stations", "all")
    compiles = ((loss_info(loss).correlation and CORRELATION_KERNEL_COMPILES.get(kernel, False))
                or settings.compile == "on" or (settings.compile == "auto" and device_type == "cuda"))
    shape = JobShape(kind, model, run.data, graph or planned_graph(model.n_nodes), batch_size=settings.batch_size,
                     eval_batch_size=settings.eval_batch_size, horizon_steps=max(settings.horizons),
                     loss_terms=distance_terms(loss, params), scd_stations=None if scd == "all" else int(scd),
                     rollout_steps=1 if settings.rollout is None else settings.rollout.last_steps,
                     compiles=compiles, device_type=device_type)
    return replace(shape, teacher=_teacher(settings, loss, params, teacher, shape))


def train_estimate(run: RunSpec, teacher: Architecture | None, device_type: str,
                   graph: GraphShape | None = None) -> Estimate:
    """The memory of training `run` (its own architecture) with `teacher` (the teacher's architecture where the
    loss reads one) on a device of `device_type`; `graph`: the dataset's stack where built (else planned)."""
    loss = run.loss
    return estimate(_shape("train", run.arch, run, loss.name, loss.params, loss.correlation_kernel, loss.readings,
                           teacher, device_type, graph))


def prune_estimate(run: RunSpec, base: Architecture, teacher: Architecture | None, device_type: str,
                   graph: GraphShape | None = None) -> Estimate:
    """The memory of a pruning run on `base`: the larger of its pruning phase (the base under masks, the importance
    loss with a live teacher) and its fine-tuning (the compact model, at most the base, with the fine-tuning loss
    and its teacher outputs)."""
    importance, finetune = run.loss, run.prune.finetune_loss
    phases = [estimate(_shape("prune", base, run, importance.name, importance.params, importance.correlation_kernel,
                              importance.readings, teacher, device_type, graph)),
              estimate(_shape("train", base, run, finetune.name, finetune.params, finetune.correlation_kernel,
                              finetune.readings, teacher, device_type, graph))]
    return max(phases, key=lambda phase: phase.peak_bytes)


def evaluate_estimate(model: Architecture, data: DataSpec, horizons, eval_batch_size: int, device_type: str,
                      graph: GraphShape | None = None) -> Estimate:
    """The memory of evaluating a model of architecture `model` on the test days."""
    return estimate(JobShape("evaluate", model, data, graph or planned_graph(model.n_nodes),
                             eval_batch_size=eval_batch_size, horizon_steps=max(horizons), device_type=device_type))


def export_estimate(model: Architecture, data: DataSpec, graph: GraphShape | None = None) -> Estimate:
    """The memory of exporting a model of architecture `model` (on the CPU)."""
    return estimate(JobShape("export", model, data, graph or planned_graph(model.n_nodes),
                             eval_batch_size=export_check_windows(model.n_nodes)))


def planned_mem_mb(job: Estimate, device: str) -> int:
    """A rule's `mem_mb`: the estimate, and at least GPU_JOB_MIN_MB where config key `device` lets the job run on a
    GPU."""
    return max(mem_mb(job), 0 if device == "cpu" else GPU_JOB_MIN_MB)


# --- the pre-flight checks of the jobs (given the models they read; they resolve the device: torch)


def graph_shape(cheb: torch.Tensor) -> GraphShape:
    """A model's Chebyshev stack [ks, N, N] as the estimate sees it: dense, or its stored entries and the most
    entries of a row of each term T_1.."""
    import torch

    if not cheb.is_sparse:
        return GraphShape(dense=True)
    term, row, _ = cheb.coalesce().indices()
    n = cheb.shape[-1]
    rows = [int(torch.bincount(row[term == k], minlength=n).max()) for k in range(1, cheb.shape[0])]
    return GraphShape(dense=False, nonzeros=int(term.numel()), row_entries=tuple(rows))


def model_shape(model: STGCN | SavedModel | None) -> tuple[Architecture | None, GraphShape | None]:
    """The architecture and Chebyshev stack of a model, built or read (None, None without one)."""
    if model is None:
        return None, None
    return model.arch, graph_shape(model.cheb)


def _device_type(device: str) -> str:
    from kdstgcn.runtime.devices import pick_device

    return pick_device(device).type


def check_train_memory(run: RunSpec, teacher: SavedModel | None) -> None:
    """Stop a training job whose estimate exceeds the memory it may use (`check_memory`), before it loads its
    data; the teacher's stack is the dataset's."""
    teacher_arch, graph = model_shape(teacher)
    check_memory(train_estimate(run, teacher_arch, _device_type(run.device), graph), f"training {run.role}")


def check_prune_memory(run: RunSpec, base: SavedModel, teacher: SavedModel | None) -> None:
    """`check_train_memory` of a pruning job."""
    base_arch, graph = model_shape(base)
    teacher_arch = None if teacher is None else teacher.arch
    check_memory(prune_estimate(run, base_arch, teacher_arch, _device_type(run.device), graph),
                 f"pruning {run.role}")


def check_evaluate_memory(model: STGCN, model_path: str, data: DataSpec, horizons, eval_batch_size: int,
                          device: str) -> None:
    """`check_train_memory` of an evaluation job of the model read from `model_path`."""
    arch, graph = model_shape(model)
    check_memory(evaluate_estimate(arch, data, horizons, eval_batch_size, _device_type(device), graph),
                 f"evaluating {model_path}")


def check_export_memory(model: STGCN, model_path: str, data: DataSpec) -> None:
    """`check_train_memory` of an export job of the model read from `model_path`."""
    arch, graph = model_shape(model)
    check_memory(export_estimate(arch, data, graph), f"exporting {model_path}")
