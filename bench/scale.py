"""Scale: graph build, training steps, the teacher's streaming rollout, ONNX export and peak memory from N = 228
to 8,600 stations, each job in a process of its own, beside its memory estimate (kdstgcn.runtime.memory).

For each N of `--sizes`, on a random geometric road graph of about `--neighbours` neighbours per station under the
paper's kernel (sigma^2 = 10, epsilon = 0.5; `graph_build.coordinates`) and three days of synthetic readings
(kdstgcn.data.synthetic, one day each for training, validation and test, read by the package's loaders), four
fresh processes (set up as a pipeline job is: `--threads` torch threads, the export one as its rule), each standing
for one job: the teacher's training, the student's, the L_STCD student's, the teacher's export:

- `graph s`: station coordinates to the model's Chebyshev stack: `distance_pairs_from_coordinates`,
  `road_adjacency`, `check_graph`, `chebyshev_polynomials` (dense up to `DENSE_MAX_NODES`, sparse above);
  `edges`: the stack's stored entries;
- `teacher`, `student`, `L_STCD` ms/win: the median training step (`kdstgcn.training.loop.training_step`, batch
  `--batch`, RMSprop) divided by the batch: the teacher and the student on the task loss, the student on L_STCD
  with PeMSD8's weights and a live teacher (SCD over 512 stations sampled per batch above 512 stations), each
  model in the precision a job gives it for `training.precision: --precision`; each process then rolls its
  model over the validation day, as a job's epoch ends;
- `rollout ms/win`: the teacher's streaming 9-step rollout over the validation day with its metrics
  (`kdstgcn.evaluation.rollout.evaluate`, CPU chunks), per window;
- `export s`: the teacher's three ONNX files and their check on ONNX Runtime (`kdstgcn.deploy.export`);
- `peak MiB`: the peak resident memory (ru_maxrss) of the training process with the largest, beside
  `estimate MiB`, the estimate of the job it stands for; the export's apart;
- `per station`: the teacher step's, the L_STCD step's and the rollout's cost per window and station relative to
  the first size (1.0: grows linearly with N).

A process that fails (out of memory, an error, past `--timeout`) or a figure whose code raises says so under the
table (its cells read `failed`), and the rest runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import PEMSD8_STCD, STUDENT, TEACHER, load_now, machine
from graph_build import EPSILON, KS, SIGMA2, coordinates
from kdstgcn.config.datasets import DataSpec
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.data import graph
from kdstgcn.data.clean import clean, timestamps
from kdstgcn.data.samples import load_data
from kdstgcn.data.synthetic import generate
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.jobs.memory import graph_shape
from kdstgcn.losses.build import build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.io import write_table
from kdstgcn.runtime.memory.estimate import estimate
from kdstgcn.runtime.memory.shapes import GraphShape, JobShape, TeacherShape
from kdstgcn.runtime.precision import PRECISIONS, resolve_precision
from kdstgcn.runtime.runner import set_up_compute
from kdstgcn.runtime.sizes import export_check_windows
from kdstgcn.training.loop import freeze, training_step
from kdstgcn.training.optim import make_optimizer

SIZES = (228, 716, 2352, 3834, 8600)
DAYS = DataSpec(steps_per_day=288, split=(1, 1, 1), n_his=12, n_pred=9)
HORIZONS = (3, 6, 9)
SCD_STATIONS = 512  # above this many stations SCD compares a sample of them per batch
EXPORT_THREADS = 1  # the threads of the export rule (workflow/rules/deploy.smk)
# the processes of a size, each standing for one job, and the figures each gives
PARTS = {"teacher": ("graph s", "edges", "teacher ms/win", "rollout ms/win"), "student": ("student ms/win",),
         "L_STCD": ("L_STCD ms/win",), "export": ("export s",)}
COLUMNS = ["N", "edges", "graph s", "teacher ms/win", "student ms/win", "L_STCD ms/win", "rollout ms/win",
           "peak MiB", "estimate MiB", "estimate/peak", "export s", "export peak MiB", "export estimate MiB",
           "export estimate/peak", "per station: teacher", "L_STCD", "rollout"]


def timed(fn, *args):
    tic = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - tic, result


def build_graph(n_nodes: int, neighbours: float) -> torch.Tensor:
    """The model's Chebyshev stack of a random geometric graph, as the adjacency and training jobs build it."""
    pairs = graph.distance_pairs_from_coordinates(coordinates(n_nodes, neighbours), graph.kernel_radius_m(SIGMA2,
                                                                                                          EPSILON))
    w = graph.road_adjacency(pairs, SIGMA2, EPSILON, 1000.0)
    graph.check_graph(w, f"random geometric graph of {n_nodes} stations")
    return graph.chebyshev_polynomials(w, KS)


def synthetic_data(n_nodes: int, folder: Path):
    """Three days of synthetic readings through the package's loaders (cleaned, written, normalised)."""
    values, _ = generate(n_nodes, sum(DAYS.split), DAYS.steps_per_day, seed=n_nodes)
    table, report = clean(values, timestamps(values.shape[0], DAYS.steps_per_day, "2024-01-01", False))
    write_table(table, folder / "values.parquet", index=True)
    write_table(report, folder / "fill_report.csv")
    return load_data(folder / "values.parquet", folder / "fill_report.csv", DAYS)


def precision_of(model, setting: str) -> str:
    """The precision a job runs `model` in for `training.precision: setting` on this CPU."""
    return resolve_precision(setting, torch.device("cpu"), model.arch.widest_layer)


def step_ms_per_window(model, teacher, loss, data, batch: int, steps: int, precision: str) -> float:
    """The median of `steps` training steps (after one that warms up and compiles) divided by the batch, in ms,
    with the model and the live teacher in the precision a job gives them for `training.precision: precision`."""
    device = torch.device("cpu")
    step = training_step(model, teacher, loss, make_optimizer(model.parameters(), TrainSettings(epochs=1)), False,
                         device, precision_of(model, precision),
                         "fp32" if teacher is None else precision_of(teacher, precision))
    x, y = data.inputs("train"), data.one_step_targets("train")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    times = []
    for k in range(steps + 1):
        idx = order[(k * batch) % len(x):][:batch]
        seconds, _ = timed(step, x[idx], y[idx])
        times.append(seconds)
    return 1000.0 * statistics.median(times[1:]) / batch


def job_shapes(n_nodes: int, stack: GraphShape, batch: int) -> dict[str, JobShape]:
    """The job each process of a size stands for, as the estimate sees it: training the teacher, the student and
    the L_STCD student (live teacher), exporting the teacher."""
    teacher, student = Architecture(n_nodes, TEACHER), Architecture(n_nodes, STUDENT)
    common = {"days": DAYS, "graph": stack, "batch_size": batch, "horizon_steps": max(HORIZONS)}
    return {"teacher": JobShape("train", teacher, **common), "student": JobShape("train", student, **common),
            "L_STCD": JobShape("train", student, **common, teacher=TeacherShape(teacher),
                               loss_terms=frozenset({"tcd", "scd"}), compiles=True,
                               scd_stations=SCD_STATIONS if n_nodes > SCD_STATIONS else None),
            "export": JobShape("export", teacher, **common | {"eval_batch_size": export_check_windows(n_nodes)})}


def measure(n_nodes: int, part: str, neighbours: float, batch: int, steps: int, threads: int,
            precision: str) -> dict:
    """The figures of one size's `part` in this process (the child's work): teacher (graph build, training steps,
    rollout), student or L_STCD (training steps) or export, and the process's peak memory beside the estimate of
    the job it stands for; a figure whose code fails gives its error instead."""
    set_up_compute(EXPORT_THREADS if part == "export" else threads)
    row: dict = {"N": n_nodes, "errors": {}}

    def attempt(name, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - the row says which figure failed and why, the rest runs
            row["errors"][name] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"
            return None

    built = attempt("graph s", timed, build_graph, n_nodes, neighbours)
    if built is None:
        return row
    seconds, cheb = built
    stack = graph_shape(cheb)
    with tempfile.TemporaryDirectory() as tmp:
        data = attempt("data", synthetic_data, n_nodes, Path(tmp))
        if data is None:
            return row
        torch.manual_seed(0)
        teacher = STGCN(Architecture(n_nodes, TEACHER), cheb)
        student = STGCN(Architecture(n_nodes, STUDENT), cheb)
        if part == "teacher":
            row["graph s"] = seconds
            row["edges"] = stack.nonzeros if stack.nonzeros is not None else int(torch.count_nonzero(cheb))
            row["teacher ms/win"] = attempt("teacher ms/win", step_ms_per_window, teacher, None, build_loss("task"),
                                            data, batch, steps, precision)
            rolled = attempt("rollout ms/win", timed, lambda: evaluate(teacher, data, "val", HORIZONS,
                                                                       precision=precision_of(teacher, precision)))
            row["rollout ms/win"] = None if rolled is None else 1000.0 * rolled[0] / len(data.inputs("val"))
        elif part == "student":
            row["student ms/win"] = attempt("student ms/win", step_ms_per_window, student, None, build_loss("task"),
                                            data, batch, steps, precision)
            # as the job's epoch ends
            attempt("student validation", lambda: evaluate(student, data, "val", HORIZONS,
                                                           precision=precision_of(student, precision)))
        elif part == "L_STCD":
            freeze(teacher, torch.device("cpu"))
            readings = {"scd_stations": SCD_STATIONS} if n_nodes > SCD_STATIONS else None
            row["L_STCD ms/win"] = attempt("L_STCD ms/win", step_ms_per_window, student, teacher,
                                           build_loss("stcd", PEMSD8_STCD, readings=readings), data, batch, steps,
                                           precision)
            attempt("L_STCD validation", lambda: evaluate(student, data, "val", HORIZONS,
                                                          precision=precision_of(student, precision)))
        else:
            # here: the training processes run without the exporter's libraries, as training jobs do
            from kdstgcn.deploy.export import check_export, export_bytes

            exported = attempt("export s", timed, lambda: check_export(
                teacher, export_bytes(teacher), data.inputs("test")[:export_check_windows(n_nodes)], DAYS.n_pred))
            row["export s"] = None if exported is None else exported[0]
    row["peaks"] = {part: (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: kB
                           estimate(job_shapes(n_nodes, stack, batch)[part]).peak_bytes / 2**20)}
    return row


def run_size(n_nodes: int, args) -> dict:
    """`measure` of each part of one size in a fresh process; a process that dies or runs past --timeout says so
    instead of its figures. `peak MiB` and `estimate MiB` are the training process's with the largest peak, the
    export's apart."""
    row = {"N": n_nodes, "errors": {}, "peaks": {}}
    for part in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            command = [sys.executable, __file__, "--child", str(n_nodes), part, str(out), "--batch", str(args.batch),
                       "--steps", str(args.steps), "--threads", str(args.threads), "--neighbours",
                       str(args.neighbours), "--precision", args.precision]
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                row["errors"][part] = f"past --timeout {args.timeout:g} s"
                row |= dict.fromkeys(PARTS[part])
                continue
            if proc.returncode != 0 or not out.exists():
                lines = (proc.stderr or "").strip().splitlines()
                why = f"exit {proc.returncode}" + (" (killed: out of memory?)" if proc.returncode < 0 else "")
                row["errors"][part] = f"{why}: {lines[-1][:160] if lines else 'no output'}"
                row |= dict.fromkeys(PARTS[part])
                continue
            found = json.loads(out.read_text())
            row["errors"] |= found.pop("errors")
            row["peaks"] |= found.pop("peaks")
            row |= found
    training = [peaks for part, peaks in row["peaks"].items() if part != "export"]
    if training:
        row["peak MiB"], row["estimate MiB"] = max(training)
    if "export" in row["peaks"]:
        row["export peak MiB"], row["export estimate MiB"] = row["peaks"]["export"]
    return row


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row with estimate/peak and the per-station cost of its timings relative to the first measured size."""
    firsts = {}
    for row in rows:
        for peak, estimated, ratio in (("peak MiB", "estimate MiB", "estimate/peak"),
                                       ("export peak MiB", "export estimate MiB", "export estimate/peak")):
            if row.get(peak) and row.get(estimated):
                row[ratio] = row[estimated] / row[peak]
        for key, label in (("teacher ms/win", "per station: teacher"), ("L_STCD ms/win", "L_STCD"),
                           ("rollout ms/win", "rollout")):
            if row.get(key):
                first_n, first = firsts.setdefault(key, (row["N"], row[key]))
                row[label] = (row[key] / row["N"]) / (first / first_n)
    return rows


def cell(value) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[c]) if c in row else "" for c in COLUMNS) + " |")
    notes = [f"- N = {row['N']}, {part}: {error}" for row in rows for part, error in row["errors"].items()]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--neighbours", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="training.precision of the training steps and rollouts (auto: bf16 for the models that "
                             "gain from it on a CPU with native bf16; the export stays float32)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one size may take")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="the processes (jobs) to measure at each size; the others' cells stay empty")
    parser.add_argument("--out", type=Path, help="also write the table as CSV here")
    parser.add_argument("--child", nargs=3, metavar=("N", "PART", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n_nodes, part, out = args.child
        Path(out).write_text(json.dumps(measure(int(n_nodes), part, args.neighbours, args.batch, args.steps,
                                                args.threads, args.precision)))
        return
    print(machine(args.threads))
    print(f"random geometric graphs, about {args.neighbours:g} neighbours a station (sigma2 {SIGMA2:g}, epsilon "
          f"{EPSILON:g}); three synthetic days; batch {args.batch}; {args.threads} threads; precision "
          f"{args.precision}; each job in its own process")
    rows = []
    for n_nodes in args.sizes:
        rows.append(run_size(n_nodes, args))
        peaks = ", ".join(f"{part} {peak:.0f} / {estimated:.0f}" for part, (peak, estimated) in rows[-1]["peaks"].items())
        print(f"N = {n_nodes} done (peak / estimate MiB: {peaks}), load average {load_now()}", flush=True)
    rows = with_ratios(rows)
    print(table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "peaks", "errors"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows([row | {"errors": "; ".join(f"{k}: {v}" for k, v in row["errors"].items()),
                                     "peaks": json.dumps(row["peaks"])} for row in rows])
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
