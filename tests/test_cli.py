"""A newcomer's command lines, each through a real `snakemake` in a copy of the repository: the README's
`--config` overrides are accepted (dry run), a wrong value or a missing mirror folder stops Snakemake while it reads
the config, and raw files that no source provides are named together in one message before any job."""
import shlex

import pytest
import yaml

from conftest import REPO, planned_wildcards, run_snakemake

pytestmark = pytest.mark.slow

UNREACHABLE = "http://127.0.0.1:9/x"  # discard port: connection refused at once


def readme_override_commands() -> list[list[str]]:
    """The `snakemake ...` lines of the README's `--config` examples, split as the shell would."""
    text = (REPO / "README.md").read_text()
    block = text.split("Single values are set with `--config`", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("snakemake ")]


def assert_nothing_written(repo) -> None:
    for folder in ("results", "logs", "benchmarks"):
        assert not (repo / folder).exists(), f"{folder}/ was written"


@pytest.mark.parametrize("command", readme_override_commands(), ids=lambda c: " ".join(c[c.index("--config") + 1:]))
def test_readme_config_overrides_pass_a_dry_run(repo_copy, tmp_path, command):
    assert command[0] == "all", "README commands put the target first"
    args = [a.replace("/data/pems", str(tmp_path)) for a in command]
    result = run_snakemake(repo_copy, [args[0], "-n", *args[1:]], timeout=180)
    assert result.returncode == 0, result.output[-3000:]
    if any(a.startswith("seeds=") for a in args):
        teachers = [w["seed"] for w in planned_wildcards(result.output, "train") if w["model"] == "teacher"]
        assert sorted(teachers) == ["0", "1"], result.output[-3000:]  # one per seed
    assert_nothing_written(repo_copy)


@pytest.mark.parametrize("entry, message", [
    ("training={epochs: five}", "training.epochs: 'five' is not of type 'integer'; allowed: >= 1"),
    ("mirror=/nonexistent/kdstgcn", "mirror folder /nonexistent/kdstgcn does not exist"),
], ids=["wrong_type", "missing_mirror"])
def test_bad_command_line_value_stops_before_any_job(repo_copy, entry, message):
    result = run_snakemake(repo_copy, ["all", "--cores", "1", "--configfile", "config/demo.yaml",
                                       "--config", entry], mirror=None, timeout=120)
    assert result.returncode != 0
    assert message in result.output, result.output[-3000:]
    assert_nothing_written(repo_copy)


def file_dataset(name: str) -> dict:
    return {"paper_name": "PeMSD7", "description": "missing-data test", "source": "files", "n_nodes": 4,
            "steps_per_day": 24, "start": "2024-01-01", "weekdays_only": False, "split": [3, 1, 1],
            "values": {"file": {"name": f"{name}_values.csv", "urls": [UNREACHABLE], "sha256": ""},
                       "format": "csv_matrix", "steps": 120, "quantity": "speed (mph)"},
            "distance": {"file": {"name": f"{name}_distance.csv", "urls": [UNREACHABLE], "sha256": ""},
                         "format": "matrix_csv", "unit_m": 1000},
            "sigma2": 10.0, "epsilon": 0.5}


def test_missing_raw_files_are_named_together_before_any_job(repo_copy, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "offa_distance.csv").write_text("0,1\n1,0\n")  # the one file a source provides
    config = {"mirror": str(mirror), "run_datasets": ["offa", "offb"],
              "datasets": {"offa": file_dataset("offa"), "offb": file_dataset("offb")}}
    (repo_copy / "offline.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(repo_copy, ["all", "--cores", "1", "--configfile", "config/demo.yaml", "offline.yaml"],
                           mirror=None, timeout=180)
    assert result.returncode != 0
    assert result.seconds < 60, f"the check took {result.seconds:.0f} s"
    assert result.output.count("raw file(s) can be found neither") == 1, result.output[-3000:]
    assert "3 raw file(s)" in result.output
    for name in ("offa_values.csv", "offb_values.csv", "offb_distance.csv"):
        assert result.output.count(f"raw/{name} (not in the mirror") == 1, result.output[-3000:]
    assert "raw/offa_distance.csv" not in result.output
    assert "`mirror`" in result.output and "KDSTGCN_MIRROR" in result.output
    assert not (repo_copy / "results").exists()
