"""Entry point of the training rules: one model from its run spec (teacher, base, student), for a student with
tuned hyper-parameters when the rule gives it a tuning result."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.runspec import RunSpec
from kdstgcn.config.tuned import with_tuning_result
from kdstgcn.jobs.train import train_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    i, o = snakemake.input, snakemake.output
    run = with_tuning_result(RunSpec.from_dict(snakemake.params.run), i.get("tuned"))
    train_run(run, i.values, i.fill_report, i.adjacency, o.model, o.history, o.info, snakemake.params.checkpoint,
              i.get("teacher"))
