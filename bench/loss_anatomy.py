"""Loss anatomy of STCD on one real PEMS08-flow training batch under each reading of the paper's open choices.

    python bench/loss_anatomy.py                        # random teacher and student (~1 min)
    python bench/loss_anatomy.py --teacher-epochs 1     # teacher first trained with the task loss (CPU: long)
    python bench/loss_anatomy.py --teacher-checkpoint results/pemsd8_flow/seed0/teacher/checkpoint.pt
                                                        # a teacher from a (running or finished) pipeline run

Data through the package's own loaders: `pems08_288_62_170.mat` (flow, day-major) and `distance.csv` from
`$KDSTGCN_SHARED/data/pems08` (default: the repository's ../shared), cleaned, split 50/6/6 days and z-scored as the pipeline
does, adjacency by Eq. 16. Teacher [1,32,64][64,32,128] and student [1,2,4][4,2,8] from seed 0; the student as at
the start of distillation, or first trained without KD (--student-epochs), where the ORD error has shrunk. STCD with the Table 6 PeMSD8 weights (alpha1 0.846, alpha2 0.465, alpha3 0.504),
one training batch of 50 windows fixed by seed 0 (`kdstgcn.training.anatomy.anatomy_batches`). For today's readings and
each switch alone (and all three literal readings together), prints each term's unweighted and weighted value,
the norm of the student's gradient of the weighted term and its gradient share (`kdstgcn.training.anatomy`), and writes
the numbers and a figure to --out.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from common import PEMSD8_STCD, STUDENT, TEACHER, machine, pems08_flow
from kdstgcn.training.anatomy import anatomy_batches, loss_anatomy
from kdstgcn.runtime.io import write_table
from kdstgcn.losses.build import build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.report.figures import anatomy_figure
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.training.loop import train

TODAY = {"scalar_norm": "squared", "ord_reduction": "mean", "distance_scale": "raw"}
VARIANTS = {
    "today": TODAY,
    "absolute": {**TODAY, "scalar_norm": "absolute"},
    "ord sum": {**TODAY, "ord_reduction": "sum"},
    "mean_normalised": {**TODAY, "distance_scale": "mean_normalised"},
    "all literal": {"scalar_norm": "absolute", "ord_reduction": "sum", "distance_scale": "mean_normalised"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-epochs", type=int, default=0, help="task-loss epochs of the teacher (0: random)")
    parser.add_argument("--teacher-checkpoint", help="checkpoint.pt of a pipeline teacher run (its weights)")
    parser.add_argument("--student-epochs", type=int, default=0,
                        help="task-loss epochs of the student before measuring (0: as at the start of distillation)")
    parser.add_argument("--kernel", default="cdist", choices=["cdist", "compiled", "auto"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results/bench", help="folder for loss_anatomy_pems08_flow.csv/.png")
    args = parser.parse_args()
    print(machine(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        data, cheb = pems08_flow(Path(tmp))
        torch.manual_seed(0)
        teacher = STGCN(Architecture(170, TEACHER), cheb)
        teacher_kind = "random teacher"
        if args.teacher_checkpoint:
            checkpoint = torch.load(args.teacher_checkpoint, map_location="cpu", weights_only=False)
            teacher.load_state_dict(checkpoint["model"])
            teacher_kind = (f"teacher after {checkpoint['epoch']} epoch(s) (val MAE "
                            f"{checkpoint['history'][-1]['val_mae']:.2f}) from {args.teacher_checkpoint}")
        elif args.teacher_epochs:
            teacher, history = train(teacher, data, build_loss("task"), TrainSettings(epochs=args.teacher_epochs),
                                     Path(tmp) / "teacher.pt", device=torch.device("cpu"))
            teacher_kind = f"teacher trained {args.teacher_epochs} epoch(s) (val MAE {history['val_mae'].iloc[-1]:.2f})"
        teacher.eval()
        torch.manual_seed(0)
        student = STGCN(Architecture(170, STUDENT), cheb)
        student_kind = "random student"
        if args.student_epochs:
            student, history = train(student, data, build_loss("task"), TrainSettings(epochs=args.student_epochs),
                                     Path(tmp) / "student.pt", device=torch.device("cpu"))
            student_kind = (f"student trained {args.student_epochs} epoch(s) without KD "
                            f"(val MAE {history['val_mae'].iloc[-1]:.2f})")
        batch = anatomy_batches(data.inputs("train"), data.one_step_targets("train"), 50, seed=0, count=1)
    rows = []
    for label, readings in VARIANTS.items():
        columns = loss_anatomy(student, teacher, build_loss("stcd", PEMSD8_STCD, args.kernel, readings), batch)
        for term in ("ord", "scd", "tcd"):
            rows.append({"loss": label, "term": term, **{stat: columns[pattern.format(term)] for stat, pattern in [
                ("value", "term_{}"), ("weighted", "term_{}_weighted"), ("grad_norm", "grad_norm_{}"),
                ("grad_share", "grad_share_{}")]}})
    table = pd.DataFrame(rows)
    print(f"STCD (Table 6 PeMSD8 weights) on one PEMS08-flow training batch of 50, {teacher_kind}, {student_kind}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "loss_anatomy_pems08_flow.csv")
    anatomy_figure(table, f"STCD on one PEMS08-flow batch under each reading,\n{teacher_kind.split(' from ')[0]}, {student_kind}",
                   out / "loss_anatomy_pems08_flow.png")
    print(f"written: {out / 'loss_anatomy_pems08_flow.csv'}, {out / 'loss_anatomy_pems08_flow.png'}")


if __name__ == "__main__":
    main()
