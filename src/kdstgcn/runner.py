"""Plumbing for the entry points in scripts/: log to the rule's log file, pin threads, record failures."""
from __future__ import annotations

import contextlib
import logging
import sys

import torch


@contextlib.contextmanager
def logged(log_path: str | None, threads: int = 1):
    """Send logging (and uncaught errors) of one job to its log file and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, int(threads)))
    log = logging.getLogger("kdstgcn")
    try:
        yield log
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc, exc_info=True)
        raise
