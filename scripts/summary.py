"""Entry point of rule summary: results/summary.md and .html, each paper claim against our numbers."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.report.claims import claim_rows, cost_claim_rows
from kdstgcn.report.pages import html_page, markdown_text
from kdstgcn.report.rows import SUMMARY_TABLES, claims
from kdstgcn.report.summary import summary_blocks
from kdstgcn.runtime.io import atomic_path
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    tables = {n: pd.read_parquet(snakemake.input[f"table{n}"]) for n in SUMMARY_TABLES}
    blocks = summary_blocks(claim_rows(tables, claims(p.pruning)), cost_claim_rows(tables[1]), p.datasets, p.budget,
                            pd.read_parquet(snakemake.input.verdict))
    text = markdown_text(blocks)
    log.info("\n%s", text)
    for path, content in ((snakemake.output.markdown, text), (snakemake.output.html, html_page(blocks, "Summary"))):
        with atomic_path(path) as tmp:
            tmp.write_text(content)
