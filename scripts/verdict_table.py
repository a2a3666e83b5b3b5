"""Entry point of rule verdict_table: results/verdict.csv and .parquet, the paper's central claims with its and
with tuned hyper-parameters, over seeds, with the loss anatomy of the model claimed better."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

import pandas as pd

from kdstgcn.runtime.io import write_tables
from kdstgcn.report.core import verdict_table
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    histories: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for path in map(Path, snakemake.input.histories):  # results/<dataset>/seed<s>/<model>/history.parquet
        histories.setdefault((path.parts[-4], path.parts[-2]), []).append(pd.read_parquet(path))
    table = verdict_table(snakemake.params.config, histories)
    log.info("verdict: %d rows\n%s", len(table), table.drop(columns="anatomy").to_string())
    write_tables(table, snakemake.output.csv, snakemake.output.parquet)
