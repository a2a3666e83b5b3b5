"""Seconds per training epoch of the real training loop (kdstgcn.training.loop.train): eager against compiled,
fp32 against bf16 (training.precision), and the one-step loss against rollout training (training.rollout).

    python bench/train_epoch.py --device cuda            # N=170, 13,400 windows (PEMS08-flow's training split)
    python bench/train_epoch.py --quick                  # CPU smoke test: N=16, 400 windows, eager only
    python bench/train_epoch.py --threads 2 --models teacher,student --precisions fp32 --compile off --rollouts 1,9

Each variant trains its model for --epochs epochs on synthetic windows (the numbers do not change the cost) at
batch 50 with RMSprop, and validates on --val windows after each epoch, as a job does: teacher, base and student
with the task loss; `stcd`, the student with L_STCD (PeMSD8's Table 6 weights) from a live teacher forward per
batch (distillation.teacher_features: live). A precision is the config value: under bf16 every model runs in
bf16, under auto each model (the live teacher apart from the student) in what kdstgcn.runtime.precision picks.
A rollout of k > 1 (`--rollouts`) trains on the loss over k steps of the model's own predictions against the
truth, fed back with their gradients, at every epoch (training.rollout with steps [k, k]); 1 is the one-step loss.
Printed: the training part of each epoch (history column train_seconds: the batches, no validation), the first
epoch apart (it compiles), the median of the others, windows/s, the bf16 / fp32 speed-up of each model, and
each rollout's epoch against the one-step epoch.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch

from common import PEMSD8_STCD, SHAPES, graph, load_now, machine
from kdstgcn.data.samples import PreparedData, Scaler
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.model.notation import format_blocks
from kdstgcn.config.runspec import RolloutTraining, TrainSettings
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import write_json
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher


def windows(n: int, nodes: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 21, nodes, generator=torch.Generator().manual_seed(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--nodes", type=int, default=170)
    ap.add_argument("--windows", type=int, default=13400, help="training windows per epoch")
    ap.add_argument("--val", type=int, default=1140, help="validation windows (9-step rollout per epoch)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--models", default="teacher,student,stcd", help="comma list of teacher, base, student, stcd")
    ap.add_argument("--precisions", default="fp32,bf16,auto", help="comma list of training.precision values")
    ap.add_argument("--compile", default="off,on", help="comma list of training.compile settings to compare")
    ap.add_argument("--rollouts", default="1", help="comma list of rollout lengths k to train on (1: one step)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="N=16, 400 windows, 2 epochs, eager only")
    ap.add_argument("--json", default=None, help="also write the table's figures (seconds) to this file")
    args = ap.parse_args()
    rollouts = [int(k) for k in args.rollouts.split(",")]
    if args.quick:
        args.nodes, args.windows, args.val, args.epochs, args.compile = 16, 400, 100, 2, "off"

    print(machine(args.threads))
    device = pick_device(args.device)
    print(f"device {device}; N={args.nodes}, {args.windows} training windows, batch {args.batch}, "
          f"{args.epochs} epochs")
    cheb, _ = graph(args.nodes, "random")
    data = PreparedData({"train": windows(args.windows, args.nodes, 1), "val": windows(args.val, args.nodes, 2),
                         "test": windows(1, args.nodes, 3)}, Scaler(0.0, 1.0),
                        torch.ones(args.nodes, dtype=torch.bool), 12, 9)
    print(f"{'model':<8} {'blocks':<24} {'compile':>7} {'precision':>9} {'ran in':>6} {'k':>2} {'epoch 1 s':>10} "
          f"{'epoch s':>9} {'windows/s':>11}")
    rows = []
    for name in args.models.split(","):
        shape = SHAPES["student" if name == "stcd" else name]
        for setting in args.compile.split(","):
            for precision, steps in itertools.product(args.precisions.split(","), rollouts):
                torch.manual_seed(0)
                model = STGCN(Architecture(args.nodes, shape), cheb)
                loss, teacher = TaskLoss(), None
                if name == "stcd":
                    loss = build_loss("stcd", PEMSD8_STCD, correlation_kernel="auto")
                    teacher = LiveTeacher(STGCN(Architecture(args.nodes, SHAPES["teacher"]), cheb))
                settings = TrainSettings(epochs=args.epochs, batch_size=args.batch, eval_batch_size=args.val,
                                         compile=setting, precision=precision,
                                         rollout=RolloutTraining(steps, steps, 1) if steps > 1 else None)
                with tempfile.TemporaryDirectory() as folder:
                    _, history = train(model, data, loss, settings, Path(folder) / "checkpoint.pt", teacher,
                                       device=device)
                seconds = history["train_seconds"].tolist()
                steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
                ran = history["precision"].iloc[-1]
                print(f"{name:<8} {format_blocks(shape):<24} {setting:>7} {precision:>9} {ran:>6} {steps:>2} "
                      f"{seconds[0]:>10.3f} {steady:>9.3f} {args.windows / steady:>11.0f}", flush=True)
                rows.append({"model": name, "compile": setting, "precision": precision, "ran_in": ran,
                             "rollout_steps": steps, "first_epoch_s": seconds[0], "epoch_s": steady})
    for name in dict.fromkeys(r["model"] for r in rows):
        for setting in args.compile.split(","):
            epoch = {r["precision"]: r["epoch_s"] for r in rows
                     if r["model"] == name and r["compile"] == setting and r["rollout_steps"] == rollouts[0]}
            if "fp32" in epoch and len(epoch) > 1:
                print(f"{name} (compile {setting}): " + ", ".join(
                    f"{p} {epoch['fp32'] / s:.2f}x fp32's speed" for p, s in epoch.items() if p != "fp32"))
            for precision in args.precisions.split(","):
                epoch = {r["rollout_steps"]: r["epoch_s"] for r in rows if r["model"] == name
                         and r["compile"] == setting and r["precision"] == precision}
                if 1 in epoch and len(epoch) > 1:
                    print(f"{name} (compile {setting}, {precision}): " + ", ".join(
                        f"rollout of {k} steps {s / epoch[1]:.2f}x the one-step epoch"
                        for k, s in epoch.items() if k != 1))
    if args.json:
        write_json({"device": str(device), "nodes": args.nodes, "windows": args.windows, "batch": args.batch,
                    "epochs": args.epochs, "runs": rows}, args.json)
    print(f"load average after: {load_now()}")


if __name__ == "__main__":
    main()
