"""Entry point of rules figure3, figure4 and figure5: one station's predictions (3, 4) or their means (5), one
model per predictions.npz of the rule's input, in its order."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.layout import parse_run_path
from kdstgcn.report.figures import mean_prediction_figure, prediction_figure
from kdstgcn.report.labels import paper_label
from kdstgcn.runtime.runner import logged

# Figure 4's panels as the paper's caption names them (teacher, student w/o KD, STCD student, pruned teacher)
FIGURE4_LABELS = ["Teacher", "Student W/O KD and W/O pruning", "Student W KD (L_STCD), W/O pruning",
                  "Student W KD and pruning (Algorithm 1)"]

with logged(snakemake.log[0]):
    p, dataset, rule = snakemake.params, snakemake.wildcards.dataset, snakemake.rule
    predictions = {parse_run_path(path).model: path for path in snakemake.input}
    title = f"Figure {rule[-1]}"
    if rule == "figure5":
        mean_prediction_figure(dataset, predictions, p.figures, p.quantity, title, snakemake.output[0])
    else:
        labels = {m: paper_label(m) for m in predictions}
        if rule == "figure4":
            labels.update(dict(zip(predictions, FIGURE4_LABELS)))
        prediction_figure(dataset, predictions, labels, p.figures, p.step_minutes, p.quantity, title,
                          snakemake.output[0])
