"""Entry point of rule kd_table: Table 2, 4 or 5 (distillation metrics) beside the paper."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.report.core import metric_table, table_rows, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    number = int(snakemake.wildcards.number)
    config = snakemake.params.config
    table = metric_table(number, table_rows(number, config), config)
    log.info("table %d: %d rows\n%s", number, len(table), table.to_string(max_rows=40))
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
