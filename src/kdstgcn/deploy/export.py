"""A trained STGCN -> its three ONNX files (model.onnx, start.onnx, stream.onnx), made with PyTorch's ONNX exporter
from the export form of `kdstgcn.deploy.exported` with a dynamic batch axis, checked with `onnx.checker` and
against the model itself on ONNX Runtime before they are written."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from kdstgcn.deploy.exported import Exported, OneStep, StartStream, StreamStep
from kdstgcn.deploy.interface import NEWEST, PREDICTION, WINDOW, new_state_name
from kdstgcn.deploy.session import OnnxStream, session
from kdstgcn.evaluation.rollout import cpu_chunk, rollout
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.io import atomic_path

log = logging.getLogger(__name__)

# ONNX operator set of the files: 17 is the first with LayerNormalization; ONNX Runtime 1.14 and later run it
OPSET = 17
EXAMPLE_BATCH = 2  # windows of the example the exporter traces (any batch runs: the axis is dynamic)
# Largest difference (normalised units) between ONNX Runtime and the model, one step or a rollout, that an export
# may show: float rounding is about 1e-6 there
TOLERANCE = 1e-4
PARTS = {"model": OneStep, "start": StartStream, "stream": StreamStep}


class ExportError(RuntimeError):
    """Exported files that do not compute what the model computes."""


def _io_names(part: Exported) -> tuple[list[str], list[str]]:
    states = part.state_names()
    if isinstance(part, StreamStep):
        return [NEWEST, *states], [PREDICTION, *map(new_state_name, states)]
    if isinstance(part, StartStream):
        return [WINDOW], [PREDICTION, *states]
    return [WINDOW], [PREDICTION]


def _batch_axis(name: str) -> int:
    """The batch axis of an input or output: 0 of the readings and predictions, 1 of the state ([width, B, N])."""
    return 0 if name in (WINDOW, NEWEST, PREDICTION) else 1


def _example(part: Exported) -> tuple[torch.Tensor, ...]:
    window = torch.zeros(EXAMPLE_BATCH, part.n_his, part.n_nodes)
    if not isinstance(part, StreamStep):
        return (window,)
    _, *state = StartStream.forward(part, window)
    return (window[:, -1], *state)


def onnx_bytes(part: Exported) -> bytes:
    """The ONNX file of one part (TorchScript-based exporter: the graph is traced once, constants folded)."""
    inputs, outputs = _io_names(part)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(part.eval(), _example(part), buffer, input_names=inputs, output_names=outputs,
                          dynamic_axes={name: {_batch_axis(name): "batch"} for name in inputs + outputs},
                          opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def export_bytes(model: STGCN) -> dict[str, bytes]:
    """The three files of `model` (on any device; inference form, no dropout): part (model, start, stream) -> file
    bytes."""
    return {name: onnx_bytes(part(model).cpu()) for name, part in PARTS.items()}


def check_export(model: STGCN, files: dict[str, bytes], windows: torch.Tensor, steps: int) -> float:
    """Largest difference between ONNX Runtime and `model` (on the CPU) on `windows` [W, n_his, N]: model.onnx
    against the forward pass (eval mode), start.onnx + stream.onnx against the streaming `rollout` of `steps`
    steps; a rollout's CPU chunk of windows at a time (`cpu_chunk`), so that memory stays bounded at any network
    size. Raises past TOLERANCE."""
    model.eval()
    threads = torch.get_num_threads()  # the job's
    # without arenas: the three sessions' largest runs are not all held at once
    one_step = session(files["model"], threads, arena=False)
    stream = OnnxStream(files["start"], files["stream"], threads, arena=False)
    gaps: dict[str, list[float]] = {"model.onnx": [], "start.onnx + stream.onnx": []}
    chunk = cpu_chunk(model, windows.shape[0])
    for first in range(0, windows.shape[0], chunk):
        part = windows[first:first + chunk]
        with torch.no_grad():
            onnx_step = one_step.run(None, {WINDOW: part.numpy()})[0]
            gaps["model.onnx"].append(float(np.abs(onnx_step - model(part).numpy()).max()))
        streamed = stream.rollout(part.numpy(), steps)
        gaps["start.onnx + stream.onnx"].append(float(np.abs(streamed - rollout(model, part, steps).numpy()).max()))
    largest = {name: float(np.max(values)) for name, values in gaps.items()}  # NaN stays NaN
    worst = max(largest, key=lambda name: np.nan_to_num(largest[name], nan=np.inf))
    if not largest[worst] <= TOLERANCE:
        raise ExportError(f"{worst} on ONNX Runtime differs from the model by {largest[worst]:.3g} (allowed "
                          f"{TOLERANCE:g}): the export does not compute what the model computes")
    return largest[worst]


def write_files(files: dict[str, bytes], paths: dict[str, str | Path]) -> None:
    """Write each part's bytes to its path (model, start, stream), atomically."""
    for name, blob in files.items():
        with atomic_path(paths[name]) as tmp:
            tmp.write_bytes(blob)
        log.info("%s: %.1f kB", paths[name], len(blob) / 1e3)
