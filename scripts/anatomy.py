"""Entry point of rule loss_anatomy: the anatomy of every distillation loss of a dataset (table and figure), from
the history.parquet of each distilled student's runs."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.config.layout import parse_run_path, parse_student
from kdstgcn.report.anatomy import anatomy_table
from kdstgcn.report.figures import anatomy_figure
from kdstgcn.runtime.io import write_table
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    dataset = snakemake.wildcards.dataset
    histories: dict[str, list[pd.DataFrame]] = {}
    for path in snakemake.input:
        loss = parse_student(parse_run_path(path).model).loss
        histories.setdefault(loss, []).append(pd.read_parquet(path))
    table = anatomy_table(dataset, histories)
    log.info("loss anatomy of %s\n%s", dataset, table.to_string())
    write_table(table, snakemake.output.csv)
    title = f"Loss anatomy of the students, {dataset}"
    if not table.empty:
        title += f", epoch {table['last_epoch'].min()}, mean of {table['n_seeds'].max()} seed(s)"
    anatomy_figure(table, title, snakemake.output.png)
