"""EM core: an sklearn-compatible Gaussian mixture over pure, fused EM step functions.

``GaussianMixture`` is the user-facing estimator. The pure pieces it wraps are exported
for studies that want to drive EM themselves: ``em_step`` runs one iteration on an
``EMState``; ``sufficient_statistics`` is the fused E-step pass; ``m_step`` turns its
statistics into parameters. Names load on first use (numba compiles lazily anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr

if TYPE_CHECKING:
    from workbench.em._estimator import EMHistory, GaussianMixture
    from workbench.em._kernels import SufficientStats, sufficient_statistics
    from workbench.em._steps import EMState, StepResult, em_step, m_step
    from workbench.em.inference import (
        BootstrapResult,
        ConfidenceIntervals,
        ObservedInformation,
        StandardErrors,
        bootstrap,
        bootstrap_intervals,
        observed_information,
        standard_errors,
        wald_intervals,
    )

__all__ = [
    "BootstrapResult",
    "ConfidenceIntervals",
    "EMHistory",
    "EMState",
    "GaussianMixture",
    "ObservedInformation",
    "StandardErrors",
    "StepResult",
    "SufficientStats",
    "bootstrap",
    "bootstrap_intervals",
    "em_step",
    "m_step",
    "observed_information",
    "standard_errors",
    "sufficient_statistics",
    "wald_intervals",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "EMHistory": "workbench.em._estimator",
        "GaussianMixture": "workbench.em._estimator",
        "SufficientStats": "workbench.em._kernels",
        "sufficient_statistics": "workbench.em._kernels",
        "EMState": "workbench.em._steps",
        "StepResult": "workbench.em._steps",
        "em_step": "workbench.em._steps",
        "m_step": "workbench.em._steps",
        **{
            name: "workbench.em.inference"
            for name in (
                "BootstrapResult",
                "ConfidenceIntervals",
                "ObservedInformation",
                "StandardErrors",
                "bootstrap",
                "bootstrap_intervals",
                "observed_information",
                "standard_errors",
                "wald_intervals",
            )
        },
    },
)
