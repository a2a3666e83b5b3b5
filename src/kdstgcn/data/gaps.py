"""Missing readings and how they are filled: the rule the cleaning step applies to a whole series and `predict` to
the readings it is given. Torch-free."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kdstgcn.config.datasets import FILLS


def missing_readings(values: np.ndarray) -> np.ndarray:
    """Where a reading is missing: NaN, inf or 0 (PeMS writes 0 for a detector that reported nothing)."""
    return ~np.isfinite(values) | (values == 0)


def fill_gaps(frame: pd.DataFrame, fill: str) -> pd.DataFrame:
    """Fill the missing readings (NaN) of a time x station table per station, as `fill` says:

    - interpolate: linearly in time between the readings on either side (the paper's reading); a gap at the end
      takes the last reading. A gap is then filled from a reading after it, which a deployed model cannot see.
    - causal: each gap takes the last reading before it, so every value is known at its own time.

    Steps before a station's first reading take that first reading; a station with no reading stays NaN."""
    if fill == "interpolate":
        return frame.interpolate(method="linear", axis=0, limit_direction="both")
    if fill == "causal":
        return frame.ffill().bfill()
    raise ValueError(f"unknown fill {fill!r}; one of {', '.join(FILLS)}")
