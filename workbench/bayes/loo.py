"""PSIS-LOO of a Bayesian mixture fit, from the pointwise log-likelihood it stores.

:func:`loo_of_fit` calls ``arviz_stats.loo`` on ``BayesFit.idata`` (group
``log_likelihood``, variable ``x``, dims (chain, draw, obs); the likelihood is the
marginalised mixture, so each observation's term is ``log sum_k w_k N(x_i | mu_k,
Sigma_k)`` per draw) and returns the numbers a study stores. The Pareto-k threshold is
arviz_stats' ``good_k = min(1 - 1/log10 S, 0.7)`` for S posterior draws (read from
``arviz_stats/loo/loo_helper.py::_warn_pareto_k``, arviz-stats 1.3.3). arviz_stats warns
when any k exceeds it; here that warning becomes the count ``n_high_pareto_k``, so it is
stored rather than printed and never lost.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from arviz_stats import loo

from workbench.bayes.model import OBSERVED
from workbench.bayes.sampling import BayesFit

__all__ = ["LooResult", "PsisError", "loo_of_fit", "pareto_k_threshold"]

# arviz_stats' message when an observation's tail of importance ratios is constant, so no
# generalized Pareto distribution can be fitted (arviz_stats/base/diagnostics.py, 1.3.3).
_CONSTANT_TAIL = "All tail values are the same"


class PsisError(ValueError):
    """PSIS could not smooth a fit's importance ratios; the message says why."""


class LooResult(NamedTuple):
    """PSIS-LOO summary of one fit.

    Attributes
    ----------
    elpd : float
        Estimated expected log pointwise predictive density (sum over observations).
    se : float
        Its standard error.
    p_loo : float
        Effective number of parameters.
    n_high_pareto_k : int
        Observations whose Pareto k exceeds ``pareto_k_threshold``.
    pareto_k_threshold : float
        ``min(1 - 1/log10(n_samples), 0.7)``.
    n_samples : int
        Posterior draws S (chains x draws).
    n_data_points : int
    pareto_k : ndarray of shape (n_data_points,)
    elpd_data : arviz_stats ELPDDataLOO
        The full result (pointwise), e.g. for ``arviz_stats.compare``.
    """

    elpd: float
    se: float
    p_loo: float
    n_high_pareto_k: int
    pareto_k_threshold: float
    n_samples: int
    n_data_points: int
    pareto_k: np.ndarray
    elpd_data: Any


def pareto_k_threshold(n_samples: int) -> float:
    """``min(1 - 1/log10(S), 0.7)``: Pareto k above this makes PSIS unreliable (Vehtari et al.).

    Parameters
    ----------
    n_samples : int
        Number of posterior draws S.

    Returns
    -------
    float
    """
    return min(1.0 - 1.0 / np.log10(n_samples), 0.7) if n_samples > 1 else 0.7


def loo_of_fit(fit: BayesFit) -> LooResult:
    """PSIS-LOO of a :class:`~workbench.bayes.sampling.BayesFit` via ``arviz_stats.loo``.

    Parameters
    ----------
    fit : BayesFit
        Its ``idata`` must hold the ``log_likelihood`` group (``fit_bayes`` always adds it).

    Returns
    -------
    LooResult

    Raises
    ------
    ValueError
        If the fit has no pointwise log-likelihood.
    PsisError
        If an observation's largest importance ratios are all equal: the draws repeat (a
        chain that did not move), and no Pareto tail can be fitted.
    """
    if "log_likelihood" not in fit.idata.children:
        raise ValueError("fit.idata has no log_likelihood group; PSIS-LOO needs it")
    with warnings.catch_warnings():
        # The high-k warning is counted below instead of printed.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        try:
            result = loo(fit.idata, pointwise=True, var_name=OBSERVED)
        except ValueError as exc:
            if _CONSTANT_TAIL not in str(exc):
                raise
            raise PsisError(
                "PSIS-LOO cannot fit a Pareto tail: an observation's largest importance ratios "
                "are all equal, so the draws repeat (a chain that did not move; max r_hat "
                f"{fit.diagnostics.get('max_r_hat', float('nan')):.3g})"
            ) from exc
    pareto_k = np.asarray(result.pareto_k.values, dtype=float).ravel()
    return LooResult(
        elpd=float(result.elpd),
        se=float(result.se),
        p_loo=float(result.p),
        n_high_pareto_k=int(np.sum(pareto_k > result.good_k)),
        pareto_k_threshold=float(result.good_k),
        n_samples=int(result.n_samples),
        n_data_points=int(result.n_data_points),
        pareto_k=pareto_k,
        elpd_data=result,
    )
