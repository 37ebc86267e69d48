"""workbench: compare EM and Bayesian inference for Gaussian mixtures against known truth."""

from workbench.bayes import fit_bayes
from workbench.em import GaussianMixture
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
