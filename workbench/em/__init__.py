"""EM core: an sklearn-compatible Gaussian mixture over pure, fused EM step functions.

``GaussianMixture`` is the user-facing estimator. The pure pieces it wraps are exported
for studies that want to drive EM themselves: ``em_step`` runs one iteration on an
``EMState``; ``sufficient_statistics`` is the fused E-step pass; ``m_step`` turns its
statistics into parameters.
"""

from workbench.em._estimator import EMHistory, GaussianMixture
from workbench.em._kernels import SufficientStats, sufficient_statistics
from workbench.em._steps import EMState, StepResult, em_step, m_step

__all__ = [
    "EMHistory",
    "EMState",
    "GaussianMixture",
    "StepResult",
    "SufficientStats",
    "em_step",
    "m_step",
    "sufficient_statistics",
]
