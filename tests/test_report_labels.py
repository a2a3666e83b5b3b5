"""The paper's names of our models (kdstgcn.report.labels) as text, for matplotlib and as HTML."""
from kdstgcn.report.labels import html_label, math_label, paper_label


def test_paper_labels_name_models_as_the_paper_does():
    assert paper_label("student_task") == "Student W/O KD"
    assert paper_label("student_stcd") == "Student L_STCD (ours)"
    assert paper_label("student_rd_kl") == "Student L_RD(KL)"
    assert paper_label("pruned_taylor_pruning_base_25") == "Pruned W/O KD 25 %"
    assert paper_label("pruned_kd_taylor_pruning_base_75") == "Pruned W L_STCD (ours) 75 %"
    assert paper_label("pruned_kd_taylor_teacher_97") == "Student W pruning algorithm (teacher pruned 97 %)"
    assert math_label("Student L_RD(L2)") == r"Student $L_{\mathrm{RD(L2)}}$"
    assert html_label("Student L_STCD (ours)") == "Student L<sub>STCD</sub> (ours)"
