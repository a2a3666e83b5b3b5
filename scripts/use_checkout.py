"""Imported first by every entry point: puts the checkout's src/ first on sys.path, so the rules run the package
of this checkout also without `pip install -e .` (under --sdm conda, on cluster nodes), and also where another
checkout is installed: Snakemake appends its own sys.path (which holds this src/) to the job's, after the
installed package's path, so src/ must be moved to the front, not only be present."""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path[:] = [SRC] + [path for path in sys.path if path != SRC]
