"""Cleaned speed table -> training samples: a day-based split, the z-score scaler of the training days, windows
that never cross a day (indices into each split's normalised days, never copies of them) and the stations that
enter the metrics."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdstgcn.config.datasets import DataSpec
from kdstgcn.data.clean import DataError
from kdstgcn.runtime.io import atomic_path, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# normalised days (all splits, float32) of at least this many bytes are memory-mapped from a file instead of held
# in memory: 62 days at 288 steps of 8,600 stations take 614 MB, PeMSD7(M)'s 44 days of 228 stations 12 MB
MMAP_MIN_BYTES = 256 * 2**20
NORMALISED_FOLDER = "normalised"  # beside the cleaned table: its memory-mapped normalised days (`mapped_days`)


@dataclass(frozen=True)
class Scaler:
    """Z-score with the mean and std of the training days (Eq. 15)."""

    mean: float
    std: float

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


def split_days(values: np.ndarray, steps_per_day: int, split: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Cut [T, N] into consecutive whole days: train, val, test arrays of shape [days, steps_per_day, N]."""
    n_days = values.shape[0] // steps_per_day
    if sum(split) > n_days:
        raise DataError(f"split {list(split)} needs {sum(split)} days, the data has {n_days}; "
                        "lower datasets.<name>.split")
    days = values[: n_days * steps_per_day].reshape(n_days, steps_per_day, -1)
    bounds = np.cumsum([0, *split])
    return {name: days[bounds[k]:bounds[k + 1]] for k, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class WindowedSeries:
    """The windows of one split as indices into its normalised days instead of copies of them.

    `days` [D, S, N] (float32, in memory or memory-mapped) holds each value once; `starts` [W] is the flat step
    (day * S + step) where each window begins: every window of the cut's length that stays inside a day, day by
    day and in each day by its first step; `steps` are the steps of each window this view gives. Indexing by
    window ids (a LongTensor, a slice or an int) gathers those windows then and there: [B, len(steps), N], or
    [B, N] for a view of one step (`select`). It reads like the tensor of its windows stacked (`shape`, `len`,
    indexing, `narrow`, `select`, `to`), so code written for that tensor runs on either; its views share the
    days."""

    days: torch.Tensor
    starts: torch.Tensor
    steps: range
    single: bool = False

    @classmethod
    def cut(cls, days: torch.Tensor, length: int) -> WindowedSeries:
        """All windows of `length` consecutive steps inside each day of `days`: D * (S - length + 1) windows. The
        days are held in C order (copied where they are not), so that a window's steps lie side by side."""
        n_days, per_day, _ = days.shape
        if per_day < length:
            raise DataError(f"a day has {per_day} steps, fewer than a window of {length}")
        starts = torch.arange(n_days)[:, None] * per_day + torch.arange(per_day - length + 1)
        return cls(days.contiguous(), starts.flatten(), range(length))

    def __len__(self) -> int:
        return self.starts.shape[0]

    @property
    def shape(self) -> torch.Size:
        steps = () if self.single else (len(self.steps),)
        return torch.Size((len(self), *steps, self.days.shape[2]))

    @property
    def dtype(self) -> torch.dtype:
        return self.days.dtype

    @property
    def device(self) -> torch.device:
        return self.days.device

    def narrow(self, dim: int, start: int, length: int) -> WindowedSeries:
        """Steps start .. start + length - 1 of every window, as torch.Tensor.narrow along dim 1 (the steps)."""
        if dim != 1 or self.single or not 0 <= start <= start + length <= len(self.steps):
            raise IndexError(f"narrow({dim}, {start}, {length}) of windows {tuple(self.shape)}: only along the "
                             "steps (dim 1) and inside them")
        return replace(self, steps=self.steps[start:start + length])

    def select(self, dim: int, index: int) -> WindowedSeries:
        """Step `index` of every window [W, N], as torch.Tensor.select along dim 1 (the steps)."""
        if dim != 1 or self.single or not 0 <= index < len(self.steps):
            raise IndexError(f"select({dim}, {index}) of windows {tuple(self.shape)}: only along the steps (dim 1) "
                             "and inside them")
        return replace(self, steps=self.steps[index:index + 1], single=True)

    def to(self, device: torch.device | str) -> WindowedSeries:
        """The same windows with the days on `device` (one copy of them there; no copy where they are already)."""
        return replace(self, days=self.days.to(device), starts=self.starts.to(device))

    def __getitem__(self, windows: torch.Tensor | slice | int) -> torch.Tensor:
        first = self.starts[windows]
        if self.single:
            rows = first + self.steps.start
        else:
            rows = first[..., None] + torch.arange(self.steps.start, self.steps.stop, device=first.device)
        return self.days.flatten(0, 1)[rows]

    def blocks(self) -> Iterator[np.ndarray]:
        """Each window's values in turn (C-contiguous, on the CPU): the bytes of all windows stacked (`self[:]`),
        one window at a time."""
        flat = self.days.flatten(0, 1).cpu()
        for first in self.starts.tolist():
            yield flat[first + self.steps.start:first + self.steps.stop].numpy()


@dataclass
class PreparedData:
    """Normalised windows of n_his + n_pred steps per split (`WindowedSeries`, or a tensor of windows, which it
    reads like) and what is needed to undo the scaling."""

    windows: dict[str, WindowedSeries]
    scaler: Scaler
    station_mask: torch.Tensor
    n_his: int
    n_pred: int

    def inputs(self, split: str) -> WindowedSeries:
        """What the model reads: the first n_his steps of each window [W, n_his, N]."""
        return self.windows[split].narrow(1, 0, self.n_his)

    def one_step_targets(self, split: str) -> WindowedSeries:
        """The step after the inputs [W, N]."""
        return self.windows[split].select(1, self.n_his)

    def future(self, split: str, steps: int | None = None) -> WindowedSeries:
        """The `steps` steps after the inputs (default: all n_pred) [W, steps, N]."""
        return self.windows[split].narrow(1, self.n_his, self.n_pred if steps is None else steps)

    def with_split_on(self, split: str, device: torch.device) -> PreparedData:
        """This data with the days of `split` on `device`, where its batches are then gathered."""
        return replace(self, windows={**self.windows, split: self.windows[split].to(device)})


def prepare(clean_path: str | Path, report_path: str | Path, steps_per_day: int, split: tuple[int, int, int],
            n_his: int, n_pred: int, mmap_min_bytes: int = MMAP_MIN_BYTES) -> PreparedData:
    """Load a cleaned table, split it by days, fit the scaler on training days and cut windows: the normalised
    days in memory (`normalised_days`), or memory-mapped where they take at least `mmap_min_bytes` in float32
    (`mapped_days`); the same values either way."""
    report = pd.read_csv(report_path)
    mask = torch.from_numpy(metric_mask(report, report_path))
    if sum(split) * steps_per_day * len(report) * np.dtype(np.float32).itemsize >= mmap_min_bytes:
        days, scaler = mapped_days(clean_path, steps_per_day, split)
    else:
        days, scaler = normalised_days(clean_path, steps_per_day, split)
    windows = {name: WindowedSeries.cut(torch.from_numpy(part), n_his + n_pred) for name, part in days.items()}
    return PreparedData(windows, scaler, mask, n_his, n_pred)


def normalised_days(clean_path: str | Path, steps_per_day: int,
                    split: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], Scaler]:
    """The train, val and test days of a cleaned table [days, steps_per_day, N] z-scored with the training days'
    scaler (computed in float64, then cast to float32), and that scaler."""
    values = pd.read_parquet(clean_path).to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{clean_path}: NaN or inf in the cleaned data; delete it and rerun the clean rule")
    parts = split_days(values, steps_per_day, split)
    if any(len(p) == 0 for p in parts.values()):
        raise DataError(f"split {list(split)}: every part needs at least one day")
    scaler = Scaler(float(parts["train"].mean()), float(parts["train"].std()))
    if scaler.std == 0:
        raise DataError(f"{clean_path}: the training days are constant; nothing to learn")
    # C order: the table's values come column by column, and a window's steps are gathered row by row
    return {name: np.ascontiguousarray(scaler.transform(p), dtype=np.float32) for name, p in parts.items()}, scaler


def cut_digest(clean_path: str | Path, steps_per_day: int, split: tuple[int, int, int]) -> str:
    """Short hash of a cleaned table's bytes and of how it is cut into days: which normalised days a file holds."""
    digest = hashlib.sha256(f"{steps_per_day} {list(split)}\n".encode())
    with open(clean_path, "rb") as f:
        for chunk in iter(lambda: f.read(2**24), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def mapped_days(clean_path: str | Path, steps_per_day: int,
                split: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], Scaler]:
    """`normalised_days`, memory-mapped from `<digest>.npy` (all splits' days in order) in NORMALISED_FOLDER beside
    the table, its scaler in `<digest>.json`; the digest is `cut_digest`'s, so a changed table or cut is never read
    stale. Written once, each file atomically and the scaler last (what a reader looks for), then mapped
    copy-on-write: pages are read from the file as windows are gathered, and nothing is written back."""
    folder = Path(clean_path).parent / NORMALISED_FOLDER
    digest = cut_digest(clean_path, steps_per_day, split)
    array_path, scaler_path = folder / f"{digest}.npy", folder / f"{digest}.json"
    if not scaler_path.exists():
        parts, scaler = normalised_days(clean_path, steps_per_day, split)
        with atomic_path(array_path) as tmp:
            out = np.lib.format.open_memmap(tmp, "w+", np.float32, (sum(split), *parts["train"].shape[1:]))
            np.concatenate(list(parts.values()), out=out)
            out.flush()
            del out
        write_json({"mean": scaler.mean, "std": scaler.std}, scaler_path)
        log.info("%s: normalised days written to %s (%.2f GB float32), memory-mapped from there", clean_path,
                 array_path, array_path.stat().st_size / 1e9)
    scaler = Scaler(**json.loads(scaler_path.read_text()))
    days = np.load(array_path, mmap_mode="c")
    return split_days(days.reshape(-1, days.shape[2]), steps_per_day, split), scaler


def load_data(clean_path: str | Path, report_path: str | Path, spec: DataSpec) -> PreparedData:
    """`prepare` with the days and windows of a run's data spec."""
    return prepare(clean_path, report_path, spec.steps_per_day, spec.split, spec.n_his, spec.n_pred)


def metric_mask(report: pd.DataFrame, report_path: str | Path = "fill report") -> np.ndarray:
    """Stations that enter the metrics: all but those the fill report flags as all-missing or constant.

    Flagged stations stay in the data (the model sees and predicts them); only their errors are left out,
    since their 'truth' is a fill value. Raises if no station is left to score.
    """
    all_missing = report["all_missing"].to_numpy(bool)
    constant = report["constant"].to_numpy(bool) if "constant" in report else np.zeros_like(all_missing)
    keep = ~(all_missing | constant)
    if not keep.any():
        raise DataError(f"{report_path}: every station is all-missing or constant; nothing to evaluate. "
                        "Check the raw values file.")
    if not keep.all():
        log.warning("stations left out of the metrics (kept in the data): all-missing %s, constant %s",
                    [int(k) for k in np.flatnonzero(all_missing)],
                    [int(k) for k in np.flatnonzero(constant & ~all_missing)])
    return keep
