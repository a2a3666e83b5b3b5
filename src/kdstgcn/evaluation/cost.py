"""Cost of a model for Table 1: FLOPs of one forward pass and wall time of the 9-step rollout.

* FLOPs come from torch's own `torch.utils.flop_counter.FlopCounterMode` (see `count_flops` for what it
  counts and leaves out).
* Test time is the time of one batch of test windows (1140 in the paper) through the full 9-step rollout of
  `kdstgcn.evaluation.rollout.rollout`, the mean over timed runs after a warm-up (docs/method.md); streaming (what
  evaluation runs) and full recompute (what the paper measured) are timed separately.
"""
from __future__ import annotations

import copy
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdstgcn.evaluation.rollout import rollout
from kdstgcn.model.graph_products import ChebyshevTerms


def _flop_counter(model: torch.nn.Module, inputs: torch.Tensor, meta: bool) -> FlopCounterMode:
    """The counter after one forward pass of `model` on `inputs`: on meta-device copies when `meta`."""
    if meta:  # shapes only: a copy of the model on the meta device does no arithmetic at all
        tensor = next(model.parameters(), inputs)
        shadow = copy.deepcopy(model).to("meta")
        for module in shadow.modules():
            if isinstance(module, ChebyshevTerms):  # count the graph products the real device would run
                module.meta_follows = tensor.device.type
        try:
            return _flop_counter(shadow, inputs.to("meta"), meta=False)
        except (NotImplementedError, RuntimeError):
            pass  # an op without a meta kernel: count on the real device instead
    tensor = next(model.parameters(), None)
    if tensor is not None:
        inputs = inputs.to(tensor.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter


def count_flops(model: torch.nn.Module, inputs: torch.Tensor, meta: bool = True) -> int:
    """FLOPs of one forward pass of `model` on `inputs` (eval mode, no gradients), by torch's FlopCounterMode.

    What is counted: the aten matrix products and convolutions FlopCounterMode knows (mm, addmm, bmm,
    baddbmm, convolution, scaled-dot-product attention, ...), at 2 FLOPs per multiply-add, and the graph
    products as they run (`kdstgcn.model.graph_products.ChebyshevTerms`): a dense term as mm (2*N*N per
    column), a sparse term by its CSR product's own formula (2 per stored non-zero and column), the identity
    T_0 not at all.
    The theta contraction and the output layer's per-node linear are einsums, counted as the bmm/mm they
    lower to (checked against the hand formula in tests/test_cost.py and tests/test_graph_products.py).
    What is left out: every element-wise and reduction op - bias additions (also the bias of addmm and
    of convolutions), GLU gating and sigmoid/ReLU, residual adds and zero-padding, channel masks,
    LayerNorm, concatenation and copies. For STGCN these are a few FLOPs per activation, i.e. well under
    the convolution cost, so the figure is a (slight) lower bound of the true arithmetic.
    Counts depend on shapes only. With meta=True (default) the pass runs on a meta-device copy of the
    model and inputs (no arithmetic, instant even for the 1140-window teacher batch; the caller's model
    is untouched); should an op lack a meta kernel it falls back to a real forward pass (same count).
    """
    return int(_flop_counter(model, inputs, meta).get_total_flops())


def device_name(device: torch.device | str | None = None) -> str:
    """'cpu: <cpu model> x <threads> threads' or 'cuda: <GPU name>'."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model} x {torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rollout(model: torch.nn.Module, inputs: torch.Tensor, steps: int = 9, runs: int = 100,
                 warmup: int = 5, device: torch.device | str | None = None, mode: str = "streaming",
                 precision: str = "fp32") -> dict:
    """Wall time of the full `steps`-step rollout (`kdstgcn.evaluation.rollout.rollout` in `mode`: "streaming", or
    "full" for the full recompute of every moved window as the paper timed it) of `inputs` as ONE batch.

    The model runs on `device` (default: where its parameters are; a copy is moved there, the caller's
    model is left alone). The inputs are put on the device before timing; the time covers the `steps`
    forward passes, the feedback concatenations and the final copy of the predictions to the host, as
    `rollout` does it. `warmup` untimed runs come first; each of the `runs` timed runs is bracketed by
    torch.cuda.synchronize on a GPU. `precision`: fp32 or bf16 (kdstgcn.runtime.precision). Returns seconds per
    rollout: mean_s, std_s (sample std; 0 for one run), min_s, median_s, plus runs, warmup, steps, batch, mode,
    precision and device_name.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    current = next(model.parameters()).device
    device = torch.device(device) if device is not None else current
    if device != current:
        model = copy.deepcopy(model).to(device)
    inputs = inputs.to(device)
    batch = inputs.shape[0]
    for _ in range(warmup):
        rollout(model, inputs, steps, batch_size=batch, mode=mode, precision=precision)
    times = []
    for _ in range(runs):
        _sync(device)
        tic = time.perf_counter()
        rollout(model, inputs, steps, batch_size=batch, mode=mode, precision=precision)
        _sync(device)
        times.append(time.perf_counter() - tic)
    return {
        "mean_s": statistics.fmean(times),
        "std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "runs": runs, "warmup": warmup, "steps": steps, "batch": batch, "mode": mode, "precision": precision,
        "device_name": device_name(device),
    }
