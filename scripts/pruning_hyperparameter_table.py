"""Entry point of rule pruning_hyperparameter_table: Table 9 (pruning hyper-parameters used vs published)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.report.tables import pruning_hyperparameter_table, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    table = pruning_hyperparameter_table(p.hyperparameters, p.datasets, p.seeds)
    log.info("table 9\n%s", table.to_string())
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
