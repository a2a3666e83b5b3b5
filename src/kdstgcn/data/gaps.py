"""Missing readings and how they are filled: the rule the cleaning step applies to a whole series and `predict` to
the readings it is given. Torch-free."""
from __future__ import annotations

import numpy as np
import pandas as pd


def missing_readings(values: np.ndarray) -> np.ndarray:
    """Where a reading is missing: NaN, inf or 0 (PeMS writes 0 for a detector that reported nothing)."""
    return ~np.isfinite(values) | (values == 0)


def fill_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill the missing readings (NaN) of a time x station table linearly in time per station, the steps before
    the first and after the last reading with the nearest one; a station with no reading stays NaN."""
    return frame.interpolate(method="linear", axis=0, limit_direction="both")
