"""Fine-tuning after pruning: an epoch of the 97 %-pruned teacher, compact against masked, beside a teacher epoch.

    python bench/prune_finetune.py --threads 2            # N=170 (PEMS08), 1/10 of an epoch each (~5 min)
    python bench/prune_finetune.py --threads 2 --quick    # 1/40 of an epoch (~1-2 min)

Each variant is one `kdstgcn.training.loop.train` epoch (training steps, validation rollout, checkpoint), the code path
of the pipeline, on random windows (costs do not depend on the values). The teacher [1,32,64][64,32,128] is
pruned by 97 % of its parameters with `select_masks` (per-layer ranking, random importance, step 0.1), then:

  teacher            the teacher's own epoch: task loss, batch 50 (training.batch_size)
  masked_stcd        fine-tuning under the mask (the earlier way): full width, L_STCD with the teacher, batch 25
  compact_stcd       fine-tuning the compact model (now): L_STCD with the teacher forward in every step, batch 25
  compact_stcd_store the compact model with L_STCD reading the teacher's float16 feature store (what the pipeline
                     runs with distillation.teacher_features: float16), batch 25; the store is built once per
                     teacher, shared by its students and pruned models, and its build time is printed apart
  compact_task       the compact model with pruning.finetune_loss: task (no teacher), batch 25

Batch 25 and the L_STCD weights are Table 9's PeMSD8 97 % row; `--kernel` is its correlation kernel (the
pipeline's default `auto`; the compiling happens in an untimed warm-up step). `--fraction` scales both splits of
PEMS08 flow (13,400 training and 1,608 validation windows); the figures are scaled back to a whole epoch (linear
in windows).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import TEACHER, graph, load_now, machine
from kdstgcn.data.samples import PreparedData, Scaler
from kdstgcn.losses.base import loss_step
from kdstgcn.losses.build import build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.persist import count_parameters
from kdstgcn.model.stgcn import STGCN
from kdstgcn.model.notation import format_blocks
from kdstgcn.training.teacher_cache import TeacherFeatureStore
from kdstgcn.pruning.prune import apply_masks, compact, current_masks, removed_share, select_masks
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher, StoredFeatures

PEMS08_WINDOWS = {"train": 13_400, "val": 1_608}
STCD_97 = {"alpha1": 0.746, "alpha2": 0.445, "alpha3": 0.02}


def random_data(n_nodes: int, fraction: float) -> PreparedData:
    """Random windows, `fraction` of each split; whole batches of 50 for training (no odd last batch, which
    would compile the correlation kernel once more inside the timing)."""
    generator = torch.Generator().manual_seed(0)
    counts = {"train": max(50, round(PEMS08_WINDOWS["train"] * fraction / 50) * 50),
              "val": max(1, round(PEMS08_WINDOWS["val"] * fraction))}
    windows = {split: torch.randn(count, 21, n_nodes, generator=generator) for split, count in counts.items()}
    return PreparedData(windows, Scaler(0.0, 1.0), torch.ones(n_nodes, dtype=torch.bool), 12, 9)


def pruned_teacher(teacher: STGCN, ratio: float) -> STGCN:
    """A copy of the teacher pruned by `ratio` of its parameters in per-layer steps of random importance."""
    model = STGCN(teacher.arch, teacher.cheb)
    model.load_state_dict(teacher.state_dict())
    generator = torch.Generator().manual_seed(1)
    masks = current_masks(model)
    while removed_share(model, masks) < ratio:
        importance = {name: torch.rand(layer.width, generator=generator)
                      for name, layer in model.prunable_layers().items()}
        masks = select_masks(model, importance, masks, ratio, 0.1)
    apply_masks(model, masks)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=170)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of a PEMS08-flow epoch timed per variant")
    ap.add_argument("--ratio", type=float, default=0.97)
    ap.add_argument("--kernel", choices=("auto", "compiled", "cdist"), default="auto",
                    help="distillation.correlation_kernel of L_STCD")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="1/40 of an epoch per variant")
    args = ap.parse_args()
    if args.quick:
        args.fraction = 0.025

    print(machine(args.threads))
    cheb, source = graph(args.nodes, "random")
    print(f"graph: N={args.nodes}, {source}; {args.fraction:g} of an epoch of "
          f"{PEMS08_WINDOWS['train']} training and {PEMS08_WINDOWS['val']} validation windows per variant")
    torch.manual_seed(0)
    teacher = STGCN(Architecture(args.nodes, TEACHER), cheb)
    masked = pruned_teacher(teacher, args.ratio)
    small = compact(masked)
    widths = format_blocks([[len(small.arch.kept[f"block{b}.{k}"]) for k in ("temporal1", "graph", "temporal2")]
                            for b in range(2)])
    print(f"teacher {count_parameters(teacher)} parameters; pruned by {removed_share(masked):.2%}: compact "
          f"{count_parameters(small)} parameters, widths {widths}")
    data = random_data(args.nodes, args.fraction)
    stcd = build_loss("stcd", STCD_97, correlation_kernel=args.kernel)
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        tic = time.perf_counter()
        store = TeacherFeatureStore.open(teacher.eval(), data.inputs("train"), Path(folder) / "store", "float16",
                                         stcd.feature_groups, 50, torch.device("cpu"))
        build_s = (time.perf_counter() - tic) * PEMS08_WINDOWS["train"] / data.windows["train"].shape[0]
        print(f"float16 teacher store: built once per teacher in {build_s:.1f} s (scaled to the whole training "
              f"split), not counted below", flush=True)
        variants = {  # model, loss, batch, teacher, teacher store
            "teacher": (teacher, build_loss("task"), 50, None, None),
            "masked_stcd": (masked, stcd, 25, teacher, None),
            "compact_stcd": (small, stcd, 25, teacher, None),
            "compact_stcd_store": (small, stcd, 25, teacher, store),
            "compact_task": (small, build_loss("task"), 25, None, None),
        }
        for name, (model, loss, batch, source_model, teacher_store) in variants.items():
            start = STGCN(model.arch, model.cheb)
            start.load_state_dict(model.state_dict())
            start.set_masks(current_masks(model) if model is masked else None)
            settings = TrainSettings(epochs=1, batch_size=batch, seed=0, eval_batch_size=1140)
            x, y = data.inputs("train")[:batch], data.one_step_targets("train")[:batch]
            loss_step(start, source_model, loss, x, y).backward()  # warm-up: compiles the correlation kernel
            start.zero_grad(set_to_none=True)
            source = (None if source_model is None else LiveTeacher(source_model) if teacher_store is None
                      else StoredFeatures(source_model, teacher_store))
            _, history = train(start, data, loss, settings, Path(folder) / f"{name}.pt", source, torch.device("cpu"))
            row = history.iloc[0]
            train_s = row["train_seconds"] * PEMS08_WINDOWS["train"] / data.windows["train"].shape[0]
            val_s = (row["epoch_seconds"] - row["train_seconds"]) * PEMS08_WINDOWS["val"] / data.windows["val"].shape[0]
            seconds[name] = train_s + val_s
            print(f"{name:13s} epoch {seconds[name]:8.1f} s  (training {train_s:7.1f} s, validation {val_s:6.1f} s)"
                  f"  load now {load_now()}", flush=True)
    for name in ("masked_stcd", "compact_stcd", "compact_stcd_store", "compact_task"):
        print(f"{name} / teacher epoch: {seconds[name] / seconds['teacher']:.3f}   (target <= 0.2)")
    print(f"compact_stcd / masked_stcd: {seconds['compact_stcd'] / seconds['masked_stcd']:.3f}")


if __name__ == "__main__":
    main()
