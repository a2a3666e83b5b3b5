"""Entry point of rule cost_table: Table 1 (parameters, FLOPs, test time) beside the paper, from the costs
measured on each dataset."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.costs import cost_table
from kdstgcn.report.tables import write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    costs = pd.concat([pd.read_parquet(p) for p in snakemake.input], ignore_index=True)
    table = cost_table(costs, snakemake.params.datasets)
    log.info("table 1\n%s", table.drop(columns=["note"]).to_string())
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
