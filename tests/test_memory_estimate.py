"""The memory estimate of a job (kdstgcn.runtime.memory, kdstgcn.jobs.memory): linear in the stations at scale,
the one-line error of the pre-flight check, the sizes it shares with the code, and the rules' mem_mb in a dry
run."""
import re
from dataclasses import replace

import pytest
import torch

from conftest import merged_config, run_snakemake
from kdstgcn.config import runspec
from kdstgcn.data.samples import WindowedSeries
from kdstgcn.evaluation import rollout
from kdstgcn.jobs import memory as job_memory
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.registry import LOSSES
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.memory.check import MEMORY_LIMIT_ENV, OutOfMemory, available_memory, check_memory, mem_mb
from kdstgcn.runtime.memory.estimate import estimate, graph_bytes, rollout_chunk_windows, teacher_output_bytes
from kdstgcn.runtime.memory.shapes import GraphShape, JobShape, TeacherShape
from kdstgcn.training import teacher_cache

TEACHER = ((1, 32, 64), (64, 32, 128))
STUDENT = ((1, 2, 4), (4, 2, 8))
DAYS = runspec.DataSpec(steps_per_day=288, split=(2, 1, 1), n_his=12, n_pred=9)
EDGES_PER_STATION = 3 * 40  # the three Chebyshev terms of a road graph of about 10 neighbours a station


def jobs_at(n_nodes: int) -> dict[str, JobShape]:
    """A job of each kind at `n_nodes` stations, the sparse graph's entries growing with the stations."""
    teacher, student = Architecture(n_nodes, TEACHER), Architecture(n_nodes, STUDENT)
    stack = GraphShape(dense=False, nonzeros=n_nodes * EDGES_PER_STATION, row_entries=(20, 50))
    common = {"days": DAYS, "graph": stack, "batch_size": 8}
    return {"train": JobShape("train", teacher, **common),
            "stcd": JobShape("train", student, **common, teacher=TeacherShape(teacher),
                             loss_terms=frozenset({"tcd", "scd"}), scd_stations=512, compiles=True),
            "prune": JobShape("prune", Architecture(n_nodes, ((1, 8, 16), (16, 8, 32))), **common,
                              teacher=TeacherShape(teacher), loss_terms=frozenset({"tcd", "scd"}), scd_stations=512),
            "evaluate": JobShape("evaluate", teacher, **common),
            "export": JobShape("export", teacher, **common)}


@pytest.mark.parametrize("job", ["train", "stcd", "prune", "evaluate", "export"])
def test_estimate_grows_linearly_with_the_stations_at_a_fixed_degree(job):
    peaks = [estimate(jobs_at(n)[job]).peak_bytes for n in (20_000, 40_000, 80_000)]
    first, second = peaks[1] - peaks[0], peaks[2] - peaks[1]
    assert first > 0
    assert second == pytest.approx(2 * first, rel=0.01)  # the same bytes per station from 20,000 to 80,000


def test_dense_graph_grows_with_the_square_of_the_stations():
    small = JobShape("evaluate", Architecture(250, STUDENT), DAYS, GraphShape(dense=True))
    large = replace(small, model=Architecture(500, STUDENT))
    assert graph_bytes(large) == pytest.approx(4 * graph_bytes(small), rel=0.01)


def test_scd_stations_and_batch_size_lower_the_step():
    stcd = jobs_at(8600)["stcd"]
    every = replace(stcd, scd_stations=None)
    assert estimate(stcd).peak_bytes < estimate(every).peak_bytes
    assert estimate(replace(stcd, batch_size=4)).peak_bytes < estimate(stcd).peak_bytes


def test_check_stops_with_one_line_naming_estimate_available_and_settings(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100")
    stcd = estimate(replace(jobs_at(8600)["stcd"], scd_stations=None))
    with pytest.raises(OutOfMemory) as raised:
        check_memory(stcd, "training student_stcd")
    message = str(raised.value)
    assert "\n" not in message
    assert f"{stcd.peak_bytes / 1e9:.2f} GB" in message and "0.10 GB available" in message
    assert MEMORY_LIMIT_ENV in message
    assert "lower distillation.scd_stations, distillation.teacher_features" in message


def test_check_passes_within_the_memory_available(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1000000")
    check_memory(estimate(jobs_at(228)["train"]), "training teacher")


def test_memory_available_without_override_is_positive(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    available, source = available_memory()
    assert available > 0 and source


def test_training_job_stops_before_loading_its_data(monkeypatch):
    config = merged_config("config/scale.yaml")
    run = runspec.reference_run(config, "scale", "teacher", 0)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100")
    with pytest.raises(OutOfMemory, match=r"^training teacher needs about [\d.]+ GB \(estimate; largest: "
                                          r"activations of the training step, .* lower the batch size"):
        job_memory.check_train_memory(run, None)


@pytest.mark.parametrize("loss", [name for name, info in LOSSES.items() if info.reads_features])
@pytest.mark.parametrize("alpha2", [0.0, 0.465, 1.0])
def test_feature_groups_are_those_the_losses_read(loss, alpha2):
    params = {"alpha1": 0.5, "alpha2": alpha2, "alpha3": 0.5, "alpha": 0.3}
    assert job_memory.feature_groups(loss, params) == build_loss(loss, params, correlation_kernel="cdist").feature_groups


@pytest.mark.parametrize("groups", [("temporal", "spatial"), ("hidden",), ("spatial",)])
def test_store_size_is_the_feature_stores(groups):
    n = 30
    arch = Architecture(n, TEACHER)
    torch.manual_seed(0)
    teacher = STGCN(arch, torch.eye(n).expand(3, n, n).clone())
    days = torch.zeros(DAYS.split[0], DAYS.steps_per_day, n)
    inputs = WindowedSeries.cut(days, DAYS.n_his + DAYS.n_pred).narrow(1, 0, DAYS.n_his)
    shape = JobShape("train", Architecture(n, STUDENT), DAYS, GraphShape(dense=True),
                     teacher=TeacherShape(arch, "store", groups, 2))
    assert teacher_output_bytes(shape) == teacher_cache.store_bytes(teacher, inputs, groups, "float16")


def test_graph_shape_of_a_sparse_stack_counts_entries_and_the_fullest_rows():
    rows = torch.tensor([0, 0, 1, 2, 0, 1, 1, 1, 2])
    cols = torch.tensor([0, 1, 1, 2, 0, 0, 1, 2, 2])
    terms = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2])
    stack = torch.sparse_coo_tensor(torch.stack([terms, rows, cols]), torch.ones(9), (3, 3, 3), check_invariants=True)
    assert job_memory.graph_shape(stack) == GraphShape(dense=False, nonzeros=9, row_entries=(1, 3))
    assert job_memory.graph_shape(torch.eye(3).expand(3, 3, 3)) == GraphShape(dense=True)


@pytest.mark.parametrize("blocks", [TEACHER, STUDENT])
@pytest.mark.parametrize("n_nodes", [16, 228, 716, 8600])
def test_rollout_chunk_is_at_least_the_rollouts(blocks, n_nodes):
    arch = Architecture(n_nodes, blocks)
    with torch.device("meta"):
        model = STGCN(arch, torch.empty(3, n_nodes, n_nodes))
    assert rollout_chunk_windows(arch, 1140) >= rollout.cpu_chunk(model, 1140)


def planned_mem_mb(output: str, rule: str) -> dict[str, int]:
    """mem_mb of every planned job of `rule` in a dry run's per-job blocks, by its model wildcard."""
    found = {}
    for block in re.findall(rf"^rule {rule}:\n((?:[ \t]+.*\n?)*)", output, re.M):
        model = re.search(r"model=([^,\s]+)", block).group(1)
        found[model] = int(re.search(r"mem_mb=(\d+)", block).group(1))
    return found


@pytest.mark.slow
def test_rules_ask_for_the_estimate_in_a_dry_run(repo_copy):
    targets = ["results/demo/seed0/teacher/model.onnx", "results/demo/seed0/student_stcd/metrics.csv",
               "results/demo/seed0/pruned_kd_taylor_pruning_base_50/metrics.csv",
               "results/demo/seed0/deploy_stcd_rollout/model.pt"]
    result = run_snakemake(repo_copy, ["-n", *targets, "--cores", "2", "--configfile", "config/demo.yaml",
                                       "--config", "device=cpu"], timeout=180)
    assert result.returncode == 0, result.output[-4000:]
    config = merged_config("config/demo.yaml")
    teacher = runspec.architecture(config, "demo", "teacher")
    train = planned_mem_mb(result.output, "train")
    assert train["teacher"] == mem_mb(
        job_memory.train_estimate(runspec.reference_run(config, "demo", "teacher", 0), None, "cpu"))
    assert train["student_stcd"] == mem_mb(
        job_memory.train_estimate(runspec.student_run(config, "demo", "stcd", 0), teacher, "cpu"))
    assert train["deploy_stcd_rollout"] == mem_mb(job_memory.train_estimate(
        runspec.deployable_run(config, "demo", "stcd_rollout", 0), teacher, "cpu"))
    assert set(planned_mem_mb(result.output, "prune")) == {"pruned_kd_taylor_pruning_base_50"}
    assert set(planned_mem_mb(result.output, "evaluate")) == {"teacher", "student_stcd",
                                                              "pruned_kd_taylor_pruning_base_50"}
    assert planned_mem_mb(result.output, "export")["teacher"] == mem_mb(
        job_memory.export_estimate(teacher, runspec.DataSpec.from_dict(runspec.data_spec(config, "demo"))))
    assert all(0 < mb < job_memory.GPU_JOB_MIN_MB for mb in train.values())


@pytest.mark.slow
def test_rules_that_may_run_on_a_gpu_ask_for_at_least_what_they_did(repo_copy):
    result = run_snakemake(repo_copy, ["-n", "results/demo/seed0/teacher/metrics.csv", "--cores", "2",
                                       "--configfile", "config/demo.yaml"], timeout=180)
    assert result.returncode == 0, result.output[-4000:]
    assert set(planned_mem_mb(result.output, "train").values()) == {job_memory.GPU_JOB_MIN_MB}
