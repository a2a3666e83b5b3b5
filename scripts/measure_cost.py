"""Entry point of rule measure_cost: parameters, FLOPs and rollout time of each model of a dataset."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.datasets import DataSpec
from kdstgcn.jobs.cost import measure_costs
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    p, i = snakemake.params, snakemake.input
    measure_costs(dict(zip(p.models, i.models)), dict(zip(p.models, zip(i.starts, i.streams))), i.values,
                  i.fill_report, DataSpec.from_dict(p.data), p.timing, p.device, snakemake.wildcards.dataset,
                  snakemake.output[0])
