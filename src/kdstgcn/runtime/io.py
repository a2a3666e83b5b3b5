"""Atomic file output: every writer goes to a temporary file beside the target, then renames. Torch-free (the
table and page jobs import it); tensors are written by kdstgcn.runtime.tensor_files."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.part"):  # left by a writer killed with SIGKILL
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_table(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> None:
    """Write a DataFrame as CSV or parquet (chosen by suffix, in any case), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=index)
        elif path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=index)
        else:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r} (use .csv or .parquet)")


def write_tables(df: pd.DataFrame, csv_path: str | os.PathLike, parquet_path: str | os.PathLike) -> None:
    """Write the same table as CSV and parquet."""
    write_table(df, csv_path)
    write_table(df, parquet_path)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")
