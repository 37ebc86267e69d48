"""Exact draws of a true mixture from the Bayesian model's prior.

:func:`draw_prior_mixture` draws the weights, means and covariances of a Gaussian mixture
from the prior of :func:`workbench.bayes.model.build_model`, with the same
hyperparameters, for every covariance type. It is the truth of a simulation-based
calibration (SBC) run and of coverage averaged over the prior.

The model orders the first mean coordinate, so its prior is the *ordered* prior: the
exchangeable prior (weights ``Dirichlet(alpha * ones(K))``, components i.i.d.) restricted
to ``mu[0, 0] < ... < mu[K-1, 0]`` and multiplied by ``K!``. Drawing the components from
the exchangeable prior and sorting them jointly by the first mean coordinate is an exact
draw from it: every one of the ``K!`` orderings of an exchangeable draw has the same
density, and sorting folds them onto the ordered region. PyMC's own prior sampling
(``pm.draw``, ``pm.sample_prior_predictive``) ignores the ordered transform (pymc issue
7297) and returns unsorted means, so it is not used here.

Hyperparameters must be fixed numbers. :class:`~workbench.bayes.model.BayesPriors`
leaves ``mean_loc``, ``mean_scale`` and ``scale_prior`` as ``None`` to scale them to the
data, which do not exist before the truth is drawn; a ``None`` among them raises a
``ValueError`` naming it.

The covariance priors, with ``s`` the per-feature ``scale_prior`` (see
:mod:`workbench.bayes.model`): ``full`` draws per component ``sd_j ~ HalfNormal(s_j)`` and
a correlation matrix ``C ~ LKJ(lkj_eta)`` by the onion method (Lewandowski, Kurowicka &
Joe 2009, section 3.2), ``Sigma = diag(sd) C diag(sd)``; ``tied`` draws one such matrix
for all components; ``diag`` draws ``sigma[k, j] ~ HalfNormal(s_j)``; ``spherical`` draws
``sigma[k] ~ HalfNormal(mean(s))``. With one feature ``full``, ``diag`` and ``spherical``
are the ``diag`` prior and ``tied`` draws one ``sigma ~ HalfNormal(s_0)``, as in the model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workbench.bayes.model import _parametrisation
from workbench.bayes.priors import DATA_SCALED, BayesPriors, data_scaled
from workbench.mixture import MixtureParams

__all__ = [
    "PriorDraws",
    "draw_prior_mixture",
    "fixed_hyperparameters",
    "lkj_cholesky",
    "prior_draws",
]


class PriorDraws(NamedTuple):
    """A batch of mixtures drawn from the prior.

    Attributes
    ----------
    weights : ndarray of shape (size, K)
    means : ndarray of shape (size, K, d)
    covariances : ndarray of shape (size, K, d, d)
        Dense; for ``tied`` the same matrix for every component of a draw.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def fixed_hyperparameters(priors: BayesPriors, n_features: int) -> dict[str, np.ndarray]:
    """Per-feature prior hyperparameters, which must all be given.

    Parameters
    ----------
    priors : BayesPriors
    n_features : int >= 1

    Returns
    -------
    dict
        ``mean_loc``, ``mean_scale`` and ``scale_prior``, each of shape (n_features,),
        exactly as :meth:`BayesPriors.resolve` gives them to the model.

    Raises
    ------
    ValueError
        If ``priors`` is not a :class:`BayesPriors`, if any of ``mean_loc``,
        ``mean_scale``, ``scale_prior`` is ``None`` (data-scaled), or if ``mean_loc`` has
        a length other than 1 or ``n_features``.
    """
    if not isinstance(priors, BayesPriors):
        raise ValueError(f"priors must be a BayesPriors, got {type(priors).__name__}")
    _check_count("n_features", n_features)
    missing = data_scaled(priors)
    if missing:
        raise ValueError(
            f"cannot draw a truth from the prior: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} data-scaled (None); give fixed numbers "
            f"for {', '.join(DATA_SCALED)}"
        )
    # With every data-scaled value given, resolve() reads only the number of features
    # from its argument; going through it keeps one copy of the broadcasting rules.
    return priors.resolve(np.zeros((1, n_features)))


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; use an integer >= 1")
    return int(value)


def _half_normal(rng: np.random.Generator, scale: np.ndarray, shape: tuple[int, ...]):
    return np.abs(rng.standard_normal(shape)) * scale


def lkj_cholesky(
    rng: np.random.Generator, eta: float, n_features: int, shape: tuple[int, ...]
) -> np.ndarray:
    """Cholesky factors of LKJ(eta) correlation matrices, by the onion method.

    Parameters
    ----------
    rng : numpy.random.Generator
    eta : float > 0
    n_features : int
    shape : tuple of int
        Batch shape.

    Returns
    -------
    ndarray of shape (*shape, n_features, n_features)
        Lower triangular with rows of unit length, so ``L @ L.T`` has a unit diagonal.
    """
    d = n_features
    chol = np.zeros((*shape, d, d))
    chol[..., 0, 0] = 1.0
    if d == 1:
        return chol
    beta = eta + (d - 2) / 2.0
    r = 2.0 * rng.beta(beta, beta, size=shape) - 1.0
    chol[..., 1, 0] = r
    chol[..., 1, 1] = np.sqrt(1.0 - r**2)
    for row in range(2, d):
        beta -= 0.5
        y = rng.beta(row / 2.0, beta, size=shape)
        direction = rng.standard_normal((*shape, row))
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        chol[..., row, :row] = np.sqrt(y)[..., None] * direction
        chol[..., row, row] = np.sqrt(1.0 - y)
    return chol


def _lkj_covariances(
    rng: np.random.Generator, eta: float, scale: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    d = scale.shape[0]
    sd = _half_normal(rng, scale, (*shape, d))
    chol = sd[..., :, None] * lkj_cholesky(rng, eta, d, shape)
    return chol @ np.swapaxes(chol, -1, -2)


def prior_draws(
    priors: BayesPriors,
    n_components: int,
    n_features: int,
    *,
    covariance_type: str = "full",
    size: int = 1,
    ordered: bool = True,
    rng: np.random.Generator | int | None = None,
) -> PriorDraws:
    """Draw ``size`` mixtures from the model's prior.

    Parameters
    ----------
    priors : BayesPriors
        ``mean_loc``, ``mean_scale`` and ``scale_prior`` must be given.
    n_components, n_features : int >= 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    size : int >= 1
    ordered : bool, default True
        Sort the components of each draw jointly by the first mean coordinate: the
        model's ordered prior. ``False`` gives the exchangeable prior, which is what
        PyMC's forward sampling of the model returns.
    rng : numpy.random.Generator or seed

    Returns
    -------
    PriorDraws
        weights (size, K), means (size, K, d), dense covariances (size, K, d, d).

    Raises
    ------
    ValueError
        For data-scaled or malformed hyperparameters, an unknown covariance type or a
        count below 1.
    """
    K = _check_count("n_components", n_components)
    d = _check_count("n_features", n_features)
    size = _check_count("size", size)
    hyper = fixed_hyperparameters(priors, d)
    kind = _parametrisation(covariance_type, d)
    rng = np.random.default_rng(rng)

    weights = rng.dirichlet(np.full(K, priors.dirichlet_concentration), size=size)
    means = hyper["mean_loc"] + hyper["mean_scale"] * rng.standard_normal((size, K, d))
    s = hyper["scale_prior"]
    eye = np.eye(d)
    if kind == "full_lkj":
        covariances = _lkj_covariances(rng, priors.lkj_eta, s, (size, K))
    elif kind == "tied_lkj":
        single = _lkj_covariances(rng, priors.lkj_eta, s, (size,))
        covariances = np.broadcast_to(single[:, None], (size, K, d, d)).copy()
    elif kind == "diag":
        sigma = _half_normal(rng, s, (size, K, d))
        covariances = sigma[..., :, None] ** 2 * eye
    elif kind == "spherical":
        sigma = _half_normal(rng, np.mean(s), (size, K))
        covariances = sigma[..., None, None] ** 2 * eye
    else:  # tied_sigma: one feature, one sigma
        sigma = _half_normal(rng, s[0], (size,))
        covariances = np.broadcast_to(sigma[:, None, None, None] ** 2, (size, K, 1, 1)).copy()

    if ordered:
        order = np.argsort(means[..., 0], axis=1, kind="stable")
        weights = np.take_along_axis(weights, order, axis=1)
        means = np.take_along_axis(means, order[..., None], axis=1)
        covariances = np.take_along_axis(covariances, order[..., None, None], axis=1)
    return PriorDraws(weights, means, covariances)


def draw_prior_mixture(
    priors: BayesPriors,
    n_components: int,
    n_features: int,
    *,
    covariance_type: str = "full",
    rng: np.random.Generator | int | None = None,
) -> MixtureParams:
    """Draw one true mixture from the model's ordered prior.

    Components are drawn i.i.d. from the exchangeable prior and sorted jointly by the
    first mean coordinate, an exact draw from the prior of the model that
    :func:`~workbench.bayes.model.build_model` builds with the same ``priors``.

    Parameters
    ----------
    priors : BayesPriors
        ``mean_loc``, ``mean_scale`` and ``scale_prior`` must be fixed numbers.
    n_components, n_features : int >= 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    rng : numpy.random.Generator or seed

    Returns
    -------
    MixtureParams
        ``means[:, 0]`` is increasing; dense covariances of shape (K, d, d).

    Raises
    ------
    ValueError
        If a hyperparameter is data-scaled (``None``), ``mean_loc`` does not match
        ``n_features``, ``covariance_type`` is unknown, or a count is below 1.

    Examples
    --------
    >>> from workbench.bayes.priors import BayesPriors
    >>> priors = BayesPriors(mean_loc=0.0, mean_scale=2.0, scale_prior=1.0)
    >>> truth = draw_prior_mixture(priors, 3, 2, covariance_type="diag", rng=0)
    >>> truth.means.shape, bool(truth.means[0, 0] < truth.means[1, 0] < truth.means[2, 0])
    ((3, 2), True)
    """
    draws = prior_draws(
        priors, n_components, n_features, covariance_type=covariance_type, size=1, rng=rng
    )
    # Dirichlet draws are renormalised: MixtureParams checks the sum to 1e-8.
    weights = draws.weights[0] / draws.weights[0].sum()
    return MixtureParams(weights, draws.means[0], draws.covariances[0])
