"""Entry point of rule verdict_figure: results/figures/verdict.png, each claim's effect per horizon with the
paper's and with tuned values, their spreads, and the published effect."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.figures import verdict_figure
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    verdict_figure(pd.read_parquet(snakemake.input[0]), snakemake.output[0])
