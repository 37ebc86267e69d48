"""The Bayesian fit's vocabularies and defaults, importable without PyMC.

The study config, the command line and :func:`workbench.bayes.fit_bayes` all read these, so a
sampler name or a default is written once.
"""

from __future__ import annotations

__all__ = [
    "ADVI_DRAWS",
    "ADVI_STEPS",
    "AUTO_SAMPLER",
    "DEFAULT_CHAINS",
    "DEFAULT_DRAWS",
    "DEFAULT_ORDERING",
    "DEFAULT_TARGET_ACCEPT",
    "DEFAULT_TUNE",
    "TARGET_ACCEPT_SAMPLERS",
    "MCMC_SAMPLERS",
    "ORDERINGS",
    "SAMPLERS",
]

#: MCMC samplers; ``"auto"`` picks :data:`AUTO_SAMPLER`.
MCMC_SAMPLERS: tuple[str, ...] = ("auto", "nutpie", "pymc", "numpyro")
#: Every value of ``fit_bayes(sampler=...)``: the MCMC samplers and mean-field ADVI.
SAMPLERS: tuple[str, ...] = (*MCMC_SAMPLERS, "advi")
#: The fastest sampler that converged on our models (see experiments/benchmarks/bayes_samplers.py).
AUTO_SAMPLER = "nutpie"

#: Four chains, as PyMC: enough for a between-chain r_hat to mean something.
DEFAULT_CHAINS = 4
DEFAULT_DRAWS = 1000
DEFAULT_TUNE = 1000
#: NUTS' target acceptance rate during step-size adaptation: nutpie's and PyMC's own default.
#: Higher values take smaller steps, which avoids divergences in funnel-like regions (a
#: near-empty component's mean and scale). In SBC (README, "Calibration") 0.95 cut the share
#: of fits with divergences from 59% to 22% (1-D, K = 2) at 1.9-2.6x the sampling time.
DEFAULT_TARGET_ACCEPT = 0.8
#: The samplers that take ``target_accept``; with the others another value than the default is
#: an error.
TARGET_ACCEPT_SAMPLERS: tuple[str, ...] = ("auto", "nutpie")
#: How the draws get the ordered labelling (first mean coordinate increasing). 'transform':
#: the sampler works on PyMC's ordered transform. 'sort': it samples the exchangeable
#: (label-switching) model and each draw's components are sorted jointly afterwards, which
#: targets the same ordered posterior. In 2-D the transform's chains can stay on one side of
#: a low-density ridge where two components swap their first-coordinate order; in SBC
#: (README, "Calibration") the 95% intervals of K = 2 in 2-D covered 0.911 with 'transform'
#: and 0.945 (MCSE 0.006) with 'sort'.
ORDERINGS: tuple[str, ...] = ("transform", "sort")
DEFAULT_ORDERING = "transform"
#: ADVI: draws taken from the fitted approximation, and optimisation steps.
ADVI_DRAWS = 1000
ADVI_STEPS = 10_000
#: Dirichlet concentration of the sparse overfitted mixture (:mod:`workbench.bayes.sparse`):
#: small enough that superfluous components empty (Malsiner-Walli et al. 2016 use 0.01).
SPARSE_CONCENTRATION = 0.01
