"""The package as a wheel: built from the checkout, installed (not editable) into a folder of its own, imported
from there alone, its data files included: the schema validates the study's config, the paper's tables load. And
the rules' conda environment asks for the package's dependencies."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

# run in a fresh interpreter outside the checkout, with only the installed wheel on PYTHONPATH
CHECK = """
import sys
from pathlib import Path
import yaml
from kdstgcn.config import schema
from kdstgcn.report import published

schema.validate(yaml.safe_load(Path(sys.argv[1]).read_text()))
print(schema.__file__)
print(published.__file__)
print(len(published.table(2)))
"""


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of the checkout, built from a copy of what it packs so that the build leaves nothing behind in the
    working tree (setuptools writes build/ and *.egg-info beside the sources)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(dist), str(source)], check=True, capture_output=True, text=True)
    wheels = list(dist.glob("kdstgcn-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_installed_wheel_validates_the_config_with_its_own_schema(tmp_path):
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", CHECK, str(REPO / "config" / "config.yaml")], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    schema_file, published_file, tables = result.stdout.split()
    assert Path(schema_file).is_relative_to(site), schema_file
    assert Path(published_file).is_relative_to(site), published_file
    assert int(tables) > 0
    shipped = sorted(p.name for p in (site / "kdstgcn" / "report" / "paper_tables").glob("*.csv"))
    assert shipped == sorted(p.name for p in (REPO / "src" / "kdstgcn" / "report" / "paper_tables").glob("*.csv"))


WORKFLOW_ENGINE = {"snakemake", "snakemake-executor-plugin-slurm"}  # runs the jobs, is not installed in them


def requirement(line: str) -> tuple[str, str]:
    """(name, version specifier) of a requirement such as 'numpy>=1.26' or the conda form 'python=3.11'."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", line.strip())
    return match[1].lower(), match[2].replace(" ", "")


def test_conda_env_of_the_rules_names_the_package_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(map(requirement, project["dependencies"]))
    env = yaml.safe_load((REPO / "envs" / "kdstgcn.yaml").read_text())["dependencies"]
    named = [d for d in env if isinstance(d, str)] + [p for d in env if isinstance(d, dict) for p in d["pip"]]
    listed = dict(map(requirement, named))
    python = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, listed.pop("python").lstrip("=").split("."))) >= tuple(map(int, python.split(".")))
    listed.pop("pip")
    assert listed == {name: spec for name, spec in wanted.items() if name not in WORKFLOW_ENGINE}
