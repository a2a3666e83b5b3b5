"""Peak memory of one call, for the benchmarks: the process's peak resident set size on a CPU (Linux VmHWM, reset
just before the call, by default in a freshly spawned process), `torch.cuda.max_memory_allocated` on a GPU."""
from __future__ import annotations

import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Callable

import torch

from kdstgcn.runtime.runner import set_up_compute


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
