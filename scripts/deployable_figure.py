"""Entry point of rule deployable_figure: results/figures/deployable.png, test MAE against the horizon of the
teacher, the paper's students and the best deployable model."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.figures import deployable_figure
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    deployable_figure(pd.read_parquet(snakemake.input[0]), snakemake.output[0])
