"""bench/gpu_acceptance.py, the one call that proves the GPU path, in its CPU mode: stopped by its budget and
continued by a second call, every step recorded, the results packed in pieces. And what it reads back
(bench/acceptance_record.py): the JUnit report, the models' metrics and the jobs' memory, the pack."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO, shared_file

sys.path.insert(0, str(REPO / "bench"))
from acceptance_record import benchmark_jobs, collect_study, evaluate_targets, junit_summary, pack  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_cuda" name="test_a"/>
<testcase classname="tests.test_cuda" name="test_b"><failure message="AssertionError: 2 != 3&#10;more"/></testcase>
<testcase classname="tests.test_faults" name="test_c"><skipped message="needs a CUDA GPU"/></testcase>
<testcase classname="tests.test_tuning" name="tests/test_tuning.py"><error message="collection failure"/></testcase>
</testsuite></testsuites>"""
METRICS = "model,horizon_min,metric,ours,paper,diff,parameters,epochs_run,best_epoch\n" + "\n".join(
    f"teacher,{h},{m},{v},,,197712,50,41" for m in ("MAE", "RMSE") for h, v in ((15, 14.5), (30, 16.25), (45, 18.0)))
BENCHMARK = ("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
             "{s}\t0:00:10\t{rss}\t1\t1\t1\t0\t0\t0\t1\n")


def fake_study(root: Path) -> None:
    """A finished teacher run as the workflow leaves it: metrics, prediction, checkpoint, benchmark and log."""
    run = root / "results/pemsd8_flow/seed0/teacher"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(METRICS)
    for name in ("predictions.npz", "checkpoint.pt", "model.pt"):
        (run / name).write_bytes(os.urandom(300_000))
    (root / "results/pemsd8_flow/raw").mkdir()
    (root / "results/pemsd8_flow/raw/pems08_288_62_170.mat").write_bytes(b"raw")
    for rule, job, seconds, rss in (("train", "pemsd8_flow/seed0/teacher", 95.5, 2100.5),
                                    ("evaluate", "pemsd8_flow/seed0/teacher", 6.0, "NA")):
        (root / "benchmarks" / rule / job).parent.mkdir(parents=True, exist_ok=True)
        (root / "benchmarks" / rule / f"{job}.tsv").write_text(BENCHMARK.format(s=seconds, rss=rss))
    (root / "logs/train/pemsd8_flow/seed0").mkdir(parents=True)
    (root / "logs/train/pemsd8_flow/seed0/teacher.log").write_text(
        "2026-12-04 10:00:00 INFO kdstgcn: job code starts 4.25 s after the process (interpreter, Snakemake, "
        "imports)\n")


def test_junit_report_counts_and_names_what_did_not_pass(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    summary = junit_summary(tmp_path / "junit.xml")
    assert {k: summary[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == {
        "tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1}
    assert summary["not_passed"] == ["tests.test_cuda::test_b: AssertionError: 2 != 3",
                                     "tests.test_tuning::tests/test_tuning.py: collection failure"]


def test_study_record_reads_maes_jobs_memory_and_start_up_and_checks_the_targets(tmp_path):
    fake_study(tmp_path)
    jobs = {j["job"]: j for j in benchmark_jobs(tmp_path)}
    assert jobs["train/pemsd8_flow/seed0/teacher"] == {"job": "train/pemsd8_flow/seed0/teacher", "s": 95.5,
                                                       "max_rss_mb": 2100.5, "startup_s": 4.25}
    assert jobs["evaluate/pemsd8_flow/seed0/teacher"]["max_rss_mb"] is None
    study = collect_study(tmp_path, "pemsd8_flow", 0, ["teacher", "student_task"], {"seconds": 200.0,
                                                                                    "outcome": "stopped"},
                          {"calls": [{"seconds": 100.0, "outcome": "stopped"}]})
    assert study["models"]["teacher"]["mae"] == {"15": 14.5, "30": 16.25, "45": 18.0}
    assert study["missing"] == ["student_task"] and study["wall_s"] == 300.0
    assert study["largest_job"]["job"] == "train/pemsd8_flow/seed0/teacher"
    record = {"study": study, "cuda_tests": {"failed": 0, "errors": 1},
              "throughput": {"models": {"teacher": {"streaming": 0.05}, "teacher_bf16": {"streaming": 0.07},
                                        "student": {"streaming": 0.007}}},
              "train_epoch": {"runs": [{"model": "teacher", "compile": "on", "precision": "bf16", "epoch_s": 0.8}]}}
    # study (not finished), teacher epoch fp32 (not measured), teacher rollout fp32 and bf16, teacher epoch bf16,
    # student rollout, cuda tests, memory
    assert [t["met"] for t in evaluate_targets(record)] == [None, None, True, False, True, False, False, True]


def test_results_are_packed_without_predictions_checkpoints_or_raw_files_in_pieces(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "repo/results/out"
    fake_study(root)
    out.mkdir()
    (out / "earlier.json").write_text("{}")
    pieces = pack(root, out, piece_bytes=100_000)
    assert len(pieces) >= 3 and all(p["bytes"] <= 100_000 and p["kept"] for p in pieces)
    joined = b"".join((out / p["name"]).read_bytes() for p in pieces)
    with tarfile.open(fileobj=io.BytesIO(joined), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"results/pemsd8_flow/seed0/teacher/metrics.csv", "results/pemsd8_flow/seed0/teacher/model.pt",
            "benchmarks/train/pemsd8_flow/seed0/teacher.tsv", "logs/train/pemsd8_flow/seed0/teacher.log"} <= names
    assert not [n for n in names if n.endswith(("predictions.npz", "checkpoint.pt", ".mat")) or "/out" in n]
    capped = pack(root, out, piece_bytes=100_000, max_pieces=2)
    assert [p["kept"] for p in capped] == [True, True] + [False] * (len(capped) - 2)


def acceptance(repo: Path, out: Path, *args: str, timeout: float) -> dict:
    result = subprocess.run([sys.executable, "bench/gpu_acceptance.py", "--device", "cpu", "--configfile",
                             "config/demo.yaml", "--cores", "2", "--out", str(out), *args], cwd=repo,
                            capture_output=True, text=True, timeout=timeout, env={**os.environ, "OUT": ""})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((out / "gpu_acceptance.json").read_text())


@pytest.mark.slow
def test_cpu_mode_stops_at_its_budget_and_a_second_call_finishes_the_sequence(repo_copy, shared_data, tmp_path):
    """The first call runs the study alone and is stopped by its budget; the second runs every step, the quick
    benchmarks, the (skipped) cuda tests, and continues the study to its eight models; a third skips what
    passed and finds the study done."""
    carry = tmp_path / "carry"
    for relative in ("pems08/distance.csv", "pemsd7m/PeMSD7_W_228.csv"):
        (carry / "data" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_file(shared_data, relative), carry / "data" / relative)
    # 15 s of study (the budget less STOP_RESERVE_S): on an idle 2-core machine the whole study fitted in 30 s
    first = acceptance(repo_copy, tmp_path / "out1", "--steps", "study", "--budget-s", "60", "--carry", str(carry),
                       timeout=150)
    assert [(s["name"], s["outcome"]) for s in first["steps"]] == [("study", "stopped")]
    assert first["study"]["done"] < 8

    second = acceptance(repo_copy, tmp_path / "out2", "--budget-s", "540", "--carry", str(carry), timeout=600)
    outcomes = {s["name"]: s["outcome"] for s in second["steps"]}
    assert outcomes == {"install": "skipped", "environment": "passed", "throughput": "passed",
                        "train_epoch": "passed", "study": "passed", "cuda_tests": "passed"}, second["steps"]
    assert second["environment"]["torch"] and second["throughput"]["models"]["student"]["streaming"] > 0
    assert second["cuda_tests"]["skipped"] == second["cuda_tests"]["tests"] > 0
    study = second["study"]
    assert study["done"] == 8 and not study["missing"]
    assert [c["outcome"] for c in study["calls"]] == ["stopped", "passed"]
    assert all(0 < m["mae"][h] < 100 for m in study["models"].values() for h in ("15", "30", "45"))
    assert study["largest_job"]["max_rss_mb"] > 0
    assert all(j["startup_s"] > 0 for j in study["jobs"] if j["job"].startswith(("train/", "evaluate/")))
    files = sorted((tmp_path / "out2").iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert [f.name for f in files] == ["gpu_acceptance.json"] + [p["name"] for p in second["pieces"]]

    third = acceptance(repo_copy, tmp_path / "out3", "--budget-s", "300", "--carry", str(carry), timeout=360)
    outcomes = {s["name"]: s["outcome"] for s in third["steps"]}
    assert outcomes == {**{name: "passed earlier" for name in ("environment", "throughput", "train_epoch",
                                                                "cuda_tests")}, "install": "skipped", "study": "passed"}
    assert third["throughput"] == second["throughput"] and third["study"]["done"] == 8
