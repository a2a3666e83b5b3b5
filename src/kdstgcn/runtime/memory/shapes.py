"""A job as the memory estimate sees it (`JobShape`: its model's `Layout`, its `Days`, its graph and teacher), and
what the estimate is made of (`Term`, `Estimate`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

JOB_KINDS = ("train", "prune", "evaluate", "export")
FLOAT32 = 4


class Layout(Protocol):
    """What sets a model's memory (`kdstgcn.model.architecture.Architecture` has it): blocks [c_in, c_t, c_out],
    the temporal kernel kt, the Chebyshev terms ks, the input window n_his and the stations."""

    n_nodes: int
    blocks: tuple[tuple[int, int, int], ...]
    kt: int
    ks: int
    n_his: int


class Days(Protocol):
    """How a dataset is cut (`kdstgcn.config.datasets.DataSpec` has it): steps per day, (train, val, test) days,
    input and output windows."""

    steps_per_day: int
    split: tuple[int, ...]
    n_his: int
    n_pred: int


@dataclass(frozen=True)
class TeacherShape:
    """The frozen teacher a job reads and where its outputs come from: `live` (a forward per batch),
    `predictions` (computed once, [W, N]) or `store` (the feature store of `stored_groups` in `store_value_bytes`
    per value, kdstgcn.training.teacher_cache)."""

    model: Layout
    outputs: str = "live"
    stored_groups: tuple[str, ...] = ()
    store_value_bytes: int = FLOAT32


@dataclass(frozen=True)
class GraphShape:
    """A model's Chebyshev stack: `dense` (up to kdstgcn.runtime.sizes.DENSE_MAX_NODES stations) or sparse, and of a
    sparse one already built its stored entries (all terms) and the most entries of a row of each term T_1.. (the
    neighbour slots of its exported form); not built yet, `estimate.PLANNED_ROW_ENTRIES` stand in for both."""

    dense: bool
    nonzeros: int | None = None
    row_entries: tuple[int, ...] | None = None


@dataclass(frozen=True)
class JobShape:
    """A job as the estimate sees it. `model`: the model trained, pruned (its base), evaluated or exported;
    `eval_batch_size`: the windows a rollout passes at once (on a CPU in chunks), or an export checks its files on;
    `graph`: its Chebyshev stack (`GraphShape`); `loss_terms`: the distance terms of its loss ("tcd", "scd",
    "skd"), SCD over `scd_stations` (None: every station); `rollout_steps`: the steps of rollout training (1: the
    one-step loss); `compiles`: whether the job runs torch.compile; `device_type`: where it computes."""

    kind: str
    model: Layout
    days: Days
    graph: GraphShape
    batch_size: int = 50
    eval_batch_size: int = 1140
    horizon_steps: int = 9
    teacher: TeacherShape | None = None
    loss_terms: frozenset[str] = frozenset()
    scd_stations: int | None = None
    rollout_steps: int = 1
    compiles: bool = False
    device_type: str = "cpu"

    def __post_init__(self):
        if self.kind not in JOB_KINDS:
            raise ValueError(f"job kind {self.kind!r}: choose one of {list(JOB_KINDS)}")


@dataclass(frozen=True)
class Term:
    """Bytes of one part of a job's memory, what they hold, and the setting that lowers them ("" where none)."""

    what: str
    bytes: int
    lowered_by: str = ""


@dataclass(frozen=True)
class Estimate:
    """A job's memory: the terms it holds throughout and the terms of each phase; its peak is what it holds plus its
    largest phase."""

    held: list[Term]
    phases: dict[str, list[Term]] = field(default_factory=dict)

    @property
    def peak_phase(self) -> str | None:
        return max(self.phases, key=lambda name: _sum(self.phases[name]), default=None)

    @property
    def peak_bytes(self) -> int:
        phase = self.peak_phase
        return _sum(self.held) + (0 if phase is None else _sum(self.phases[phase]))

    def largest_terms(self) -> list[Term]:
        """The terms of the peak, largest first."""
        phase = self.peak_phase
        terms = self.held + ([] if phase is None else self.phases[phase])
        return sorted(terms, key=lambda term: -term.bytes)


def _sum(terms: list[Term]) -> int:
    return sum(term.bytes for term in terms)
