"""The report's pages (kdstgcn.report.pages): a table in the paper's layout, read back cell by cell."""
from conftest import TableCells
from kdstgcn.report import pages
from kdstgcn.report.rows import budget, dataset_facts


def test_table_page_sets_ours_beside_the_paper_per_metric_and_horizon(fake_study):
    table = fake_study.metric_table(8)
    page = pages.table_page(table, 8, dataset_facts(fake_study.config), budget(fake_study.config))
    rows = TableCells(page).rows
    metrics, horizons, values = rows[0], rows[1], rows[2]
    assert metrics[0] == "model" and metrics[-3:] == ["MAPE (%)", "MAE", "RMSE"]
    assert horizons == ["15 min", "30 min", "45 min"] * 3
    assert values == ["ours", "paper", "diff"] * 9
    body = rows[3:]
    assert len(body) == table["model"].nunique()
    first_cells = len(metrics) - 3
    for cells in body:
        model = cells[0].split()[-1]
        mine = table[table["model"] == model].set_index(["metric", "horizon_min"])
        for g, (metric, h) in enumerate((m, h) for m in ("MAPE", "MAE", "RMSE") for h in (15, 30, 45)):
            ours, paper, diff = cells[first_cells + 3 * g: first_cells + 3 * g + 3]
            assert ours == pages.number_text(mine.loc[(metric, h), "ours"])
            assert paper == pages.number_text(mine.loc[(metric, h), "paper"])
            assert diff == pages.number_text(mine.loc[(metric, h), "diff"], signed=True)
    assert body[0][:first_cells] == ["Base Model pruning_base", "100", "–", "14,496", "2"]
    assert body[1][:first_cells] == ["Pruned W/O KD 25 % pruned_taylor_pruning_base_25", "25", "67.5", "9,784", "3"]
    assert "Not comparable with the paper's numbers" in page and "more than its base model" in page
    assert "`results/table8.csv`" not in page and "<code>results/table8.csv</code>" in page
