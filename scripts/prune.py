"""Entry point of rule prune: Algorithm 1 or the Molchanov baseline on a trained model (with tuned
hyper-parameters when the rule gives it a tuning result), then compaction."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.runspec import RunSpec
from kdstgcn.config.tuned import with_tuning_result
from kdstgcn.jobs.prune import prune_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    i, o = snakemake.input, snakemake.output
    run = with_tuning_result(RunSpec.from_dict(snakemake.params.run), i.get("tuned"))
    prune_run(run, i.values, i.fill_report, i.base, i.get("teacher"),
              {"model": o.model, "masked": o.masked, "steps": o.steps, "history": o.history, "info": o.info},
              snakemake.params.checkpoint)
