"""workbench: compare EM and Bayesian inference for Gaussian mixtures against known truth."""

from workbench.em import GaussianMixture
from workbench.mixture import MixtureParams, log_prob, sample

__all__ = ["GaussianMixture", "MixtureParams", "log_prob", "sample"]
