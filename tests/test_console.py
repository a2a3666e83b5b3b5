"""What a job prints on the console (kdstgcn.runtime.console through runner.logged): warnings, errors without their
traceback and the epoch lines, each named after the job; everything, traceback included, in the job's log file."""
import logging

import pytest

from kdstgcn.runtime.console import CONSOLE, VERBOSE_ENV, duration
from kdstgcn.runtime.runner import logged


def run_job(log_path) -> None:
    with pytest.raises(ValueError):
        with logged(str(log_path)) as log:
            log.info("table 9\n   a   b\n0  1   2")
            logging.getLogger("kdstgcn.training.loop").info("epoch %d/%d ETA %s", 1, 2, "5s", extra=CONSOLE)
            log.warning("2 isolated stations")
            raise ValueError("bad value in results/x.csv")


def test_console_gets_epoch_lines_warnings_and_errors_the_log_file_everything(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    log_path = tmp_path / "logs" / "train" / "demo" / "seed0" / "teacher.log"
    log_path.parent.mkdir(parents=True)
    run_job(log_path)
    console = capsys.readouterr().err.splitlines()
    job = str(log_path).removesuffix(".log")  # a path under logs/ is shown without the logs/ prefix
    assert [line.split(" ", 1)[1] for line in console] == [
        f"{job}: epoch 1/2 ETA 5s", f"{job}: 2 isolated stations", f"{job}: ValueError: bad value in results/x.csv"]
    text = log_path.read_text()
    assert "table 9" in text and "epoch 1/2" in text and "Traceback" in text and "INFO" in text


def test_verbose_switch_prints_everything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    run_job(tmp_path / "job.log")
    err = capsys.readouterr().err
    assert "table 9" in err and "Traceback" in err


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (0.4, 45, 185, 7620)] == ["0s", "45s", "3m05s", "2h07m"]
