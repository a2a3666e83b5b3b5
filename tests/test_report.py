"""The whole study on the demo config (`all`: Tables 1-9, Figures 3-5, t-SNE, summary) and the Snakemake report
opened in a real headless browser."""
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, copy_repository, run_snakemake

pytestmark = pytest.mark.slow

TABLES = [f"table{n}" for n in range(1, 10)]


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
    assert kept["pruning_base"] == 100
    for ratio in (25, 50, 75):
        for method in ("taylor", "kd_taylor"):
            share = kept[f"pruned_{method}_pruning_base_{ratio}"]
            assert share <= 100 - ratio + 1e-9, (method, ratio, share)
    cost = pd.read_csv(results / "table1.csv")
    student_time = cost[(cost["model"] == "student_task") & (cost["metric"] == "flops")]
    assert (student_time["ours_ratio_to_teacher"] < 0.2).all()
    assert "Finished" in result.output


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
    assert "Algorithm 1 beats the Molchanov baseline at 50 % pruning" in summary
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


def test_report_shows_every_table_and_figure_in_a_browser(demo_study):
    from selenium.webdriver.common.by import By

    workdir, _ = demo_study
    page = (workdir / "results" / "report.html").as_uri()
    expected = {
        "Tables": [f"results/{name}.csv" for name in TABLES],
        "Figures": sorted(f"results/figures/{p.name}" for p in (workdir / "results" / "figures").glob("*.png")),
        "Summary": ["results/summary.md"],
    }
    driver = browser()
    try:
        for category, files in expected.items():
            driver.get(page)
            deadline = time.time() + 30
            while not driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{category}']"):
                assert time.time() < deadline, f"the report never showed the category {category}"
                time.sleep(0.2)
            driver.find_element(By.XPATH, f"//*[normalize-space(text())='{category}']").click()
            time.sleep(0.5)
            listed = driver.find_element(By.TAG_NAME, "body").text
            missing = [f for f in files if f not in listed]
            assert not missing, f"{category} lacks {missing}"
        driver.get(page)
        time.sleep(0.5)
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Figures']").click()
        time.sleep(0.5)
        name = driver.find_element(By.XPATH, "//*[normalize-space(text())='results/figures/figure3_demo.png']")
        name.find_element(By.XPATH, "./ancestor::tr[1]//a[@iconname='eye']").click()
        time.sleep(1.0)
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.naturalWidth, i.src.slice(0, 22)])")
        assert any(w > 100 and src.startswith("data:image/png") for w, src in sizes), json.dumps(sizes)[:500]
    finally:
        driver.quit()
