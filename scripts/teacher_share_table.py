"""Entry point of rule teacher_share_table: Table 3 (share of entries learnt from the teacher)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.report.core import teacher_share_table, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    table = teacher_share_table(snakemake.params.config)
    log.info("table 3\n%s", table.to_string())
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
