"""Entry point of the training rules: one model from its run spec (teacher, base, student)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs import train_run
from kdstgcn.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    train_run(snakemake.params.run, snakemake.input.values, snakemake.input.fill_report, snakemake.input.adjacency,
              snakemake.output.model, snakemake.output.history, snakemake.output.info, snakemake.params.checkpoint,
              snakemake.input.get("teacher"))
