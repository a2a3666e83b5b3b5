"""The report rules (workflow/rules/report.smk) carry only the config they read: in a copy of the repository,
Table 2 is made once from metrics written by hand, then a dry run with a changed config key schedules it again
only when the key is one the table reads."""
import pytest

from conftest import merged_config, run_snakemake, write_fake_metrics
from kdstgcn.config.layout import table_path
from kdstgcn.report.rows import table_rows

TABLE2 = table_path(2, "csv")


def table2_planned(workdir, overlay: str) -> bool:
    """Whether a dry run for Table 2 with `overlay` laid over the demo config would make it again."""
    (workdir / "overlay.yaml").write_text(overlay)
    result = run_snakemake(workdir, ["-n", TABLE2, "--configfile", "config/demo.yaml", "overlay.yaml", "--cores", "1",
                                     "--allowed-rules", "metric_table"], timeout=120)
    assert result.returncode == 0, result.output[-3000:]
    return "rule metric_table:" in result.output


@pytest.mark.slow
def test_table2_is_made_again_only_when_a_key_it_reads_changes(repo_copy):
    config = merged_config("config/demo.yaml")
    for row in table_rows(2, config["distillation"]["losses"], config["pruning"]):
        write_fake_metrics(repo_copy, "demo", 0, row.model, {15: 1.0, 30: 2.0, 45: 3.0}, epochs=2)
    made = run_snakemake(repo_copy, [TABLE2, "--configfile", "config/demo.yaml", "--cores", "1",
                                     "--allowed-rules", "metric_table"], timeout=120)
    assert made.returncode == 0, made.output[-3000:]
    assert not table2_planned(repo_copy, "tuning: {trials: 7}\n")
    assert not table2_planned(repo_copy, "pruning: {finetune_epochs: 3}\n")
    assert not table2_planned(repo_copy, "figures: {node: 3}\n")
    assert table2_planned(repo_copy, "training: {paper_epochs: 40}\n")
    assert table2_planned(repo_copy, "distillation: {hyperparameter_source: tuned}\n")
