"""Reading a user's data file into an array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError

__all__ = ["DataError", "read_data_csv"]


class DataError(WorkbenchError, ValueError):
    """A data file that cannot be used as it is; the message names the file and the problem."""


def read_data_csv(path: str | Path) -> np.ndarray:
    """Read a numeric data table: one row per observation, one column per feature.

    A header row is allowed (detected by pandas). Every column must be numeric.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray of shape (n_samples, n_features)

    Raises
    ------
    DataError
        If the file is missing or empty, a column is not numeric, or a value is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file; give a CSV with one row per observation")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}: the file is empty; give a CSV with one row per observation"
        ) from None
    # a header of numbers means the file had no header: read it again without one
    if all(_is_number(c) for c in frame.columns):
        frame = pd.read_csv(path, header=None)
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        column = bad[0]
        value = frame[column][pd.to_numeric(frame[column], errors="coerce").isna()].iloc[0]
        raise DataError(
            f"{path}: column {column!r} holds the non-numeric value {value!r}; "
            "every column must be numeric"
        )
    if frame.isna().any().any():
        row, column = np.argwhere(frame.isna().to_numpy())[0]
        raise DataError(
            f"{path}: row {row + 1}, column {frame.columns[column]!r} is missing; "
            "every value must be a number"
        )
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no data rows")
    return frame.to_numpy(dtype=float)


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True
