"""Entry point of rule measure_cost: parameters, FLOPs and rollout time of each model of a dataset."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.runtime.io import write_table
from kdstgcn.jobs import measure_costs
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    p, i = snakemake.params, snakemake.input
    rows = measure_costs(dict(zip(p.models, i.models)), i.values, i.fill_report, p.data, p.timing, p.device)
    write_table(pd.DataFrame(rows).assign(dataset=snakemake.wildcards.dataset), snakemake.output[0])
