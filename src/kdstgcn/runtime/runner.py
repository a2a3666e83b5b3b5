"""Plumbing for the entry points in scripts/: log to the rule's log file, set up the process for computing
(threads, memory reuse), record failures."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

from kdstgcn.runtime.console import job_console_handler


# glibc hands every freed block above its mmap threshold (32 MiB at most) back to the kernel, and the next block
# of that size is faulted in again page by page, each page zero-filled. An L_STCD training step allocates and
# frees distance residuals of B x T x N x N floats per graph-conv layer (about 100 MiB at N = 228, batch 50):
# faulting them in again cost as much as computing them (bench/distill_step.py; figures: docs/performance.md).
# Freed blocks up to this size are kept in the process for reuse.
KEPT_BLOCK_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MALLOC_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks up to KEPT_BLOCK_BYTES instead of unmapping them (mallopt's mmap and trim
    thresholds); the process's resident memory then stays near its peak instead of shrinking after each step.
    False, changing nothing, without glibc or where the environment already sets glibc's malloc tunables."""
    if any(name in os.environ for name in _MALLOC_ENVIRONMENT):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEPT_BLOCK_BYTES))


def set_up_compute(threads: int) -> None:
    """What every computing process does first: torch's thread count, and freed memory kept for reuse."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    keep_freed_memory()


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): how long the interpreter, Snakemake's
    script preamble and the imports took before a job's own code runs."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def logged(log_path: str | None, threads: int = 1):
    """Send logging (and uncaught errors) of one job to its log file; the console (stderr) gets what
    kdstgcn.runtime.console lets through: warnings, errors without their traceback, and the epoch lines."""
    handlers: list[logging.Handler] = []
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
        handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers.append(job_console_handler(log_path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    if "torch" in sys.modules:  # a job that computes has imported it; tables and pages never load it
        set_up_compute(threads)
    log = logging.getLogger("kdstgcn")
    age = process_age_s()
    if age is not None:
        log.info("job code starts %.2f s after the process (interpreter, Snakemake, imports)", age)
    try:
        yield log
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc, exc_info=True)
        raise
