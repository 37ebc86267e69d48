"""Real data, no truth: read a CSV, fit EM and the Bayesian mixture, show them side by side.

This is what ``workbench fit DATA.csv --components K`` runs: :func:`read_data_csv`
(:mod:`~workbench.realdata.read`), :func:`fit_data` (:mod:`~workbench.realdata.fit`) and
:func:`format_fit` (:mod:`~workbench.realdata.display`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr
from workbench.realdata.read import DataError, read_data_csv

if TYPE_CHECKING:
    from workbench.realdata.display import format_fit
    from workbench.realdata.fit import RealDataFit, fit_data

__all__ = ["DataError", "RealDataFit", "fit_data", "format_fit", "read_data_csv"]

__getattr__ = lazy_getattr(
    __name__,
    {
        "RealDataFit": "workbench.realdata.fit",
        "fit_data": "workbench.realdata.fit",
        "format_fit": "workbench.realdata.display",
    },
)
