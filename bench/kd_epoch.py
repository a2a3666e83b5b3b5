"""Cost of a response-distillation student epoch against a no-KD epoch, on the real PEMS08 flow data (N=170).

    python bench/kd_epoch.py --threads 2        # ~3-5 min on 2 idle cores
    python bench/kd_epoch.py --days 10          # the first 10 training days only (a quicker look)

Each variant trains the student [1,2,4][4,2,8] for one epoch with `kdstgcn.training.loop.train` (batch 50, RMSprop,
validation included) on the pemsd8_flow split (50/6/6 days, read, cleaned and windowed by the package's own
loaders) from the same initial weights:
  no_kd         - the task loss: the baseline.
  rd_l2_forward - rd_l2 (beta 0.045) with a teacher [1,32,64][64,32,128] forward in every batch (before).
  rd_l2_cached  - rd_l2 with the teacher's training-split predictions computed once
                  (`kdstgcn.training.teacher_cache.cached_teacher_predictions`) and read per batch.
  ord_cached    - ord (alpha1 0.17), likewise cached.
The teacher is freshly initialised (its weights do not change the cost). The one-off cost of building the
cache (one teacher pass over the training windows, then one file write) is printed on its own. The target
is a KD epoch <= 1.2 x the no-KD epoch (training loop alone, `train_seconds`).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import PEMS08_DIR, PEMS08_SPLIT, STUDENT, TEACHER, load_now, machine, pems08_flow
from kdstgcn.losses.build import build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.training.teacher_cache import cached_teacher_predictions
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import CachedPredictions, LiveTeacher

N_NODES = 170
TARGET_RATIO = 1.2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=PEMS08_DIR,
                    help="folder with pems08_288_62_170.mat and distance.csv (default: $KDSTGCN_SHARED/data/pems08, "
                         "else ../shared/data/pems08 beside the repository)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--days", type=int, default=None, help="training days (default: the split's 50)")
    args = ap.parse_args()

    print(machine(args.threads))
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data, cheb = pems08_flow(folder, args.data_dir, PEMS08_SPLIT if args.days is None else (args.days, 1, 1))
        n_train = data.inputs("train").shape[0]
        print(f"PEMS08 flow, N={N_NODES}, {n_train} training windows (batch 50), student {STUDENT}, "
              f"teacher {TEACHER} (fresh)")
        torch.manual_seed(0)
        teacher = STGCN(Architecture(N_NODES, TEACHER), cheb).eval()
        torch.manual_seed(1)
        initial = STGCN(Architecture(N_NODES, STUDENT), cheb).state_dict()
        settings = TrainSettings(epochs=1, batch_size=50, eval_batch_size=1140)

        tic = time.perf_counter()
        cached = cached_teacher_predictions(teacher, data.inputs("train"), folder / "cache", 50, device)
        build_seconds = time.perf_counter() - tic
        print(f"teacher predictions cache built once: {build_seconds:.1f} s "
              f"({cached.numel() * 4 / 2 ** 20:.1f} MiB on disk)")

        variants = {"no_kd": ("task", None, None), "rd_l2_forward": ("rd_l2", {"beta": 0.045}, None),
                    "rd_l2_cached": ("rd_l2", {"beta": 0.045}, cached), "ord_cached": ("ord", {"alpha1": 0.17}, cached)}
        rows = {}
        for name, (loss_name, params, predictions) in variants.items():
            student = STGCN(Architecture(N_NODES, STUDENT), cheb)
            student.load_state_dict(initial)
            cpu_tic = time.process_time()
            source = (None if loss_name == "task" else LiveTeacher(teacher) if predictions is None
                      else CachedPredictions(teacher, predictions))
            _, history = train(student, data, build_loss(loss_name, params), settings, folder / f"{name}.pt",
                               source, device)
            rows[name] = history.iloc[0].to_dict() | {"cpu_seconds": time.process_time() - cpu_tic}
            print(f"  {name:14} training {rows[name]['train_seconds']:7.1f} s   epoch incl. validation "
                  f"{rows[name]['epoch_seconds']:7.1f} s   CPU time of the epoch {rows[name]['cpu_seconds']:7.1f} s"
                  f"   (load now {load_now()})", flush=True)

    base = rows["no_kd"]["train_seconds"]
    print("\nKD epoch / no-KD epoch (training loop wall time; CPU time of the whole epoch in brackets, which "
          "other processes on the machine inflate far less):")
    for name in ("rd_l2_forward", "rd_l2_cached", "ord_cached"):
        ratio = rows[name]["train_seconds"] / base
        cpu_ratio = rows[name]["cpu_seconds"] / rows["no_kd"]["cpu_seconds"]
        verdict = "" if name.endswith("forward") else f" (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})"
        print(f"  {name:14} {ratio:5.2f} x  [CPU {cpu_ratio:5.2f} x]{verdict}")
    print(f"  cache build once = {build_seconds / base:.2f} no-KD epochs")
    print(f"\nload average at the end: {load_now()}")


if __name__ == "__main__":
    main()
