"""What reaches the console: Snakemake's plan and one line per finished job, the epoch lines of running training,
warnings and errors. Everything else goes to the log files only (logs/<rule>/..., .snakemake/log/). Set
KDSTGCN_VERBOSE=1 (or run Snakemake with --verbose) to see every message on the console as well."""
from __future__ import annotations

import logging
import os
import sys
import time

VERBOSE_ENV = "KDSTGCN_VERBOSE"
# `extra` of a log record that is shown on the console as well as in the job's log file
CONSOLE = {"console": True}


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class JobConsoleFilter(logging.Filter):
    """A job's console shows warnings, errors and the records logged with `extra=CONSOLE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return verbose() or record.levelno >= logging.WARNING or getattr(record, "console", False)


class JobConsoleFormatter(logging.Formatter):
    """'HH:MM:SS <job>: message' with no traceback (the job's log file has it)."""

    def __init__(self, job: str):
        super().__init__(f"%(asctime)s {job}: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if verbose():
            return super().format(record)
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(plain)


def job_console_handler(log_path: str | None) -> logging.Handler:
    """The stderr handler of one job, named after its log file (logs/train/demo/seed0/teacher.log ->
    train/demo/seed0/teacher)."""
    job = "kdstgcn"
    if log_path:
        job = str(log_path).removeprefix("logs/").removesuffix(".log")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobConsoleFilter())
    handler.setFormatter(JobConsoleFormatter(job))
    return handler


def duration(seconds: float) -> str:
    """'45s', '3m05s', '2h07m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SnakemakeConsole(logging.Filter):
    """Filter of Snakemake's console handler (not in a dry run): drops the per-job blocks, shell commands, the
    run header and the scheduler's chatter, and turns each finished job and the progress count into one line."""

    def __init__(self, workflow):
        super().__init__()
        self.workflow = workflow
        self.jobs: dict[int, str] = {}
        self.finished: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        from snakemake_interface_logger_plugins.common import LogEvent

        if self.workflow.dryrun:
            return True
        event = getattr(record, "event", None)
        if event == LogEvent.JOB_INFO:
            wildcards = " ".join(f"{k}={v}" for k, v in (record.wildcards or {}).items())
            self.jobs[record.jobid] = f"{record.rule_name} {wildcards}".strip()
            return False
        if event == LogEvent.JOB_FINISHED:
            self.finished.append(self.jobs.pop(record.job_id, str(record.msg)))
            return False
        if event == LogEvent.PROGRESS:
            done = ", ".join(self.finished)
            self.finished.clear()
            record.event = None
            record.msg = (f"{time.strftime('%H:%M:%S')} {record.done} of {record.total} steps "
                          f"({100 * record.done // max(1, record.total)}%) done{': ' + done if done else ''}")
            record.args = ()
            return True
        if event in (LogEvent.JOB_STARTED, LogEvent.SHELLCMD, LogEvent.WORKFLOW_STARTED):
            return False
        return record.getMessage() not in ("Select jobs to execute...", "")


def quiet_snakemake(workflow) -> None:
    """Install SnakemakeConsole on Snakemake's console handler, unless verbose output is asked for (--verbose
    also makes the jobs verbose, through KDSTGCN_VERBOSE)."""
    if workflow.output_settings.verbose:
        os.environ[VERBOSE_ENV] = "1"
    if verbose():
        return
    for handler in logging.getLogger("snakemake.logging").handlers:
        if handler.name == "DefaultStreamHandler" and not any(isinstance(f, SnakemakeConsole)
                                                               for f in handler.filters):
            handler.addFilter(SnakemakeConsole(workflow))
