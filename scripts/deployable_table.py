"""Entry point of rule deployable_table: results/deployable.csv and .parquet, the deployable models beside the
teacher and the paper's students, the best one within the parameter budget marked (kdstgcn.report.deployable)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import json
from pathlib import Path

import pandas as pd

from kdstgcn.config.layout import parse_run_path
from kdstgcn.data.samples import metric_mask
from kdstgcn.report.deployable import deployable_table
from kdstgcn.report.effects import daily_mae
from kdstgcn.report.runs import read_runs
from kdstgcn.runtime.io import write_tables
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    stations = {dataset: metric_mask(pd.read_csv(path), path)  # the stations the metrics score
                for dataset, path in zip(p.datasets, snakemake.input.fill_reports)}

    def read_daily(path: str) -> pd.DataFrame:
        dataset = parse_run_path(path).dataset
        return daily_mae(path, stations[dataset], p.test_days[dataset], p.horizons, p.step_minutes)

    table = deployable_table(p.datasets, p.models, read_runs(snakemake.input.metrics, pd.read_csv),
                             read_runs(snakemake.input.predictions, read_daily),
                             read_runs(snakemake.input.infos, lambda path: json.loads(Path(path).read_text())),
                             p.seeds, p.deployable["parameter_budget_pct"], p.deployable["target_gap_pct"])
    log.info("deployable models: %d rows\n%s", len(table), table.to_string())
    write_tables(table, snakemake.output.csv, snakemake.output.parquet)
