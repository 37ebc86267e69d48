"""Bayesian Gaussian mixture in PyMC: model, sampling, relabelling, diagnostics.

``fit_bayes`` is the entry point; it returns a ``BayesFit`` with the raw ArviZ DataTree and
relabelled draws. The layers below it are public for studies that need them:
:mod:`~workbench.bayes.model` (priors and the PyMC model), :mod:`~workbench.bayes.relabel`
(Stephens, Hungarian-to-reference, label-switching detection) and
:mod:`~workbench.bayes.diagnostics`.
"""

from workbench.bayes.model import BayesPriors, build_model
from workbench.bayes.sampling import (
    SAMPLERS,
    BayesFit,
    SamplingError,
    clear_model_cache,
    fit_bayes,
)

__all__ = [
    "SAMPLERS",
    "BayesFit",
    "BayesPriors",
    "SamplingError",
    "build_model",
    "clear_model_cache",
    "fit_bayes",
]
