"""Bayesian Gaussian mixture in PyMC: model, sampling, relabelling, diagnostics.

``fit_bayes`` is the entry point; it returns a ``BayesFit`` with the raw ArviZ DataTree and
relabelled draws. The layers below it are public for studies that need them:
:mod:`~workbench.bayes.model` (the PyMC model), :mod:`~workbench.bayes.priors`,
:mod:`~workbench.bayes.relabel` (Stephens, Hungarian-to-reference, label-switching
detection) and :mod:`~workbench.bayes.diagnostics`.

PyMC is imported on first use of a name that needs it, so reading a config or a stored
study never pays for it (:mod:`~workbench.bayes.options` and :class:`BayesPriors` are light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr
from workbench.bayes.options import SAMPLERS
from workbench.bayes.priors import BayesPriors

if TYPE_CHECKING:
    from workbench.bayes.model import build_model
    from workbench.bayes.sampling import (
        BayesFit,
        SamplingError,
        clear_model_cache,
        fit_bayes,
        precompile,
    )

__all__ = [
    "SAMPLERS",
    "BayesFit",
    "BayesPriors",
    "SamplingError",
    "build_model",
    "clear_model_cache",
    "fit_bayes",
    "precompile",
]

_LAZY = {
    "build_model": "workbench.bayes.model",
    "BayesFit": "workbench.bayes.sampling",
    "SamplingError": "workbench.bayes.sampling",
    "clear_model_cache": "workbench.bayes.sampling",
    "fit_bayes": "workbench.bayes.sampling",
    "precompile": "workbench.bayes.sampling",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
