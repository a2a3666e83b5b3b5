"""Imported first by every entry point: puts the checkout's src/ first on sys.path, so the rules run the package
of this checkout also without `pip install -e .` (under --sdm conda, on cluster nodes), and not another checkout's
that an editable install put on the path (Snakemake's script preamble appends the workflow's own sys.path, which
holds this src/, after it)."""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path[:] = [SRC] + [p for p in sys.path if p != SRC]
