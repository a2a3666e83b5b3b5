"""Entry point of rule hyperparameter_table: Table 6 (KD hyper-parameters used vs published)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.report.tables import hyperparameter_table, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    table = hyperparameter_table(p.hyperparameters, p.datasets, p.seeds)
    log.info("table 6\n%s", table.to_string())
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
