"""What bench/gpu_acceptance.py reads back after its steps: the study's config, the cuda tests' JUnit report, each
model's test MAE and the jobs' time and memory (Snakemake's benchmark files), the targets met or missed, and the
results packed in pieces small enough to come back from the GPU machine."""
from __future__ import annotations

import csv
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path


from kdstgcn.config import layout

PIECE_BYTES = 16 * 2**20
MAX_PIECES = 7  # beside gpu_acceptance.json: eight files come back at most
# what the pack leaves out: predictions, checkpoints, teacher caches and stores, the raw and cleaned series
LEFT_OUT_NAMES = {"predictions.npz", "checkpoint.pt", "teacher_predictions.pt", "values.parquet"}
LEFT_OUT_FOLDERS = {"feature_store", "raw"}
HORIZONS_MIN = (15, 30, 45)
STARTUP = re.compile(r"job code starts ([0-9.]+) s after the process")
# the targets on one H200: (name, limit, where the value is read in the record)
TARGETS = (
    ("study wall s (all calls; once every model is done)", 360.0,
     lambda r: r["study"]["wall_s"] if not r["study"]["missing"] else None),
    ("teacher epoch s, compiled (train_epoch)", 1.0,
     lambda r: next((x["epoch_s"] for x in r.get("train_epoch", {}).get("runs", [])
                     if x["model"] == "teacher" and x["compile"] == "on" and x.get("precision", "fp32") == "fp32"),
                    None)),
    ("teacher 9-step rollout s (throughput, streaming)", 0.060,
     lambda r: r.get("throughput", {}).get("models", {}).get("teacher", {}).get("streaming")),
    ("teacher 9-step rollout s, bf16 (throughput, streaming)", 0.060,
     lambda r: r.get("throughput", {}).get("models", {}).get("teacher_bf16", {}).get("streaming")),
    ("teacher epoch s, compiled, bf16 (train_epoch)", 1.0,
     lambda r: next((x["epoch_s"] for x in r.get("train_epoch", {}).get("runs", [])
                     if x["model"] == "teacher" and x["compile"] == "on" and x.get("precision") == "bf16"), None)),
    ("student 9-step rollout s (throughput, streaming)", 0.005,
     lambda r: r.get("throughput", {}).get("models", {}).get("student", {}).get("streaming")),
    ("cuda tests failed or in error", 0,
     lambda r: r["cuda_tests"]["failed"] + r["cuda_tests"]["errors"] if "cuda_tests" in r else None),
    ("largest job's host memory MiB (max_rss)", 3072.0,
     lambda r: (r["study"]["largest_job"] or {}).get("max_rss_mb")),
)


def junit_summary(path: Path) -> dict:
    """Counts of a pytest JUnit report and each test that did not pass or skip, with its message's first line."""
    root = ET.parse(path).getroot()
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    not_passed = []
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for tag, key in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                counts[key] += 1
                if key != "skipped":
                    message = (found.get("message") or "").strip().splitlines()
                    not_passed.append(f"{case.get('classname')}::{case.get('name')}: "
                                      f"{message[0] if message else tag}")
                break
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return {**counts, "not_passed": not_passed}


def number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def startup_s(log: Path) -> float | None:
    """Seconds from a job's process start to its own code (kdstgcn.runtime.runner.logged writes them)."""
    if not log.exists():
        return None
    found = STARTUP.search(log.read_text(errors="replace"))
    return float(found.group(1)) if found else None


def benchmark_jobs(root: Path) -> list[dict]:
    """Every job's wall seconds and peak resident memory (MiB) from Snakemake's benchmark files, and its start-up
    seconds from its log, by job."""
    folder, jobs = root / layout.BENCHMARKS, []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            job = path.relative_to(folder).with_suffix("").as_posix()
            jobs.append({"job": job, "s": number(rows[-1].get("s")), "max_rss_mb": number(rows[-1].get("max_rss")),
                         "startup_s": startup_s(root / layout.LOGS / f"{job}.log")})
    return jobs


def model_summary(run_dir: Path) -> dict:
    """A model's test MAE at 15/30/45 minutes, its epochs, and its median training seconds per epoch."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mae = {int(r["horizon_min"]): number(r["ours"]) for r in rows if r["metric"] == "MAE"}
    summary = {"mae": {str(h): mae.get(h) for h in HORIZONS_MIN},
               "epochs_run": number(rows[0].get("epochs_run")), "best_epoch": number(rows[0].get("best_epoch"))}
    history = run_dir / "history.parquet"
    if history.exists():
        import pandas as pd

        epochs = pd.read_parquet(history)
        summary["median_train_s"] = float(epochs["train_seconds"].median())
        summary["median_epoch_s"] = float(epochs["epoch_seconds"].median())
    return summary


def collect_study(root: Path, dataset: str, seed: int, models: list[str], step: dict | None,
                  previous: dict) -> dict:
    """The study's models done and their metrics, its calls (this one added to the earlier ones on this machine)
    and their wall time, every job's time and memory, and the job of the largest memory."""
    runs = {m: model_summary(root / layout.run_dir(dataset, seed, m)) for m in models
            if (root / layout.run_file(dataset, seed, m, "metrics.csv")).exists()}
    calls = list(previous.get("calls", []))
    if step is not None:
        calls.append({"seconds": step["seconds"], "outcome": step["outcome"]})
    jobs = benchmark_jobs(root)
    measured = [j for j in jobs if j["max_rss_mb"] is not None]
    return {"dataset": dataset, "seed": seed, "done": len(runs), "missing": [m for m in models if m not in runs],
            "calls": calls, "wall_s": round(sum(c["seconds"] for c in calls), 1), "models": runs,
            "largest_job": max(measured, key=lambda j: j["max_rss_mb"], default=None), "jobs": jobs}


def evaluate_targets(record: dict) -> list[dict]:
    """Each target with its limit, the value read from the record (None: not measured) and whether it is met."""
    rows = []
    for name, limit, read in TARGETS:
        try:
            value = read(record)
        except (KeyError, TypeError):
            value = None
        rows.append({"target": name, "limit": limit, "value": value,
                     "met": None if value is None else value <= limit})
    return rows


def kept(root: Path, out: Path):
    """tarfile filter: everything but what LEFT_OUT_NAMES and LEFT_OUT_FOLDERS name and the output folder."""
    def filter_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name, path = Path(info.name), root / info.name
        if name.name in LEFT_OUT_NAMES or LEFT_OUT_FOLDERS & set(name.parts) or path == out or out in path.parents:
            return None
        return info
    return filter_member


def pack(root: Path, out: Path, piece_bytes: int = PIECE_BYTES, max_pieces: int = MAX_PIECES) -> list[dict]:
    """results/, logs/ and benchmarks/ (less predictions, checkpoints and caches) as results.tar.gz in pieces of
    at most `piece_bytes` in `out` (`cat results.tar.gz.* | tar xz` joins them); pieces past `max_pieces` are
    not written, and the list says so."""
    archive = out / "results.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for top in (layout.RESULTS, layout.LOGS, layout.BENCHMARKS):
            if (root / top).exists():
                tar.add(root / top, arcname=top, filter=kept(root, out))
    pieces = []
    with open(archive, "rb") as whole:
        while chunk := whole.read(piece_bytes):
            name = f"results.tar.gz.{len(pieces):02d}"
            if len(pieces) < max_pieces:
                (out / name).write_bytes(chunk)
            pieces.append({"name": name, "bytes": len(chunk), "kept": len(pieces) < max_pieces})
    archive.unlink()
    return pieces
