"""Entry point of rule summary: results/summary.md, each paper claim against our numbers."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import re

import pandas as pd

from kdstgcn.io import atomic_path
from kdstgcn.report import claim_rows, cost_claim_rows, summary_markdown
from kdstgcn.runner import logged

with logged(snakemake.log[0]) as log:
    tables = {int(re.search(r"table(\d+)", p).group(1)): pd.read_parquet(p) for p in snakemake.input.tables}
    text = summary_markdown(claim_rows(tables, snakemake.params.config), cost_claim_rows(tables[1]),
                            snakemake.params.config)
    log.info("\n%s", text)
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(text)
