"""Seconds per training epoch of the real training loop (kdstgcn.training.loop.train), eager against compiled.

    python bench/train_epoch.py --device cuda            # N=170, 13,400 windows (PEMS08-flow's training split)
    python bench/train_epoch.py --quick                  # CPU smoke test: N=16, 400 windows, eager only

Each variant trains teacher and student for --epochs epochs on synthetic windows (the numbers do not change
the cost) with the task loss at batch 50 and RMSprop, and validates on --val windows after each epoch, as a
job does. Printed: the training part of each epoch (history column train_seconds: the batches, no
validation), the first epoch apart (it compiles), the median of the others, and windows/s.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from common import SHAPES, graph, load_now, machine
from kdstgcn.data.samples import PreparedData, Scaler
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.model.notation import format_blocks
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import write_json
from kdstgcn.training.loop import train


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
    ap.add_argument("--models", default="teacher,student", help="comma list of teacher, base, student")
    ap.add_argument("--compile", default="off,on", help="comma list of training.compile settings to compare")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="N=16, 400 windows, 2 epochs, eager only")
    ap.add_argument("--json", default=None, help="also write the table's figures (seconds) to this file")
    args = ap.parse_args()
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
    print(f"{'model':<8} {'blocks':<24} {'compile':>7} {'epoch 1 s':>10} {'epoch s':>9} {'windows/s':>11}")
    rows = []
    for name in args.models.split(","):
        for setting in args.compile.split(","):
            torch.manual_seed(0)
            model = STGCN(Architecture(args.nodes, SHAPES[name]), cheb)
            settings = TrainSettings(epochs=args.epochs, batch_size=args.batch, eval_batch_size=args.val,
                                     compile=setting)
            with tempfile.TemporaryDirectory() as folder:
                _, history = train(model, data, TaskLoss(), settings, Path(folder) / "checkpoint.pt",
                                   device=device)
            seconds = history["train_seconds"].tolist()
            steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            print(f"{name:<8} {format_blocks(SHAPES[name]):<24} {setting:>7} {seconds[0]:>10.3f} {steady:>9.3f} "
                  f"{args.windows / steady:>11.0f}", flush=True)
            rows.append({"model": name, "compile": setting, "first_epoch_s": seconds[0], "epoch_s": steady})
    if args.json:
        write_json({"device": str(device), "nodes": args.nodes, "windows": args.windows, "batch": args.batch,
                    "epochs": args.epochs, "runs": rows}, args.json)
    print(f"load average after: {load_now()}")


if __name__ == "__main__":
    main()
