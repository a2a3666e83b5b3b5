"""Tests of SCD on sampled stations (`distillation.scd_stations`, beyond the paper): K >= N is the paper's loss,
K < N compares the same K stations of student and teacher, the stations are reproducible, resumable and leave the
global random stream alone, and the reading flows from the config to the loss, the run spec and the verdict."""
import math

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from conftest import merged_config
from helpers import C, N, feature_outputs, literal_gap, literal_scd, ring_model, two_layer_features
from kdstgcn.config import runspec, schema
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.config.tuned import switch_value, tuning_switches
from kdstgcn.losses.base import Readings, counted_step, loss_step
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.correlation import SpatialCorrelationDistance, StationSample
from kdstgcn.losses.registry import beyond_paper
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.report.preconditions import loss_readings
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher

STCD = {"alpha1": 0.3, "alpha2": 0.6, "alpha3": 0.5}
STATIONS = 8  # of the real models below


def small_models():
    """A student and its frozen teacher on an 8-station ring, a batch of inputs and one-step targets."""
    teacher = ring_model(STATIONS, ((1, 4, 8), (8, 4, 16)), seed=0).eval()
    student = ring_model(STATIONS, ((1, 2, 4), (4, 2, 8)), seed=1)
    g = torch.Generator().manual_seed(2)
    return student, teacher, torch.randn(3, 12, STATIONS, generator=g), torch.randn(3, STATIONS, generator=g)


def scd_case(seed=0):
    """Student and (wider) teacher outputs of two graph-conv layers each, the student's leaves of autograd."""
    _, spatial_s = two_layer_features(seed, C)
    _, spatial_t = two_layer_features(seed + 10, 2 * C)
    spatial_s = [f.requires_grad_() for f in spatial_s]
    return feature_outputs(None, None, spatial_s), feature_outputs(None, None, spatial_t)


def value_and_gradients(loss, student, teacher):
    value = loss(student, None, teacher)
    return value, torch.autograd.grad(value, student.features["spatial"])


@pytest.mark.parametrize("scale", ["raw", "mean_normalised"])
@pytest.mark.parametrize("count", [N, N + 3])
def test_as_many_stations_as_the_network_is_the_paper_loss(count, scale):
    """Values and gradients bit for bit."""
    student, teacher = scd_case()
    paper = SpatialCorrelationDistance("cdist", Readings(distance_scale=scale))
    sampled = SpatialCorrelationDistance("cdist", Readings(distance_scale=scale, scd_stations=count))
    want_value, want_grads = value_and_gradients(paper, student, teacher)
    value, grads = value_and_gradients(sampled, student, teacher)
    assert torch.equal(value, want_value)
    assert all(torch.equal(g, w) for g, w in zip(grads, want_grads, strict=True))
    assert sampled.sample.stations(N, "cpu") is None


def test_the_paper_stcd_loss_is_unchanged_on_real_models():
    """`all` and K = N train the same STCD student: equal loss and gradients through loss_step."""
    results = []
    for stations in ("all", STATIONS):
        student, teacher, x, y = small_models()
        loss = build_loss("stcd", STCD, "cdist", {"scd_stations": stations})
        loss_step(student, teacher, loss, x, y).backward()
        results.append([p.grad for p in student.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    assert set(build_loss("stcd", STCD).state_dict()) == {"ord.teacher_entries", "ord.entries"}


@pytest.mark.parametrize("scale", ["raw", "mean_normalised"])
def test_fewer_stations_compare_the_same_stations_of_student_and_teacher(scale):
    """The stations read are those the student's gradient reaches, the same in both layers; the loss is Eq. 10 of
    student and teacher both cut to them (a literal loop)."""
    student, teacher = scd_case(seed=3)
    loss = SpatialCorrelationDistance("cdist", Readings(distance_scale=scale, scd_stations=3))
    value, grads = value_and_gradients(loss, student, teacher)
    reached = [torch.nonzero(g.abs().sum((0, 1, 2))).flatten() for g in grads]
    assert len(reached[0]) == 3 and torch.equal(reached[0], reached[1])
    stations = reached[0]
    want = np.mean([literal_gap(literal_scd(fs.detach()[..., stations]), literal_scd(ft[..., stations]),
                                scale=scale)
                    for fs, ft in zip(student.features["spatial"], teacher.features["spatial"], strict=True)])
    assert value.item() == pytest.approx(want, rel=1e-10)
    # the teacher's own features there: the gap vanishes, as only the same stations of both can give
    same = feature_outputs(None, None, [torch.cat([f, f], 1) for f in student.features["spatial"]])
    assert loss(student, None, same).item() == pytest.approx(0.0, abs=1e-12)


def stations_of(loss, batches: int, n: int = N) -> list[list[int]]:
    """The stations `loss` (an STCD) compares in each of `batches` recorded batches."""
    drawn = []
    for _ in range(batches):
        drawn.append(loss.scd.sample.stations(n, "cpu").tolist())
        loss.record(torch.tensor(0), 1)
    return drawn


def test_stations_are_reproducible_per_seed_and_change_per_batch():
    rng = torch.get_rng_state()
    torch.manual_seed(7)
    first = stations_of(build_loss("stcd", STCD, readings={"scd_stations": 3}), 6)
    torch.manual_seed(7)
    again = stations_of(build_loss("stcd", STCD, readings={"scd_stations": 3}), 6)
    torch.manual_seed(8)
    other = stations_of(build_loss("stcd", STCD, readings={"scd_stations": 3}), 6)
    assert first == again and first != other
    assert len({tuple(s) for s in first}) > 1 and all(len(set(s)) == 3 and s == sorted(s) for s in first)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    stations_of(build_loss("stcd", STCD, readings={"scd_stations": 3}), 6)
    assert torch.equal(torch.get_rng_state(), state)  # no number drawn from the global stream
    torch.set_rng_state(rng)


def test_stations_cover_the_network_evenly():
    sample = StationSample(3)
    counts = torch.zeros(10)
    for _ in range(3000):
        counts[sample.stations(10, "cpu")] += 1
        sample.record()
    assert ((counts / 3000 - 0.3).abs() < 0.03).all()


def test_a_resumed_loss_compares_the_stations_an_uninterrupted_one_does():
    """The sample's seed and batch count are in the loss's state_dict, which the training checkpoint keeps."""
    torch.manual_seed(1)
    uninterrupted = build_loss("stcd", STCD, readings={"scd_stations": 3})
    stations_of(uninterrupted, 4)
    state = {k: v.clone() for k, v in uninterrupted.state_dict().items()}
    torch.manual_seed(2)  # the seed a resumed job is built under does not matter: the checkpoint's counts
    resumed = build_loss("stcd", STCD, readings={"scd_stations": 3})
    resumed.load_state_dict(state)
    assert int(resumed.state_dict()["scd.sample.batches"]) == 4
    assert stations_of(resumed, 5) == stations_of(uninterrupted, 5)


def run_stcd(data, cheb, n_nodes, epochs, path, built_under_seed, device=torch.device("cpu"), compile="off"):
    """An L_STCD student on the synthetic network with SCD on 4 sampled stations, its loss built under
    `built_under_seed` (the jobs build it under the run's seed)."""
    torch.manual_seed(built_under_seed)
    loss = build_loss("stcd", STCD, "cdist", {"scd_stations": 4})
    torch.manual_seed(0)
    teacher = STGCN(Architecture(n_nodes, ((1, 4, 8), (8, 4, 16))), cheb)
    student = STGCN(Architecture(n_nodes, ((1, 2, 4), (4, 2, 8))), cheb)
    settings = TrainSettings(epochs=epochs, batch_size=50, eval_batch_size=200, compile=compile)
    model, history = train(student, data, loss, settings, path, LiveTeacher(teacher), device)
    return model, history, loss


@pytest.mark.usefixtures("single_thread")
def test_a_resumed_run_trains_the_uninterrupted_model(data, cheb, synthetic_files, tmp_path):
    """The checkpoint keeps the sample's seed and batch count: a run resumed after epoch 1 with a loss built under
    another seed compares the stations of the uninterrupted run, and ends with its weights."""
    n = synthetic_files.n_nodes
    whole, _, whole_loss = run_stcd(data, cheb, n, 2, tmp_path / "whole.pt", built_under_seed=0)
    run_stcd(data, cheb, n, 1, tmp_path / "resumed.pt", built_under_seed=0)
    resumed, _, resumed_loss = run_stcd(data, cheb, n, 2, tmp_path / "resumed.pt", built_under_seed=5)
    assert int(resumed_loss.scd.sample.batches) == int(whole_loss.scd.sample.batches) == 2 * math.ceil(
        data.inputs("train").shape[0] / 50)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())


def test_a_compiled_counted_step_samples_as_the_eager_one_and_records_outside():
    """The sample traces into one graph (no generator, no host sync); the batch count moves in loss_step's record."""
    student, teacher, x, y = small_models()
    loss = build_loss("stcd", STCD, "cdist", {"scd_stations": 4})
    eager_value, _ = counted_step(student, teacher, loss, x, y)
    compiled = torch.compile(counted_step, backend="aot_eager", fullgraph=True, dynamic=False)
    value, _ = compiled(student, teacher, loss, x, y)
    assert value.item() == pytest.approx(eager_value.item(), rel=1e-6)
    assert int(loss.scd.sample.batches) == 0
    assert loss_step(student, teacher, loss, x, y).item() == eager_value.item()
    assert int(loss.scd.sample.batches) == 1
    assert counted_step(student, teacher, loss, x, y)[0].item() != eager_value.item()  # the next batch's stations


@pytest.mark.parametrize("bad", [1, 0, -5, "some", "ALL", 2.5, True])
def test_an_invalid_value_is_refused_naming_the_key(bad):
    config = merged_config("config/demo.yaml")
    config["distillation"]["scd_stations"] = bad
    with pytest.raises(schema.ConfigError, match=r"distillation\.scd_stations"):
        schema.validate(config)
    with pytest.raises(ValueError, match=r"scd_stations=.*choose one of \['all'\] or an integer >= 2"):
        Readings(scd_stations=bad)


@pytest.mark.parametrize("value, read", [("all", "all"), (64, 64), ("64", 64)])
def test_valid_values_pass_the_config_check(value, read):
    """`--config distillation='{scd_stations: 64}'` hands the count over as the string '64'."""
    config = merged_config("config/demo.yaml")
    config["distillation"]["scd_stations"] = value
    schema.validate(config)
    assert config["distillation"]["scd_stations"] == read


def test_the_reading_flows_from_the_config_to_the_losses_that_have_an_scd_term():
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    default = runspec.student_run(config, "demo", "stcd", 0).loss
    assert "scd_stations" not in default.readings  # the run's identity of before: info.json, resume fingerprint
    assert build_loss(**default.to_dict()).scd.sample is None
    assert loss_readings(default.to_dict()) == "scalar_norm=squared, ord_reduction=mean, distance_scale=raw"
    assert switch_value(runspec.student_run(config, "demo", "stcd", 0), "distillation.scd_stations") == "all"

    config["distillation"]["scd_stations"] = 64
    schema.validate(config)
    for name in ("stcd", "scd"):
        spec = runspec.student_run(config, "demo", name, 0).loss
        assert spec.readings["scd_stations"] == 64
        assert build_loss(**spec.to_dict()).scd.sample.count == 64
        assert loss_readings(spec.to_dict()).endswith("scd_stations=64 (beyond the paper)")
    for name in ("tcd", "task", "ord"):
        assert "scd_stations" not in runspec.student_run(config, "demo", name, 0).loss.readings
    pruning = runspec.prune_run(config, "demo", "kd_taylor", "pruning_base", config["pruning"]["base_ratios"][0], 0)
    assert pruning.loss.readings["scd_stations"] == 64
    assert beyond_paper("scd_stations", 64) and not beyond_paper("scd_stations", "all")

    config["tuning"]["switches"]["distillation.scd_stations"] = ["all", 64]
    schema.validate(config)
    assert "distillation.scd_stations" in tuning_switches(config, "stcd")
    assert "distillation.scd_stations" not in tuning_switches(config, "tcd")


@pytest.mark.cuda
def test_the_gpu_compares_the_cpu_stations_and_replays_the_sampled_step_as_cuda_graphs(data, cheb, synthetic_files,
                                                                                        tmp_path):
    """Integer arithmetic: the same stations on every device, from a loss on the GPU or left on the CPU (the
    pruning job's importance loss). The sample traces into the compiled step, which CUDA graphs replay, and trains
    the eager model."""
    gpu = torch.device("cuda")
    torch.manual_seed(3)
    on_cpu = build_loss("stcd", STCD, readings={"scd_stations": 4})
    on_gpu = build_loss("stcd", STCD, readings={"scd_stations": 4}).to(gpu)
    for _ in range(5):
        want = on_cpu.scd.sample.stations(10, "cpu")
        assert torch.equal(on_gpu.scd.sample.stations(10, gpu).cpu(), want)
        assert torch.equal(on_cpu.scd.sample.stations(10, gpu).cpu(), want)
        on_cpu.record(torch.tensor(0), 1)
        on_gpu.record(torch.tensor(0, device=gpu), 1)
    n = synthetic_files.n_nodes
    eager, eager_history, _ = run_stcd(data, cheb, n, 1, tmp_path / "eager.pt", 0, gpu)
    counters.clear()
    graphs, graphs_history, loss = run_stcd(data, cheb, n, 1, tmp_path / "graphs.pt", 0, gpu, compile="on")
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    assert int(loss.scd.sample.batches) == math.ceil(data.inputs("train").shape[0] / 50)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(graphs.state_dict()[k], v, rtol=1e-2, atol=1e-3)
    assert graphs_history["val_mae"].iloc[0] == pytest.approx(eager_history["val_mae"].iloc[0], rel=1e-2)
