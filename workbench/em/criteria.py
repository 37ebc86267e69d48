"""Information criteria for a fitted Gaussian mixture: BIC, ICL and AIC.

Sign convention
---------------
Every criterion here is on scikit-learn's scale: **lower is better**.

.. code-block:: text

    BIC = -2 loglik + p log n                 (sklearn's GaussianMixture.bic)
    ICL = BIC - 2 sum_i sum_k C_ik log z_ik   (C the MAP hard assignment, z the responsibilities)
    AIC = -2 loglik + 2 p                     (sklearn's GaussianMixture.aic)

``p`` is :func:`workbench.mixture.n_parameters` and ``n`` the number of rows. R's mclust
reports the same quantities negated, **larger is better**: ``BIC_mclust = 2 loglik - p log n
= -BIC`` and ``ICL_mclust = BIC_mclust + 2 sum_i sum_k C_ik log z_ik = -ICL`` (mclust's
parameter counts for VVV, EEE, VVI and VII equal ours for full, tied, diag and spherical).
:class:`InformationCriteria` carries both, so nobody has to flip a sign by hand.

The entropy term ``sum_i sum_k C_ik log z_ik = sum_i max_k log z_ik`` is never positive,
so ICL >= BIC: ICL adds a penalty for fits whose components overlap (Biernacki, Celeux &
Govaert 2000).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from workbench import mixture
from workbench.em._estimator import GaussianMixture
from workbench.mixture import MixtureParams, check_covariance_type, n_parameters

__all__ = ["InformationCriteria", "information_criteria"]


class InformationCriteria(NamedTuple):
    """Log-likelihood and information criteria of one fit on one dataset.

    ``bic``, ``icl`` and ``aic`` are lower-is-better (scikit-learn); ``bic_mclust`` and
    ``icl_mclust`` are their negatives, larger-is-better (R mclust).

    Attributes
    ----------
    loglik : float
        ``sum_i log sum_k w_k N(x_i | mu_k, Sigma_k)``.
    n_parameters : int
        Free parameters of the model (covariances, means, ``K - 1`` weights).
    n_samples : int
    map_log_responsibility : float
        ``sum_i sum_k C_ik log z_ik`` (<= 0): the log responsibility of each row's MAP
        component, summed.
    bic, icl, aic : float
        Lower is better.
    bic_mclust, icl_mclust : float
        ``-bic`` and ``-icl``: mclust's convention, larger is better.
    """

    loglik: float
    n_parameters: int
    n_samples: int
    map_log_responsibility: float
    bic: float
    icl: float
    aic: float
    bic_mclust: float
    icl_mclust: float


def _checked_data(X: np.ndarray, n_features: int) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}), got shape {X.shape}")
    if X.shape[0] < 1:
        raise ValueError("X has no rows; the criteria need at least one sample")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values; remove or impute them first")
    return X


def information_criteria(
    model: GaussianMixture | MixtureParams,
    X: np.ndarray,
    *,
    covariance_type: str | None = None,
) -> InformationCriteria:
    """BIC, ICL and AIC of a fitted mixture on ``X`` (see the module docstring for signs).

    Parameters
    ----------
    model : GaussianMixture or MixtureParams
        A fitted estimator, or parameters with dense covariances.
    X : array-like of shape (n_samples, n_features)
        The data the model was fitted to.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, optional
        Needed with ``MixtureParams`` (it sets the parameter count); must be omitted or
        equal to the estimator's with a ``GaussianMixture``.

    Returns
    -------
    InformationCriteria

    Raises
    ------
    ValueError
        If ``X`` has the wrong shape or non-finite values, or ``covariance_type`` is
        missing, unknown or contradicts the estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.em import GaussianMixture
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> gm = GaussianMixture(1, random_state=0).fit(X)
    >>> ic = information_criteria(gm, X)
    >>> bool(np.isclose(ic.bic, gm.bic(X))), ic.bic_mclust == -ic.bic
    (True, True)
    """
    if isinstance(model, GaussianMixture):
        if covariance_type is not None and covariance_type != model.covariance_type:
            raise ValueError(
                f"covariance_type={covariance_type!r} contradicts the estimator's "
                f"{model.covariance_type!r}; omit it for a GaussianMixture"
            )
        covariance_type = model.covariance_type
        params = model.to_params()
    elif isinstance(model, MixtureParams):
        if covariance_type is None:
            raise ValueError(
                "covariance_type is required with MixtureParams (it sets the parameter "
                "count); use one of 'full', 'tied', 'diag', 'spherical'"
            )
        params = model
    else:
        raise ValueError(
            f"model must be a fitted GaussianMixture or MixtureParams, got {type(model).__name__}"
        )
    check_covariance_type(covariance_type)
    X = _checked_data(X, params.n_features)
    n = X.shape[0]
    # One pass gives the log-likelihood and the responsibilities of every row.
    weighted = params.weighted_log_prob(X)
    log_norm = logsumexp(weighted, axis=1)
    map_term = float(np.sum(np.max(weighted, axis=1) - log_norm))
    loglik = float(np.sum(log_norm))
    p = n_parameters(params.n_components, params.n_features, covariance_type)
    bic = mixture.bic(loglik, p, n)
    icl = bic - 2.0 * map_term
    return InformationCriteria(
        loglik=loglik,
        n_parameters=p,
        n_samples=n,
        map_log_responsibility=map_term,
        bic=bic,
        icl=icl,
        aic=mixture.aic(loglik, p),
        bic_mclust=-bic,
        icl_mclust=-icl,
    )
