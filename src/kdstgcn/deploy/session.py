"""A run's streaming ONNX files on ONNX Runtime (CPU): the multi-step rollout that feeds each prediction back, as
`kdstgcn.evaluation.rollout.rollout` does it in torch, and its wall time. Torch-free."""
from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from kdstgcn.deploy.interface import NEWEST, PREDICTION, WINDOW, new_state_name
from kdstgcn.deploy.model_card import CardError, ModelCard

RUNTIME = f"ONNX Runtime {ort.__version__}"
# The rollout passes a batch through the files in chunks of about CHUNK_STATE_BYTES of streaming state and at most
# CHUNK_WINDOWS windows (42 teacher or 64 student windows at N = 228), whose activations then stay in cache: at 2
# threads both ran faster in chunks of 32-64 windows than of 128 or more (figures: docs/performance.md).
CHUNK_STATE_BYTES = 24 * 2**20
CHUNK_WINDOWS = 64
# What ONNX Runtime raises for a file it cannot load or run (its exceptions derive from Exception only)
ORT_ERRORS = (ort_state.Fail, ort_state.InvalidArgument, ort_state.InvalidProtobuf, ort_state.InvalidGraph,
              ort_state.NoSuchFile, ort_state.NotImplemented, ort_state.RuntimeException)


def session(model: str | Path | bytes, threads: int | None = None, arena: bool = True) -> ort.InferenceSession:
    """An ONNX Runtime session of one file (a path, or the file's bytes) on the CPU, with `threads` intra-op
    threads (None: ONNX Runtime's choice) and no inter-op pool. `arena` False: each run's memory is returned when
    it ends, instead of kept in the session's arena for its next runs (which is faster, but every session keeps
    its largest run's memory for its whole life)."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # warnings of the graph optimiser about unused constants are not the user's
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxStream:
    """start.onnx and stream.onnx of one model: `rollout` predicts several steps ahead, with `threads` chunks of
    windows at a time, each on one thread (ONNX Runtime's own threads, which split each operator, were slower
    for a model of many small operators: docs/performance.md)."""

    def __init__(self, start: str | Path | bytes, stream: str | Path | bytes, threads: int = 1, arena: bool = True):
        self.start, self.step = session(start, 1, arena), session(stream, 1, arena)
        self.threads = max(1, int(threads))
        states = [i for i in self.step.get_inputs() if i.name != NEWEST]
        self.state_names = [i.name for i in states]
        self.new_state_names = [new_state_name(name) for name in self.state_names]
        # per window: the product of each state's fixed axes (all but the named batch axis)
        state_bytes = 4 * sum(int(np.prod([d for d in i.shape if isinstance(d, int)])) for i in states)
        self.chunk = max(1, min(CHUNK_WINDOWS, CHUNK_STATE_BYTES // max(state_bytes, 1)))

    def rollout(self, windows: np.ndarray, steps: int, chunk: int | None = None) -> np.ndarray:
        """Normalised windows [W, n_his, N] -> the next `steps` steps [W, steps, N] (float32), each prediction fed
        back as the newest input: start.onnx on the window, then stream.onnx once per further step; `chunk`
        windows at a time (default: `self.chunk`)."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        out = np.empty((windows.shape[0], steps, windows.shape[2]), dtype=np.float32)
        chunk = chunk or self.chunk
        parts = [slice(first, first + chunk) for first in range(0, windows.shape[0], chunk)]

        def run(part: slice) -> None:
            out[part] = self._rollout_chunk(windows[part], steps)

        if self.threads == 1 or len(parts) == 1:
            for part in parts:
                run(part)
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(run, parts))
        return out

    def _rollout_chunk(self, windows: np.ndarray, steps: int) -> np.ndarray:
        out = np.empty((windows.shape[0], steps, windows.shape[2]), dtype=np.float32)
        prediction, *state = self.start.run(None, {WINDOW: windows})
        out[:, 0] = prediction
        for step in range(1, steps):
            feed = dict(zip(self.state_names, state), **{NEWEST: prediction})
            prediction, *state = self.step.run([PREDICTION, *self.new_state_names], feed)
            out[:, step] = prediction
        return out


def ort_reason(exc: Exception) -> str:
    """ONNX Runtime's message without its '[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :' prefix, on one line."""
    return " ".join(str(exc).split(" : ")[-1].split())


def open_stream(card: ModelCard, threads: int = 1) -> OnnxStream:
    """The streaming files a model card names, checked to be there, to load, and to read the card's n_his steps of
    its stations; a CardError naming the file and the fix otherwise."""
    start, stream = card.path("start"), card.path("stream")
    again = f"export the model again with `snakemake {start}`"
    for path in (start, stream):
        if not path.is_file():
            raise CardError(f"{path} not found beside its model card; {again}")
    try:
        loaded = OnnxStream(start, stream, threads)
    except ORT_ERRORS as exc:
        raise CardError(f"{card.folder}: ONNX Runtime cannot use the files ({ort_reason(exc)}); {again}") from exc
    for path, part, name, wanted in ((start, loaded.start, WINDOW, [card.n_his, len(card.stations)]),
                                     (stream, loaded.step, NEWEST, [len(card.stations)])):
        shape = {i.name: i.shape[1:] for i in part.get_inputs()}.get(name)  # after the batch axis
        if shape is None or list(shape) != wanted:
            found = f"no input {name!r}" if shape is None else \
                f"input {name!r} of shape [batch, {', '.join(map(str, shape))}]"
            raise CardError(f"{path}: {found}, but its model card's {card.n_his} steps of {len(card.stations)} "
                            f"stations need [batch, {', '.join(map(str, wanted))}]: not the same model; {again}")
    return loaded


def time_onnx_rollout(stream: OnnxStream, windows: np.ndarray, steps: int, runs: int, warmup: int,
                      chunk: int | None = None) -> dict:
    """Wall time of `stream.rollout` of `windows` as one batch: mean_s, std_s (sample std; 0 for one run), min_s,
    median_s over `runs` timed runs after `warmup` untimed ones (as kdstgcn.evaluation.cost.time_rollout times
    the torch rollout)."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(warmup):
        stream.rollout(windows, steps, chunk)
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        stream.rollout(windows, steps, chunk)
        times.append(time.perf_counter() - tic)
    return {"mean_s": statistics.fmean(times), "std_s": statistics.stdev(times) if runs > 1 else 0.0,
            "min_s": min(times), "median_s": statistics.median(times)}
