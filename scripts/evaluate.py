"""Entry point of rule evaluate: 9-step rollout on the test days, metrics beside the paper's."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs import evaluate_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    evaluate_run(snakemake.input.model, snakemake.input.values, snakemake.input.fill_report, p.data, p.horizons,
                 p.step_minutes, p.device, p.eval_batch_size, p.paper_name, snakemake.wildcards.model,
                 snakemake.output.metrics, snakemake.output.metrics_parquet, snakemake.output.predictions)
