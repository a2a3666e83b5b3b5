"""Imported first by every entry point: puts the checkout's src/ on sys.path, so the rules run the package of
this checkout also without `pip install -e .` (under --sdm conda, on cluster nodes)."""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
# first, also when Snakemake's script preamble has already appended it behind an installed (editable) copy
if sys.path[0] != SRC:
    sys.path.insert(0, SRC)
