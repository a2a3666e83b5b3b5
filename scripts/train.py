"""Entry point of the training rules: one model from its run spec (teacher, base, student), for a student with
tuned hyper-parameters when the rule gives it a tuning result."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.core import apply_tuned, read_tuned
from kdstgcn.jobs import train_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    run, tuned = snakemake.params.run, snakemake.input.get("tuned")
    if tuned:
        values = read_tuned(tuned)
        run = apply_tuned(run, values, source=f"tuned: {tuned}, trial {values.get('trial')}")
    train_run(run, snakemake.input.values, snakemake.input.fill_report, snakemake.input.adjacency,
              snakemake.output.model, snakemake.output.history, snakemake.output.info, snakemake.params.checkpoint,
              snakemake.input.get("teacher"))
