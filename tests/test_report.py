"""The paper's tables, summary and figures: unit tests on a small tree of fake runs (the real report code on
metrics and predictions written by hand), then the whole study on the demo config (`all`: Tables 1-9, Figures 3-5,
t-SNE, summary) and the Snakemake report opened in a real headless browser."""
import json
import shutil
import time
from pathlib import Path
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, copy_repository, merged_config, run_snakemake
from kdstgcn.report import core as report
from kdstgcn.config.core import run_dir

TABLES = [f"table{n}" for n in range(1, 10)]
PARAMETERS = {"teacher": 400_000, "pruning_base": 14_496}


class TableCells(HTMLParser):
    """The text of every table row of an HTML page, cell by cell."""

    def __init__(self, page: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def fake_parameters(model: str) -> int:
    base = report.pruned_base(model)
    if base is None:
        return PARAMETERS.get(model, 3_000)
    return int(PARAMETERS[base] * (100 - int(model.rsplit("_", 1)[1])) / 100 * 0.9)


@pytest.fixture
def fake_study(tmp_path, monkeypatch):
    """The demo config and, under a fresh working folder, metrics.csv (two epochs; pruned models one epoch of
    fine-tuning) and predictions.npz of every model Tables 2, 4, 5, 7 and 8 need."""
    monkeypatch.chdir(tmp_path)
    config = merged_config("config/demo.yaml")
    models = list(dict.fromkeys(r.model for n in (2, 4, 5, 7, 8) for r in report.table_rows(n, config)))
    rng = np.random.default_rng(0)
    truth = 60 + 5 * np.sin(np.arange(200) / 8)[:, None, None] * np.ones((1, 9, 16))
    for i, model in enumerate(models):
        folder = tmp_path / run_dir("demo", 0, model)
        folder.mkdir(parents=True)
        pd.DataFrame([{"model": model, "horizon_min": h, "metric": m, "ours": 2.0 + i / 10 + h / 100 + k,
                       "parameters": fake_parameters(model), "epochs_run": 1 if report.pruned_base(model) else 2}
                      for h in (15, 30, 45) for k, m in enumerate(("MAE", "RMSE", "MAPE"))]
                     ).to_csv(folder / "metrics.csv", index=False)
        np.savez(folder / "predictions.npz", prediction=truth + rng.normal(0, 0.3, truth.shape), truth=truth)
    return config


def test_paper_labels_name_models_as_the_paper_does():
    assert report.paper_label("student_task") == "Student W/O KD"
    assert report.paper_label("student_stcd") == "Student L_STCD (ours)"
    assert report.paper_label("student_rd_kl") == "Student L_RD(KL)"
    assert report.paper_label("pruned_taylor_pruning_base_25") == "Pruned W/O KD 25 %"
    assert report.paper_label("pruned_kd_taylor_pruning_base_75") == "Pruned W L_STCD (ours) 75 %"
    assert report.math_label("Student L_RD(L2)") == r"Student $L_{\mathrm{RD(L2)}}$"
    assert report.html_label("Student L_STCD (ours)") == "Student L<sub>STCD</sub> (ours)"


def test_kept_pct_and_epochs_of_pruned_rows_count_from_their_base(fake_study):
    table = report.metric_table(8, report.table_rows(8, fake_study), fake_study)
    per_model = table.groupby("model").first()
    assert per_model.loc["pruning_base", ["kept_pct"]].isna().all()
    pruned = per_model[per_model.index.str.startswith("pruned_")]
    assert len(pruned) == 6
    for model, row in pruned.iterrows():
        assert row["kept_pct"] == pytest.approx(100 * fake_parameters(model) / PARAMETERS["pruning_base"])
        assert row["epochs"] == 3
        assert "fine-tuned 1 epoch: 3 epochs in all, more than its base model" in row["note"]
        assert "cut short: 2 epochs (paper 50)" in row["note"]
    assert "more than its base" not in per_model.loc["pruning_base", "note"]
    kd = report.metric_table(4, report.table_rows(4, fake_study), fake_study)
    assert kd["kept_pct"].isna().all()


def test_note_counts_epochs_in_singular_and_plural():
    config = merged_config("config/demo.yaml")
    assert report.note(config, "demo", 1).endswith("cut short: 1 epoch (paper 50)")
    assert report.note(config, "demo", 2).endswith("cut short: 2 epochs (paper 50)")
    assert "fine-tuned 1 epoch: 2 epochs in all" in report.note(config, "demo", 2, finetune_epochs=1)


def test_csv_leaves_out_columns_empty_on_most_rows_parquet_keeps_all(fake_study, tmp_path):
    kd = report.metric_table(4, report.table_rows(4, fake_study), fake_study)
    report.write_table_files(kd, tmp_path / "t4.csv", tmp_path / "t4.parquet")
    csv, parquet = pd.read_csv(tmp_path / "t4.csv"), pd.read_parquet(tmp_path / "t4.parquet")
    assert list(parquet.columns) == report.TABLE_COLUMNS
    assert {"ours_std", "kept_pct", "param_pct"}.isdisjoint(csv.columns)
    assert {"ours", "paper", "diff", "note", "horizon_min", "compared_with", "exceeds_spread"} <= set(csv.columns)
    for column in csv.columns:
        assert csv[column].notna().mean() > 0.5 or column in report.CORE_COLUMNS + report.CLAIM_COLUMNS, column
    pruning = report.metric_table(7, report.table_rows(7, fake_study), fake_study)
    report.write_table_files(pruning, tmp_path / "t7.csv", tmp_path / "t7.parquet")
    per_model = pd.read_csv(tmp_path / "t7.csv").groupby("model").first()
    assert per_model["kept_pct"].notna().to_dict() == {"pruned_kd_taylor_teacher_97": True, "student_stcd": False,
                                                       "teacher": False}
    assert per_model["compared_with"].notna().to_dict() == per_model["kept_pct"].notna().to_dict()


def test_table_page_sets_ours_beside_the_paper_per_metric_and_horizon(fake_study):
    table = report.metric_table(8, report.table_rows(8, fake_study), fake_study)
    page = report.table_page(table, 8, fake_study)
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
            assert ours == report.number_text(mine.loc[(metric, h), "ours"])
            assert paper == report.number_text(mine.loc[(metric, h), "paper"])
            assert diff == report.number_text(mine.loc[(metric, h), "diff"], signed=True)
    assert body[0][:first_cells] == ["Base Model pruning_base", "100", "–", "14,496", "2"]
    assert body[1][:first_cells] == ["Pruned W/O KD 25 % pruned_taylor_pruning_base_25", "25", "67.5", "9,784", "3"]
    assert "Not comparable with the paper's numbers" in page and "more than its base model" in page


def test_summary_opens_with_the_data_caveat_and_epoch_budget(fake_study):
    tables = {n: report.metric_table(n, report.table_rows(n, fake_study), fake_study) for n in (2, 4, 5, 7, 8)}
    blocks = report.summary_blocks(report.claim_rows(tables, fake_study), pd.DataFrame(), fake_study)
    lines = [line for line in report.markdown_text(blocks).splitlines() if line]
    assert lines[0].startswith("# Summary") and "not comparable with the paper's numbers" in lines[0]
    assert lines[1].startswith("**Not comparable with the paper's numbers:** `demo` is synthetic")
    assert lines[2].startswith("**Epoch budget:** 2 epochs per model (paper 50), cut short")
    headings = [line for line in lines if line.startswith("## ")]
    assert len(headings) == len(report.claims(fake_study))
    for heading in headings:
        assert "demo: synthetic data, not comparable with the paper's PeMSD7" in heading, heading
        assert "paper 50)" in heading, heading
    assert any("; 3 vs 2 epochs, paper 50)" in h for h in headings)
    page = report.html_page(blocks, "Summary")
    assert "<p class='caveat'><strong>Not comparable with the paper's numbers:</strong>" in page
    first = TableCells(page).rows[1]
    assert first[:2] == ["demo", "15 min"]


def test_prediction_figure_draws_one_panel_per_model_with_the_paper_names(fake_study, tmp_path):
    models = ["teacher"] + [f"student_{loss}" for loss in fake_study["distillation"]["losses"]]
    fig = report.prediction_figure("demo", 0, models, {m: report.paper_label(m) for m in models},
                                   fake_study["figures"], 5, "speed", "Figure 3", tmp_path / "f3.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(models)
    assert [ax.get_title() for ax in panels][:3] == ["Teacher", "Student W/O KD", r"Student $L_{\mathrm{RD(L2)}}$"]
    for ax in panels:
        truth, prediction = ax.get_lines()
        assert truth.get_linestyle() == "-" and prediction.get_linestyle() == "--"
        assert prediction.get_marker() == "o"
    assert (tmp_path / "f3.png").read_bytes()[:4] == b"\x89PNG"


def test_mean_prediction_figure_starts_at_zero_and_names_models(fake_study, tmp_path):
    models = [r.model for r in report.pruning_rows(8, fake_study)]
    fig = report.mean_prediction_figure("demo", 0, models, fake_study["figures"], "speed", "Figure 5",
                                        tmp_path / "f5.png")
    bars, gaps = fig.axes
    assert bars.get_ylim()[0] == 0 and "(axis from 0)" in bars.get_ylabel()
    names = [t.get_text().replace("\n", " ") for t in gaps.get_xticklabels()]
    assert names[:3] == ["Ground truth", "Base Model", "Pruned W/O KD 25 %"]
    assert names[3] == r"Pruned W $L_{\mathrm{STCD}}$ (ours) 25 %"
    heights = [b.get_height() for b in bars.patches]
    assert [g.get_height() for g in gaps.patches] == pytest.approx([h - heights[0] for h in heights[1:]])


def test_tsne_figure_says_what_a_point_is(tmp_path):
    rng = np.random.default_rng(0)
    fig = report.tsne_figure(rng.normal(size=(12, 30)), rng.normal(size=(12, 30)),
                             ("Student L_STCD (ours)", "Teacher"), "t-SNE, demo", tmp_path / "t.png")
    ax = fig.axes[0]
    assert "each point: one test window's hidden representation" in ax.get_title()
    assert "averaged over channels" in ax.get_title()
    assert ax.get_xlabel() == "t-SNE dimension 1"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "reference: Teacher", r"student: Student $L_{\mathrm{STCD}}$ (ours)"]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    """`snakemake all` with config/demo.yaml in a fresh copy of the repository, then `--report`."""
    workdir = copy_repository(REPO, tmp_path_factory.mktemp("study") / "repo")
    result = run_snakemake(workdir, ["all", "--cores", "2", "--configfile", "config/demo.yaml"], timeout=900)
    assert result.returncode == 0, result.output[-5000:]
    report = run_snakemake(workdir, ["--configfile", "config/demo.yaml", "--report", "results/report.html",
                                     "--cores", "1"], timeout=300)
    assert report.returncode == 0, report.output[-3000:]
    return workdir, result


@pytest.mark.slow
def test_all_writes_every_table_beside_the_paper(demo_study):
    workdir, result = demo_study
    results = workdir / "results"
    for name in TABLES:
        csv, parquet = pd.read_csv(results / f"{name}.csv"), pd.read_parquet(results / f"{name}.parquet")
        assert len(csv) == len(parquet) > 0, name
        assert {"ours", "paper", "diff", "note"} <= set(csv.columns), name
        assert np.isfinite(csv["ours"]).all(), name
        with_paper = csv["paper"].notna()
        assert with_paper.any(), f"{name}: no published value beside ours"
        assert np.allclose(csv.loc[with_paper, "diff"], csv.loc[with_paper, "ours"] - csv.loc[with_paper, "paper"])
    kd = pd.read_csv(results / "table4.csv")
    assert set(kd["model"]) == {"teacher", "student_task", "student_rd_l2", "student_rd_kl", "student_skd",
                                "student_stcd"}
    assert kd["note"].str.contains("cut short: 2 epochs").all()
    claims = kd[kd["compared_with"] == "student_task"]
    assert len(claims) and (claims["exceeds_spread"] == "n/a (one seed)").all()
    pruning = pd.read_csv(results / "table8.csv")
    kept = pruning.groupby("model")["kept_pct"].first()
    assert np.isnan(kept["pruning_base"])
    assert pruning.loc[pruning["model"] == "pruned_kd_taylor_pruning_base_50", "note"].str.contains(
        "fine-tuned 1 epoch: 3 epochs in all, more than its base model").all()
    for ratio in (25, 50, 75):
        for method in ("taylor", "kd_taylor"):
            share = kept[f"pruned_{method}_pruning_base_{ratio}"]
            assert share <= 100 - ratio + 1e-9, (method, ratio, share)
    cost = pd.read_csv(results / "table1.csv")
    student_time = cost[(cost["model"] == "student_task") & (cost["metric"] == "flops")]
    assert (student_time["ours_ratio_to_teacher"] < 0.2).all()
    verdict = pd.read_parquet(results / "verdict.parquet")
    assert list(verdict.columns) == report.VERDICT_COLUMNS
    assert set(verdict["claim"]) == {"The student trained with L_STCD beats the student without KD"}
    for source in ("paper", "tuned"):
        assert np.isfinite(verdict[[f"{source}_values_better", f"{source}_values_other"]]).all().all(), source
        assert np.allclose(verdict[f"{source}_values_effect"],
                           verdict[f"{source}_values_better"] - verdict[f"{source}_values_other"])
    tuned = json.loads((results / "demo/seed0/student_stcd_tuned/info.json").read_text())
    assert tuned["run"]["hyperparameter_source"].startswith("tuned: results/demo/tuned/stcd.yaml")
    assert "steps (100%) done" in result.output


@pytest.mark.slow
def test_all_draws_every_figure(demo_study):
    workdir, _ = demo_study
    figures = sorted(p.name for p in (workdir / "results" / "figures").glob("*.png"))
    for n in (3, 4, 5):
        assert f"figure{n}_demo.png" in figures
    assert "tsne_demo_student_stcd_vs_teacher.png" in figures
    assert "tsne_demo_pruned_kd_taylor_teacher_97_vs_teacher.png" in figures
    for name in figures:
        assert (workdir / "results" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (workdir / "results" / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("**Not comparable with the paper's numbers:** `demo`")
    assert "Algorithm 1 beats the Molchanov baseline at 50 % pruning (Table 8; demo: synthetic data" in summary
    assert "| demo | 15 min |" in summary


def browser():
    """A headless Chromium driven by Selenium, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def open_category(driver, page: str, category: str) -> None:
    """Load the report and click a category of its menu (the app renders after load)."""
    from selenium.webdriver.common.by import By

    driver.get(page)
    deadline = time.time() + 30
    while not driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{category}']"):
        assert time.time() < deadline, f"the report never showed the category {category}"
        time.sleep(0.2)
    driver.find_element(By.XPATH, f"//*[normalize-space(text())='{category}']").click()
    time.sleep(0.5)


def view_result(driver, page: str, category: str, path: str) -> None:
    """Open one result of the report with its eye button."""
    from selenium.webdriver.common.by import By

    open_category(driver, page, category)
    name = driver.find_element(By.XPATH, f"//*[normalize-space(text())='{path}']")
    name.find_element(By.XPATH, "./ancestor::tr[1]//a[@iconname='eye']").click()
    time.sleep(1.0)


def inline_text(driver, page: str, category: str, path: str) -> str:
    """The text of an HTML result as the report shows it inline (in its frame)."""
    from selenium.webdriver.common.by import By

    view_result(driver, page, category, path)
    frame = driver.find_element(By.TAG_NAME, "iframe")
    assert frame.get_attribute("src").startswith("data:text/html"), frame.get_attribute("src")[:40]
    driver.switch_to.frame(frame)
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.switch_to.default_content()


@pytest.mark.slow
def test_report_shows_every_table_and_figure_in_a_browser(demo_study):
    workdir, _ = demo_study
    page = (workdir / "results" / "report.html").as_uri()
    expected = {
        "Tables": [f"results/{name}.html" for name in TABLES],
        "Table downloads (CSV)": [f"results/{name}.csv" for name in TABLES],
        "Figures": sorted(f"results/figures/{p.name}" for p in (workdir / "results" / "figures").glob("*.png")),
        "Summary": ["results/summary.html", "results/summary.md"],
    }
    driver = browser()
    try:
        from selenium.webdriver.common.by import By

        for category, files in expected.items():
            open_category(driver, page, category)
            listed = driver.find_element(By.TAG_NAME, "body").text
            missing = [f for f in files if f not in listed]
            assert not missing, f"{category} lacks {missing}"
        view_result(driver, page, "Figures", "results/figures/figure3_demo.png")
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.naturalWidth, i.src.slice(0, 22)])")
        assert any(w > 100 and src.startswith("data:image/png") for w, src in sizes), json.dumps(sizes)[:500]

        table = pd.read_parquet(workdir / "results" / "table4.parquet").set_index(["model", "metric", "horizon_min"])
        shown = inline_text(driver, page, "Tables", "results/table4.html")
        assert "Not comparable with the paper's numbers" in shown
        for model in ("teacher", "student_stcd"):
            for metric, h in (("MAE", 15), ("RMSE", 45)):
                row = table.loc[(model, metric, h)]
                assert f"{report.number_text(row['ours'])} {report.number_text(row['paper'])} " \
                       f"{report.number_text(row['diff'], signed=True)}" in shown, (model, metric, h)

        claims = report.claim_rows({4: table.reset_index()}, merged_config("config/demo.yaml"))
        first = claims.iloc[0]
        summary = inline_text(driver, page, "Summary", "results/summary.html")
        assert summary.startswith("Summary: the paper's claims against this run (not comparable")
        assert f"{first['paper_better']:.3f} {first['paper_worse']:.3f} {first['ours_better']:.3f} " \
               f"{first['ours_worse']:.3f}" in summary
    finally:
        driver.quit()


def write_fake_metrics(dataset: str, seed: int, model: str, mae: dict[int, float], epochs: int) -> None:
    folder = run_dir(dataset, seed, model)
    Path(folder).mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"model": model, "horizon_min": h, "metric": m, "ours": mae[h] * (1 + k), "parameters": 3_000,
                   "epochs_run": epochs} for h in (15, 30, 45) for k, m in enumerate(("MAE", "RMSE", "MAPE"))]
                 ).to_csv(f"{folder}/metrics.csv", index=False)


def test_verdict_sets_paper_and_tuned_effects_beside_the_paper_with_spread_and_anatomy(tmp_path, monkeypatch):
    """Three seeds of fake metrics with known means and spreads: every number of the verdict row follows."""
    monkeypatch.chdir(tmp_path)
    config = merged_config("config/demo.yaml")
    config["seeds"] = [0, 1, 2]
    config["verdict"] = {"losses": ["task", "stcd"], "pruning_ratios": [50]}
    # better model: 10 + seed (mean 11, std 1); other: 12 (std 0) with paper values, 10.5 + 0.1 seed when tuned
    runs = {"student_stcd": lambda s: 10 + s, "student_task": lambda s: 12.0,
            "student_stcd_tuned": lambda s: 10 + s, "student_task_tuned": lambda s: 10.5 + 0.1 * s,
            "pruned_kd_taylor_pruning_base_50": lambda s: 20.0, "pruned_taylor_pruning_base_50": lambda s: 19.0,
            "pruned_kd_taylor_pruning_base_50_tuned": lambda s: 18.0,
            "pruned_taylor_pruning_base_50_tuned": lambda s: 19.0}
    for model, mae in runs.items():
        for seed in config["seeds"]:
            write_fake_metrics("demo", seed, model, {h: mae(seed) + h / 100 for h in (15, 30, 45)},
                               epochs=3 if model == "student_task" else 2)
    history = pd.DataFrame({"epoch": [1, 2], "grad_share_ord": [0.9, 0.6], "grad_share_scd": [0.08, 0.22],
                            "grad_share_tcd": [0.02, 0.18]})
    table = report.verdict_table(config, {("demo", "student_stcd"): [history] * 3})
    assert list(table.columns) == report.VERDICT_COLUMNS
    assert len(table) == 2 * 3
    row = table[(table["better"] == "student_stcd") & (table["horizon_min"] == 15)].iloc[0]
    published = pd.read_csv(REPO / "src/kdstgcn/paper_tables/table4.csv").set_index(["dataset", "model"])
    assert row["published_better"] == published.loc[("PeMSD7", "student_stcd"), "MAE_15"]
    assert row["published_other"] == published.loc[("PeMSD7", "student_no_kd"), "MAE_15"]
    assert row["published_effect"] == pytest.approx(row["published_better"] - row["published_other"])
    assert (row["paper_values_better"], row["paper_values_better_std"], row["paper_values_other"]) == pytest.approx(
        (11.15, 1.0, 12.15))
    assert (row["paper_values_effect"], row["paper_values_spread"]) == pytest.approx((-1.0, 1.0))
    assert (row["paper_values_supported"], row["paper_values_beyond_spread"]) == ("yes", "no")
    assert (row["tuned_values_other"], row["tuned_values_other_std"]) == pytest.approx((10.75, 0.1))
    assert (row["tuned_values_effect"], row["tuned_values_supported"], row["tuned_values_beyond_spread"]) == (
        pytest.approx(0.4), "no", "no")
    assert (row["paper_values_seeds"], row["tuned_values_better_epochs"], row["tuned_values_other_epochs"]) == (3, 2, 2)
    assert (row["paper_values_better_epochs"], row["paper_values_other_epochs"]) == (2, 3)
    assert row["anatomy"].startswith("Student L_STCD (ours) (paper values): ORD leads; share of the student's "
                                     "gradient, mean over 2 epochs and 3 seed(s): ORD 75 %, SCD 15 %, TCD 10 %.")
    assert "(tuned values): one loss term, no anatomy." in row["anatomy"]
    pruning = table[table["better"] == "pruned_kd_taylor_pruning_base_50"].iloc[0]
    table8 = pd.read_csv(REPO / "src/kdstgcn/paper_tables/table8.csv")
    paper8 = table8[(table8["dataset"] == "PeMSD7") & (table8["param_pct"] == 50)].set_index("model")["MAE_15"]
    assert (pruning["published_better"], pruning["published_other"]) == (paper8["pruned_stcd"],
                                                                          paper8["pruned_no_kd"])
    assert (pruning["paper_values_effect"], pruning["paper_values_supported"]) == (pytest.approx(1.0), "no")
    assert (pruning["tuned_values_effect"], pruning["tuned_values_supported"],
            pruning["tuned_values_beyond_spread"]) == (pytest.approx(-1.0), "yes", "yes")
    text = report.markdown_text(report.verdict_blocks(table, config))
    assert "| 15 min | " in text and "11.15 ± 1.00" in text
    assert "With paper values (2 vs 3 epochs, paper 50; 3 seed(s)): holds at 3 of 3 horizons, beyond the spread at 0" in text
    assert ("With tuned values (2 epochs, paper 50; 3 seed(s)): holds at 0 of 3 horizons, beyond the spread at 0; "
            "contradicted beyond the spread at 0.") in text
    assert ("With tuned values (fine-tuned 2 epochs after pruning; 3 seed(s)): holds at 3 of 3 horizons, beyond the "
            "spread at 3") in text


def test_verdict_runs_each_setting_once_under_the_name_the_tables_use(fake_study):
    from kdstgcn.config.core import sourced_model

    assert sourced_model(fake_study, "student_stcd", "paper") == "student_stcd"
    assert sourced_model(fake_study, "student_stcd", "tuned") == "student_stcd_tuned"
    tuned = {**fake_study, "pruning": {**fake_study["pruning"], "hyperparameter_source": "tuned"}}
    assert sourced_model(tuned, "pruned_taylor_pruning_base_50", "tuned") == "pruned_taylor_pruning_base_50"
    assert sourced_model(tuned, "pruned_taylor_pruning_base_50", "paper") == "pruned_taylor_pruning_base_50_paper"
