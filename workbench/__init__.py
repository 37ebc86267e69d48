"""workbench: compare EM and Bayesian inference for Gaussian mixtures against known truth."""

from workbench.mixture import MixtureParams, log_prob, sample

__all__ = ["MixtureParams", "log_prob", "sample"]
