"""Entry point of rule verdict_table: results/verdict.csv and .parquet, the paper's central claims with its and
with tuned hyper-parameters, over seeds, whether each can be judged, with the readings of every model and the loss
anatomy of the model claimed better."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import json
from pathlib import Path

import pandas as pd

from kdstgcn.config.layout import parse_run_path
from kdstgcn.report.rows import verdict_claims
from kdstgcn.report.runs import read_runs
from kdstgcn.report.verdict import verdict_table
from kdstgcn.runtime.io import write_tables
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    histories: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for path in snakemake.input.histories:
        run = parse_run_path(path)
        histories.setdefault((run.dataset, run.model), []).append(pd.read_parquet(path))
    infos = read_runs(snakemake.input.infos, lambda path: json.loads(Path(path).read_text()))
    table = verdict_table(verdict_claims(p.verdict), p.runs, read_runs(snakemake.input.metrics, pd.read_csv),
                          histories, infos, p.datasets, p.seeds, p.paper_epochs, p.pruning)
    log.info("verdict: %d rows\n%s", len(table), table.drop(columns="anatomy").to_string())
    write_tables(table, snakemake.output.csv, snakemake.output.parquet)
