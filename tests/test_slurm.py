"""Integration test: the workflow on a real single-node Slurm cluster, compared with a local run.

The cluster comes from tests/slurm/local_slurm.sh (munged + slurmctld + slurmd under a private state
directory, installed via apt-get when missing). The Slurm run uses tests/slurm/profile, which requests no
GPUs and queries job states with squeue (the test cluster has no accounting database). The test is skipped
when the cluster cannot be started.

    pytest -m slurm tests/test_slurm.py
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# What the Slurm run and the local run both build (relative to the workflow directory).
SLURM_TARGET = "results/demo/seed0/teacher/metrics.csv"
CONFIGFILE = "config/demo.yaml"
CORES = "2"
RUN_TIMEOUT = 1800  # seconds per snakemake run

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "slurm" / "local_slurm.sh"
PROFILE = REPO / "tests" / "slurm" / "profile"
MIRROR_ENV = "KDSTGCN_MIRROR"

# Wording of snakemake-executor-plugin-slurm (2.x) for a regular (non-array) submission:
#   "Job 3 has been submitted with SLURM jobid 17 (log: /.../.snakemake/slurm_logs/rule_x/17.log)."
SUBMITTED_RE = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: ([^)]*)\)")
# Job headers printed by Snakemake: "rule NAME:" (submitted to Slurm) / "localrule NAME:" (run here).
JOB_HEADER_RE = re.compile(r"^(local)?rule (\w+):$", re.MULTILINE)


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _script(command: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def slurm_env():
    """Start the local cluster (unless it already runs from its state dir); yield the env to talk to it."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    already_running = _script("status", timeout=60).returncode == 0
    try:
        started = _script("start")
    except subprocess.TimeoutExpired as exc:
        pytest.skip(f"local Slurm cluster did not start in {exc.timeout} s")
    if started.returncode != 0:
        pytest.skip("local Slurm cluster could not be started:\n" + _tail(started.stderr))
    # SLURM_CONF plus the state dir's client wrappers on PATH, exactly as `eval "$(local_slurm.sh env)"` does.
    probe = subprocess.run(["bash", "-c", 'eval "$(bash "$0" env)" && printf "%s\\0%s" "$SLURM_CONF" "$PATH"',
                            str(SCRIPT)], capture_output=True, text=True, check=True, timeout=60)
    slurm_conf, path = probe.stdout.split("\0")
    try:
        yield {"SLURM_CONF": slurm_conf, "PATH": path}
    finally:
        if not already_running:
            stopped = _script("stop", timeout=120)
            if stopped.returncode != 0:
                print("local_slurm.sh stop failed:\n" + _tail(stopped.stderr))


def repository_files(root: Path) -> list[str]:
    """`git ls-files` of the repository: tracked files plus untracked ones that git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True, timeout=60).stdout.decode()
    return sorted({p for p in out.split("\0") if p})


def copy_workflow(dest: Path) -> Path:
    try:
        files = repository_files(REPO)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot list the repository's files with git: {exc}")
    for rel in files:
        src = REPO / rel
        if src.is_file():  # deleted-but-tracked files are skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def workflow_env(workdir: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop(MIRROR_ENV, None)
    mirror = REPO.parent / "shared" / "data"
    if mirror.is_dir():
        env[MIRROR_ENV] = str(mirror)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    env["KDSTGCN_VERBOSE"] = "1"  # the test reads Snakemake's per-job blocks, which the quiet console drops
    if extra:
        env.update(extra)
    # this interpreter's snakemake/python first (the Slurm jobs inherit PATH through sbatch --export=ALL)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_snakemake(workdir: Path, args: list[str], env: dict) -> str:
    cmd = [sys.executable, "-m", "snakemake", *args]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{' '.join(args)} ran longer than {RUN_TIMEOUT} s; output so far:\n{_tail(out, 80)}")
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{_tail(proc.stdout, 120)}"
    return proc.stdout


def job_logs(output: str) -> list[str]:
    """The `log:` files of every job block Snakemake printed."""
    logs = []
    for block in re.split(r"\n\s*\n", output):
        if not JOB_HEADER_RE.search(block):
            continue
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("log: "):
                logs += [p.strip() for p in line[len("log: "):].split(",") if p.strip()]
    return logs


def no_gpu_resources(workdir: Path, env: dict) -> list[str]:
    """`--set-resources RULE:gpu=0 RULE:mem_mb=1000` for every rule: the test cluster has no GPU (sbatch rejects
    --gpus) and maybe little memory (nothing enforces mem_mb there, it only has to fit for scheduling)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--workflow-profile", "none",
                           "--configfile", CONFIGFILE], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"snakemake --list-rules failed:\n{_tail(proc.stdout + proc.stderr)}"
    rules = [line.strip() for line in proc.stdout.splitlines() if re.fullmatch(r"\w+", line.strip())]
    assert rules, proc.stdout
    return ["--set-resources", *(f"{rule}:{res}" for rule in rules for res in ("gpu=0", "mem_mb=1000"))]


def metrics_tables(workdir: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(workdir)): pd.read_csv(p) for p in sorted((workdir / "results").rglob("metrics.csv"))}


def test_workflow_on_slurm_matches_local_run(slurm_env, tmp_path):
    # -- run on Slurm ---------------------------------------------------------------------------------------
    on_slurm = copy_workflow(tmp_path / "slurm")
    env = workflow_env(on_slurm, slurm_env)
    output = run_snakemake(
        on_slurm,
        # --workflow-profile none: profiles/default must not override the test profile's keys
        # (target first: --configfile takes several values and would swallow it)
        [SLURM_TARGET, "--profile", str(PROFILE), "--workflow-profile", "none", *no_gpu_resources(on_slurm, env),
         "--configfile", CONFIGFILE, "--cores", CORES],
        env,
    )
    assert (on_slurm / SLURM_TARGET).is_file(), _tail(output, 80)

    submitted = SUBMITTED_RE.findall(output)
    assert submitted, "no 'has been submitted with SLURM jobid' line in the log:\n" + _tail(output, 80)
    headers = JOB_HEADER_RE.findall(output)
    remote_rules = sorted(name for local, name in headers if not local)
    submitted_rules = sorted(re.search(r"slurm_logs/rule_([^/]+)/", log).group(1) for _, _, log in submitted)
    # every non-local job went through sbatch, exactly once
    assert submitted_rules == remote_rules, (submitted_rules, remote_rules)

    # the jobs Slurm still remembers (MinJobAge=600 s) must have completed
    ids = ",".join(slurm_id for _, slurm_id, _ in submitted)
    states = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T", f"--jobs={ids}"],
                            capture_output=True, text=True, env=env, timeout=60)
    for line in states.stdout.split():
        job_id, state = line.split("|")
        assert state == "COMPLETED", f"Slurm job {job_id} is {state}"

    logs = job_logs(output)
    assert logs, "no rule logs found in the Snakemake output"
    missing = [log for log in logs if not (on_slurm / log).is_file()]
    assert not missing, f"rule logs missing after the Slurm run: {missing}"

    # -- same target locally -----------------------------------------------------------------------------------
    local = copy_workflow(tmp_path / "local")
    local_output = run_snakemake(
        local, [SLURM_TARGET, "--workflow-profile", "none", "--configfile", CONFIGFILE, "--cores", CORES],
        workflow_env(local))
    assert (local / SLURM_TARGET).is_file(), _tail(local_output, 80)

    slurm_metrics, local_metrics = metrics_tables(on_slurm), metrics_tables(local)
    assert SLURM_TARGET in slurm_metrics
    assert sorted(slurm_metrics) == sorted(local_metrics)
    for name, table in slurm_metrics.items():
        pd.testing.assert_frame_equal(table, local_metrics[name], check_exact=True, obj=name)
