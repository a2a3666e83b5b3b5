"""Training and inference throughput of the teacher and the student STGCN on CPU, plus parameters and FLOPs.

    python bench/throughput.py                  # N=228, train batch 50, rollout batch 1140 (~2-3 min)
    python bench/throughput.py --quick          # smoke test: 5 steps, rollout of 285 windows (~1 min)

Training: windows/s of full optimisation steps (forward, task loss, backward, RMSprop step) at batch 50.
Inference: windows/s of the full 9-step rollout (kdstgcn.evaluate.rollout) of one batch of 1140 windows.
FLOPs: torch FlopCounterMode of one forward pass of the 1140-window batch (kdstgcn.cost.count_flops).
All models are measured in one run, interleaved step by step, so machine load hits them alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import SHAPES, graph, load_now, machine
from kdstgcn.cost import count_flops, test_batch, time_rollout
from kdstgcn.model import STGCN, Architecture, count_parameters, format_blocks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=228)
    ap.add_argument("--models", default="teacher,student", help="comma list of teacher, base, student")
    ap.add_argument("--train-batch", type=int, default=50)
    ap.add_argument("--train-steps", type=int, default=15, help="timed training steps per model")
    ap.add_argument("--infer-batch", type=int, default=1140)
    ap.add_argument("--infer-runs", type=int, default=1,
                    help="timed rollouts per model (the teacher's takes ~1-2 min on 2 cores)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per model")
    ap.add_argument("--warmup-batch", type=int, default=50, help="windows of the untimed warm-up rollout")
    ap.add_argument("--steps", type=int, default=9, help="rollout steps")
    ap.add_argument("--graph", choices=("auto", "pemsd7", "random"), default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="small run: 5 train steps, 1 rollout of 285 windows")
    args = ap.parse_args()
    if args.quick:
        args.train_steps, args.infer_runs, args.infer_batch, args.warmup = 5, 1, 285, 1

    print(machine(args.threads))
    cheb, source = graph(args.nodes, args.graph)
    print(f"graph: N={args.nodes}, {source}")
    names = [m.strip() for m in args.models.split(",")]
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = STGCN(Architecture(args.nodes, SHAPES[name]), cheb)

    rows = {name: {"blocks": format_blocks(SHAPES[name]), "params": count_parameters(m)}
            for name, m in models.items()}
    x_infer = test_batch(args.nodes, batch=args.infer_batch)
    for name, m in models.items():
        rows[name]["flops"] = count_flops(m, x_infer)

    # training: interleave the models step by step
    gen = torch.Generator().manual_seed(1)
    x_train = torch.randn(args.train_batch, 12, args.nodes, generator=gen)
    y_train = torch.randn(args.train_batch, args.nodes, generator=gen)
    optims = {name: torch.optim.RMSprop(m.parameters(), lr=1e-3) for name, m in models.items()}
    times = {name: [] for name in models}
    for step in range(args.warmup + args.train_steps):
        for name, m in models.items():
            m.train()
            tic = time.perf_counter()
            loss = F.mse_loss(m(x_train), y_train)
            optims[name].zero_grad(set_to_none=True)
            loss.backward()
            optims[name].step()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - tic)
    for name in models:
        rows[name]["train_step_s"] = statistics.median(times[name])
        rows[name]["train_wps"] = args.train_batch / rows[name]["train_step_s"]

    # inference: the full rollout of one batch, models alternated run by run
    for name in models:  # warm-up on a small batch (a 1140-window teacher rollout takes minutes on CPU)
        time_rollout(models[name], x_infer[:args.warmup_batch], steps=args.steps, runs=1, warmup=0)
    roll = {name: [] for name in models}
    for _ in range(args.infer_runs):
        for name, m in models.items():
            roll[name].append(time_rollout(m, x_infer, steps=args.steps, runs=1, warmup=0)["mean_s"])
    for name in models:
        rows[name]["rollout_s"] = statistics.median(roll[name])
        rows[name]["infer_wps"] = args.infer_batch / rows[name]["rollout_s"]

    print(f"\ntraining: batch {args.train_batch}, median of {args.train_steps} steps (task loss, RMSprop) | "
          f"inference: {args.steps}-step rollout of one batch of {args.infer_batch}, median of "
          f"{args.infer_runs} runs | FLOPs: one forward of the {args.infer_batch}-window batch")
    head = (f"{'model':8} {'blocks':22} {'params':>9} {'GFLOP/fwd':>10} {'MFLOP/win':>10} "
            f"{'train ms/step':>14} {'train win/s':>12} {'rollout s':>10} {'infer win/s':>12}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:8} {r['blocks']:22} {r['params']:>9,} {r['flops'] / 1e9:>10.2f} "
              f"{r['flops'] / args.infer_batch / 1e6:>10.2f} {1e3 * r['train_step_s']:>14.1f} "
              f"{r['train_wps']:>12.0f} {r['rollout_s']:>10.3f} {r['infer_wps']:>12.0f}")
    if "teacher" in rows and "student" in rows:
        s, t = rows["student"], rows["teacher"]
        print(f"\nstudent / teacher: params {s['params'] / t['params']:.4f} ({t['params'] / s['params']:.1f}x fewer), "
              f"FLOPs {s['flops'] / t['flops']:.4f} ({t['flops'] / s['flops']:.1f}x fewer), "
              f"training throughput {s['train_wps'] / t['train_wps']:.1f}x, "
              f"inference throughput {s['infer_wps'] / t['infer_wps']:.1f}x")
    print(f"load average at the end: {load_now()}")


if __name__ == "__main__":
    main()
