"""Entry point of rule metric_table: Table 2, 4, 5, 7 or 8 (metrics of distillation or pruning) beside the
paper, from the metrics.csv of every run of the table."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.rows import TableRow
from kdstgcn.report.runs import read_runs
from kdstgcn.report.tables import metric_table, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p, number = snakemake.params, int(snakemake.wildcards.number)
    table = metric_table(number, [TableRow(**row) for row in p.rows], read_runs(snakemake.input, pd.read_csv),
                         p.datasets, p.seeds, p.paper_epochs, p.hyperparameter_sources)
    log.info("table %d: %d rows\n%s", number, len(table), table.to_string(max_rows=40))
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
