"""Faults: a training job killed mid-epoch resumes to the same metrics, an interrupted download leaves no file
at the target, a corrupted raw file stops the pipeline naming the file, and a NaN loss stops the job naming the
epoch and batch without writing a model. Each case is a row of the Reliability table (docs/reliability.md)."""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, HalfPayloadServer, run_snakemake, snakemake_env
import kdstgcn.jobs.train
from kdstgcn.config import layout
from kdstgcn.config.runspec import LossSpec, RunSpec, TrainSettings
from kdstgcn.data.graph import load_cheb
from kdstgcn.jobs.train import train_run
from kdstgcn.data.download import fetch
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.persist import save_model
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.runner import logged
from kdstgcn.training.loop import NonFiniteLoss

TEACHER = "results/demo/seed0/teacher"
TIMING = ("train_seconds", "epoch_seconds")


# ---------------------------------------------------------------------------------------------------------
# process helpers: a Snakemake run in the background and SIGKILL of it and every process below it
# ---------------------------------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """Ids of every process below `pid` (read from /proc, so that none is missed when their group differs)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started (in its own session), its process group and every descendant."""
    below = descendants(proc.pid)
    for pid in [proc.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(condition, proc: subprocess.Popen, output: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}:\n{output.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            pytest.fail(f"no {what} within {timeout} s:\n{output.read_text()[-4000:]}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------
# SIGKILL mid-epoch, then --rerun-incomplete
# ---------------------------------------------------------------------------------------------------------

# a narrower teacher than the paper's: about a second per epoch on one core, long enough to be killed in; on a GPU
# one-window batches make the epoch as long (the first epoch also compiles the step), and the numbers are compared
# to float tolerance (GPU kernels are not bit-reproducible)
KILL_RUNS = {"cpu": {"epochs": 2, "batch_size": 50, "wait_s": 120, "exact": True},
             "cuda": {"epochs": 3, "batch_size": 1, "wait_s": 300, "exact": False}}


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_sigkill_mid_epoch_then_rerun_incomplete_resumes_to_the_same_metrics(repo_copy, monkeypatch, device):
    case = KILL_RUNS[device]
    epochs = case["epochs"]
    (repo_copy / "faults.yaml").write_text(yaml.safe_dump({
        "device": device, "training": {"epochs": epochs, "batch_size": case["batch_size"]},
        "model": {"architectures": {"teacher": "[1,16,32][32,16,64]"}}}))
    args = ["--cores", "1", "--configfile", "config/demo.yaml", "faults.yaml"]
    target = f"{TEACHER}/metrics.csv"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same thread count in every run: bit-identical numbers

    # uninterrupted run: the reference numbers
    first = run_snakemake(repo_copy, [*args, "--", target], timeout=2 * case["wait_s"])
    assert first.returncode == 0, first.output[-4000:]
    reference_metrics = (repo_copy / target).read_bytes()
    reference_history = pd.read_parquet(repo_copy / TEACHER / "history.parquet").drop(columns=list(TIMING))

    # the same run again from scratch, killed (snakemake and the job, SIGKILL) in the epoch after the first
    # checkpoint
    shutil.rmtree(repo_copy / TEACHER)
    checkpoint = repo_copy / TEACHER / "checkpoint.pt"
    log = repo_copy / layout.job_log("train", "demo", "seed0", "teacher")
    log.unlink()
    output = repo_copy / "killed_run.txt"
    with open(output, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args, "--", target], cwd=repo_copy,
                                env=snakemake_env(None),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: checkpoint.exists() and log.exists() and f"epoch 1/{epochs}" in log.read_text(),
                 proc, output, case["wait_s"], "first checkpoint")
    finally:
        kill_tree(proc)
    done = int(torch.load(checkpoint, weights_only=False)["epoch"])
    assert 1 <= done < epochs, f"the job was not killed during training (checkpoint after epoch {done})"
    assert f"epoch {done + 1}/{epochs}" not in log.read_text()  # killed inside epoch done + 1
    for name in ("model.pt", "history.parquet", "info.json", "metrics.csv"):
        assert not (repo_copy / TEACHER / name).exists(), name

    # what the user sees and does: Snakemake's lock is stale; release it, rerun the incomplete job
    locked = run_snakemake(repo_copy, [*args, "--rerun-incomplete", "--", target], timeout=120)
    assert locked.returncode != 0 and "--unlock" in locked.output, locked.output[-3000:]
    unlock = run_snakemake(repo_copy, [*args, "--unlock"], timeout=120)
    assert unlock.returncode == 0, unlock.output[-3000:]
    rerun = run_snakemake(repo_copy, [*args, "--rerun-incomplete", "--", target], timeout=2 * case["wait_s"])
    assert rerun.returncode == 0, rerun.output[-4000:]
    text = log.read_text()
    assert f"after epoch {done}" in text and "resuming" in text, text[-2000:]
    assert [f"epoch {e}/{epochs}" in text for e in range(1, epochs + 1)] == [e > done for e in range(1, epochs + 1)]
    assert torch.load(checkpoint, weights_only=False)["epoch"] == epochs  # the finished run's checkpoint is kept

    history = pd.read_parquet(repo_copy / TEACHER / "history.parquet").drop(columns=list(TIMING))
    if case["exact"]:
        assert (repo_copy / target).read_bytes() == reference_metrics
        pd.testing.assert_frame_equal(history, reference_history, check_exact=True)
    else:
        reference = pd.read_csv(io.BytesIO(reference_metrics))
        pd.testing.assert_frame_equal(pd.read_csv(repo_copy / target), reference, check_exact=False, rtol=1e-3)
        pd.testing.assert_frame_equal(history, reference_history, check_exact=False, rtol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# download interrupted mid-file
# ---------------------------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 12288  # 3 MiB; the download copies 1 MiB chunks, so half of it puts one on disk
CHUNK = 1 << 20
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def partial_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".data.bin.*.part"))


def half_written(target: Path) -> bool:
    for part in partial_files(target.parent):
        try:
            if part.stat().st_size >= CHUNK:
                return True
        except FileNotFoundError:
            pass
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_download_interrupted_mid_file_leaves_no_file_at_the_target(tmp_path, sig):
    target = tmp_path / "raw" / "data.bin"
    # Ctrl-C's handler set in the child: one started from a background shell job inherits SIGINT ignored
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from kdstgcn.data.download import fetch; "
            "fetch('data.bin', [sys.argv[1]], sys.argv[2], sys.argv[3], None, timeout=60)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    with HalfPayloadServer(PAYLOAD, stall=True) as server:
        proc = subprocess.Popen([sys.executable, "-c", code, server.url, SHA, str(target)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not half_written(target):  # mid-file: a first part is on disk, the rest never comes
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the download never got half-way"
            time.sleep(0.01)
        assert not target.exists()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert proc.returncode != 0
        assert not target.exists()  # no partial file under the name the pipeline reads
        if sig == signal.SIGINT:  # Ctrl-C: Python unwinds and removes its temporary file too
            assert sorted(p.name for p in target.parent.iterdir()) == []

        # the rerun downloads the file whole and verified
        server.full = True
        fetch("data.bin", [server.url], SHA, target, None, timeout=60)
    assert target.read_bytes() == PAYLOAD
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


# ---------------------------------------------------------------------------------------------------------
# corrupted raw files stop the pipeline naming the file
# ---------------------------------------------------------------------------------------------------------

def file_dataset(values_name: str, sha256: str) -> dict:
    return {"paper_name": "PeMSD7", "description": "raw-file fault test", "source": "files", "n_nodes": 4,
            "steps_per_day": 24, "start": "2024-01-01", "weekdays_only": False, "split": [3, 1, 1],
            "values": {"file": {"name": values_name, "urls": [], "sha256": sha256}, "format": "csv_matrix",
                       "steps": 120, "quantity": "speed (mph)"},
            "distance": {"file": {"name": "fault_distance.csv", "urls": [], "sha256": ""},
                         "format": "matrix_csv", "unit_m": 1000},
            "sigma2": 10.0, "epsilon": 0.5}


@pytest.mark.slow
def test_corrupted_raw_files_stop_the_pipeline_naming_the_file(repo_copy, tmp_path):
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    good = "\n".join(",".join(f"{v:.1f}" for v in row) for row in rng.uniform(40, 70, (120, 4))) + "\n"
    # checksum mismatch: the config knows the right sha256, the mirror holds a copy with one byte changed
    (mirror / "checksum_values.csv").write_text(good.replace("4", "5", 1))
    # shape mismatch: 3 stations where the config says 4 (no checksum configured, so only reading can tell)
    np.savetxt(mirror / "shape_values.csv", rng.uniform(40, 70, (120, 3)), delimiter=",", fmt="%.1f")
    np.savetxt(mirror / "fault_distance.csv", 1000.0 * (1 - np.eye(4)), delimiter=",", fmt="%.1f")
    config = {"mirror": str(mirror), "run_datasets": ["badsum"],
              "datasets": {"badsum": file_dataset("checksum_values.csv", hashlib.sha256(good.encode()).hexdigest()),
                           "badshape": file_dataset("shape_values.csv", "")}}
    (repo_copy / "faults.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/{d}/clean/values.parquet" for d in ("badsum", "badshape")]  # what training reads
    result = run_snakemake(repo_copy, ["--cores", "2", "--configfile", "config/demo.yaml", "faults.yaml",
                                       "--keep-going", "--", *targets], timeout=240)
    assert result.returncode != 0
    logs = {p.relative_to(repo_copy / "logs").as_posix(): p.read_text() for p in (repo_copy / "logs").rglob("*.log")}

    checksum_log = logs["download/badsum/checksum_values.csv.log"]
    assert "checksum_values.csv" in checksum_log and "sha256" in checksum_log and "corrupt" in checksum_log
    shape_log = logs["clean/badshape.log"]
    assert "results/badshape/raw/shape_values.csv" in shape_log and "shape (120, 3), expected (120, 4)" in shape_log
    # the console names them too
    assert "checksum_values.csv" in result.output and "shape_values.csv: shape (120, 3)" in result.output

    assert not (repo_copy / "results/badsum/raw/checksum_values.csv").exists()  # the bad copy is not kept
    assert not list((repo_copy / "results/badsum/raw").glob(".*.part"))
    assert (repo_copy / "results/badshape/raw/shape_values.csv").exists()  # kept for inspection; clean wrote nothing
    clean = repo_copy / "results/badshape/clean"
    assert not clean.exists() or not any(clean.iterdir())  # no cleaned table, so nothing downstream can run


# ---------------------------------------------------------------------------------------------------------
# a NaN in the loss stops the job with epoch and batch, and writes no model
# ---------------------------------------------------------------------------------------------------------

BLOCKS = ((1, 4, 8), (8, 4, 16))


def run_spec(files, loss: LossSpec, epochs: int = 2) -> RunSpec:
    return RunSpec("synthetic", "student_rd_l2" if loss.name != "task" else "teacher", files.data_spec(),
                   TrainSettings(epochs=epochs, batch_size=50, eval_batch_size=200), loss, "cpu",
                   arch=Architecture(files.n_nodes, BLOCKS))


def outputs(folder: Path) -> dict:
    return dict(model_out=str(folder / "model.pt"), history_out=str(folder / "history.parquet"),
                info_out=str(folder / "info.json"), checkpoint=str(folder / "checkpoint.pt"))


def run_job(run: RunSpec, files, folder: Path, teacher: Path | None = None) -> str:
    """What scripts/train.py does: train_run inside the job's logging; returns the job log."""
    log_path = folder / "job.log"
    with pytest.raises(NonFiniteLoss) as info:
        with logged(str(log_path), 1):
            train_run(run, str(files.values), str(files.fill_report), str(files.adjacency),
                      teacher_path=str(teacher) if teacher else None, **outputs(folder))
    assert str(info.value) in log_path.read_text()
    return str(info.value)


def assert_no_model(folder: Path) -> None:
    for name in ("model.pt", "history.parquet", "info.json"):
        assert not (folder / name).exists(), name
    assert not list(folder.glob(".*.part"))


def test_nan_teacher_output_stops_the_student_at_epoch_1_batch_1(synthetic_files, tmp_path, single_thread):
    teacher = STGCN(Architecture(synthetic_files.n_nodes, BLOCKS),
                    load_cheb(str(synthetic_files.adjacency), 3))
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(float("nan"))
    save_model(teacher, tmp_path / "teacher.pt")
    message = run_job(run_spec(synthetic_files, LossSpec("rd_l2", {"beta": 0.5})), synthetic_files,
                      tmp_path, tmp_path / "teacher.pt")
    assert "epoch 1, batch 1;" in message and "no model written" in message
    assert_no_model(tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


class NanAt(TaskLoss):
    """The task loss, except that it turns NaN at one batch (the training loop counts batches from 1)."""

    def __init__(self, call: int):
        super().__init__()
        self.call, self.calls = call, 0

    def forward(self, student, target, teacher=None):
        self.calls += 1
        value = super().forward(student, target, teacher)
        return value * float("nan") if self.calls == self.call else value


def test_nan_loss_mid_run_names_epoch_and_batch_and_writes_no_model(synthetic_files, tmp_path, monkeypatch,
                                                                      single_thread):
    n_windows = synthetic_files.split[0] * (synthetic_files.steps_per_day - 21 + 1)
    per_epoch = math.ceil(n_windows / 50)
    monkeypatch.setattr(kdstgcn.jobs.train, "build_loss", lambda **spec: NanAt(per_epoch + 3))  # epoch 2, batch 3
    message = run_job(run_spec(synthetic_files, LossSpec("task", {})), synthetic_files, tmp_path)
    assert "at epoch 2, batch 3;" in message and "loss is nan" in message
    assert_no_model(tmp_path)
    # the last good checkpoint (epoch 1) stays, finite, for a rerun with other settings to ignore or resume
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
