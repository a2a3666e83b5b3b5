"""Entry point of rule clean: raw values -> interpolated parquet table and a per-station fill report."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.data.prepare import clean, read_values, timestamps
from kdstgcn.runtime.io import write_table, write_tables
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    src, ds = snakemake.params.source, snakemake.params.dataset
    values = read_values(snakemake.input[0], src["format"], ds["n_nodes"], src["steps"], src["key"], src["channel"])
    index = timestamps(values.shape[0], ds["steps_per_day"], ds["start"], ds["weekdays_only"])
    table, report = clean(values, index)
    log.info("%s: %d steps x %d stations, %d readings missing (%.3f%%) filled by interpolation",
             snakemake.input[0], *values.shape, report["missing"].sum(), 100 * report["missing"].sum() / values.size)
    write_table(table, snakemake.output.values, index=True)
    write_tables(report, snakemake.output.report, snakemake.output.report_parquet)
