"""Entry point of rule evaluate: 9-step rollout on the test days, metrics beside the paper's."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.datasets import DataSpec
from kdstgcn.jobs.evaluate import evaluate_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    evaluate_run(i.model, i.values, i.fill_report, DataSpec.from_dict(p.data), p.horizons, p.step_minutes,
                 p.device, p.eval_batch_size, p.paper_name, snakemake.wildcards.model, o.metrics,
                 o.metrics_parquet, o.predictions)
