"""Plumbing for the entry points in scripts/: log to the rule's log file, pin threads, record failures."""
from __future__ import annotations

import contextlib
import logging
import sys

from .console import job_console_handler


@contextlib.contextmanager
def logged(log_path: str | None, threads: int = 1):
    """Send logging (and uncaught errors) of one job to its log file; the console (stderr) gets what
    kdstgcn.console lets through: warnings, errors without their traceback, and the epoch lines."""
    handlers: list[logging.Handler] = []
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
        handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers.append(job_console_handler(log_path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    torch = sys.modules.get("torch")  # a job that computes has imported it; tables and pages never load it
    if torch is not None:
        torch.set_num_threads(max(1, int(threads)))
    log = logging.getLogger("kdstgcn")
    try:
        yield log
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc, exc_info=True)
        raise
