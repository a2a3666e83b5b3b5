"""Cost of a model (Table 1): FLOPs of one forward pass, wall time of the 9-step rollout, peak memory.

* FLOPs come from torch's own `torch.utils.flop_counter.FlopCounterMode` (see `count_flops` for what it
  counts and leaves out).
* Test time follows METHOD.md: one batch of 1140 test windows, the full 9-step rollout of
  `kdstgcn.evaluation.rollout.rollout`, mean over 100 timed runs after a warm-up; streaming (what evaluation runs)
  and full recompute (what the paper measured) are timed separately.
* Peak memory is the process's peak resident set size (Linux VmHWM, reset just before the measured call)
  on CPU, and `torch.cuda.max_memory_allocated` on a GPU (see `memory_profile`).
"""
from __future__ import annotations

import copy
import math
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdstgcn.evaluation.rollout import rollout
from kdstgcn.data.graph import chebyshev_polynomials, gaussian_adjacency
from kdstgcn.model.core import ChebyshevTerms
from kdstgcn.runtime.runner import set_up_compute


# --------------------------------------------------------------------------------------------- inputs

def test_batch(n_nodes: int, batch: int = 1140, n_his: int = 12, seed: int = 0) -> torch.Tensor:
    """A reproducible input batch [batch, n_his, n_nodes] of standard-normal (z-scored) speeds.

    Same arguments, same tensor, whatever the global RNG state (a private generator is used). Costs do not
    depend on the values, only on the shape; 1140 is the test batch of Table 1.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_his, n_nodes, generator=generator)


test_batch.__test__ = False  # not a pytest test, even when imported into a test module


def benchmark_cheb(n_nodes: int, ks: int = 3, seed: int = 0, distance_m: np.ndarray | None = None,
                   area_km: float = 8.0) -> torch.Tensor:
    """Chebyshev stack [ks, N, N] for timing: of `distance_m` (metres) if given, else of a random geometric
    graph (stations uniform in an `area_km` square, as `kdstgcn.data.synthetic`), both through Eq. 16.

    The graph conv's cost depends on the graph: sparse Chebyshev terms are multiplied as sparse matrices
    (`kdstgcn.model.core.ChebyshevTerms`), so time on the real network's distances where they matter.
    """
    if distance_m is None:
        points = np.random.default_rng(seed).uniform(0.0, area_km, size=(n_nodes, 2))
        distance_m = np.linalg.norm(points[:, None] - points[None], axis=-1) * 1000.0
    distance_m = np.asarray(distance_m, dtype=float)
    if distance_m.shape != (n_nodes, n_nodes):
        raise ValueError(f"distance matrix has shape {distance_m.shape}, expected ({n_nodes}, {n_nodes})")
    return chebyshev_polynomials(gaussian_adjacency(distance_m), ks)


# --------------------------------------------------------------------------------------------- FLOPs

def _flop_counter(model: torch.nn.Module, inputs: torch.Tensor, meta: bool) -> FlopCounterMode:
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
    products as they run (`kdstgcn.model.core.ChebyshevTerms`): a dense term as mm (2*N*N per column), a sparse
    term by its CSR product's own formula (2 per stored non-zero and column), the identity T_0 not at all.
    The theta contraction and the output layer's per-node linear are einsums, counted as the bmm/mm they
    lower to (checked against the hand formula in tests/test_cost.py and tests/test_rollout.py).
    What is left out: every element-wise and reduction op - bias additions (also the bias of addmm and
    of convolutions), GLU gating and sigmoid/ReLU, residual adds and zero-padding, channel masks,
    LayerNorm, concatenation and copies. For STGCN these are a few FLOPs per activation, i.e. well under
    the convolution cost, so the figure is a (slight) lower bound of the true arithmetic.
    Counts depend on shapes only. With meta=True (default) the pass runs on a meta-device copy of the
    model and inputs (no arithmetic, instant even for the 1140-window teacher batch; the caller's model
    is untouched); should an op lack a meta kernel it falls back to a real forward pass (same count).
    """
    return int(_flop_counter(model, inputs, meta).get_total_flops())


def flop_breakdown(model: torch.nn.Module, inputs: torch.Tensor, meta: bool = True) -> dict[str, int]:
    """The FLOPs of `count_flops` split by aten op, e.g. {"convolution": ..., "bmm": ...}."""
    counts = _flop_counter(model, inputs, meta).get_flop_counts().get("Global", {})
    return {str(op).split(".")[-1]: int(v) for op, v in counts.items()}


# --------------------------------------------------------------------------------------------- timing

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
                 warmup: int = 5, device: torch.device | str | None = None, mode: str = "streaming") -> dict:
    """Wall time of the full `steps`-step rollout (`kdstgcn.evaluation.rollout.rollout` in `mode`: "streaming", or
    "full" for the full recompute of every moved window as the paper timed it) of `inputs` as ONE batch.

    The model runs on `device` (default: where its parameters are; a copy is moved there, the caller's
    model is left alone). The inputs are put on the device before timing; the time covers the `steps`
    forward passes, the feedback concatenations and the final copy of the predictions to the host, as
    `rollout` does it. `warmup` untimed runs come first; each of the `runs` timed runs is bracketed by
    torch.cuda.synchronize on a GPU. Returns seconds per rollout: mean_s, std_s (sample std; 0 for one
    run), min_s, median_s, plus runs, warmup, steps, batch, mode and device_name.
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
        rollout(model, inputs, steps, batch_size=batch, mode=mode)
    times = []
    for _ in range(runs):
        _sync(device)
        tic = time.perf_counter()
        rollout(model, inputs, steps, batch_size=batch, mode=mode)
        _sync(device)
        times.append(time.perf_counter() - tic)
    return {
        "mean_s": statistics.fmean(times),
        "std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "runs": runs, "warmup": warmup, "steps": steps, "batch": batch, "mode": mode,
        "device_name": device_name(device),
    }


# --------------------------------------------------------------------------------------------- memory

def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Set the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0: echo 5 > clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure_here(fn: Callable, args: tuple, kwargs: dict) -> dict:
    if not Path("/proc/self/status").exists():
        raise RuntimeError("peak RSS needs Linux /proc; measure on a GPU (cuda) or on Linux")
    reset = _reset_peak_rss()
    baseline = _status_bytes("VmRSS")
    tic = time.perf_counter()
    fn(*args, **kwargs)
    seconds = time.perf_counter() - tic
    peak = _status_bytes("VmHWM")
    method = "cpu: process peak RSS (VmHWM reset before the call)" if reset else \
        "cpu: process peak RSS since start (VmHWM could not be reset: an upper bound)"
    return {"peak_bytes": peak, "baseline_bytes": baseline, "increase_bytes": max(peak - baseline, 0),
            "seconds": seconds, "method": method}


def _memory_child(conn, threads: int, fn, args, kwargs) -> None:
    try:
        set_up_compute(threads)
        conn.send(("ok", _measure_here(fn, args, kwargs)))
    except BaseException as exc:  # report any failure to the parent instead of dying silently
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def memory_profile(fn: Callable, *args, device: torch.device | str | None = None, isolate: bool = True,
                   **kwargs) -> dict:
    """Peak memory of the call fn(*args, **kwargs): peak_bytes, baseline_bytes, increase_bytes, method.

    GPU (`device` is cuda): torch.cuda.max_memory_allocated after reset_peak_memory_stats, i.e. the peak
    of live tensors on that device (baseline: memory_allocated before the call).
    CPU (default): torch has no allocator statistics on CPU and tracemalloc does not see tensors, so this
    measures the operating system's view: the process's peak resident set size (Linux VmHWM, reset to
    the current RSS through /proc/self/clear_refs just before the call). With isolate=True (default) the
    call runs in a freshly *spawned* Python process, so nothing the caller allocated before (or freed
    into the allocator) distorts it; fn and its arguments must then be picklable (module-level functions;
    scripts need an `if __name__ == "__main__":` guard), and fn should build what it needs itself.
    peak_bytes is then the whole process - interpreter, torch libraries (a few hundred MB), the inputs
    and everything fn allocates - an honest upper bound of what the call needs; increase_bytes is the
    part above the RSS just before the call. glibc may keep freed blocks resident, which can only make
    the figure larger, never smaller.
    """
    kwargs = dict(kwargs)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        tic = time.perf_counter()
        fn(*args, **kwargs)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_bytes": peak, "baseline_bytes": baseline, "increase_bytes": peak - baseline,
                "seconds": time.perf_counter() - tic, "method": "cuda: torch.cuda.max_memory_allocated"}
    if not isolate:
        return _measure_here(fn, args, kwargs)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_memory_child, args=(child, torch.get_num_threads(), fn, args, kwargs))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"the measuring process died (exit code {proc.exitcode}); out of memory?") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"the measured call failed in its subprocess: {payload}")
    payload["method"] += ", fresh spawned process"
    return payload


def format_bytes(n: float) -> str:
    if not math.isfinite(n):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


__all__ = ["test_batch", "benchmark_cheb", "count_flops", "flop_breakdown", "device_name", "time_rollout",
           "memory_profile", "format_bytes"]
