"""The terms of a job's memory and its estimate (`estimate`): what it holds throughout and what each of its phases
adds, from its `JobShape`, the model's sizes (`activations`) and the constants below, which were measured
(docs/performance.md, "Memory estimate")."""
from __future__ import annotations

from kdstgcn.runtime.memory.activations import (block_times, chunk_activation_floats, feature_floats,
                                                inference_floats, parameter_count, stream_floats, training_floats)
from kdstgcn.runtime.memory.shapes import FLOAT32, Days, Estimate, JobShape, Layout, Term
from kdstgcn.runtime.sizes import cpu_chunk_windows

# The process of a computing job before its data: interpreter, torch, pandas and pyarrow, Snakemake's script
# preamble, torch's thread pools; the peak of a demo job (16 stations) less its other terms.
BASELINE_BYTES = 420 * 2**20
# What an export job adds to it: onnx, onnxruntime and the exporter, measured at 16 stations.
ONNX_BYTES = 140 * 2**20
# torch.compile (a compiled correlation kernel or training step): dynamo, inductor and one compile in the process
# (measured: 90 to 110 MiB).
COMPILER_BYTES = 128 * 2**20
# A loop's transient memory grows as freed blocks are kept and reused (kdstgcn.runtime.runner.keep_freed_memory):
# over 100 to 200 training steps a step's peak grew to 1.3 to 1.7 times its first step's and then slowly, to 0.9
# to 1.15 times the tensors counted here (`step_terms`, `rollout_terms`).
HEAP_REUSE = 1.15
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
# Entries of a row of a sparse Chebyshev term, on average and at most, where the graph is not built yet (the
# workflow plans before the adjacency job): a road graph under the paper's kernel has about 10 neighbours a
# station, its T_2 about 40 entries a row and at most about 50.
PLANNED_ROW_ENTRIES = 64
# Bytes per stored entry of a sparse stack: the model's COO stack (three int64 indices and a float32) and the CSR
# form of each term its products take (an int64 column and a float32).
SPARSE_ENTRY_BYTES = 3 * 8 + 4 + 8 + 4
# The ONNX exporter's copies of a model's constants while it writes the three files: the export form, the traced
# graph, the file bytes, the parsed and re-serialised proto.
EXPORT_COPIES = 12
# Forward passes of an export's check windows held at once: the model's, ONNX Runtime's and their streaming states
# (kdstgcn.deploy.export.check_export; measured: 2.0 to 2.4 times `inference_floats` at one thread). For a sparse
# stack ONNX Runtime also holds the gathered neighbours of every slot of a term's product at once (the exported
# form, kdstgcn.deploy.exported.neighbour_lists), so the check grows with the most entries of a row.
EXPORT_CHECK_FORWARDS = 2.5
# ... grown by the loop over its chunks, whose ONNX Runtime runs return their memory to a heap that keeps freed
# blocks (bench/scale.py, teacher's export, 228 to 8,600 stations: the check's peak was up to 1.7 times its
# tensors counted above, varying by 20 % from one run of the same code to the next).
EXPORT_CHECK_HEAP = 1.8


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


def rollout_chunk_windows(model: Layout, batch: int) -> int:
    """Windows per pass of a rollout on a CPU (kdstgcn.evaluation.rollout.cpu_chunk)."""
    return cpu_chunk_windows(FLOAT32 * chunk_activation_floats(model) * model.n_nodes, batch)


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
        chunk = rollout_chunk_windows(job.model, job.eval_batch_size)
        terms.append(Term(f"a rollout chunk of {chunk} windows", int(
            HEAP_REUSE * chunk * n * FLOAT32 * (inference_floats(job.model) + stream_floats(job.model))),
            "training.eval_batch_size"))
    return terms


def step_terms(job: JobShape, live_teacher: bool) -> list[Term]:
    """A training step at `job.batch_size` windows, its transient memory grown by reuse (`HEAP_REUSE`): the
    model's forward and backward (each step of rollout training counted as a whole pass: an upper bound, since the
    later steps stream one position per layer; a pruning job's under masks), the live teacher's features and
    forward, and the distance matrices of the loss's terms with a transient of the largest layer's."""
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
        # the check passes a rollout's CPU chunk at a time
        chunk = rollout_chunk_windows(job.model, job.eval_batch_size)
        check = int(EXPORT_CHECK_HEAP * chunk * n * FLOAT32 * (EXPORT_CHECK_FORWARDS * inference_floats(job.model)
                                                               + neighbour_slots(job) * widest_graph_conv))
        return Estimate(held, {"load": load + [Term("the values table read again (float64)", series_values * 16,
                                                    "the days (datasets.<name>.split)")],
                               # the files' bytes stay held through the check, and the exporter's copies are
                               # freed into blocks that the check's tensors mostly do not fit
                               "export and check": [
                                   Term("the ONNX files", EXPORT_COPIES * (parameters + graph_bytes(job))),
                                   Term(f"the check of the files, {chunk} windows at a time", check)]})
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
    # an epoch: its training steps and its validation rollout, each of whose tensors are mostly too large for the
    # blocks the other freed
    return Estimate([term for term in held if term.bytes], {
        "load": load, "teacher outputs": teacher_output_terms(job),
        "epoch": step_terms(job, live) + rollout_terms(job, 1)})
