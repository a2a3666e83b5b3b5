"""The paper's tables in their common long format (kdstgcn.report.tables), on runs written by hand: what the
metric tables say about pruned models and epochs, the notes, and which columns the CSV keeps."""
import pandas as pd
import pytest

from conftest import FAKE_PARAMETERS, fake_parameters, merged_config
from kdstgcn.report import tables


def test_kept_pct_and_epochs_of_pruned_rows_count_from_their_base(fake_study):
    table = fake_study.metric_table(8)
    per_model = table.groupby("model").first()
    assert per_model.loc["pruning_base", ["kept_pct"]].isna().all()
    pruned = per_model[per_model.index.str.startswith("pruned_")]
    assert len(pruned) == 6
    for model, row in pruned.iterrows():
        assert row["kept_pct"] == pytest.approx(100 * fake_parameters(model) / FAKE_PARAMETERS["pruning_base"])
        assert row["epochs"] == 3
        assert "fine-tuned 1 epoch: 3 epochs in all, more than its base model" in row["note"]
        assert "cut short: 2 epochs (STGCN's 50)" in row["note"]
    assert "more than its base" not in per_model.loc["pruning_base", "note"]
    assert fake_study.metric_table(4)["kept_pct"].isna().all()


def test_note_counts_epochs_in_singular_and_plural():
    assert tables.note("demo", "synthetic", 50, 1).endswith("cut short: 1 epoch (STGCN's 50)")
    assert tables.note("demo", "synthetic", 50, 2).endswith("cut short: 2 epochs (STGCN's 50)")
    assert "fine-tuned 1 epoch: 2 epochs in all" in tables.note("demo", "synthetic", 50, 2, finetune_epochs=1)


def test_notes_say_where_the_hyper_parameters_of_a_student_or_pruned_model_come_from():
    def note(model, distillation="paper", pruning="paper"):
        return tables.note("demo", "synthetic", 50, 2, model=model,
                           hyperparameter_sources={"distillation": distillation, "pruning": pruning})

    assert "hyper-parameters of the paper (Table 6)" in note("student_stcd")
    assert "tuned on validation MAE: results/demo/tuned/stcd.yaml" in note("student_stcd", distillation="tuned")
    assert "hyper-parameters" not in note("teacher", distillation="tuned")
    pruned = "pruned_taylor_pruning_base_50"
    assert "hyper-parameters of the paper (Table 9)" in note(pruned, distillation="tuned")
    assert f"validation MAE: results/demo/tuned/{pruned}.yaml" in note(pruned, pruning="tuned")


def test_csv_leaves_out_columns_empty_on_most_rows_parquet_keeps_all(fake_study, tmp_path):
    tables.write_table_files(fake_study.metric_table(4), tmp_path / "t4.csv", tmp_path / "t4.parquet")
    csv, parquet = pd.read_csv(tmp_path / "t4.csv"), pd.read_parquet(tmp_path / "t4.parquet")
    assert list(parquet.columns) == tables.TABLE_COLUMNS
    assert {"ours_std", "kept_pct", "param_pct"}.isdisjoint(csv.columns)
    assert {"ours", "paper", "diff", "note", "horizon_min", "compared_with", "exceeds_spread"} <= set(csv.columns)
    for column in csv.columns:
        assert csv[column].notna().mean() > 0.5 or column in tables.CORE_COLUMNS + tables.CLAIM_COLUMNS, column
    tables.write_table_files(fake_study.metric_table(7), tmp_path / "t7.csv", tmp_path / "t7.parquet")
    per_model = pd.read_csv(tmp_path / "t7.csv").groupby("model").first()
    assert per_model["kept_pct"].notna().to_dict() == {"pruned_kd_taylor_teacher_97": True, "student_stcd": False,
                                                       "teacher": False}
    assert per_model["compared_with"].notna().to_dict() == per_model["kept_pct"].notna().to_dict()


def test_hyperparameter_table_sets_the_config_values_beside_the_paper():
    from kdstgcn.report.rows import dataset_facts

    config = merged_config("config/demo.yaml")
    table = tables.hyperparameter_table(config["distillation"]["hyperparameters"], dataset_facts(config),
                                        config["seeds"])
    ours = config["distillation"]["hyperparameters"]["PeMSD7"]
    stcd = table[table["model"] == "student_stcd"].set_index("metric")
    assert stcd.loc["alpha1", "ours"] == ours["stcd"]["alpha1"]
    assert (table["diff"].dropna() == (table["ours"] - table["paper"]).dropna()).all()
