"""The figures (kdstgcn.report.figures), read back from the matplotlib objects they return: panels, titles,
line styles, bars, and the PNG each writes."""
import numpy as np
import pytest

from kdstgcn.report import figures
from kdstgcn.report.labels import paper_label
from kdstgcn.report.rows import pruning_rows


def test_prediction_figure_draws_one_panel_per_model_with_the_paper_names(fake_study, tmp_path):
    models = ["teacher"] + [f"student_{loss}" for loss in fake_study.config["distillation"]["losses"]]
    fig = figures.prediction_figure("demo", fake_study.predictions(models), {m: paper_label(m) for m in models},
                                    fake_study.config["figures"], 5, "speed", "Figure 3", tmp_path / "f3.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(models)
    assert [ax.get_title() for ax in panels][:3] == ["Teacher", "Student W/O KD", r"Student $L_{\mathrm{RD(L2)}}$"]
    for ax in panels:
        truth, prediction = ax.get_lines()
        assert truth.get_linestyle() == "-" and prediction.get_linestyle() == "--"
        assert prediction.get_marker() == "o"
    assert (tmp_path / "f3.png").read_bytes()[:4] == b"\x89PNG"


def test_mean_prediction_figure_starts_at_zero_and_names_models(fake_study, tmp_path):
    models = [r.model for r in pruning_rows(8, fake_study.config["pruning"])]
    fig = figures.mean_prediction_figure("demo", fake_study.predictions(models), fake_study.config["figures"],
                                         "speed", "Figure 5", tmp_path / "f5.png")
    bars, gaps = fig.axes
    assert bars.get_ylim()[0] == 0 and "(axis from 0)" in bars.get_ylabel()
    names = [t.get_text().replace("\n", " ") for t in gaps.get_xticklabels()]
    assert names[:3] == ["Ground truth", "Base Model", "Pruned W/O KD 25 %"]
    assert names[3] == r"Pruned W $L_{\mathrm{STCD}}$ (ours) 25 %"
    heights = [b.get_height() for b in bars.patches]
    assert [g.get_height() for g in gaps.patches] == pytest.approx([h - heights[0] for h in heights[1:]])


def test_tsne_figure_says_what_a_point_is(tmp_path):
    rng = np.random.default_rng(0)
    fig = figures.tsne_figure(rng.normal(size=(12, 30)), rng.normal(size=(12, 30)),
                              ("Student L_STCD (ours)", "Teacher"), "t-SNE, demo", tmp_path / "t.png")
    ax = fig.axes[0]
    assert "each point: one test window's hidden representation" in ax.get_title()
    assert "averaged over channels" in ax.get_title()
    assert ax.get_xlabel() == "t-SNE dimension 1"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "reference: Teacher", r"student: Student $L_{\mathrm{STCD}}$ (ours)"]


def test_verdict_figure_shows_each_claims_effects_with_their_intervals_beside_the_published_one(tmp_path):
    import pandas as pd
    from matplotlib.container import BarContainer

    rows = []
    for claim, judgeable in (("The student trained with L_STCD beats the student without KD", "yes"),
                             ("Algorithm 1 beats the Molchanov baseline at 50 % pruning",
                              "one test day, so no interval")):
        for k, h in enumerate((15, 30, 45)):
            rows.append({"claim": claim, "dataset": "demo", "horizon_min": h, "judgeable": judgeable,
                         "published_effect": -0.1 * (k + 1), "paper_values_effect": 0.2 * k,
                         "paper_values_ci_low": 0.2 * k - 0.05, "paper_values_ci_high": 0.2 * k + 0.15,
                         "tuned_values_effect": -0.3, "tuned_values_ci_low": np.nan, "tuned_values_ci_high": np.nan})
    table = pd.DataFrame(rows)
    fig = figures.verdict_figure(table, tmp_path / "verdict.png")
    assert len(fig.axes) == 2
    kd, pruning = fig.axes
    assert r"$L_{\mathrm{STCD}}$" in kd.get_title() and "NOT JUDGEABLE" not in kd.get_title()
    assert "NOT JUDGEABLE" in pruning.get_title()
    assert "95 % confidence interval" in fig.texts[0].get_text()
    heights = [b.get_height() for b in kd.patches]
    assert heights == pytest.approx([-0.1, -0.2, -0.3, 0.0, 0.2, 0.4, -0.3, -0.3, -0.3])  # published, paper, tuned
    assert [t.get_text() for t in kd.get_xticklabels()] == ["15 min", "30 min", "45 min"]
    bars = [c for c in kd.containers if isinstance(c, BarContainer)]
    assert [c.errorbar is not None for c in bars] == [False, True, False]  # tuned values: no interval
    segments = bars[1].errorbar.lines[2][0].get_segments()  # paper values: each interval, low to high end
    assert [end for s in segments for end in (s[0][1], s[1][1])] == pytest.approx([-0.05, 0.15, 0.15, 0.35, 0.35, 0.55])
    assert [t.get_text() for t in kd.get_legend().get_texts()] == [
        "published (paper's data)", "ours, paper values", "ours, tuned values"]
    assert (tmp_path / "verdict.png").read_bytes()[:4] == b"\x89PNG"
    empty = figures.verdict_figure(table.iloc[:0], tmp_path / "empty.png")
    assert "holds no claim" in empty.axes[0].texts[0].get_text()
