"""Shared fixtures: the repository root, the shared data mirror, a small synthetic dataset written through the
package's own cleaning and graph code, a helper that runs Snakemake in a throw-away copy of the repository, and a
local HTTP server that breaks downloads off half-way."""
from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdstgcn.config import schema

REPO = Path(__file__).resolve().parents[1]
MIRROR_ENV = "KDSTGCN_MIRROR"


def shared_data_dir() -> Path | None:
    """The read-only mirror of the raw files: $KDSTGCN_MIRROR, else ../shared/data beside the repository."""
    env = os.environ.get(MIRROR_ENV)
    for candidate in (Path(env) if env else None, REPO.parent / "shared" / "data"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


LONGEST_FILE = "test_report.py"  # the demo study: most of the suite's time on one worker


def pytest_collection_modifyitems(items):
    """The longest test file first, so that under xdist (one file per worker) the other worker runs the rest of
    the suite beside it instead of waiting for it at the end."""
    items.sort(key=lambda item: item.path.name != LONGEST_FILE)


def pytest_runtest_setup(item):
    """Tests marked `cuda` run only where torch sees a GPU; elsewhere they are skipped, saying so."""
    if item.get_closest_marker("cuda") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")


@pytest.fixture
def single_thread():
    """Tiny models run far faster on one thread, above all when other jobs share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the real raw files; the test is skipped when it is not there."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(f"no data mirror: set {MIRROR_ENV} or place the files in {REPO.parent / 'shared' / 'data'}")
    return path


def shared_file(shared_data: Path, relative: str) -> Path:
    """One file of the mirror (found by name anywhere below it, like the download step does), or skip."""
    direct = shared_data / relative
    if direct.is_file():
        return direct
    hits = sorted(shared_data.rglob(Path(relative).name))
    if not hits:
        pytest.skip(f"{relative} is not in the data mirror {shared_data}")
    return hits[0]


# ----------------------------------------------------------------------------------------------------------
# A small synthetic dataset prepared by the real path: generate -> clean -> parquet; distances -> adjacency.
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticFiles:
    values: Path
    fill_report: Path
    adjacency: Path
    n_nodes: int
    steps_per_day: int
    split: tuple[int, int, int]

    def data_spec(self):
        from kdstgcn.config.datasets import DataSpec

        return DataSpec(self.steps_per_day, self.split, n_his=12, n_pred=9)


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> SyntheticFiles:
    from kdstgcn.data.clean import clean, timestamps
    from kdstgcn.data.graph import check_graph, gaussian_adjacency
    from kdstgcn.runtime.io import write_table
    from kdstgcn.data.synthetic import generate

    n_nodes, steps_per_day, split = 10, 96, (2, 1, 1)
    values, distance = generate(n_nodes=n_nodes, n_days=sum(split), steps_per_day=steps_per_day, seed=3,
                                area_km=5.0)
    folder = tmp_path_factory.mktemp("synthetic")
    index = timestamps(values.shape[0], steps_per_day, "2024-01-01", False)
    table, report = clean(values, index)
    w = gaussian_adjacency(distance, 10.0, 0.5, 1000.0)
    check_graph(w, "synthetic")
    files = SyntheticFiles(folder / "values.parquet", folder / "fill_report.csv", folder / "adjacency.parquet",
                           n_nodes, steps_per_day, split)
    write_table(table, files.values, index=True)
    write_table(report, files.fill_report)
    write_table(pd.DataFrame(w, columns=[str(i) for i in range(n_nodes)]), files.adjacency)
    assert np.isfinite(table.to_numpy()).all()
    return files


@pytest.fixture(scope="module")
def data(synthetic_files):
    """The synthetic network's prepared splits, as the training code reads them."""
    from kdstgcn.data.samples import load_data

    return load_data(str(synthetic_files.values), str(synthetic_files.fill_report), synthetic_files.data_spec())


@pytest.fixture(scope="module")
def cheb(synthetic_files):
    """The synthetic network's Chebyshev stack (ks = 3)."""
    from kdstgcn.data.graph import load_cheb

    return load_cheb(str(synthetic_files.adjacency), 3)


# ----------------------------------------------------------------------------------------------------------
# Snakemake in a copy of the repository
# ----------------------------------------------------------------------------------------------------------

IGNORED_WHEN_NO_GIT = ("results", "logs", "benchmarks", ".snakemake", ".venv", ".git", ".pytest_cache",
                       "__pycache__", "*.egg-info")


def repository_files(root: Path) -> list[str]:
    """Git-tracked files plus untracked files that git does not ignore (what a fresh checkout would hold)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return []
    return sorted({p for p in out.decode().split("\0") if p})


def copy_repository(root: Path, dest: Path) -> Path:
    """Copy the working tree (no results, logs or caches) to `dest`; files deleted meanwhile are skipped."""
    files = repository_files(root)
    if not files:
        shutil.copytree(root, dest, ignore=shutil.ignore_patterns(*IGNORED_WHEN_NO_GIT))
        return dest
    for rel in files:
        src = root / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


@dataclass
class SnakemakeResult:
    returncode: int
    output: str
    seconds: float
    workdir: Path


def snakemake_env(mirror: Path | None) -> dict:
    env = dict(os.environ)
    env.pop(MIRROR_ENV, None)
    if mirror is not None:
        env[MIRROR_ENV] = str(mirror)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_snakemake(workdir: Path, args: list[str], mirror: Path | None = None, timeout: float = 300
                  ) -> SnakemakeResult:
    """Run `python -m snakemake ARGS` in `workdir`; stdout and stderr together, killed after `timeout` s."""
    tic = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=snakemake_env(mirror),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"snakemake {' '.join(args)} ran longer than {timeout} s; output so far:\n{out[-5000:]}")
    return SnakemakeResult(proc.returncode, proc.stdout, time.perf_counter() - tic, workdir)


def job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run: rule -> number of jobs."""
    match = re.search(r"Job stats:\s*\n\s*job\s+count\s*\n\s*-+\s+-+\s*\n(.*?)\n\s*total\s+(\d+)", output, re.S)
    assert match, f"no job table in the output:\n{output[-3000:]}"
    return {name: int(count) for name, count in re.findall(r"^\s*(\w+)\s+(\d+)\s*$", match.group(1), re.M)}


def planned_wildcards(output: str, rule: str) -> list[dict[str, str]]:
    """Wildcards of every planned job of `rule` (from the per-job blocks of a dry run)."""
    jobs = []
    for block in re.findall(rf"^(?:local)?rule {rule}:\n((?:[ \t]+.*\n?)*)", output, re.M):
        line = re.search(r"^\s*wildcards: (.*)$", block, re.M)
        if line:
            jobs.append(dict(item.split("=", 1) for item in line.group(1).split(", ")))
    return jobs


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """A fresh copy of the repository in a temporary folder."""
    return copy_repository(REPO, tmp_path / "repo")


@pytest.fixture
def snakemake_runner():
    return run_snakemake


def merged_config(*names: str) -> dict:
    """config/config.yaml with the given config files laid over it, the way Snakemake merges --configfile."""
    return schema.merged_config(REPO, list(names))


class HalfPayloadServer:
    """A local HTTP server that announces `payload` whole but sends half of it, then closes the connection
    (`stall=False`) or hangs until the server is left (`stall=True`); setting `full` serves it all."""

    def __init__(self, payload: bytes, stall: bool = False):
        self.full = False
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if outer.full:
                    self.wfile.write(payload)
                    return
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                if stall:
                    outer.release.wait(60)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/data.bin"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------------------------------------
# Runs written by hand for the report's tests: metrics.csv and predictions.npz in the study's folder layout
# ----------------------------------------------------------------------------------------------------------

FAKE_PARAMETERS = {"teacher": 400_000, "pruning_base": 14_496}


def fake_parameters(model: str) -> int:
    """A fake parameter count: a pruned model keeps 90 % of what its ratio leaves of its base."""
    from kdstgcn.config.layout import parse_pruned

    pruned = parse_pruned(model)
    if pruned is None:
        return FAKE_PARAMETERS.get(model, 3_000)
    return int(FAKE_PARAMETERS[pruned.base] * (100 - pruned.ratio) / 100 * 0.9)


def write_fake_metrics(root: Path, dataset: str, seed: int, model: str, mae: dict[int, float], epochs: int,
                       parameters: int = 3_000) -> None:
    """metrics.csv of one run under root/results/...: MAE per horizon as given, RMSE and MAPE 2x and 3x it."""
    from kdstgcn.config.layout import run_file

    path = root / run_file(dataset, seed, model, "metrics.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"model": model, "horizon_min": h, "metric": m, "ours": mae[h] * (1 + k), "parameters": parameters,
                   "epochs_run": epochs} for h in (15, 30, 45) for k, m in enumerate(("MAE", "RMSE", "MAPE"))]
                 ).to_csv(path, index=False)


@dataclass
class FakeStudy:
    """The demo config and, under `root`, one seed of every model Tables 2, 4, 5, 7 and 8 need: metrics.csv (two
    epochs; pruned models one epoch of fine-tuning) and predictions.npz."""

    config: dict
    root: Path

    def files(self, name: str) -> list[Path]:
        return sorted(self.root.glob(f"results/*/seed*/*/{name}"))

    def predictions(self, models: list[str]) -> dict[str, Path]:
        from kdstgcn.config.layout import run_file

        return {m: self.root / run_file("demo", 0, m, "predictions.npz") for m in models}

    def metric_table(self, number: int) -> pd.DataFrame:
        """Table `number` as the metric_table rule makes it, from the metrics.csv files."""
        from kdstgcn.report import rows, runs, tables

        c = self.config
        return tables.metric_table(number, rows.table_rows(number, c["distillation"]["losses"], c["pruning"]),
                                   runs.read_runs(self.files("metrics.csv"), pd.read_csv), rows.dataset_facts(c),
                                   c["seeds"], c["training"]["paper_epochs"],
                                   {s: c[s]["hyperparameter_source"] for s in ("distillation", "pruning")})


@pytest.fixture
def fake_study(tmp_path) -> FakeStudy:
    from kdstgcn.config.layout import parse_pruned, run_file
    from kdstgcn.report.rows import table_rows

    config = merged_config("config/demo.yaml")
    models = list(dict.fromkeys(r.model for n in (2, 4, 5, 7, 8) for r in
                                table_rows(n, config["distillation"]["losses"], config["pruning"])))
    rng = np.random.default_rng(0)
    truth = 60 + 5 * np.sin(np.arange(200) / 8)[:, None, None] * np.ones((1, 9, 16))
    for i, model in enumerate(models):
        pruned = parse_pruned(model) is not None
        write_fake_metrics(tmp_path, "demo", 0, model, {h: 2.0 + i / 10 + h / 100 for h in (15, 30, 45)},
                           epochs=1 if pruned else 2, parameters=fake_parameters(model))
        np.savez(tmp_path / run_file("demo", 0, model, "predictions.npz"),
                 prediction=truth + rng.normal(0, 0.3, truth.shape), truth=truth)
    return FakeStudy(config, tmp_path)


class TableCells(HTMLParser):
    """The text of every table row of an HTML page, cell by cell."""

    def __init__(self, page: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
