"""Accuracy of bf16 mixed precision against fp32 on PEMS08 flow: the teacher and its L_STCD student, per seed.

    python bench/precision_parity.py --precision fp32 --seed 0     # one run: teacher, then its student
    python bench/precision_parity.py --report                      # the table of every run written so far

One run trains the teacher [1,32,64][64,32,128] for --epochs epochs with the task loss (batch 50, lr 1e-3,
RMSprop), then the student [1,2,4][4,2,8] with L_STCD (PeMSD8's Table 6 weights, paper readings) from that
teacher (a live teacher forward per batch) for --epochs epochs, both with `kdstgcn.training.loop.train` in
`--precision` (training.precision: under bf16 both models and the teacher forward run in bf16 autocast).
Each model keeps its best validation epoch; its validation and test MAE at 15/30/45 minutes come from the
float32 streaming rollout (what evaluation runs). Runs resume from their checkpoints under --out and write
one JSON file each, so the runs of a study can be spread over processes and sessions.

--report prints every model's last training loss and its MAE per precision as mean and spread over the seeds,
and whether bf16 is within the fp32 seed-to-seed spread (max - min over seeds) or within 1 % where that spread
is smaller.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from common import PEMS08_DIR, PEMS08_SPLIT, PEMSD8_STCD, STUDENT, TEACHER, load_now, machine, pems08_flow
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.io import write_json
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher

N_NODES = 170
HORIZONS = (3, 6, 9)
RELATIVE_TOLERANCE = 0.01


def mae_by_horizon(model: STGCN, data, split: str) -> dict[str, float]:
    table, _, _ = evaluate(model, data, split, HORIZONS)
    return {f"{split}_mae_{int(h)}": float(v) for h, v in zip(table["horizon_min"], table["MAE"])}


def run(args) -> None:
    folder = args.out / f"{args.precision}_seed{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data, cheb = pems08_flow(folder, args.data_dir, PEMS08_SPLIT if args.days is None else (args.days, 1, 1))
    results = {}
    teacher = None
    for role, shape, loss in (("teacher", TEACHER, TaskLoss()),
                              ("student_stcd", STUDENT, build_loss("stcd", PEMSD8_STCD, correlation_kernel="auto"))):
        torch.manual_seed(args.seed)
        model = STGCN(Architecture(N_NODES, shape), cheb)
        settings = TrainSettings(epochs=args.epochs, batch_size=50, learning_rate=1e-3, seed=args.seed,
                                 precision=args.precision)
        tic = time.perf_counter()
        model, history = train(model, data, loss, settings, folder / f"{role}.pt",
                               None if teacher is None else LiveTeacher(teacher), torch.device("cpu"))
        results[role] = {"precision": history["precision"].iloc[-1], "epochs": int(history["epoch"].max()),
                         "train_loss_last": float(history["train_loss"].iloc[-1]),
                         "best_epoch": int(history.loc[history["val_mae"].idxmin(), "epoch"]),
                         "train_seconds_per_epoch": float(history["train_seconds"].mean()),
                         **mae_by_horizon(model, data, "val"), **mae_by_horizon(model, data, "test")}
        print(f"{role}: {results[role]} ({time.perf_counter() - tic:.0f} s in this process, load {load_now()})",
              flush=True)
        teacher = model
    write_json({"precision": args.precision, "seed": args.seed, "epochs": args.epochs, "models": results},
               args.out / f"{args.precision}_seed{args.seed}.json")


def last_training_loss(out: Path, run: dict, role: str) -> float:
    """The last epoch's training loss of a run's model, from its JSON or its checkpoint's history."""
    if "train_loss_last" in run["models"][role]:
        return run["models"][role]["train_loss_last"]
    checkpoint = torch.load(out / f"{run['precision']}_seed{run['seed']}" / f"{role}.pt", weights_only=False)
    return float(checkpoint["history"][-1]["train_loss"])


def report(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*_seed*.json"))]
    for run in runs:
        for role in run["models"]:
            run["models"][role]["train_loss_last"] = last_training_loss(out, run, role)
    if not runs:
        raise SystemExit(f"no runs under {out}: run --precision ... --seed ... first")
    print(f"{len(runs)} runs under {out}: " + ", ".join(f"{r['precision']} seed {r['seed']} ({r['epochs']} epochs)"
                                                      for r in runs))
    metrics = ["train_loss_last", *(f"{split}_mae_{h}" for split in ("val", "test") for h in (15, 30, 45))]
    print(f"{'model':13} {'metric':15} {'fp32 mean':>9} {'spread':>7} {'bf16 mean':>9} {'bf16-fp32':>9} "
          f"{'allowed':>8}  within")
    for role in ("teacher", "student_stcd"):
        for metric in metrics:
            values = {p: [r["models"][role][metric] for r in runs if r["precision"] == p and role in r["models"]]
                      for p in ("fp32", "bf16")}
            if not values["fp32"] or not values["bf16"]:
                continue
            fp32, bf16 = statistics.fmean(values["fp32"]), statistics.fmean(values["bf16"])
            spread = max(values["fp32"]) - min(values["fp32"])
            allowed = max(spread, RELATIVE_TOLERANCE * fp32)
            print(f"{role:13} {metric:15} {fp32:9.4f} {spread:7.4f} {bf16:9.4f} {bf16 - fp32:+9.4f} {allowed:8.4f}  "
                  f"{'yes' if abs(bf16 - fp32) <= allowed else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--days", type=int, default=None, help="training days (default: the split's 50; a smoke test)")
    ap.add_argument("--data-dir", type=Path, default=PEMS08_DIR)
    ap.add_argument("--out", type=Path, default=Path("results/bench/precision_parity"))
    ap.add_argument("--report", action="store_true", help="print the table of the runs under --out and stop")
    args = ap.parse_args()
    if args.report:
        report(args.out)
        return
    print(machine(args.threads))
    run(args)


if __name__ == "__main__":
    main()
