"""The names of the ONNX files' inputs and outputs, shared by the exporter and by whatever runs the files.
Torch-free.

- model.onnx: WINDOW [batch, n_his, N] normalised readings -> PREDICTION [batch, N], the next step.
- start.onnx: WINDOW -> PREDICTION and the state: one tensor per state name, each [width, batch, N].
- stream.onnx: NEWEST [batch, N] (the newest input position: the prediction fed back, or a new reading) and
  the state -> PREDICTION for the window moved on by one step, and the new state (`new_state_name`).
"""
from __future__ import annotations

WINDOW = "window"
NEWEST = "newest"
PREDICTION = "prediction"
NEW_STATE_PREFIX = "new_"


def new_state_name(name: str) -> str:
    """The output of stream.onnx that replaces state input `name` for the next step."""
    return NEW_STATE_PREFIX + name
