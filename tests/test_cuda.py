"""On a GPU (every test is marked `cuda` and skipped, saying why, where torch sees none): the compiled correlation
kernel (Triton) against cdist and the literal loops, a run moved between the CPU and the GPU through its
checkpoint, the compiled training step against eager, CUDA graphs replayed for ORD and L_STCD steps, no host sync
per training step, and the demo study with `device: cuda` end to end (teacher, KD student with the compiled
kernel, prune + compact, evaluate, measure_cost), whose every output loads on the CPU. The SIGKILL-and-resume run on the GPU is
tests/test_faults.py::test_sigkill_mid_epoch_then_rerun_incomplete_resumes_to_the_same_metrics[cuda]."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import run_snakemake
from helpers import (B, C, KERNELS, N, feature_outputs, literal_gap, literal_scd, literal_tcd, randn,
                     two_layer_features)
from torch._dynamo.utils import counters

from kdstgcn.losses.build import build_loss
from kdstgcn.losses.correlation import SpatialCorrelationDistance, TemporalCorrelationDistance
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.runtime.precision import resolve_precision
from kdstgcn.training.checkpoint import load_checkpoint
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher

pytestmark = pytest.mark.cuda

GPU = torch.device("cuda")
CPU = torch.device("cpu")
BLOCKS = ((1, 4, 8), (8, 4, 16))


def on_gpu(tensors):
    return [t.to(GPU) for t in tensors]


# ---------------------------------------------------------------------------- correlation kernel (Triton)

@pytest.mark.parametrize("kernel", KERNELS)
def test_correlation_losses_on_the_gpu_match_the_literal_loops(kernel):
    temporal_s, spatial_s = two_layer_features(20, C)
    temporal_t, spatial_t = two_layer_features(30, 2 * C + 1)
    want_tcd = np.mean([literal_gap(literal_tcd(fs), literal_tcd(ft)) for fs, ft in zip(temporal_s, temporal_t)])
    want_scd = np.mean([literal_gap(literal_scd(fs), literal_scd(ft)) for fs, ft in zip(spatial_s, spatial_t)])
    student = feature_outputs(randn(B, N, seed=40).to(GPU), on_gpu(temporal_s), on_gpu(spatial_s))
    teacher = feature_outputs(randn(B, N, seed=41).to(GPU), on_gpu(temporal_t), on_gpu(spatial_t))
    target = randn(B, N, seed=42).to(GPU)
    tcd = TemporalCorrelationDistance(kernel)(student, target, teacher)
    scd = SpatialCorrelationDistance(kernel)(student, target, teacher)
    assert tcd.device.type == "cuda"
    assert tcd.item() == pytest.approx(want_tcd, rel=1e-10)
    assert scd.item() == pytest.approx(want_scd, rel=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
def test_correlation_gradients_on_the_gpu_are_correct(kernel):
    temporal_s, spatial_s = (on_gpu(f) for f in two_layer_features(60, C))
    temporal_t, spatial_t = (on_gpu(f) for f in two_layer_features(70, 2))
    target = randn(B, N, seed=72).to(GPU)
    teacher = feature_outputs(randn(B, N, seed=71).to(GPU), temporal_t, spatial_t)

    def tcd(f0, f1):
        return TemporalCorrelationDistance(kernel)(feature_outputs(target, [f0, f1], spatial_s), target, teacher)

    def scd(f0, f1):
        return SpatialCorrelationDistance(kernel)(feature_outputs(target, temporal_s, [f0, f1]), target, teacher)

    assert torch.autograd.gradcheck(tcd, [f.clone().requires_grad_(True) for f in temporal_s])
    assert torch.autograd.gradcheck(scd, [f.clone().requires_grad_(True) for f in spatial_s])


def test_compiled_kernel_on_the_gpu_matches_cdist_and_the_cpu_on_a_float32_layer():
    fs, ft = randn(3, 2, 5, 40, seed=120).float(), randn(3, 16, 5, 40, seed=121).float()
    values, grads = [], []
    for kernel, device in [("cdist", CPU), ("cdist", GPU), ("compiled", GPU)]:
        f = fs.to(device, copy=True).requires_grad_(True)
        value = SpatialCorrelationDistance(kernel)(feature_outputs(None, [], [f]), None,
                                                   feature_outputs(None, [], [ft.to(device)]))
        value.backward()
        values.append(value.item()), grads.append(f.grad.cpu())
    for value, grad in zip(values[1:], grads[1:]):
        assert value == pytest.approx(values[0], rel=1e-5)
        torch.testing.assert_close(grad, grads[0], rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------ the training loop on a GPU

def new_model(cheb, n_nodes):
    torch.manual_seed(0)
    return STGCN(Architecture(n_nodes, BLOCKS), cheb)


def settings(epochs, compile="off", batch_size=50):
    return TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=3e-3, lr_step_epochs=2,
                         eval_batch_size=200, compile=compile)


def assert_close_runs(a, b, rtol=1e-2):
    """Same run to float tolerance: GPU convolutions use TF32 by default, and kernels sum in another order."""
    (model_a, hist_a), (model_b, hist_b) = a, b
    for k, v in model_a.state_dict().items():
        torch.testing.assert_close(model_b.state_dict()[k], v, rtol=rtol, atol=rtol / 10)
    pd.testing.assert_series_equal(hist_a["val_mae"], hist_b["val_mae"], check_exact=False, rtol=rtol)


@pytest.mark.parametrize("first, then", [(CPU, GPU), (GPU, CPU)], ids=["cpu_then_gpu", "gpu_then_cpu"])
def test_a_run_moves_between_cpu_and_gpu_through_its_checkpoint(data, cheb, synthetic_files, tmp_path, first, then):
    n = synthetic_files.n_nodes
    whole = train(new_model(cheb, n), data, TaskLoss(), settings(3), tmp_path / "whole.pt", device=first)
    train(new_model(cheb, n), data, TaskLoss(), settings(2), tmp_path / "moved.pt", device=first)
    assert all(t.device.type == "cpu" for t in load_checkpoint(tmp_path / "moved.pt")["model"].values())
    moved = train(new_model(cheb, n), data, TaskLoss(), settings(3), tmp_path / "moved.pt", device=then)
    assert moved[1]["epoch"].tolist() == [1, 2, 3]
    assert next(moved[0].parameters()).device.type == "cpu"
    assert_close_runs(whole, moved)


@pytest.mark.parametrize("compile", ["off", "on"])
def test_bf16_on_the_gpu_trains_close_to_fp32_with_float32_weights(data, cheb, synthetic_files, tmp_path, compile):
    """training.precision on a GPU: auto picks bf16 on compute capability >= 8.0; a bf16 run (eager, and as CUDA
    graphs) keeps float32 weights and lands near the fp32 run (bf16 keeps 8 bits of mantissa)."""
    n = synthetic_files.n_nodes
    if torch.cuda.get_device_capability(GPU) >= (8, 0):
        assert resolve_precision("auto", GPU) == "bf16"
    fp32 = train(new_model(cheb, n), data, TaskLoss(), settings(2, compile), tmp_path / "fp32.pt", device=GPU)
    bf16 = train(new_model(cheb, n), data, TaskLoss(), replace(settings(2, compile), precision="bf16"),
                 tmp_path / "bf16.pt", device=GPU)
    assert bf16[1]["precision"].tolist() == ["bf16", "bf16"]
    assert all(p.dtype == torch.float32 for p in bf16[0].parameters())
    assert_close_runs(fp32, bf16, rtol=0.1)


def test_the_compiled_step_on_the_gpu_trains_the_eager_model(data, cheb, synthetic_files, tmp_path):
    n = synthetic_files.n_nodes
    eager = train(new_model(cheb, n), data, TaskLoss(), settings(2, "off"), tmp_path / "eager.pt", device=GPU)
    graphs = train(new_model(cheb, n), data, TaskLoss(), settings(2, "on"), tmp_path / "graphs.pt", device=GPU)
    assert_close_runs(eager, graphs)


@pytest.mark.parametrize("name", ["ord", "stcd"])
def test_compiled_distillation_steps_replay_as_cuda_graphs(data, cheb, synthetic_files, tmp_path, name):
    """ORD's share is counted outside the compiled step and the live teacher runs inside it under no_grad, so an
    ORD and an L_STCD student's steps are captured as CUDA graphs and replayed: no graph skipped, a graph launch
    (forward and backward) in every step after the warm-up and the recording, and the share still counted."""
    n = synthetic_files.n_nodes
    loss = build_loss(name, {"alpha1": 0.5, "alpha2": 0.5, "alpha3": 0.5}, correlation_kernel="compiled")
    student = STGCN(Architecture(n, ((1, 2, 4), (4, 2, 8))), cheb)
    counters.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as profile:
        train(student, data, loss, settings(1, "on", batch_size=19), tmp_path / "ckpt.pt",
              LiveTeacher(new_model(cheb, n)), device=GPU)
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    launches = sum("cudaGraphLaunch" in e.name for e in profile.events())
    assert launches >= 2 * (152 // 19 - 2), launches
    assert 0 < loss.share_pct() < 100


def host_syncs(data, cheb, n_nodes, path, batch_size: int) -> int:
    """Synchronising CUDA calls of a one-epoch run (torch's sync debug mode warns at each)."""
    model = new_model(cheb, n_nodes)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(model, data, TaskLoss(), settings(1, "off", batch_size), path, device=GPU)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_a_training_epoch_does_not_sync_the_host_per_step(data, cheb, synthetic_files, tmp_path):
    """Syncs happen at the progress reports, the epoch end, the validation and the checkpoint, whose number does
    not depend on the number of batches: 19 times as many batches add (almost) none."""
    n = synthetic_files.n_nodes
    few = host_syncs(data, cheb, n, tmp_path / "few.pt", batch_size=38)  # 4 batches of the 152 windows
    many = host_syncs(data, cheb, n, tmp_path / "many.pt", batch_size=2)  # 76 batches
    assert data.inputs("train").shape[0] == 152
    assert many - few < 8, (few, many)


# ------------------------------------------------------------------------------ the demo study on a GPU

@pytest.mark.slow
def test_the_demo_study_runs_on_the_gpu_and_its_outputs_load_on_the_cpu(repo_copy):
    (repo_copy / "gpu.yaml").write_text(yaml.safe_dump({"device": "cuda",
                                                        "distillation": {"correlation_kernel": "compiled"}}))
    seed = "results/demo/seed0"
    targets = [f"{seed}/student_stcd/metrics.csv", f"{seed}/pruned_kd_taylor_teacher_97/metrics.csv",
               "results/demo/costs.parquet"]
    result = run_snakemake(repo_copy, ["--cores", "4", "--resources", "gpu=2", "--configfile", "config/demo.yaml",
                                       "gpu.yaml", "--", *targets], timeout=1200)
    assert result.returncode == 0, result.output[-4000:]
    train_log = (repo_copy / "logs/train/demo/seed0/student_stcd.log").read_text()
    assert "device cuda" in train_log and "using cdist" not in train_log
    costs = pd.read_parquet(repo_copy / "results/demo/costs.parquet")
    assert costs["device_name"].str.startswith("cuda").all() and (costs["mean_s"] > 0).all()
    for name in ("teacher", "student_stcd", "pruned_kd_taylor_teacher_97"):
        metrics = pd.read_csv(repo_copy / seed / name / "metrics.csv")
        assert np.isfinite(metrics["ours"]).all(), name
    written = sorted((repo_copy / "results").rglob("*.pt"))
    assert any(p.name == "checkpoint.pt" for p in written) and any(p.name == "masked_model.pt" for p in written)
    for path in written:  # no map_location: as on a machine without a GPU
        blob = torch.load(path, weights_only=False)
        found = []
        torch.utils._pytree.tree_map(lambda t: found.append(t.device.type) if isinstance(t, torch.Tensor) else t,
                                     blob)
        assert set(found) == {"cpu"}, path
