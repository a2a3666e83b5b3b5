"""The summary (kdstgcn.report.summary) on runs written by hand: the caveats first, then every claim under a
heading that names the data and the epochs behind it, as Markdown and as HTML."""
import pandas as pd

from conftest import TableCells
from kdstgcn.report.caveats import caveat_lines
from kdstgcn.report.claims import claim_rows
from kdstgcn.report.pages import html_page, markdown_text
from kdstgcn.report.rows import budget, claims, dataset_facts
from kdstgcn.report.summary import summary_blocks


def test_summary_opens_with_the_data_caveat_and_epoch_budget(fake_study):
    config = fake_study.config
    tables = {n: fake_study.metric_table(n) for n in (2, 4, 5, 7, 8)}
    blocks = summary_blocks(claim_rows(tables, claims(config["pruning"])), pd.DataFrame(), dataset_facts(config),
                            budget(config))
    lines = [line for line in markdown_text(blocks).splitlines() if line]
    assert lines[0].startswith("# Summary") and "not comparable with the paper's numbers" in lines[0]
    assert lines[1].startswith("**Not comparable with the paper's numbers:** `demo` is synthetic")
    assert lines[2].startswith("**Epoch budget:** 2 epochs per model (STGCN's 50; the paper gives no epoch count), "
                               "cut short")
    longer_teacher = dict(config, training=dict(config["training"], teacher_epochs=5))
    assert caveat_lines(dataset_facts(config), budget(longer_teacher))[-1].startswith(
        "**Epoch budget:** 2 epochs per model, 5 epochs for the teacher (STGCN's 50; the paper gives no epoch "
        "count), cut short")
    headings = [line for line in lines if line.startswith("## ")]
    assert len(headings) == len(claims(config["pruning"]))
    for heading in headings:
        assert "demo: synthetic data, not comparable with the paper's PeMSD7" in heading, heading
        assert "STGCN's 50)" in heading, heading
    assert any("; 3 vs 2 epochs, STGCN's 50)" in h for h in headings)
    page = html_page(blocks, "Summary")
    assert "<p class='caveat'><strong>Not comparable with the paper's numbers:</strong>" in page
    first = TableCells(page).rows[1]
    assert first[:2] == ["demo", "15 min"]
