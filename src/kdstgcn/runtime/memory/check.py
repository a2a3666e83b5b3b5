"""The memory a job may use (`available_memory`), the check that stops a job whose estimate exceeds it
(`check_memory`), and the estimate as a rule's `mem_mb`."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from kdstgcn.runtime.memory.shapes import Estimate

log = logging.getLogger(__name__)

MB = 10**6
MEMORY_LIMIT_ENV = "KDSTGCN_MEMORY_MB"  # the memory a job may use (MB) in place of the cgroup limit or MemAvailable


def _cgroup_limit_bytes() -> int | None:
    """The smallest memory limit of this process's cgroup and its ancestors (v2 memory.max, v1
    memory.limit_in_bytes), None where none is set."""
    limits = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folder, name = Path("/sys/fs/cgroup"), "memory.max"
        elif "memory" in controllers.split(","):
            folder, name = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"
        else:
            continue
        parts = Path(path.lstrip("/")).parts
        for depth in range(len(parts), -1, -1):
            try:
                value = (folder.joinpath(*parts[:depth]) / name).read_text().strip()
            except OSError:
                continue
            if value.isdigit():
                limits.append(int(value))
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    finite = [limit for limit in limits if limit < physical]
    return min(finite) if finite else None


def _meminfo_bytes(key: str, path: str = "/proc/meminfo") -> int | None:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def available_memory() -> tuple[int, str]:
    """The memory this job may use and where that figure comes from: `KDSTGCN_MEMORY_MB`, else the cgroup's limit
    (a Slurm job's --mem), else MemAvailable plus what this process already holds (the estimate counts it)."""
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override:
        return int(float(override) * MB), MEMORY_LIMIT_ENV
    limit = _cgroup_limit_bytes()
    if limit is not None:
        return limit, "the cgroup's memory limit"
    held = _meminfo_bytes("VmRSS", "/proc/self/status") or 0
    return (_meminfo_bytes("MemAvailable") or 0) + held, "MemAvailable"


class OutOfMemory(RuntimeError):
    """A job's estimated memory exceeds what it may use."""


def check_memory(job: Estimate, what: str) -> None:
    """Log the estimate of `what` (a job) beside the memory available (`available_memory`); where it needs more,
    raise OutOfMemory: one line naming both and the settings that lower the largest terms."""
    needed = job.peak_bytes
    available, source = available_memory()
    log.info("%s: memory estimate %.2f GB (at its %s), %.2f GB available (%s)", what, needed / 1e9, job.peak_phase,
             available / 1e9, source)
    if needed <= available:
        return
    settings = list(dict.fromkeys(term.lowered_by for term in job.largest_terms() if term.lowered_by))[:3]
    largest = job.largest_terms()[0]
    lower = ", ".join(settings[:-1]) + (" or " if len(settings) > 1 else "") + settings[-1] if settings else ""
    raise OutOfMemory(f"{what} needs about {needed / 1e9:.2f} GB (estimate; largest: {largest.what}, "
                      f"{largest.bytes / 1e9:.2f} GB), more than the {available / 1e9:.2f} GB available "
                      f"({source}); lower {lower}, or run it where more memory is free")


def mem_mb(job: Estimate) -> int:
    """The estimate in MB, rounded up: a rule's `resources: mem_mb`."""
    return math.ceil(job.peak_bytes / MB)
