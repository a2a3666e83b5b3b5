"""Entry point of rule summary: results/summary.md and .html, each paper claim against our numbers."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import re

import pandas as pd

from kdstgcn.runtime.io import atomic_path
from kdstgcn.report.core import claim_rows, cost_claim_rows, html_page, markdown_text, summary_blocks
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    tables = {int(re.search(r"table(\d+)", p).group(1)): pd.read_parquet(p) for p in snakemake.input.tables}
    blocks = summary_blocks(claim_rows(tables, snakemake.params.config), cost_claim_rows(tables[1]),
                            snakemake.params.config, pd.read_parquet(snakemake.input.verdict))
    text = markdown_text(blocks)
    log.info("\n%s", text)
    for path, content in ((snakemake.output.markdown, text), (snakemake.output.html, html_page(blocks, "Summary"))):
        with atomic_path(path) as tmp:
            tmp.write_text(content)
