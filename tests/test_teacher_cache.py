"""The teacher's outputs once per run: cached predictions give the same student as a teacher forward in every
batch, the cache is keyed by the teacher, the data and the code the process imported, a store in use is never
removed, and the inference-mode teacher forward of the feature losses gives the gradients of a no_grad forward."""
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kdstgcn
from kdstgcn.losses.base import Outputs, forward, loss_step
from kdstgcn.losses.build import LOSS_CLASSES as LOSSES, build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.config.runspec import LossSpec, PruneSpec, RunSpec, TrainSettings
from kdstgcn.data.graph import load_cheb
from kdstgcn.jobs.prune import fit_prune
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import CachedPredictions, LiveTeacher, StoredFeatures, teacher_source
from kdstgcn.training import teacher_cache
from kdstgcn.training.teacher_cache import CACHE_NAME, TeacherFeatureStore, cached_teacher_predictions, tensor_digest

pytestmark = pytest.mark.usefixtures("single_thread")

TEACHER, STUDENT = ((1, 4, 8), (8, 4, 16)), ((1, 2, 4), (4, 2, 8))
PARAMS = {"beta": 0.4, "temperature": 2.0, "alpha1": 0.3, "alpha2": 0.5, "alpha3": 0.7, "alpha": 0.6}
RESPONSE_LOSSES = sorted(n for n, c in LOSSES.items() if c.uses_teacher and not c.uses_features)
FEATURE_LOSSES = sorted(n for n, c in LOSSES.items() if c.uses_features)
CPU = torch.device("cpu")


def model(cheb, n_nodes, blocks, seed):
    torch.manual_seed(seed)
    return STGCN(Architecture(n_nodes, blocks), cheb)


def test_response_losses_are_the_cached_ones():
    assert RESPONSE_LOSSES == ["ord", "rd_kl", "rd_l2"]


@pytest.mark.parametrize("name", RESPONSE_LOSSES)
def test_cached_predictions_train_the_same_student_as_a_teacher_forward_per_batch(name, data, cheb,
                                                                                   synthetic_files, tmp_path):
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    settings = TrainSettings(epochs=2, batch_size=50, learning_rate=3e-3, eval_batch_size=200)
    runs = {}
    for how in ("forward", "cached"):
        source = LiveTeacher(teacher)
        if how == "cached":
            source = CachedPredictions(teacher, cached_teacher_predictions(teacher, data.inputs("train"),
                                                                           tmp_path / how, 50, CPU))
        loss = build_loss(name, PARAMS)
        student, history = train(model(cheb, n, STUDENT, seed=0), data, loss, settings,
                                 tmp_path / how / "checkpoint.pt", source, CPU)
        runs[how] = (student.state_dict(), history, loss.share_pct())
    (w_forward, h_forward, share_forward), (w_cached, h_cached, share_cached) = runs["forward"], runs["cached"]
    for key, value in w_forward.items():
        torch.testing.assert_close(w_cached[key], value, rtol=1e-5, atol=1e-6)
    assert h_cached["train_loss"].tolist() == pytest.approx(h_forward["train_loss"].tolist(), rel=1e-5)
    assert share_cached == share_forward


def test_cache_is_written_once_and_keyed_by_teacher_and_data(data, cheb, synthetic_files, tmp_path, caplog):
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    inputs = data.inputs("train")
    with caplog.at_level(logging.INFO):
        first = cached_teacher_predictions(teacher, inputs, tmp_path, 50, CPU)
    assert "computed once" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(first, teacher(inputs[:]), rtol=1e-5, atol=1e-6)
    assert first.shape == data.one_step_targets("train").shape and not first.is_inference()
    stamp = (tmp_path / CACHE_NAME).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = cached_teacher_predictions(teacher, inputs, tmp_path, 50, CPU)
    assert "read from" in caplog.text and (tmp_path / CACHE_NAME).stat().st_mtime_ns == stamp
    assert torch.equal(again, first)

    other_teacher = model(cheb, n, TEACHER, seed=6).eval()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        other = cached_teacher_predictions(other_teacher, inputs, tmp_path, 50, CPU)
    assert "another teacher, other data" in caplog.text and not torch.equal(other, first)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        fewer = cached_teacher_predictions(other_teacher, inputs[:70], tmp_path, 50, CPU)
    assert "another teacher, other data" in caplog.text and torch.equal(fewer, other[:70])
    assert not list(tmp_path.glob("*.part"))


def test_windows_hash_as_their_stacked_tensor(data):
    """The digests that key the caches and name tuning studies are those of the windows stacked into one tensor,
    as before windows were gathered on demand, without stacking them."""
    for windows in (data.windows["train"], data.inputs("train"), data.one_step_targets("val"), data.future("test")):
        assert tensor_digest(windows) == tensor_digest(windows[:])
    assert tensor_digest(data.inputs("train")) != tensor_digest(data.inputs("val"))


def test_a_store_over_the_bound_falls_back_to_the_live_teacher(data, cheb, synthetic_files, tmp_path, caplog):
    """distillation.teacher_features_max_bytes: a store larger than the bound is neither built nor read, the run
    reads its teacher live and one log line names the estimate, the bound and the setting; the estimate is the
    bytes the store's arrays then take."""
    teacher = model(cheb, synthetic_files.n_nodes, TEACHER, seed=5).eval()
    loss = build_loss("stcd", PARAMS, "cdist")
    size = teacher_cache.store_bytes(teacher, data.inputs("train"), loss.feature_groups, "float16")
    root = tmp_path / teacher_cache.STORE_FOLDER
    for bound, source_type in ((1000, LiveTeacher), (size, StoredFeatures)):
        settings = TrainSettings(epochs=1, teacher_features="float16", teacher_features_max_bytes=bound)
        caplog.clear()
        with caplog.at_level(logging.WARNING), teacher_source(loss, settings, teacher, str(tmp_path / "model.pt"),
                                                              data, str(tmp_path / "checkpoint.pt"), CPU) as source:
            assert isinstance(source, source_type)
        warnings = [r.getMessage() for r in caplog.records if "teacher_features_max_bytes" in r.getMessage()]
        if source_type is LiveTeacher:
            assert len(warnings) == 1 and "\n" not in warnings[0] and f"{size / 1e9:.3g} GB" in warnings[0]
            assert f"({bound / 1e9:.3g} GB)" in warnings[0] and not root.exists()
        else:
            assert not warnings
    arrays = [np.load(path, mmap_mode="r") for path in next(p for p in root.iterdir() if p.is_dir()).glob("*.npy")]
    assert sum(a.nbytes for a in arrays) == size


def test_cached_predictions_are_refused_for_a_feature_loss(data, cheb, synthetic_files, tmp_path):
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    cached = cached_teacher_predictions(teacher, data.inputs("train"), tmp_path, 50, CPU)
    with pytest.raises(ValueError, match="needs the teacher"):
        train(model(cheb, n, STUDENT, seed=0), data, build_loss("tcd", PARAMS, correlation_kernel="cdist"),
              TrainSettings(epochs=1), tmp_path / "checkpoint.pt", CachedPredictions(teacher, cached), CPU)


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_inference_mode_teacher_gives_the_no_grad_loss_and_gradients(name, data, cheb, synthetic_files):
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    x, y = data.inputs("train")[:20], data.one_step_targets("train")[:20]
    results = []
    for inference in (True, False):
        student = model(cheb, n, STUDENT, seed=0)
        loss = build_loss(name, PARAMS, correlation_kernel="cdist")
        if inference:
            value = loss_step(student, teacher, loss, x, y)
        else:
            with torch.no_grad():
                teacher_out = forward(teacher, x, True)
            value = loss(forward(student, x, True), y, Outputs(teacher_out.prediction, teacher_out.features))
        value.backward()
        results.append((value.detach(), [p.grad for p in student.parameters()]))
    (v_inf, g_inf), (v_ref, g_ref) = results
    assert torch.equal(v_inf, v_ref)
    for a, b in zip(g_inf, g_ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_store_trains_the_same_student_as_a_teacher_forward_per_batch(name, data, cheb, synthetic_files,
                                                                             tmp_path):
    """float32 store: the outputs the forward computes, so the same student to float rounding."""
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    runs = {}
    for how in ("live", "float32"):
        settings = TrainSettings(epochs=2, batch_size=50, learning_rate=3e-3, eval_batch_size=200, teacher_features=how)
        loss = build_loss(name, PARAMS, "cdist")
        checkpoint = tmp_path / how / "checkpoint.pt"
        with teacher_source(loss, settings, teacher, str(tmp_path / "model.pt"), data, str(checkpoint), CPU) as source:
            assert isinstance(source, LiveTeacher if how == "live" else StoredFeatures)
            student, history = train(model(cheb, n, STUDENT, seed=0), data, loss, settings, checkpoint, source, CPU)
        runs[how] = (student.state_dict(), history)
    for key, value in runs["live"][0].items():
        torch.testing.assert_close(runs["float32"][0][key], value, rtol=1e-4, atol=1e-5)
    assert runs["float32"][1]["train_loss"].tolist() == pytest.approx(runs["live"][1]["train_loss"].tolist(), rel=1e-4)


def test_feature_store_holds_the_forward_per_window_built_once_and_keyed(data, cheb, synthetic_files, tmp_path,
                                                                         caplog):
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, TEACHER, seed=5).eval()
    inputs = data.inputs("train")
    idx = torch.tensor([7, 0, 123, 45])
    with torch.no_grad():
        prediction, features = teacher(inputs[idx], return_features=True)
    with caplog.at_level(logging.INFO):
        exact = TeacherFeatureStore.open(teacher, inputs, tmp_path, "float32", ("temporal", "spatial", "hidden"), 50,
                                         CPU)
        again = TeacherFeatureStore.open(teacher, inputs, tmp_path, "float32", ("temporal", "spatial", "hidden"), 50,
                                         CPU)
    assert caplog.text.count("computed once") == 1 and "read from" in caplog.text
    half = TeacherFeatureStore.open(teacher, inputs, tmp_path, "float16", ("spatial",), 50, CPU)
    for store, tolerance in ((exact, 1e-5), (again, 1e-5), (half, 1e-3)):
        out = store.batch(idx)
        torch.testing.assert_close(out.prediction, prediction, rtol=tolerance, atol=tolerance)
        for group in store.features:
            stored = out.features[group] if group != "hidden" else [out.features[group]]
            live = features[group] if group != "hidden" else [features[group]]
            assert len(stored) == len(live)
            for s, t in zip(stored, live):
                torch.testing.assert_close(s, t, rtol=tolerance, atol=tolerance)
    assert set(half.features) == {"spatial"} and torch.is_tensor(exact.batch(idx).features["hidden"])
    first = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(first) == 2  # one per precision and groups
    for store in (exact, again, half):
        store.close()
    other = model(cheb, n, TEACHER, seed=6).eval()
    TeacherFeatureStore.open(other, inputs, tmp_path, "float32", ("spatial",), 50, CPU).close()
    stores = [p for p in tmp_path.iterdir() if p.is_dir()]  # the first teacher's stores are removed
    assert len(stores) == 1 and json.loads((stores[0] / "meta.json").read_text())["key"]["groups"] == ["spatial"]
    assert sorted(p.name for p in tmp_path.glob("*.lock")) == sorted(  # lock files stay: see the test below
        f"{name}{suffix}" for name in (*first, stores[0].name) for suffix in (".lock", ".readers.lock"))
    assert not list(tmp_path.glob("*.partial"))


def test_a_store_in_use_is_kept_until_its_readers_close_it(data, cheb, synthetic_files, tmp_path):
    """Building another teacher's store removes the stale stores beside it, but not one that a job still reads:
    it stays, readable, until that job closes it."""
    n = synthetic_files.n_nodes
    inputs, idx = data.inputs("train"), torch.tensor([3, 1])
    reader = TeacherFeatureStore.open(model(cheb, n, TEACHER, seed=5).eval(), inputs, tmp_path, "float16",
                                      ("spatial",), 50, CPU)
    expected = reader.batch(idx)
    in_use = next(p for p in tmp_path.iterdir() if p.is_dir())
    other = model(cheb, n, TEACHER, seed=6).eval()
    with TeacherFeatureStore.open(other, inputs, tmp_path, "float16", ("spatial",), 50, CPU):
        pass
    assert (in_use / "meta.json").exists()
    torch.testing.assert_close(reader.batch(idx).prediction, expected.prediction, rtol=0, atol=0)
    reader.close()
    with TeacherFeatureStore.open(other, inputs, tmp_path, "float32", ("spatial",), 50, CPU):
        pass
    assert not in_use.exists()


def test_removing_a_stale_store_leaves_its_lock_file_so_one_process_at_a_time_holds_it(data, cheb, synthetic_files,
                                                                                      tmp_path):
    """A process that opened a store's lock file before the store was removed (and waits on it) locks the same
    file as a process that opens it afterwards: never two holders of one store's lock."""
    n = synthetic_files.n_nodes
    inputs = data.inputs("train")
    stale_key = {"teacher": "old", "inputs": "windows", "code": "code", "precision": "float16", "groups": ["spatial"]}
    stale = tmp_path / "stale_spatial"
    teacher_cache.build_store(model(cheb, n, TEACHER, seed=5).eval(), inputs, stale, stale_key, 50, CPU)
    with open(tmp_path / "stale_spatial.lock", "a") as waiting:
        teacher_cache.remove_stale(tmp_path, {**stale_key, "teacher": "new"})
        assert not stale.exists()
        fcntl.flock(waiting, fcntl.LOCK_EX)
        with open(tmp_path / "stale_spatial.lock", "a") as later, pytest.raises(BlockingIOError):
            fcntl.flock(later, fcntl.LOCK_EX | fcntl.LOCK_NB)


EDITED_PROCESS = """
import sys
from pathlib import Path

import torch

import kdstgcn
from kdstgcn.model.persist import load_model
from kdstgcn.training.teacher_cache import TeacherFeatureStore, cached_teacher_predictions

folder, package = Path(sys.argv[1]), Path(sys.argv[2])
assert Path(kdstgcn.__file__).parent == package, kdstgcn.__file__
if sys.argv[3] == "edit":  # the model code is edited on disk while this process runs the code it imported
    stgcn = package / "model" / "stgcn.py"
    stgcn.write_text(stgcn.read_text().replace("y = self.output(h)", "y = 2 * self.output(h)", 1))
teacher, inputs = load_model(folder / "teacher.pt")[0].eval(), torch.load(folder / "inputs.pt")
cpu = torch.device("cpu")
store = TeacherFeatureStore.open(teacher, inputs, folder / "store", "float16", ("spatial",), 50, cpu)
torch.save({"store": store.batch(torch.arange(inputs.shape[0])).prediction,
            "cached": cached_teacher_predictions(teacher, inputs, folder / "run", 50, cpu)}, sys.argv[4])
"""


def test_outputs_are_labelled_with_the_code_the_process_imported_not_the_code_on_disk(data, cheb, synthetic_files,
                                                                                      tmp_path):
    """A process that imported the model code builds the store and the cached predictions after that code was
    edited on disk (here: to double the output): they carry the digest of the code it ran, so a process of the
    edited code recomputes them instead of being served the old outputs. Runs on a copy of the package."""
    from kdstgcn.model.persist import save_model

    assert {"kdstgcn.model/stgcn.py", "kdstgcn.model/blocks.py"} <= set(teacher_cache.code_files("kdstgcn.model"))
    package = tmp_path / "src" / "kdstgcn"
    shutil.copytree(Path(kdstgcn.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    save_model(model(cheb, synthetic_files.n_nodes, TEACHER, seed=5).eval(), tmp_path / "teacher.pt")
    torch.save(data.inputs("train")[:60].clone(), tmp_path / "inputs.pt")
    env = {**os.environ, "PYTHONPATH": str(package.parent), "OMP_NUM_THREADS": "1"}

    def outputs(edit: str) -> dict:
        out = tmp_path / f"{edit}.pt"
        done = subprocess.run([sys.executable, "-c", EDITED_PROCESS, str(tmp_path), str(package), edit, str(out)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return torch.load(out)

    old = outputs("edit")  # imported the old code, then the source was edited
    new = outputs("run")  # the edited code
    for name in ("store", "cached"):
        torch.testing.assert_close(new[name], 2 * old[name])
    assert len([p for p in (tmp_path / "store").iterdir() if p.is_dir()]) == 1  # the old code's store is removed


def test_pruned_teacher_fine_tunes_with_l_stcd_from_the_store_as_from_the_live_teacher(synthetic_files, tmp_path):
    """Algorithm 1's L_STCD fine-tuning after pruning reads the teacher's store (fit_prune): float32 gives the
    compact model the live teacher forward gives, and the store lies beside the teacher."""
    from kdstgcn.model.persist import save_model

    cheb = load_cheb(str(synthetic_files.adjacency), 3)
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    save_model(model(cheb, synthetic_files.n_nodes, TEACHER, seed=5), teacher_dir / "model.pt")
    stcd = LossSpec("stcd", {"alpha1": 0.3, "alpha2": 0.5, "alpha3": 0.7}, "cdist")
    compact = {}
    for how in ("live", "float32"):
        run = RunSpec("synthetic", "pruned_kd_taylor_teacher_50", synthetic_files.data_spec(),
                      TrainSettings(epochs=1, batch_size=50, eval_batch_size=200, teacher_features=how), stcd, "cpu",
                      prune=PruneSpec("kd_taylor", "teacher", 50, stcd, pruning_minibatch=2, step_fraction=0.25,
                                      ranking="per_layer", importance_memory="carry"))
        compact[how], *_ = fit_prune(run, str(synthetic_files.values), str(synthetic_files.fill_report),
                                    str(teacher_dir / "model.pt"), str(teacher_dir / "model.pt"),
                                    str(tmp_path / how / "checkpoint.pt"))
    assert compact["float32"].arch.kept == compact["live"].arch.kept
    for key, value in compact["live"].state_dict().items():
        torch.testing.assert_close(compact["float32"].state_dict()[key], value, rtol=1e-4, atol=1e-5)
    assert len(list((teacher_dir / "feature_store").iterdir())) >= 1
