"""The sizes the computing code works in, shared with the memory estimate (kdstgcn.runtime.memory,
kdstgcn.jobs.memory): each said once here, torch-free, for the code that computes with it and the estimate that
plans for it."""
from __future__ import annotations

# Largest network (stations) whose graph is built with dense N x N arrays: the arithmetic the paper's networks
# (PeMSD7(M): 228, PEMS08: 170) have always been built with, kept bit for bit. Larger networks take the sparse
# path, equal to the dense one to float rounding (tested on both networks). Measured with `bench/graph_build.py`
# (docs/performance.md, "Scale: graph build"): the dense build grows with N^3 (its full eigen-decomposition),
# 0.05 s at 500 stations, 0.3 s at 1,000 and 2.5 s at 2,352 (the sparse build: 0.006, 0.02 and 0.04 s), so up to
# 500 stations it stays cheap and networks a little larger than the paper's keep STGCN's arithmetic. The model holds
# its Chebyshev stack dense up to the same size, sparse above (kdstgcn.model.graph_products.stack_for_model).
DENSE_MAX_NODES = 500

# On a CPU a temporal conv whose contraction (input channels x kernel taps) is at least this wide runs as conv2d
# (oneDNN), a narrower one as a batched matrix product (kdstgcn.model.temporal). Timed with bench/throughput.py
# (temporal conv table, and the streaming step inside the rollout): conv2d was faster for the teacher's wide
# layers, the product for the one-channel input layer, for a streaming step over a narrow ring and for the
# student's output layer, and about as fast as conv2d for the student's other layers. So every student layer runs
# as a product and every wide teacher layer as conv2d (figures: docs/performance.md).
CPU_CONV2D_MIN_CONTRACTION = 64

# On a CPU a batch of windows passes through a rollout (kdstgcn.evaluation.rollout) in chunks whose largest
# activation is about this many bytes (`STGCN.largest_activation_floats`): each step's activations then stay in
# cache and freed memory is reused instead of paged in afresh, so the teacher's rollout ran faster in such chunks
# than in one pass or with a smaller or larger budget (bench/throughput.py --chunks; figures: docs/performance.md).
CPU_CHUNK_BYTES = 32 * 2**20
# ... and at most this many windows: a narrow model's streaming step is about a hundred small memory-bound ops;
# chunks of about this many student windows kept them in cache, where the larger chunks its byte budget allows
# and smaller chunks (more ops) were slower (same table).
CPU_CHUNK_WINDOWS = 128


def cpu_chunk_windows(bytes_per_window: int, batch: int) -> int:
    """Windows per pass of a rollout on a CPU, for a model whose largest activation takes `bytes_per_window`: at
    most `batch` and CPU_CHUNK_WINDOWS, and about CPU_CHUNK_BYTES of that activation."""
    return max(1, min(batch, CPU_CHUNK_WINDOWS, CPU_CHUNK_BYTES // bytes_per_window))

# The test windows an export job checks its ONNX files on (kdstgcn.jobs.export): 64, or on a larger network as
# many as hold EXPORT_CHECK_WINDOWS x DENSE_MAX_NODES window-stations, at least one. The check's cost then stays
# about that of a 500-station network: on 64 windows of 8,600 stations it took 800 s, longer than the export's
# teacher epoch (bench/scale.py; docs/performance.md, "Scale").
EXPORT_CHECK_WINDOWS = 64


def export_check_windows(n_nodes: int) -> int:
    """The test windows an export of a network of `n_nodes` stations checks its files on."""
    return max(1, min(EXPORT_CHECK_WINDOWS, EXPORT_CHECK_WINDOWS * DENSE_MAX_NODES // n_nodes))

# The precisions of the teacher's feature store (distillation.teacher_features; kdstgcn.training.teacher_cache),
# each a numpy dtype's name, and the bytes of one value in it.
FEATURE_STORE_VALUE_BYTES = {"float32": 4, "float16": 2}
