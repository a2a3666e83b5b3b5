"""Entry point of rule teacher_share_table: Table 3 (share of entries learnt from the teacher), from the
info.json of every student run of the table."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import json
from pathlib import Path

from kdstgcn.report.runs import read_runs
from kdstgcn.report.tables import teacher_share_table, write_table_files
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    infos = read_runs(snakemake.input, lambda path: json.loads(Path(path).read_text()))
    table = teacher_share_table(infos, p.models, p.datasets, p.seeds, p.paper_epochs, p.hyperparameter_sources)
    log.info("table 3\n%s", table.to_string())
    write_table_files(table, snakemake.output.csv, snakemake.output.parquet)
