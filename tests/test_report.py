"""The whole study on the demo config (`all`: Tables 1-9, Figures 3-5, t-SNE, loss anatomy, verdict, summary),
its tables and figures read back, and the Snakemake report opened in a real headless browser. The report's
modules are tested one by one on runs written by hand in test_report_<module>.py."""
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, copy_repository, merged_config, run_snakemake
from kdstgcn.report.claims import claim_rows
from kdstgcn.report.pages import number_text
from kdstgcn.report.rows import claims
from kdstgcn.report.verdict import VERDICT_COLUMNS

TABLES = [f"table{n}" for n in range(1, 10)]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    """`snakemake all` with config/demo.yaml in a fresh copy of the repository, then `--report`."""
    workdir = copy_repository(REPO, tmp_path_factory.mktemp("study") / "repo")
    result = run_snakemake(workdir, ["all", "--cores", "2", "--configfile", "config/demo.yaml"], timeout=900)
    assert result.returncode == 0, result.output[-5000:]
    page = run_snakemake(workdir, ["--configfile", "config/demo.yaml", "--report", "results/report.html",
                                   "--cores", "1"], timeout=300)
    assert page.returncode == 0, page.output[-3000:]
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
    compared = kd[kd["compared_with"] == "student_task"]
    assert len(compared) and (compared["exceeds_spread"] == "n/a (one seed)").all()
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
    assert set(cost.loc[cost["metric"] == "onnx_test_time_s", "model"]) == set(cost["model"])  # ONNX Runtime
    evaluated = {p.parent for p in results.glob("demo/seed*/*/metrics.csv")}
    assert {p.parent for p in results.glob("demo/seed*/*/model_card.json")} == evaluated
    assert all((folder / name).is_file() for folder in evaluated for name in ("model.onnx", "stream.onnx"))
    verdict = pd.read_parquet(results / "verdict.parquet")
    assert list(verdict.columns) == VERDICT_COLUMNS
    beyond = verdict["claim"].str.startswith("Beyond the paper")
    assert set(verdict.loc[~beyond, "claim"]) == {"The student trained with L_STCD beats the student without KD"}
    deployable = pd.read_csv(results / "deployable.csv")
    assert set(deployable["model"]) == {"teacher", "student_task", "student_stcd", "deploy_stcd_rollout"}
    best = deployable[deployable["best"]]  # at 16 stations the student holds 0.7 % of the teacher's parameters
    assert set(best["model"]) == {"deploy_stcd_rollout"} and beyond.sum() == 3
    assert verdict.loc[beyond, "paper_values_better"].tolist() == pytest.approx(best["mae"].tolist())
    assert (results / "figures" / "deployable.png").is_file()
    history = pd.read_parquet(results / "demo/seed0/deploy_stcd_rollout/history.parquet")
    assert history["rollout_steps"].tolist() == [1, 2]
    assert {"grad_share_ord", "grad_share_tcd", "grad_share_scd", "grad_share_step2"} <= set(history.columns)
    verdict = verdict[~beyond]
    for source in ("paper", "tuned"):
        assert np.isfinite(verdict[[f"{source}_values_better", f"{source}_values_other"]]).all().all(), source
        assert np.allclose(verdict[f"{source}_values_effect"],
                           verdict[f"{source}_values_better"] - verdict[f"{source}_values_other"])
    teacher = pd.read_csv(results / "demo/seed0/teacher/metrics.csv").query("metric == 'MAE'")
    assert verdict["teacher_mae"].tolist() == pytest.approx(teacher["ours"].tolist())
    for reason in ("fewer epochs than STGCN's 50 (2 of 50; the paper gives no epoch count)",
                   "one seed: the interval covers the test days, not the randomness of training",
                   "one test day, so no interval"):
        assert verdict["judgeable"].str.contains(reason, regex=False).all(), reason
    assert (verdict["test_days"] == 1).all()  # the demo tests one day: no interval
    assert (verdict[["paper_values_outcome", "tuned_values_outcome"]] == "n/a (one test day)").all().all()
    for source in ("paper", "tuned"):  # the student without KD reads scalar_norm like the L_STCD student
        assert verdict[f"{source}_values_other_readings"].str.fullmatch(r"scalar_norm=(squared|absolute)").all()
        assert verdict[f"{source}_values_better_readings"].str.startswith("scalar_norm=").all()
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
    assert "verdict.png" in figures and "deployable.png" in figures
    for name in figures:
        assert (workdir / "results" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (workdir / "results" / "summary.md").read_text()
    lines = summary.splitlines()  # it leads with whether the claim could be judged, then the caveats
    assert lines[2].startswith("**Could not be judged:** The student trained with L_STCD beats the student without "
                               "KD (`demo`): at 15, 30, 45 min: ")
    assert lines[4].startswith("**Could not be judged:** Beyond the paper: the best deployable student (at most 3 % "
                               "of the teacher's parameters) is within 5 % of the teacher's MAE")
    assert lines[6].startswith("**Not comparable with the paper's numbers:** `demo`")
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
    assert "results/figures/verdict.png" in expected["Figures"]
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
                assert f"{number_text(row['ours'])} {number_text(row['paper'])} " \
                       f"{number_text(row['diff'], signed=True)}" in shown, (model, metric, h)

        pruning = merged_config("config/demo.yaml")["pruning"]
        first = claim_rows({4: table.reset_index()}, claims(pruning)).iloc[0]
        summary = inline_text(driver, page, "Summary", "results/summary.html")
        assert summary.startswith("Summary: the paper's claims against this run (not comparable")
        assert f"{first['paper_better']:.3f} {first['paper_worse']:.3f} {first['ours_better']:.3f} " \
               f"{first['ours_worse']:.3f}" in summary
    finally:
        driver.quit()
