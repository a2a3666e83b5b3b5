"""A job's peak memory, estimated before it starts from the sizes that set it, and the check that stops a job
before any training when the memory it may use cannot hold it.

`estimate` adds up what the code allocates, each `Term` from the tensors behind it: what the job holds throughout
(the process's fixed cost, the normalised series, the graph, the models and their training state, the teacher's
stored outputs) and, of its phases, the one that needs most (loading the series; a training step with the
activations kept for its backward pass, the live teacher's features and the distillation losses' distance
matrices; a rollout over a split with its outputs; writing the ONNX files). The sizes per window and station
follow the layers of `kdstgcn.model` (`Layout`), the constants below were measured (docs/performance.md, "Memory
estimate"). The estimate is of the host's memory: on a GPU the compute terms live in device memory instead, and
the host memory of a CUDA context is not part of it.

Torch-free and below every other layer of the package: the workflow sizes each job's `mem_mb` with it when it
plans. `kdstgcn.jobs.memory` describes a job from its run spec (`JobShape`).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

JOB_KINDS = ("train", "prune", "evaluate", "export")
FLOAT32 = 4
MB = 10**6

# The process of a computing job before its data: interpreter, torch, pandas and pyarrow, Snakemake's script
# preamble, torch's thread pools; the peak of a demo job (16 stations) less its other terms.
BASELINE_BYTES = 420 * 2**20
# What an export job adds to it: onnx, onnxruntime and the exporter, measured at 16 stations.
ONNX_BYTES = 140 * 2**20
# torch.compile (a compiled correlation kernel or training step): dynamo, inductor and one compile in the process.
COMPILER_BYTES = 160 * 2**20
# A training step's transient memory grows as freed blocks are kept and reused (kdstgcn.runtime.runner
# .keep_freed_memory): an L_STCD step's peak after 200 steps was 1.7 times the first step's and still growing
# slowly, about the step's tensors counted here (`step_terms`); this much more covers a run of thousands of steps.
HEAP_REUSE = 1.25
# Bytes per value of the series while it is read and normalised (kdstgcn.data.samples.normalised_days), beside the
# float32 days it leaves: the parquet table and its float64 frame, the days cut, one split's float64 z-scores; and
# the page cache of a memory-mapped file of the days where the job writes and maps it. Measured: 14 in memory, 23
# memory-mapped (and the 4 of the days).
LOAD_BYTES_PER_VALUE = 24
# Bytes per predicted value of a rollout over a split with its metrics (kdstgcn.evaluation.rollout.evaluate): the
# float32 rollout and its chunks, the predictions and the truth gathered, each cast to float64 and de-normalised,
# both again under the station mask. Measured: 44.
OUTPUT_BYTES_PER_VALUE = 48
# What the evaluation job adds per predicted value: predictions and truth as float32 for the compressed file.
SAVED_BYTES_PER_VALUE = 8
# The CPU rollout's chunks (kdstgcn.evaluation.rollout.CPU_CHUNK_BYTES, CPU_CHUNK_WINDOWS; torch-free here, and
# checked equal to them by the tests): at most this many windows, whose largest activation is about this size.
ROLLOUT_CHUNK_BYTES = 32 * 2**20
ROLLOUT_CHUNK_WINDOWS = 128
# A temporal conv narrower than this (input channels x taps) stacks its taps for a batched product on a CPU, a wider
# one runs conv2d (kdstgcn.model.temporal.CPU_CONV2D_MIN_CONTRACTION, checked equal by the tests).
CONV2D_MIN_CONTRACTION = 64
# Entries of a row of a sparse Chebyshev term, on average and at most, where the graph is not built yet (the
# workflow plans before the adjacency job): a road graph under the paper's kernel has about 10 neighbours a
# station, its T_2 about 40 entries a row and at most about 50.
PLANNED_ROW_ENTRIES = 64
# Bytes per stored entry of a sparse stack: the model's COO stack (three int64 indices and a float32) and the CSR
# form of each term its products take (an int64 column and a float32).
SPARSE_ENTRY_BYTES = 3 * 8 + 4 + 8 + 4
# ONNX Runtime holds the gathered neighbours of every slot of a sparse term's product at once (the exported form,
# kdstgcn.deploy.exported.neighbour_lists): an export's check grows with the most entries of a row.
# The ONNX exporter's copies of a model's constants while it writes the three files: the export form, the traced
# graph, the file bytes, the parsed and re-serialised proto.
EXPORT_COPIES = 12
# Forward passes of an export's check windows held at once: the model's, ONNX Runtime's and their streaming states
# (kdstgcn.deploy.export.check_export). Measured: 2.1 to 2.6 of `inference_floats`.
EXPORT_CHECK_FORWARDS = 3
MEMORY_LIMIT_ENV = "KDSTGCN_MEMORY_MB"  # the memory a job may use (MB) in place of the cgroup limit or MemAvailable


class Layout(Protocol):
    """What sets a model's memory (`kdstgcn.model.architecture.Architecture` has it): blocks [c_in, c_t, c_out],
    the temporal kernel kt, the Chebyshev terms ks, the input window n_his and the stations."""

    n_nodes: int
    blocks: tuple[tuple[int, int, int], ...]
    kt: int
    ks: int
    n_his: int


class Days(Protocol):
    """How a dataset is cut (`kdstgcn.config.datasets.DataSpec` has it): steps per day, (train, val, test) days,
    input and output windows."""

    steps_per_day: int
    split: tuple[int, ...]
    n_his: int
    n_pred: int


@dataclass(frozen=True)
class TeacherShape:
    """The frozen teacher a job reads and where its outputs come from: `live` (a forward per batch),
    `predictions` (computed once, [W, N]) or `store` (the feature store of `stored_groups` in `store_value_bytes`
    per value, kdstgcn.training.teacher_cache)."""

    model: Layout
    outputs: str = "live"
    stored_groups: tuple[str, ...] = ()
    store_value_bytes: int = FLOAT32


@dataclass(frozen=True)
class GraphShape:
    """A model's Chebyshev stack: `dense` (up to kdstgcn.data.graph.DENSE_MAX_NODES stations) or sparse, and of a
    sparse one already built its stored entries (all terms) and the most entries of a row of each term T_1.. (the
    neighbour slots of its exported form); not built yet, PLANNED_ROW_ENTRIES stand in for both."""

    dense: bool
    nonzeros: int | None = None
    row_entries: tuple[int, ...] | None = None


@dataclass(frozen=True)
class JobShape:
    """A job as the estimate sees it. `model`: the model trained, pruned (its base), evaluated or exported;
    `eval_batch_size`: the windows a rollout passes at once (on a CPU in chunks), or an export checks its files on;
    `graph`: its Chebyshev stack (`GraphShape`); `loss_terms`: the distance terms of its loss ("tcd", "scd",
    "skd"), SCD over `scd_stations` (None: every station); `rollout_steps`: the steps of rollout training (1: the
    one-step loss); `compiles`: whether the job runs torch.compile; `device_type`: where it computes."""

    kind: str
    model: Layout
    days: Days
    graph: GraphShape
    batch_size: int = 50
    eval_batch_size: int = 1140
    horizon_steps: int = 9
    teacher: TeacherShape | None = None
    loss_terms: frozenset[str] = frozenset()
    scd_stations: int | None = None
    rollout_steps: int = 1
    compiles: bool = False
    device_type: str = "cpu"

    def __post_init__(self):
        if self.kind not in JOB_KINDS:
            raise ValueError(f"job kind {self.kind!r}: choose one of {list(JOB_KINDS)}")


@dataclass(frozen=True)
class Term:
    """Bytes of one part of a job's memory, what they hold, and the setting that lowers them ("" where none)."""

    what: str
    bytes: int
    lowered_by: str = ""


@dataclass(frozen=True)
class Estimate:
    """A job's memory: the terms it holds throughout and the terms of each phase; its peak is what it holds plus its
    largest phase."""

    held: list[Term]
    phases: dict[str, list[Term]] = field(default_factory=dict)

    @property
    def peak_phase(self) -> str | None:
        return max(self.phases, key=lambda name: _sum(self.phases[name]), default=None)

    @property
    def peak_bytes(self) -> int:
        phase = self.peak_phase
        return _sum(self.held) + (0 if phase is None else _sum(self.phases[phase]))

    def largest_terms(self) -> list[Term]:
        """The terms of the peak, largest first."""
        phase = self.peak_phase
        terms = self.held + ([] if phase is None else self.phases[phase])
        return sorted(terms, key=lambda term: -term.bytes)


def _sum(terms: list[Term]) -> int:
    return sum(term.bytes for term in terms)


# --- sizes per window and station, from the layers of kdstgcn.model


def block_times(model: Layout) -> list[tuple[int, int]]:
    """Time steps after each block's first and second temporal conv."""
    times, t = [], model.n_his
    for _ in model.blocks:
        times.append((t - (model.kt - 1), t - 2 * (model.kt - 1)))
        t -= 2 * (model.kt - 1)
    return times


def block_tensors(model: Layout, conv2d_taps: bool) -> list[tuple[list[int], list[int]]]:
    """Floats per window and station of the tensors a forward pass makes, per block and then the output layer:
    those the block holds until it is done (each layer's output and the norm's) and the groups each layer frees as
    it goes (a temporal conv's taps and pre-activation; the graph conv's ks stacked terms and two partial sums; the
    norm's input copy). A narrow temporal conv stacks its taps for a batched product on a CPU; a wide one runs
    conv2d, whose scratch of the same size counts where `conv2d_taps`."""
    def taps(c_in: int, positions: int) -> int:
        return c_in * model.kt * positions if conv2d_taps or c_in * model.kt < CONV2D_MIN_CONTRACTION else 0

    blocks = []
    for (c_in, c_t, c_out), (t1, t2) in zip(model.blocks, block_times(model)):
        held = [c_t * t1, c_t * t1, c_out * t2, c_out * t2]
        freed = [taps(c_in, t1) + 2 * c_t * t1, (model.ks + 2) * c_t * t1, taps(c_t, t2) + c_out * t2, c_out * t2]
        blocks.append((held, freed))
    width = model.blocks[-1][2]
    blocks.append(([width, width, width], [2 * width, width, width]))  # GLU, norm, gate
    return blocks


def training_floats(model: Layout, masked: bool = False) -> int:
    """Floats per window and station of a training step: every tensor of the forward pass (kept for the backward
    pass or freed on the way; under masks each layer's output twice) and twice the largest group again (its
    gradients, in the backward pass)."""
    total, largest = model.n_his, 0
    for held, freed in block_tensors(model, conv2d_taps=False):
        total += sum(held) * (2 if masked else 1) + sum(freed)
        largest = max([largest, *freed])
    return total + 2 * largest


def inference_floats(model: Layout) -> int:
    """Floats per window and station of a forward pass without gradients: every tensor of its largest block (the
    block's input, what it holds, what it frees on the way, conv2d's scratch included)."""
    sizes, block_input = [], model.n_his
    for held, freed in block_tensors(model, conv2d_taps=True):
        sizes.append(block_input + sum(held) + sum(freed))
        block_input = held[-1]
    return max(sizes)


def stream_floats(model: Layout) -> int:
    """Floats per window and station a streaming rollout keeps between its steps (kdstgcn.model.streaming): each
    temporal conv's ring of its last kt input positions, and the output layer's of the blocks' outputs."""
    rings = sum(model.kt * (c_in + c_t) for c_in, c_t, _ in model.blocks)
    return rings + model.blocks[-1][2] * block_times(model)[-1][1]


def chunk_activation_floats(model: Layout) -> int:
    """Floats per window and station of the largest pre-activation, stacked graph terms or output-layer taps of a
    forward pass: at most the largest activation that sizes the CPU rollout's chunks
    (`kdstgcn.model.stgcn.STGCN.largest_activation_floats` also counts the taps of narrow convs), so the chunk
    taken here is at least the rollout's."""
    sizes = []
    for (_, c_t, c_out), (t1, t2) in zip(model.blocks, block_times(model)):
        sizes += [2 * c_t * t1, model.ks * c_t * t1, c_out * t2]
    width, t_last = model.blocks[-1][2], block_times(model)[-1][1]
    return max(sizes + [width * t_last, 2 * width])


def feature_floats(model: Layout, groups: tuple[str, ...] = ("temporal", "spatial", "hidden")) -> int:
    """Floats per window and station of a model's hidden-layer outputs in `groups` (its features): both temporal
    convs of each block, each graph conv, the last block's output."""
    per_group = {"temporal": sum((c_t * t1 + c_out * t2) for (_, c_t, c_out), (t1, t2)
                                 in zip(model.blocks, block_times(model))),
                 "spatial": sum(c_t * t1 for (_, c_t, _), (t1, _) in zip(model.blocks, block_times(model))),
                 "hidden": model.blocks[-1][2] * block_times(model)[-1][1]}
    return sum(per_group[group] for group in groups)


def parameter_count(model: Layout) -> int:
    """Parameters of a model (an upper bound: every residual counted as a 1x1 conv): the convs, the graph convs'
    theta, the layer norms over stations and channels, the output layer's per-station bias."""
    count = 0
    for c_in, c_t, c_out in model.blocks:
        count += model.kt * c_in * 2 * c_t + 2 * c_t + c_in * c_t
        count += model.ks * c_t * c_t + c_t + c_t * c_t
        count += model.kt * c_t * c_out + c_out + c_t * c_out
        count += 2 * model.n_nodes * c_out
    width, t_last = model.blocks[-1][2], block_times(model)[-1][1]
    count += t_last * width * 2 * width + 2 * width + width * width
    count += 2 * model.n_nodes * width + width * width + width + width + model.n_nodes
    return count


def windows(days: Days, split: int) -> int:
    """Windows of the split's days (0: train, 1: val, 2: test): every n_his + n_pred steps inside a day."""
    return days.split[split] * (days.steps_per_day - days.n_his - days.n_pred + 1)


def graph_bytes(job: JobShape) -> int:
    """Bytes of a model's Chebyshev stack: dense, the stack, its copy for dense products and each term's CSR form;
    sparse, its stored entries in COO and CSR form and each term's row pointers."""
    n, ks, graph = job.model.n_nodes, job.model.ks, job.graph
    if graph.dense:
        return ks * n * n * (2 * FLOAT32 + 8 + FLOAT32) + ks * 8 * (n + 1)
    nonzeros = graph.nonzeros if graph.nonzeros is not None else ks * n * PLANNED_ROW_ENTRIES
    return nonzeros * SPARSE_ENTRY_BYTES + ks * 8 * (n + 1)


def neighbour_slots(job: JobShape) -> int:
    """The neighbour slots of a sparse stack's exported products, over its terms T_1.. (0 for a dense stack)."""
    graph = job.graph
    if graph.dense:
        return 0
    return sum(graph.row_entries) if graph.row_entries is not None else (job.model.ks - 1) * PLANNED_ROW_ENTRIES


def graph_load_bytes(job: JobShape) -> int:
    """Bytes of building the stack from the adjacency file: dense, the N x N table and its float64 Laplacian,
    Chebyshev terms and their stack; sparse, scipy's matrices of the same entries."""
    n, ks = job.model.n_nodes, job.model.ks
    if job.graph.dense:
        return (6 + 2 * ks) * n * n * 8
    return 2 * graph_bytes(job)


# --- the terms


def _chunk_windows(model: Layout, batch: int) -> int:
    """Windows per pass of a rollout on a CPU (kdstgcn.evaluation.rollout.cpu_chunk)."""
    per_window = FLOAT32 * chunk_activation_floats(model) * model.n_nodes
    return max(1, min(batch, ROLLOUT_CHUNK_WINDOWS, ROLLOUT_CHUNK_BYTES // per_window))


def rollout_terms(job: JobShape, split: int, extra_bytes_per_value: int = 0) -> list[Term]:
    """A rollout of `job.model` over a split and its outputs: the windows in flight (a CPU chunk, its forward pass
    and streaming state grown by reuse; on a GPU in device memory) and the predictions and truth of every window."""
    n = job.model.n_nodes
    values = windows(job.days, split) * job.horizon_steps * n
    name = ("training", "validation", "test")[split]
    terms = [Term(f"predictions and truth of the {name} windows", values * (OUTPUT_BYTES_PER_VALUE
                                                                            + extra_bytes_per_value),
                  f"the {name} days (datasets.<name>.split)")]
    if job.device_type == "cpu":
        chunk = _chunk_windows(job.model, job.eval_batch_size)
        terms.append(Term(f"a rollout chunk of {chunk} windows", int(
            HEAP_REUSE * chunk * n * FLOAT32 * (inference_floats(job.model) + stream_floats(job.model))),
            "training.eval_batch_size"))
    return terms


def step_terms(job: JobShape, live_teacher: bool) -> list[Term]:
    """A training step at `job.batch_size` windows, its transient memory grown by reuse (`HEAP_REUSE`): the
    model's forward and backward (each step of rollout training; a pruning job's under masks), the live teacher's
    features and forward, and the distance matrices of the loss's terms with a transient of the largest layer's."""
    if job.device_type != "cpu":
        return []
    b, n = job.batch_size, job.model.n_nodes
    reuse = HEAP_REUSE * FLOAT32
    activations = training_floats(job.model, masked=job.kind == "prune")
    terms = [Term("activations of the training step", int(reuse * b * n * job.rollout_steps * activations),
                  "the batch size")]
    teacher = job.teacher
    if teacher is not None and live_teacher:
        terms.append(Term("the live teacher's features and forward", int(reuse * b * n * (
            feature_floats(teacher.model) + inference_floats(teacher.model))),
            "distillation.teacher_features (a store instead of a forward per batch)"))
    times = block_times(job.model)
    if "scd" in job.loss_terms:
        k = n if job.scd_stations is None else min(job.scd_stations, n)
        layers = [b * t1 * k * k for t1, _ in times]
        terms.append(Term(f"SCD's distance matrices over {k} stations",
                          int(reuse * (sum(layers) + max(layers))), "distillation.scd_stations"))
    if "tcd" in job.loss_terms:
        layers = [b * t * t * n for pair in times for t in pair]
        terms.append(Term("TCD's distance matrices", int(reuse * (sum(layers) + max(layers))),
                          "the batch size"))
    if "skd" in job.loss_terms:
        terms.append(Term("SKD's station similarities", int(reuse * 3 * b * n * n), "the batch size"))
    return terms


def teacher_output_bytes(job: JobShape) -> int:
    """Bytes of the teacher's outputs computed once: its predictions for every training window, or its feature
    store (the page cache of its memory-mapped arrays)."""
    teacher, n, w = job.teacher, job.model.n_nodes, windows(job.days, 0)
    if teacher is None or teacher.outputs == "live":
        return 0
    if teacher.outputs == "predictions":
        return w * n * FLOAT32
    return w * n * (1 + feature_floats(teacher.model, teacher.stored_groups)) * teacher.store_value_bytes


def teacher_output_terms(job: JobShape) -> list[Term]:
    """Computing the teacher's outputs once, a batch at a time (kdstgcn.training.teacher_cache): its forward with the
    features it stores, and its predictions gathered and copied."""
    teacher, b, n = job.teacher, job.batch_size, job.model.n_nodes
    if teacher is None or teacher.outputs == "live" or job.device_type != "cpu":
        return []
    stored = feature_floats(teacher.model) if teacher.outputs == "store" else 0
    return [Term("the teacher's forward over the training windows", int(HEAP_REUSE * b * n * FLOAT32 * (
        inference_floats(teacher.model) + stored)), "the batch size"),
            Term("its predictions gathered", 2 * windows(job.days, 0) * n * FLOAT32)]


def estimate(job: JobShape) -> Estimate:
    """The memory of `job` (`JobShape`): the terms it holds throughout and those of each of its phases."""
    n, days = job.model.n_nodes, job.days
    series_values = sum(days.split) * days.steps_per_day * n
    held = [Term("interpreter, torch and the job's libraries", BASELINE_BYTES),
            Term("the normalised series (float32)", series_values * FLOAT32, "the days (datasets.<name>.split)"),
            Term("the model's Chebyshev stack", graph_bytes(job), "the graph's edges (sigma2, epsilon)")]
    load = [Term("reading and normalising the series", series_values * LOAD_BYTES_PER_VALUE,
                 "the days (datasets.<name>.split)"),
            Term("building the Chebyshev stack", graph_load_bytes(job), "the graph's edges (sigma2, epsilon)")]
    parameters = parameter_count(job.model) * FLOAT32
    if job.compiles:
        held.append(Term("torch.compile", COMPILER_BYTES, "distillation.correlation_kernel: cdist"))
    if job.kind == "evaluate":
        held.append(Term("the model", parameters))
        return Estimate(held, {"load": load, "test": rollout_terms(job, 2, SAVED_BYTES_PER_VALUE)})
    if job.kind == "export":
        held += [Term("onnx, onnxruntime and the exporter", ONNX_BYTES), Term("the model", parameters)]
        widest_graph_conv = max(c_t * t1 for (_, c_t, _), (t1, _) in zip(job.model.blocks, block_times(job.model)))
        check = job.eval_batch_size * n * FLOAT32 * (EXPORT_CHECK_FORWARDS * inference_floats(job.model)
                                                     + neighbour_slots(job) * widest_graph_conv)
        return Estimate(held, {"load": load + [Term("the values table read again (float64)", series_values * 16,
                                                    "the days (datasets.<name>.split)")],
                               "files": [Term("the ONNX files", EXPORT_COPIES * (parameters + graph_bytes(job)))],
                               "check": [Term(f"the check of the files on {job.eval_batch_size} windows", check)]})
    # train and prune: weights, gradients, two optimiser states and the best epoch's copy
    held.append(Term("the model's weights, gradients, optimiser state and best copy", 5 * parameters,
                     "the model's widths (model.architectures)"))
    if job.kind == "prune":  # the masked model's copy under each mask and its compact and expanded twins
        held.append(Term("the masked and compact models", 3 * parameters))
    if job.teacher is not None:
        held.append(Term("the teacher and its Chebyshev stack", parameter_count(job.teacher.model) * FLOAT32
                         + graph_bytes(job)))
        held.append(Term(f"the teacher's {job.teacher.outputs}", teacher_output_bytes(job),
                         "distillation.teacher_features_max_bytes"))
    if job.rollout_steps > 1:
        held.append(Term("the rollout targets", 2 * windows(days, 0) * job.rollout_steps * n * FLOAT32,
                         "training.rollout.steps"))
    live = job.teacher is not None and (job.kind == "prune" or job.teacher.outputs == "live")
    return Estimate([term for term in held if term.bytes], {
        "load": load, "teacher outputs": teacher_output_terms(job), "step": step_terms(job, live),
        "validation": rollout_terms(job, 1)})


# --- the memory a job may use, and the check


def _cgroup_limit_bytes() -> int | None:
    """The smallest memory limit of this process's cgroup and its ancestors (v2 memory.max, v1
    memory.limit_in_bytes), None where none is set."""
    limits = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folder, name = Path("/sys/fs/cgroup"), "memory.max"
        elif "memory" in controllers.split(","):
            folder, name = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"
        else:
            continue
        parts = Path(path.lstrip("/")).parts
        for depth in range(len(parts), -1, -1):
            try:
                value = (folder.joinpath(*parts[:depth]) / name).read_text().strip()
            except OSError:
                continue
            if value.isdigit():
                limits.append(int(value))
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    finite = [limit for limit in limits if limit < physical]
    return min(finite) if finite else None


def _meminfo_bytes(key: str, path: str = "/proc/meminfo") -> int | None:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def available_memory() -> tuple[int, str]:
    """The memory this job may use and where that figure comes from: `KDSTGCN_MEMORY_MB`, else the cgroup's limit
    (a Slurm job's --mem), else MemAvailable plus what this process already holds (the estimate counts it)."""
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override:
        return int(float(override) * MB), MEMORY_LIMIT_ENV
    limit = _cgroup_limit_bytes()
    if limit is not None:
        return limit, "the cgroup's memory limit"
    held = _meminfo_bytes("VmRSS", "/proc/self/status") or 0
    return (_meminfo_bytes("MemAvailable") or 0) + held, "MemAvailable"


class OutOfMemory(RuntimeError):
    """A job's estimated memory exceeds what it may use."""


def check_memory(job: Estimate, what: str) -> None:
    """Log the estimate of `what` (a job) beside the memory available (`available_memory`); where it needs more,
    raise OutOfMemory: one line naming both and the settings that lower the largest terms."""
    needed = job.peak_bytes
    available, source = available_memory()
    log.info("%s: memory estimate %.2f GB (at its %s), %.2f GB available (%s)", what, needed / 1e9, job.peak_phase,
             available / 1e9, source)
    if needed <= available:
        return
    settings = list(dict.fromkeys(term.lowered_by for term in job.largest_terms() if term.lowered_by))[:3]
    largest = job.largest_terms()[0]
    lower = ", ".join(settings[:-1]) + (" or " if len(settings) > 1 else "") + settings[-1] if settings else ""
    raise OutOfMemory(f"{what} needs about {needed / 1e9:.2f} GB (estimate; largest: {largest.what}, "
                      f"{largest.bytes / 1e9:.2f} GB), more than the {available / 1e9:.2f} GB available "
                      f"({source}); lower {lower}, or run it where more memory is free")


def mem_mb(job: Estimate) -> int:
    """The estimate in MB, rounded up: a rule's `resources: mem_mb`."""
    return math.ceil(job.peak_bytes / MB)
