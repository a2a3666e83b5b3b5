"""Cost of one STCD distillation step against a task-only student step, on CPU.

    python bench/distill_step.py                # N=228, batch 50, 20 timed steps per variant (~2-3 min)
    python bench/distill_step.py --quick        # 5 timed steps, no profile (~1 min)

Variants, each a full optimisation step of the student [1,2,4][4,2,8] (forward, loss, backward, RMSprop step)
with the frozen teacher [1,32,64][64,32,128] run forward inside the step (in inference mode, as in training):
  task        - loss "rd_l2" (beta 0.045): teacher forward without features + response/task loss. The baseline.
  stcd        - loss "stcd" (alpha1 0.17, alpha2 0.047, alpha3 0.313) with correlation_kernel "compiled":
                teacher and student forward with features, TCD over 4 temporal layers, SCD over 2 graph-conv
                layers, distance matrices by torch.compile'd loops. The target is stcd <= 1.5 x task.
  stcd_cdist  - the same loss with correlation_kernel "cdist" (torch.cdist and its backward).
  task_cached - "task" reading the teacher's predictions computed once instead of its forward (what the pipeline
                runs for a response loss: kdstgcn.training.teacher_cache.cached_teacher_predictions).
  stcd_store  - "stcd" reading the teacher's prediction and features from a float16 store instead of its forward
                (distillation.teacher_features: float16), the store read in every step; the pipeline-to-pipeline
                comparison is stcd_store / task_cached.
The two stcd variants are first checked against each other (loss value and student gradients). Variants
are interleaved step by step (so machine load hits them alike); medians are reported. Peak memory of each
step is measured in a fresh spawned process (bench/memory.py, memory_profile). When the stcd ratio misses the
target, one stcd step is profiled with torch.profiler.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import STUDENT, TEACHER, graph, load_now, machine
from memory import format_bytes, memory_profile
from kdstgcn.losses.base import Outputs, forward, loss_step
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.correlation import spatial_groups, temporal_groups
from kdstgcn.losses.kernels import CompiledKernel
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.training.teacher_cache import TeacherFeatureStore, predict

STCD = {"alpha1": 0.17, "alpha2": 0.047, "alpha3": 0.313}
RD = {"beta": 0.045}
TARGET_RATIO = 1.5
TARGET_MEMORY = 1.5 * 2 ** 30


def make_loss(variant: str):
    if variant in ("task", "task_cached"):
        return build_loss("rd_l2", RD)
    if variant in ("stcd", "stcd_store"):
        return build_loss("stcd", STCD, correlation_kernel="compiled")
    if variant == "stcd_cdist":
        return build_loss("stcd", STCD, correlation_kernel="cdist")
    raise ValueError(variant)


def stored_teacher(variant: str, teacher, x, folder: Path):
    """What a step of `variant` reads instead of running the teacher: None (the forward runs in the step), or a
    function giving the teacher's outputs for the batch (predictions computed once, or a float16 feature store
    read per call)."""
    if variant == "task_cached":
        predictions = predict(teacher, x, x.shape[0], torch.device("cpu"))
        return lambda: Outputs(predictions)
    if variant == "stcd_store":
        store = TeacherFeatureStore.open(teacher, x, folder, "float16", make_loss(variant).feature_groups,
                                         x.shape[0], torch.device("cpu"))
        windows = torch.arange(x.shape[0])
        return lambda: store.batch(windows)
    return None


def check_kernels(student, teacher, x, y) -> str:
    """Loss value and student gradients of one stcd step with the compiled kernel against cdist."""
    values, grads = [], []
    for variant in ("stcd", "stcd_cdist"):
        student.zero_grad(set_to_none=True)
        value = loss_step(student, teacher, make_loss(variant), x, y)
        value.backward()
        values.append(float(value.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters()]))
    grad_gap = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
    return (f"compiled vs cdist: loss {values[0]:.8f} vs {values[1]:.8f} (rel. diff "
            f"{abs(values[0] - values[1]) / abs(values[1]):.1e}), student gradients max rel. diff {grad_gap:.1e}")


def build(nodes: int, batch: int, source: str):
    cheb, desc = graph(nodes, source)
    torch.manual_seed(0)
    teacher = STGCN(Architecture(nodes, TEACHER), cheb).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(1)
    student = STGCN(Architecture(nodes, STUDENT), cheb)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 12, nodes, generator=gen)
    y = torch.randn(batch, nodes, generator=gen)
    return teacher, student, x, y, desc


def step(student, teacher, loss, optimizer, x, y, stored=None) -> float:
    value = loss_step(student, teacher, loss, x, y, None if stored is None else stored())
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    optimizer.step()
    return float(value.detach())


def memory_job(variant: str, nodes: int, batch: int, source: str, steps: int) -> None:
    """Runs in a fresh process: build models and data, then `steps` steps (the peak covers all of it)."""
    teacher, student, x, y, _ = build(nodes, batch, source)
    optimizer = torch.optim.RMSprop(student.parameters(), lr=1e-3)
    loss = make_loss(variant)
    with tempfile.TemporaryDirectory() as folder:
        stored = stored_teacher(variant, teacher, x, Path(folder))
        for _ in range(steps):
            step(student, teacher, loss, optimizer, x, y, stored)


def naive_estimate(teacher, student, x) -> list[tuple[str, int, int]]:
    """Bytes of the B x T x N x N x C (spatial) / B x N x T x T x C (temporal) float32 broadcast per layer,
    and of the B x T x N x N matrix that cdist materialises instead."""
    rows = []
    with torch.no_grad():
        for who, model in (("teacher", teacher), ("student", student)):
            feats = forward(model, x, True).features
            for kind in ("spatial", "temporal"):
                for k, f in enumerate(feats[kind]):
                    b, c, t, n = f.shape
                    pairs = (t * n * n) if kind == "spatial" else (n * t * t)
                    rows.append((f"{who} {kind}[{k}] C={c} T={t}", 4 * b * pairs * c, 4 * b * pairs))
    return rows


def profile_step(student, teacher, loss, optimizer, x, y, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(student, teacher, loss, optimizer, x, y)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{'op':44} {'self ms':>9} {'share':>7} {'calls':>6}")
    for e in events[:rows]:
        print(f"{e.key[:44]:44} {e.self_cpu_time_total / 1e3:>9.1f} {100 * e.self_cpu_time_total / total:>6.1f}% "
              f"{e.count:>6}")
    top = events[0]
    print(f"dominant op: {top.key} ({100 * top.self_cpu_time_total / total:.0f}% of self CPU time, "
          f"total self CPU {total / 1e3:.0f} ms)")


def teacher_matrices_seconds(teacher, x, repeats: int = 3) -> float:
    """Time of the teacher's TCD and SCD matrices alone, by the compiled kernel's `distances` (forward, no grad):
    a floor for the stcd step's extra cost over the task step."""
    kernel = CompiledKernel()
    with torch.no_grad():
        feats = forward(teacher, x, True).features
        groups = [temporal_groups(f) for f in feats["temporal"]] + [spatial_groups(f) for f in feats["spatial"]]
        best = float("inf")
        for _ in range(repeats + 1):
            tic = time.perf_counter()
            for g in groups:
                kernel.distances(g)
            best = min(best, time.perf_counter() - tic)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=228)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variants", default="task,stcd,stcd_cdist,task_cached,stcd_store")
    ap.add_argument("--graph", choices=("auto", "pemsd7", "random"), default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-steps", type=int, default=2, help="steps in the memory measurement (0: skip)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 timed steps, 1 warm-up, no profile")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup, args.no_profile = 5, 1, True
    variants = [v.strip() for v in args.variants.split(",")]

    print(machine(args.threads))
    teacher, student0, x, y, desc = build(args.nodes, args.batch, args.graph)
    print(f"graph: N={args.nodes}, {desc}; batch {args.batch}; teacher {TEACHER}, student {STUDENT}")

    if {"stcd", "stcd_cdist"} <= set(variants):
        print(check_kernels(copy.deepcopy(student0), teacher, x, y))

    students = {v: copy.deepcopy(student0) for v in variants}
    optims = {v: torch.optim.RMSprop(s.parameters(), lr=1e-3) for v, s in students.items()}
    losses = {v: make_loss(v) for v in variants}
    times = {v: [] for v in variants}
    cpu_times = {v: [] for v in variants}
    store_folder = tempfile.TemporaryDirectory()
    stored = {v: stored_teacher(v, teacher, x, Path(store_folder.name)) for v in variants}
    for i in range(args.warmup + args.steps):
        for v in variants:
            tic, cpu_tic = time.perf_counter(), time.process_time()
            step(students[v], teacher, losses[v], optims[v], x, y, stored[v])
            if i >= args.warmup:
                times[v].append(time.perf_counter() - tic)
                cpu_times[v].append(time.process_time() - cpu_tic)
    store_folder.cleanup()
    med = {v: statistics.median(t) for v, t in times.items()}
    cpu_med = {v: statistics.median(t) for v, t in cpu_times.items()}
    print(f"\nstep time, median of {args.steps} interleaved steps after {args.warmup} warm-up "
          f"(min / max in brackets; CPU: the process's CPU time, all threads, which other processes on the "
          f"machine inflate far less than wall time):")
    for v in variants:
        ratio = f"   {med[v] / med['task']:.2f} x task" if "task" in med else ""
        cpu_ratio = f" ({cpu_med[v] / cpu_med['task']:.2f} x)" if "task" in med else ""
        print(f"  {v:11} {1e3 * med[v]:8.1f} ms  [{1e3 * min(times[v]):.1f} / {1e3 * max(times[v]):.1f}]{ratio}"
              f"   CPU {1e3 * cpu_med[v]:8.1f} ms{cpu_ratio}")
    for v, base in (("stcd", "task"), ("stcd_cdist", "task"), ("stcd_store", "task_cached")):
        if v in med and base in med:
            r = med[v] / med[base]
            print(f"  ratio {v}/{base} = {r:.2f} (target <= {TARGET_RATIO}): {'met' if r <= TARGET_RATIO else 'MISSED'}")
    t_mat = teacher_matrices_seconds(teacher, x)
    print(f"  teacher TCD+SCD matrices alone (compiled kernel, forward, no grad): {1e3 * t_mat:.1f} ms"
          + (f" = {t_mat / med['task']:.2f} x the task step" if "task" in med else ""))

    if args.memory_steps > 0:
        print(f"\npeak memory ({args.memory_steps} steps incl. model build, fresh spawned process; "
              "peak RSS includes ~0.3 GiB of Python + torch):")
        for v in variants:
            rep = memory_profile(memory_job, v, args.nodes, args.batch, args.graph, args.memory_steps)
            verdict = ""
            if v.startswith("stcd"):
                verdict = f"  target <= 1.5 GiB: {'met' if rep['peak_bytes'] <= TARGET_MEMORY else 'MISSED'}"
            print(f"  {v:11} peak RSS {format_bytes(rep['peak_bytes']):>10}  "
                  f"(above the fresh interpreter: {format_bytes(rep['increase_bytes'])}){verdict}")
        print(f"  method: {rep['method']}")

    print("\nnaive broadcast |F_i - F_j| before the channel mean, float32, per layer (vs the cdist matrix):")
    rows = naive_estimate(teacher, student0, x)
    for name, naive, matrix in rows:
        print(f"  {name:32} {format_bytes(naive):>11}   (cdist matrix {format_bytes(matrix)})")
    print(f"  largest single layer {format_bytes(max(r[1] for r in rows))}; all layers "
          f"{format_bytes(sum(r[1] for r in rows))} (cdist matrices, all layers: "
          f"{format_bytes(sum(r[2] for r in rows))})")

    if not args.no_profile and "stcd" in med and "task" in med and med["stcd"] / med["task"] > TARGET_RATIO:
        print("\nprofile of one stcd step (compiled kernel), top ops by self CPU time:")
        profile_step(students["stcd"], teacher, losses["stcd"], optims["stcd"], x, y)
    print(f"\nload average at the end: {load_now()}")


if __name__ == "__main__":
    main()
