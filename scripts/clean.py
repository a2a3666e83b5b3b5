"""Entry point of rule clean: raw values -> interpolated parquet table and a per-station fill report."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs.data import clean_values
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    o = snakemake.output
    clean_values(snakemake.input[0], snakemake.params.source, snakemake.params.dataset, o.values, o.report,
                 o.report_parquet)
