"""Entry point of rule loss_anatomy: the anatomy of every distillation loss of a dataset (table and figure)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.runtime.io import write_table
from kdstgcn.report.core import anatomy_figure, anatomy_table
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    dataset = snakemake.wildcards.dataset
    histories: dict[str, list[pd.DataFrame]] = {}
    for loss, path in zip(snakemake.params.losses, snakemake.input):
        histories.setdefault(loss, []).append(pd.read_parquet(path))
    table = anatomy_table(dataset, histories)
    log.info("loss anatomy of %s\n%s", dataset, table.to_string())
    write_table(table, snakemake.output.csv)
    title = f"Loss anatomy of the students, {dataset}"
    if not table.empty:
        title += f", epoch {table['last_epoch'].min()}, mean of {table['n_seeds'].max()} seed(s)"
    anatomy_figure(table, title, snakemake.output.png)
