"""Entry point of rule table_page: results/tableN.html, a paper table in the paper's layout for the report."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.pages import table_page
from kdstgcn.runtime.io import atomic_path
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    page = table_page(pd.read_parquet(snakemake.input[0]), int(snakemake.wildcards.number), p.datasets, p.budget)
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(page)
