"""A run's streaming ONNX files on ONNX Runtime (CPU): the multi-step rollout that feeds each prediction back, as
`kdstgcn.evaluation.rollout.rollout` does it in torch, and its wall time. Torch-free."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kdstgcn.deploy.interface import NEWEST, PREDICTION, WINDOW, new_state_name

RUNTIME = f"ONNX Runtime {ort.__version__}"
# Windows per pass of the rollout: the batch runs in chunks of at most this many windows, whose activations stay
# in cache (bench/throughput.py, ONNX Runtime table; figures: docs/performance.md).
CHUNK_WINDOWS = 128


def session(model: str | Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session of one file (a path, or the file's bytes) on the CPU, with `threads` intra-op
    threads (None: ONNX Runtime's choice) and no inter-op pool."""
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # warnings of the graph optimiser about unused constants are not the user's
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxStream:
    """start.onnx and stream.onnx of one model: `rollout` predicts several steps ahead."""

    def __init__(self, start: str | Path | bytes, stream: str | Path | bytes, threads: int | None = None):
        self.start, self.step = session(start, threads), session(stream, threads)
        self.state_names = [i.name for i in self.step.get_inputs() if i.name != NEWEST]
        self.new_state_names = [new_state_name(name) for name in self.state_names]

    def rollout(self, windows: np.ndarray, steps: int, chunk: int = CHUNK_WINDOWS) -> np.ndarray:
        """Normalised windows [W, n_his, N] -> the next `steps` steps [W, steps, N] (float32), each prediction fed
        back as the newest input: start.onnx on the window, then stream.onnx once per further step."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        out = np.empty((windows.shape[0], steps, windows.shape[2]), dtype=np.float32)
        for first in range(0, windows.shape[0], chunk):
            part = slice(first, first + chunk)
            prediction, *state = self.start.run(None, {WINDOW: windows[part]})
            out[part, 0] = prediction
            for step in range(1, steps):
                feed = dict(zip(self.state_names, state), **{NEWEST: prediction})
                prediction, *state = self.step.run([PREDICTION, *self.new_state_names], feed)
                out[part, step] = prediction
        return out


def time_onnx_rollout(stream: OnnxStream, windows: np.ndarray, steps: int, runs: int, warmup: int,
                      chunk: int = CHUNK_WINDOWS) -> dict:
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
