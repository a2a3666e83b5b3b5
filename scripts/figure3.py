"""Entry point of rule figure3: predictions of the teacher and every student for one station."""
from kdstgcn.report import prediction_figure
from kdstgcn.runner import logged

LABELS = {"teacher": "teacher", "student_task": "student w/o KD"}

with logged(snakemake.log[0]):
    p = snakemake.params
    labels = {m: LABELS.get(m, m.replace("student_", "student ").upper().replace("STUDENT", "student"))
              for m in p.models}
    prediction_figure(snakemake.wildcards.dataset, p.seed, p.models, labels, p.figures, p.step_minutes,
                      p.quantity, "Figure 3", snakemake.output[0])
