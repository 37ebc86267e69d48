"""The EM core's vocabularies and workbench's own defaults, importable without numba.

:class:`~workbench.em.GaussianMixture` keeps scikit-learn's defaults (``n_init=1``), because it
is a drop-in; the study config and ``workbench fit`` run several starts by default, because
one k-means start finds a poor local maximum often enough to bias a study.

The vocabularies of :mod:`workbench.em.inference` live here too, so the study config and the
CLI can validate against them without loading numba.
"""

from __future__ import annotations

__all__ = [
    "BOOTSTRAP_INTERVALS",
    "BOOTSTRAP_KINDS",
    "DEFAULT_N_BOOT",
    "INIT_METHODS",
    "INTERVAL_METHODS",
    "SE_METHODS",
    "WALD_SCALES",
    "WORKBENCH_N_INIT",
]

#: Values of ``GaussianMixture(init_params=...)``, as scikit-learn.
INIT_METHODS: tuple[str, ...] = ("kmeans", "k-means++", "random", "random_from_data")
#: EM starts in a study and in ``workbench fit`` unless the user says otherwise.
WORKBENCH_N_INIT = 3

#: Estimators of the covariance of the estimates (:func:`workbench.em.standard_errors`).
SE_METHODS: tuple[str, ...] = ("hessian", "opg", "sandwich")
#: Scales of Wald intervals (:func:`workbench.em.wald_intervals`).
WALD_SCALES: tuple[str, ...] = ("natural", "transformed")
#: Bootstrap resampling schemes (:func:`workbench.em.bootstrap`), as mclust's bs/pb/wlbs.
BOOTSTRAP_KINDS: tuple[str, ...] = ("nonparametric", "parametric", "weighted")
#: Bootstrap interval constructions (:func:`workbench.em.bootstrap_intervals`).
BOOTSTRAP_INTERVALS: tuple[str, ...] = ("percentile", "basic")
#: Interval methods a study can score for EM (``[methods.em] intervals``): a Wald interval
#: from each analytic SE method, or the bootstrap's percentile interval.
INTERVAL_METHODS: tuple[str, ...] = (*SE_METHODS, "bootstrap")
#: Bootstrap draws unless a study or caller says otherwise (mclust's ``nboot``).
DEFAULT_N_BOOT = 999
