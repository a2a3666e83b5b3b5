"""The GPU path proven in one call: the `cuda` tests, the GPU benchmarks and a one-seed study at the paper's budget,
each step timed and recorded even if it fails, on a machine with Python and CUDA PyTorch but no Snakemake and no
network (docs/running.md, "Proving the GPU path").

    bash bench/gpu_wheels.sh                                  # here, with network: fills .gpu_carry/
    python bench/gpu_acceptance.py                            # there, with .gpu_carry/ beside the code
    python bench/gpu_acceptance.py --device cpu --configfile config/demo.yaml   # the same sequence on the CPU

Steps: `install` (Snakemake from the carried wheels, unless importable), `environment` (device, torch, CUDA),
`throughput` (bench/throughput.py at N = 170, fp32 beside bf16), `train_epoch` (bench/train_epoch.py, eager
against compiled, fp32 beside bf16),
then `study` (teacher, student without KD, ORD and L_STCD students, pruning base, Algorithm 1 and the
Molchanov baseline at 50 %, the teacher pruned by Algorithm 1, through profiles/gpu) with `cuda_tests`
(pytest -m cuda) beside it. On the CPU the benchmarks run their quick variants.

`--budget-s` bounds the whole call: the study and the tests are stopped (SIGINT, then SIGTERM) in time to
write the record; training resumes from its per-epoch checkpoints, and a second call skips the steps that
passed before and continues the study. Written to --out ($OUT by default): gpu_acceptance.json and
results.tar.gz.NN, pieces of at most 16 MiB of results/, logs/ and benchmarks/ without predictions,
checkpoints and teacher caches.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from acceptance_record import collect_study, evaluate_targets, junit_summary, pack  # noqa: E402
from kdstgcn.config import layout  # noqa: E402
from kdstgcn.config.schema import merged_config  # noqa: E402

RECORD = ROOT / layout.RESULTS / "gpu_acceptance.json"  # kept between calls: the next one continues from it
STEP_LOGS = ROOT / layout.LOGS / "gpu_acceptance"
BASE_RATIO = 50  # the pruning base pruned by this percentage, by Algorithm 1 and by the baseline
STOP_RESERVE_S = 45  # left of the budget when the study is stopped: its jobs end, the record is written
STEP_LIMIT_S = {"install": 120, "environment": 60, "throughput": 180, "train_epoch": 360}
ENVIRONMENT = """import json, os, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
    "cuda_available": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
    "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
    "cpus": os.cpu_count(), "machine": platform.machine()}))"""


class Step:
    """One command of the sequence: its own process group, output to logs/gpu_acceptance/<name>.log."""

    def __init__(self, name: str, command: list[str], env: dict, started: float):
        STEP_LOGS.mkdir(parents=True, exist_ok=True)
        self.name, self.command, self.log = name, command, STEP_LOGS / f"{name}.log"
        self.offset, self.tic, self.stopped = time.perf_counter() - started, time.perf_counter(), False
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def send(self, sig: int) -> None:
        """SIGINT to the command alone (Snakemake then ends its jobs itself), any other signal to its group."""
        try:
            os.kill(self.proc.pid, sig) if sig == signal.SIGINT else os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def record(self) -> dict:
        code = self.proc.wait()
        outcome = "stopped" if self.stopped else ("passed" if code == 0 else "failed")
        tail = self.log.read_text(errors="replace")[-1500:]
        return {"name": self.name, "outcome": outcome, "returncode": code, "start_s": round(self.offset, 1),
                "seconds": round(time.perf_counter() - self.tic, 1), "command": " ".join(self.command)[:400],
                "log": str(self.log.relative_to(ROOT)), "tail": tail}


def run_until(steps: list[Step], deadline: float, grace_s: float) -> list[dict]:
    """Wait for `steps` (running side by side); stop those still running at `deadline`: SIGINT, after `grace_s`
    SIGTERM, 10 s later SIGKILL."""
    stages = ((None, deadline), (signal.SIGINT, deadline + grace_s), (signal.SIGTERM, deadline + grace_s + 10),
              (signal.SIGKILL, deadline + grace_s + 15))
    for sig, until in stages:
        for step in steps:
            if sig is not None and step.proc.poll() is None:
                step.stopped = True
                step.send(sig)
        while any(step.proc.poll() is None for step in steps) and time.perf_counter() < until:
            time.sleep(0.5)
    return [step.record() for step in steps]


def python_env(site: Path, carry: Path) -> dict:
    """The commands' environment: this checkout's package and the installed wheels first on the path, the
    carried data as the benchmarks' shared folder."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(site), env.get("PYTHONPATH")) if p)
    if (carry / "data").is_dir():
        env["KDSTGCN_SHARED"] = str(carry)
    return env


def install_command(carry: Path, site: Path) -> list[str] | None:
    """pip from the carried wheels into `site`, or None where Snakemake is importable already."""
    sys.path.append(str(site))  # installed by an earlier call on this machine
    if importlib.util.find_spec("snakemake") is not None:
        return None
    wheels = sorted(str(p) for p in (carry / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"Snakemake is not installed and {carry / 'wheels'} holds no wheels: run "
                         "`bash bench/gpu_wheels.sh` on a machine with network and carry that folder")
    return [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--upgrade", "--target", str(site), *wheels]


def bench_commands(device: str, quick: bool, out: Path) -> dict[str, list[str]]:
    """throughput and train_epoch at N = 170 (PEMS08) on the device; quick variants of the student alone on the
    CPU (they test this script, not the speed)."""
    py = [sys.executable]
    if quick:
        return {"throughput": [*py, "bench/throughput.py", "--device", device, "--quick", "--nodes", "16",
                               "--graph", "random", "--models", "student", "--product-repeats", "1",
                               "--json", str(out / "throughput.json")],
                "train_epoch": [*py, "bench/train_epoch.py", "--device", device, "--quick", "--models", "student",
                                "--json", str(out / "train_epoch.json")]}
    return {"throughput": [*py, "bench/throughput.py", "--device", device, "--nodes", "170", "--graph", "pems08",
                           "--infer-runs", "5", "--json", str(out / "throughput.json")],
            "train_epoch": [*py, "bench/train_epoch.py", "--device", device, "--epochs", "3",
                            "--models", "teacher,student", "--precisions", "fp32,bf16",
                            "--json", str(out / "train_epoch.json")]}


def study_plan(config: dict) -> tuple[str, int, list[str]]:
    """(dataset, seed, models) of the acceptance study: the first dataset and seed of the config."""
    ratio = config["pruning"]["teacher_ratio"]
    models = ["teacher", "pruning_base", *(layout.student_name(loss) for loss in ("task", "ord", "stcd")),
              layout.pruned_name("kd_taylor", "pruning_base", BASE_RATIO),
              layout.pruned_name("taylor", "pruning_base", BASE_RATIO),
              layout.pruned_name("kd_taylor", "teacher", ratio)]
    return config["run_datasets"][0], int(config["seeds"][0]), models


def snakemake_command(targets: list[str], args, carry: Path) -> list[str]:
    command = [sys.executable, "-m", "snakemake", *targets, "--profile", "profiles/gpu", "--cores", str(args.cores),
               "--resources", f"gpu={args.jobs}", "--configfile", *args.configfile]
    if (carry / "data").is_dir():
        command += ["--config", f"mirror={(carry / 'data').resolve()}"]
    return command


def unlock(command: list[str], env: dict) -> None:
    """A study stopped by SIGKILL leaves Snakemake's lock behind: release it before continuing."""
    if any((ROOT / ".snakemake" / "locks").glob("*")):
        subprocess.run([*command, "--unlock"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def earlier_steps(previous: dict, wanted: list[str]) -> dict[str, dict]:
    """The steps of the last call on this machine that passed and are wanted again: skipped now, carried into
    this record (the study always runs: Snakemake continues it)."""
    return {s["name"]: {**s, "outcome": "passed earlier"} for s in previous.get("steps", [])
            if s["outcome"] in ("passed", "passed earlier") and s["name"] in wanted and s["name"] != "study"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--configfile", nargs="+", default=["config/gpu_acceptance.yaml"])
    ap.add_argument("--budget-s", type=float, default=540, help="wall seconds for the whole call")
    ap.add_argument("--carry", default=".gpu_carry", help="folder of bench/gpu_wheels.sh: wheels/ and data/")
    ap.add_argument("--out", default=os.environ.get("OUT") or f"{layout.RESULTS}/gpu_acceptance_out",
                    help="where the record and the pieces go (default: $OUT)")
    ap.add_argument("--site", default="/tmp/kdstgcn_site", help="where the wheels are installed")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--jobs", type=int, default=None, help="GPU jobs at once (default 8; on the CPU: --cores)")
    ap.add_argument("--steps", default="install,environment,throughput,train_epoch,study,cuda_tests")
    ap.add_argument("--quick", action="store_true", help="quick benchmarks (always on the CPU)")
    ap.add_argument("--again", action="store_true", help="rerun the steps an earlier call passed")
    args = ap.parse_args()
    args.jobs = args.jobs or (8 if args.device == "cuda" else args.cores)
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    deadline = started + args.budget_s
    carry, site, out = (ROOT / args.carry).resolve(), Path(args.site), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.steps.split(",")
    previous = json.loads(RECORD.read_text()) if RECORD.exists() and not args.again else {}
    done = earlier_steps(previous, wanted)
    env = python_env(site, carry)
    steps: list[dict] = list(done.values())

    def sequential(name: str, command: list[str] | None) -> None:
        if name not in wanted or name in done:
            return
        if command is None:
            steps.append({"name": name, "outcome": "skipped", "reason": "Snakemake is importable"})
            return
        limit = min(deadline - STOP_RESERVE_S, time.perf_counter() + STEP_LIMIT_S[name])
        steps.extend(run_until([Step(name, command, env, started)], limit, grace_s=5))

    sequential("install", install_command(carry, site))
    sequential("environment", [sys.executable, "-c", ENVIRONMENT])
    for name, command in bench_commands(args.device, args.quick or args.device == "cpu", out).items():
        sequential(name, command)

    config = merged_config(ROOT, args.configfile)
    dataset, seed, models = study_plan(config)
    targets = [layout.run_file(dataset, seed, m, "metrics.csv") for m in models]
    parallel = []
    if "study" in wanted:
        command = snakemake_command(targets, args, carry)
        unlock(command, env)
        parallel.append(Step("study", command, env, started))
    if "cuda_tests" in wanted and "cuda_tests" not in done:
        # the project's addopts replaced: an older pytest-xdist there may lack --no-loadscope-reorder; on the
        # CPU, where every cuda test is skipped, no workers
        workers = ["-n", "2", "--dist", "loadfile"] if args.device == "cuda" else []
        parallel.append(Step("cuda_tests", [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "cuda", "-q",
                                            *workers, "-p", "no:cacheprovider", "--continue-on-collection-errors",
                                            f"--junitxml={out / 'cuda_tests.xml'}"], env, started))
    steps.extend(run_until(parallel, deadline - STOP_RESERVE_S, grace_s=25))
    write_record(args, steps, out, (dataset, seed, models), previous, started)
    if any(s["outcome"] == "failed" for s in steps):
        sys.exit(1)


def step_results(steps: list[dict], out: Path, previous: dict) -> dict:
    """What each step measured: from this call's files, or from the earlier record for a step passed earlier."""
    outcomes = {s["name"]: s for s in steps}
    found = {}
    for name, read in (("environment", None), ("throughput", out / "throughput.json"),
                       ("train_epoch", out / "train_epoch.json"), ("cuda_tests", out / "cuda_tests.xml")):
        step = outcomes.get(name, {})
        if step.get("outcome") == "passed earlier" and name in previous:
            found[name] = previous[name]
        elif name == "environment" and step.get("outcome") == "passed":
            found[name] = json.loads(step["tail"].strip().splitlines()[-1])
        elif read is not None and read.exists():
            found[name] = junit_summary(read) if read.suffix == ".xml" else json.loads(read.read_text())
    return found


def write_record(args, steps: list[dict], out: Path, plan: tuple, previous: dict, started: float) -> None:
    """gpu_acceptance.json in --out and results/, and the results packed in pieces beside it."""
    dataset, seed, models = plan
    record = {"device": args.device, "configfile": args.configfile, "budget_s": args.budget_s, "steps": steps,
              **step_results(steps, out, previous)}
    study = next((s for s in steps if s["name"] == "study"), None)
    record["study"] = collect_study(ROOT, dataset, seed, models, study, previous.get("study", {}))
    record["targets"] = evaluate_targets(record)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=2, default=str) + "\n")
    record["pieces"] = pack(ROOT, out)
    (out / "gpu_acceptance.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    for name in ("throughput.json", "train_epoch.json", "cuda_tests.xml"):
        (out / name).unlink(missing_ok=True)  # in the record now: $OUT takes at most 8 files
    failed = [s["name"] for s in steps if s["outcome"] not in ("passed", "passed earlier", "skipped")]
    print(f"{out / 'gpu_acceptance.json'}: {len(steps)} steps, " + (f"not passed: {failed}" if failed else "all passed")
          + f"; study {record['study']['done']} of {len(models)} models; {record['wall_s']} s")


if __name__ == "__main__":
    main()
