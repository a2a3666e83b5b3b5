"""What the tables and claims are made of (kdstgcn.report.rows): importable without torch or matplotlib (the
workflow sizes its DAG with it), and the verdict's runs named as the tables' runs where the settings agree."""
import subprocess
import sys

from conftest import merged_config
from kdstgcn.report.rows import table_rows, verdict_claims, verdict_runs, without_kd


def test_rows_import_neither_torch_nor_matplotlib():
    code = ("import sys, kdstgcn.report.rows; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_verdict_runs_each_setting_once_under_the_name_the_tables_use():
    config = merged_config("config/demo.yaml")
    config["verdict"] = {"losses": ["task", "stcd"], "pruning_ratios": [50]}
    runs = verdict_runs(config)
    assert runs["student_stcd"] == {"paper": "student_stcd", "tuned": "student_stcd_tuned"}
    config["pruning"]["hyperparameter_source"] = "tuned"
    runs = verdict_runs(config)
    assert runs["pruned_taylor_pruning_base_50"] == {"paper": "pruned_taylor_pruning_base_50_paper",
                                                     "tuned": "pruned_taylor_pruning_base_50"}


def test_the_verdict_reads_the_model_without_kd_its_teacher_must_beat():
    config = merged_config("config/demo.yaml")
    config["verdict"] = {"losses": ["ord", "stcd"], "pruning_ratios": [50]}
    students, pruning = verdict_claims(config["verdict"])
    assert (without_kd(students), without_kd(pruning)) == ("student_task", "pruned_taylor_pruning_base_50")
    assert verdict_runs(config)["student_task"] == {"paper": "student_task", "tuned": "student_task_tuned"}


def test_metric_tables_hold_only_the_students_the_config_trains():
    config = merged_config("config/demo.yaml")
    rows = table_rows(4, ["task", "stcd"], config["pruning"])
    assert [r.model for r in rows] == ["teacher", "student_task", "student_stcd"]
    assert all(r.compared_with == "student_task" for r in rows[2:])
