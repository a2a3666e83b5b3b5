"""Entry point of rules figure3, figure4 and figure5: one station's predictions (3, 4) or their means (5)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.report import mean_prediction_figure, prediction_figure
from kdstgcn.runner import logged


def label(model: str) -> str:
    return {"teacher": "teacher", "student_task": "student w/o KD"}.get(model, model.replace("_", " "))


with logged(snakemake.log[0]):
    p, dataset, rule = snakemake.params, snakemake.wildcards.dataset, snakemake.rule
    title = f"Figure {rule[-1]}"
    if rule == "figure5":
        mean_prediction_figure(dataset, p.seed, p.models, p.figures, p.quantity, title, snakemake.output[0])
    else:
        labels = {m: label(m) for m in p.models}
        if rule == "figure4":
            labels.update(dict(zip(p.models, ["teacher", "student w/o KD, w/o pruning", "student with KD (STCD)",
                                              "student with KD and pruning (Algorithm 1)"])))
        prediction_figure(dataset, p.seed, p.models, labels, p.figures, p.step_minutes, p.quantity, title,
                          snakemake.output[0])
