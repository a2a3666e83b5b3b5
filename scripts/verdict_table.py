"""Entry point of rule verdict_table: results/verdict.csv and .parquet, the paper's central claims with its and
with tuned hyper-parameters, over seeds, each effect with its 95 % confidence interval over the test days, whether
each can be judged, with the readings of every model and the loss anatomy of the model claimed better; where the
config has deployable models, the row of the best of them against the teacher (beyond the paper)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import json
from pathlib import Path

import pandas as pd

from kdstgcn.config.layout import parse_run_path
from kdstgcn.data.samples import metric_mask
from kdstgcn.report.deployable import verdict_rows as deployable_verdict_rows
from kdstgcn.report.effects import daily_mae
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
    stations = {dataset: metric_mask(pd.read_csv(path), path)  # the stations the metrics score
                for dataset, path in zip(p.datasets, snakemake.input.fill_reports)}

    def read_daily(path: str) -> pd.DataFrame:
        dataset = parse_run_path(path).dataset
        return daily_mae(path, stations[dataset], p.test_days[dataset], p.horizons, p.step_minutes)

    table = verdict_table(verdict_claims(p.verdict), p.runs, read_runs(snakemake.input.metrics, pd.read_csv),
                          read_runs(snakemake.input.predictions, read_daily), histories, infos, p.datasets, p.seeds,
                          p.paper_epochs, p.pruning)
    for path in snakemake.input.deployable:  # beyond the paper: the best deployable model against the teacher
        rows = deployable_verdict_rows(pd.read_parquet(path), histories, p.test_days, p.paper_epochs,
                                       p.deployable["parameter_budget_pct"], p.deployable["target_gap_pct"])
        table = pd.concat([table, rows], ignore_index=True) if len(table) else rows
    log.info("verdict: %d rows\n%s", len(table), table.drop(columns="anatomy").to_string())
    write_tables(table, snakemake.output.csv, snakemake.output.parquet)
