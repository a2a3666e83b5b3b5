"""Entry point of rule prune: Algorithm 1 or the Molchanov baseline on a trained model, then compaction."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs import prune_run
from kdstgcn.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    i, o = snakemake.input, snakemake.output
    prune_run(snakemake.params.run, i.values, i.fill_report, i.base, i.get("teacher"),
              {"model": o.model, "masked": o.masked, "steps": o.steps, "history": o.history, "info": o.info},
              snakemake.params.checkpoint)
