"""workbench: compare EM and Bayesian inference for Gaussian mixtures against known truth.

Names are imported on first use, so ``import workbench`` (and the command line's ``status``
or ``results``) does not load PyMC, ArviZ or matplotlib until a fit or a plot needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr

if TYPE_CHECKING:
    from workbench.bayes import fit_bayes
    from workbench.em import GaussianMixture
    from workbench.errors import WorkbenchError
    from workbench.metrics import score_point_estimate, score_posterior
    from workbench.mixture import MixtureParams, log_prob, sample
    from workbench.report import build_report
    from workbench.simulate import Dataset, Scenario, simulate
    from workbench.study import load_study, run_study

__all__ = [
    "Dataset",
    "GaussianMixture",
    "MixtureParams",
    "Scenario",
    "WorkbenchError",
    "build_report",
    "fit_bayes",
    "load_study",
    "log_prob",
    "run_study",
    "sample",
    "score_point_estimate",
    "score_posterior",
    "simulate",
]

_HOME = {
    "Dataset": "workbench.simulate",
    "GaussianMixture": "workbench.em",
    "MixtureParams": "workbench.mixture",
    "Scenario": "workbench.simulate",
    "WorkbenchError": "workbench.errors",
    "build_report": "workbench.report",
    "fit_bayes": "workbench.bayes",
    "load_study": "workbench.study",
    "log_prob": "workbench.mixture",
    "run_study": "workbench.study",
    "sample": "workbench.mixture",
    "score_point_estimate": "workbench.metrics",
    "score_posterior": "workbench.metrics",
    "simulate": "workbench.simulate",
}


__getattr__ = lazy_getattr(__name__, _HOME)


def __dir__() -> list[str]:
    return sorted(__all__)
