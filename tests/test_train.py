"""Training loop: the loss falls, resuming from a checkpoint ends exactly where an uninterrupted run ends,
a checkpoint of other settings is ignored, a diverging loss stops the run without writing a model, and a
compiled step trains the eager model, or falls back to it when the compiler fails."""
import logging
import math
import re
import shutil
from dataclasses import replace

import pandas as pd
import pytest
import torch

from helpers import Interrupted, StopAfter
from kdstgcn.config.runspec import LossSpec, RunSpec, TrainSettings
from kdstgcn.data.samples import NORMALISED_FOLDER, prepare
from kdstgcn.jobs.train import train_run
from kdstgcn.losses.response import OverseenResponse, TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.persist import load_model
from kdstgcn.model.stgcn import STGCN
from kdstgcn.training.loop import NonFiniteLoss, train
from kdstgcn.training.teacher import LiveTeacher

pytestmark = pytest.mark.usefixtures("single_thread")

BLOCKS = ((1, 4, 8), (8, 4, 16))
TIMING = ("train_seconds", "epoch_seconds")


def new_model(cheb, n_nodes, seed=0):
    torch.manual_seed(seed)
    return STGCN(Architecture(n_nodes, BLOCKS), cheb)


def settings(epochs, **kw):
    # lr_step_epochs=2 so that the resumed epochs cross a learning-rate step
    return TrainSettings(epochs=epochs, batch_size=50, learning_rate=kw.pop("learning_rate", 3e-3),
                         lr_step_epochs=2, eval_batch_size=200, **kw)


def cpu():
    return torch.device("cpu")


def test_training_reduces_the_loss(data, cheb, synthetic_files, tmp_path):
    model, history = train(new_model(cheb, synthetic_files.n_nodes), data, TaskLoss(), settings(3),
                           tmp_path / "ckpt.pt", device=cpu())
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert history["val_mae"].map(math.isfinite).all()
    assert history["lr"].tolist() == pytest.approx([3e-3, 3e-3, 3e-3 * 0.7])
    # the returned model is the best epoch on validation MAE
    best = history.loc[history["val_mae"].idxmin()]
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert ckpt["best"]["epoch"] == int(best["epoch"]) and ckpt["epoch"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["best"]["state"][k])


def assert_same_run(a, b):
    (model_a, hist_a), (model_b, hist_b) = a, b
    for (k, va), (k2, vb) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert k == k2 and torch.equal(va, vb), k
    cols = [c for c in hist_a.columns if c not in TIMING]
    assert hist_a[cols].equals(hist_b[cols])


def test_days_mapped_from_a_file_train_the_model_of_days_in_memory(data, cheb, synthetic_files, tmp_path):
    """The same batches in the same order, whether the normalised days are held in memory or mapped from a file."""
    values, report = (shutil.copy(path, tmp_path) for path in (synthetic_files.values, synthetic_files.fill_report))
    mapped = prepare(values, report, synthetic_files.steps_per_day, synthetic_files.split, 12, 9, mmap_min_bytes=0)
    assert (tmp_path / NORMALISED_FOLDER).exists()
    runs = [train(new_model(cheb, synthetic_files.n_nodes), prepared, TaskLoss(), settings(2),
                  tmp_path / f"{how}.pt", device=cpu()) for how, prepared in (("memory", data), ("mapped", mapped))]
    assert_same_run(*runs)


def test_resume_after_interruption_is_exact(data, cheb, synthetic_files, tmp_path, caplog):
    n = synthetic_files.n_nodes
    a = train(new_model(cheb, n), data, TaskLoss(), settings(4), tmp_path / "a.pt", device=cpu())

    batches_per_epoch = math.ceil(data.inputs("train").shape[0] / 50)
    with pytest.raises(Interrupted):
        train(new_model(cheb, n), data, StopAfter(2 * batches_per_epoch), settings(4), tmp_path / "b.pt",
              device=cpu())
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 2
    caplog.set_level(logging.INFO, logger="kdstgcn")
    b = train(new_model(cheb, n, seed=99), data, TaskLoss(), settings(4), tmp_path / "b.pt", device=cpu())
    assert "resuming" in caplog.text and "after epoch 2" in caplog.text
    assert_same_run(a, b)
    last_a = torch.load(tmp_path / "a.pt", weights_only=False)
    last_b = torch.load(tmp_path / "b.pt", weights_only=False)
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k])
    assert last_a["optimizer"]["state"].keys() == last_b["optimizer"]["state"].keys()


def test_more_epochs_continue_from_the_checkpoint(data, cheb, synthetic_files, tmp_path, caplog):
    n = synthetic_files.n_nodes
    a = train(new_model(cheb, n), data, TaskLoss(), settings(4), tmp_path / "a.pt", device=cpu())
    train(new_model(cheb, n), data, TaskLoss(), settings(2), tmp_path / "b.pt", device=cpu())
    caplog.set_level(logging.INFO, logger="kdstgcn")
    b = train(new_model(cheb, n), data, TaskLoss(), settings(4), tmp_path / "b.pt", device=cpu())
    assert_same_run(a, b)  # holds either way: a restart with the same seed gives the same numbers
    assert "resuming" in caplog.text


def test_checkpoint_of_other_settings_is_ignored(data, cheb, synthetic_files, tmp_path, caplog):
    n = synthetic_files.n_nodes
    train(new_model(cheb, n), data, TaskLoss(), settings(1, learning_rate=1e-2), tmp_path / "x.pt", device=cpu())
    fresh = train(new_model(cheb, n), data, TaskLoss(), settings(1), tmp_path / "fresh.pt", device=cpu())
    caplog.set_level(logging.INFO, logger="kdstgcn")
    other = train(new_model(cheb, n), data, TaskLoss(), settings(1), tmp_path / "x.pt", device=cpu())
    assert "ignoring checkpoint" in caplog.text and "resuming" not in caplog.text
    assert_same_run(fresh, other)


def test_nan_in_the_data_stops_training(data, cheb, synthetic_files, tmp_path):
    days = data.windows["train"].days.clone()
    days[0, 17 + 12, 3] = float("nan")  # the one-step target of window 17 (and an input of windows 18-29)
    broken = replace(data, windows={**data.windows, "train": replace(data.windows["train"], days=days)})
    n_batches = math.ceil(len(broken.windows["train"]) / 50)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, batch (\d+)") as info:
        train(new_model(cheb, synthetic_files.n_nodes), broken, TaskLoss(), settings(2), tmp_path / "c.pt",
              device=cpu())
    batch = int(re.search(r"batch (\d+)", str(info.value)).group(1))
    assert 1 <= batch <= n_batches
    assert not (tmp_path / "c.pt").exists()


def run_spec(synthetic_files, epochs, learning_rate):
    return RunSpec("synthetic", "teacher", synthetic_files.data_spec(),
                   TrainSettings(epochs=epochs, batch_size=50, learning_rate=learning_rate, eval_batch_size=200),
                   LossSpec("task", {}), "cpu", arch=Architecture(synthetic_files.n_nodes, BLOCKS))


def call_train_run(run, files, out, teacher_path=None):
    return train_run(run, values=str(files.values), fill_report=str(files.fill_report),
                     adjacency=str(files.adjacency), model_out=str(out / "model.pt"),
                          history_out=str(out / "history.parquet"), info_out=str(out / "info.json"),
                          checkpoint=str(out / "checkpoint.pt"), teacher_path=teacher_path)


def test_train_run_writes_model_history_and_a_larger_budget_continues(synthetic_files, tmp_path, caplog):
    call_train_run(run_spec(synthetic_files, 2, 1e-3), synthetic_files, tmp_path)
    history = pd.read_parquet(tmp_path / "history.parquet")
    assert history["epoch"].tolist() == [1, 2]
    model, extra = load_model(tmp_path / "model.pt")
    assert extra["epochs_run"] == 2 and extra["best_epoch"] in (1, 2)
    assert (tmp_path / "checkpoint.pt").exists()
    with caplog.at_level(logging.INFO):
        call_train_run(run_spec(synthetic_files, 3, 1e-3), synthetic_files, tmp_path)
    assert "after epoch 2" in caplog.text
    assert pd.read_parquet(tmp_path / "history.parquet")["epoch"].tolist() == [1, 2, 3]


def test_diverging_run_writes_no_model(synthetic_files, tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, batch \d+"):
        call_train_run(run_spec(synthetic_files, 2, 1e30), synthetic_files, tmp_path)
    assert not (tmp_path / "model.pt").exists()
    assert not (tmp_path / "history.parquet").exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_student_checkpoint_is_ignored_once_its_teacher_changed(synthetic_files, tmp_path, caplog):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    teacher_dir.mkdir(), student_dir.mkdir()
    call_train_run(run_spec(synthetic_files, 1, 1e-3), synthetic_files, teacher_dir)
    student = replace(run_spec(synthetic_files, 1, 1e-3), role="student_ord", loss=LossSpec("ord", {"alpha1": 0.5}))
    teacher = str(teacher_dir / "model.pt")
    call_train_run(student, synthetic_files, student_dir, teacher)
    with caplog.at_level(logging.INFO):
        call_train_run(student.with_epochs(2), synthetic_files, student_dir, teacher)
    assert "after epoch 1" in caplog.text
    call_train_run(run_spec(synthetic_files, 2, 1e-3), synthetic_files, teacher_dir)  # the teacher trains on
    caplog.clear()
    with caplog.at_level(logging.INFO):
        call_train_run(student.with_epochs(3), synthetic_files, student_dir, teacher)
    assert "ignoring checkpoint" in caplog.text and "resuming" not in caplog.text
    assert pd.read_parquet(student_dir / "history.parquet")["epoch"].tolist() == [1, 2, 3]


def test_a_compiled_training_step_gives_the_eager_run(data, cheb, synthetic_files, tmp_path):
    """training.compile: on (torch.compile of the step; on a GPU as CUDA graphs) trains the same model as eager.
    One small block and two equal batches: compiling costs seconds per graph."""
    runs = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        model = STGCN(Architecture(synthetic_files.n_nodes, ((1, 2, 4),)), cheb)
        runs[mode] = train(model, data, TaskLoss(),
                           TrainSettings(epochs=1, batch_size=76, eval_batch_size=200, compile=mode),
                           tmp_path / f"{mode}.pt", device=cpu())
    (eager, eager_history), (compiled, compiled_history) = runs["off"], runs["on"]
    assert compiled_history["train_loss"].iloc[0] == pytest.approx(eager_history["train_loss"].iloc[0], rel=1e-4)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def small_student(cheb, n_nodes):
    torch.manual_seed(0)
    return STGCN(Architecture(n_nodes, ((1, 2, 4),)), cheb)


def ord_student_run(data, cheb, n_nodes, path, compile):
    """An ORD student of a live teacher, one epoch of two equal batches (compiling costs seconds per graph)."""
    teacher = new_model(cheb, n_nodes, seed=5)
    loss = OverseenResponse(alpha1=0.5)
    run = train(small_student(cheb, n_nodes), data, loss, TrainSettings(epochs=1, batch_size=76, eval_batch_size=200,
                                                                          compile=compile),
                path, LiveTeacher(teacher), device=cpu())
    return run, loss.share_pct()


def test_a_compile_failure_warns_once_and_trains_the_eager_run(data, cheb, synthetic_files, tmp_path, caplog):
    """A compiler that fails (inductor's own fault injection: its C++ code for relu does not compile) costs one
    warning naming the error; the run continues eager with the numbers of compile: off, ORD's share included."""
    n = synthetic_files.n_nodes
    eager, eager_share = ord_student_run(data, cheb, n, tmp_path / "off.pt", "off")
    with torch._inductor.config.patch({"cpp.inject_relu_bug_TESTING_ONLY": "compile_error"}):
        with caplog.at_level(logging.WARNING, logger="kdstgcn"):
            fallen, fallen_share = ord_student_run(data, cheb, n, tmp_path / "on.pt", "on")
    warned = [r.getMessage() for r in caplog.records
              if r.name == "kdstgcn.training.loop" and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "compiled step failed" in warned[0] and "compile error" in warned[0], warned
    assert_same_run(eager, fallen)
    assert fallen_share == eager_share > 0


def test_a_compiled_ord_student_of_a_live_teacher_trains_the_eager_model(data, cheb, synthetic_files, tmp_path,
                                                                          caplog):
    """The teacher forward inside the compiled step (under no_grad there: AOTAutograd cannot trace inference
    tensors) and ORD's count returned from it: no fallback, the eager model and the same share."""
    n = synthetic_files.n_nodes
    (eager, _), eager_share = ord_student_run(data, cheb, n, tmp_path / "off.pt", "off")
    with caplog.at_level(logging.WARNING, logger="kdstgcn"):
        (compiled, _), compiled_share = ord_student_run(data, cheb, n, tmp_path / "on.pt", "on")
    assert not [r for r in caplog.records if r.name == "kdstgcn.training.loop" and r.levelno >= logging.WARNING]
    assert compiled_share == eager_share > 0
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[k], v, rtol=1e-4, atol=1e-5)
