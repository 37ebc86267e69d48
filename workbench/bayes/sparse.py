"""Sparse overfitted mixtures: read K off the posterior number of non-empty components.

Rousseau & Mengersen (2011) showed that with a Dirichlet(alpha) prior on the weights and
``alpha`` below half the dimension of a component's parameters, the posterior of an
overfitted mixture (``K_max`` larger than the truth) empties the superfluous components.
Malsiner-Walli, Frühwirth-Schnatter & Grün (2016, *Statistics and Computing* 26:303-324)
made this a way to choose K: fit ``K_max`` components with a very small concentration and
take the most frequent number of non-empty components over the MCMC draws. They used Gibbs
sampling with the allocations as latent variables and a concentration ``e0`` of order
0.01 (fixed, or under a Gamma hyperprior; recalled, not re-checked here);
:data:`SPARSE_CONCENTRATION` = 0.01 is the default.

Our model marginalises the allocations (:mod:`workbench.bayes.model`), so they are drawn
afterwards: for each posterior draw ``s`` and row ``i``, ``z_i ~ Categorical(r_s[i, :])``
with ``r_s`` the responsibilities at that draw's parameters
(:func:`workbench.mixture.responsibilities`), and the number of distinct ``z_i`` is the
draw's count of non-empty components. Relabelling does not matter: a count is
label-invariant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.bayes.model import BayesPriors
from workbench.bayes.options import SPARSE_CONCENTRATION
from workbench.bayes.sampling import BayesFit, fit_bayes
from workbench.mixture import MixtureParams, responsibilities

__all__ = [
    "SPARSE_CONCENTRATION",
    "SparseMixtureResult",
    "fit_sparse_mixture",
    "occupied_counts",
]


@dataclass(frozen=True)
class SparseMixtureResult:
    """Posterior over the number of non-empty components of a sparse overfitted mixture.

    Attributes
    ----------
    fit : BayesFit
        The ``max_components`` fit. Its per-component r_hat/ESS mix empty components,
        which wander over their prior, with filled ones: read convergence off ``counts``.
    counts : ndarray of shape (chains, draws)
        Non-empty components in each draw (allocations drawn once per draw).
    posterior : ndarray of shape (max_components + 1,)
        ``posterior[k]`` = share of draws with ``k`` non-empty components (entry 0 is 0).
    chain_posteriors : ndarray of shape (chains, max_components + 1)
        The same per chain: a label-invariant convergence check (chains that disagree
        on the count have not mixed between the numbers of clusters).
    mode : int
        The most frequent count (ties: the smaller count); the estimate of K.
    prob_true : float or None
        ``posterior[true_components]`` when the truth was given.
    concentration : float
        The Dirichlet concentration used.
    """

    fit: BayesFit
    counts: np.ndarray
    posterior: np.ndarray
    chain_posteriors: np.ndarray
    mode: int
    prob_true: float | None
    concentration: float


def occupied_counts(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Draw allocations from each draw's responsibilities and count the non-empty components.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, n_features)
    covariances : ndarray of shape (S, K, n_features, n_features)
    rng : numpy Generator or seed

    Returns
    -------
    ndarray of shape (S,)
        Integers in ``[1, K]``.
    """
    rng = np.random.default_rng(rng)
    X = np.asarray(X, dtype=float)
    S, K = weights.shape
    counts = np.empty(S, dtype=np.intp)
    for s in range(S):
        w = np.clip(weights[s], 0.0, None)
        resp = responsibilities(X, MixtureParams(w / w.sum(), means[s], covariances[s]))
        # Inverse-CDF draw of one category per row; the clip guards against a last
        # cumulative value a rounding unit below 1.
        cumulative = np.cumsum(resp, axis=1)
        u = np.asarray(rng.random(X.shape[0]))[:, None]
        z = np.minimum(np.sum(cumulative < u, axis=1), K - 1)
        counts[s] = np.unique(z).size
    return counts


def fit_sparse_mixture(
    X: np.ndarray,
    max_components: int = 6,
    *,
    concentration: float = SPARSE_CONCENTRATION,
    covariance_type: str = "full",
    true_components: int | None = None,
    init: MixtureParams | None = None,
    priors: BayesPriors | Mapping[str, Any] | None = None,
    sampler: str = "auto",
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    random_seed: int | np.random.Generator | None = None,
    cores: int | None = None,
) -> SparseMixtureResult:
    """Fit ``max_components`` with a sparse Dirichlet prior; posterior of the non-empty count.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    max_components : int, default 6
        ``K_max``; should exceed any plausible K.
    concentration : float > 0, default :data:`SPARSE_CONCENTRATION`
        Dirichlet concentration of the weights; overrides ``priors.dirichlet_concentration``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    true_components : int, optional
        The true K, when known (simulations): sets ``prob_true``.
    init : MixtureParams with ``max_components`` components, optional
        Where the chains start. Default: the EM fit with ``max_components`` components
        (best of 3 starts, collapsing components re-seeded). It overfits, splitting
        clusters; the sparse prior then empties the superfluous components during
        sampling. Starting there rather than at ``fit_bayes``'s data slices keeps every
        chain inside the data, which the 2-D models need (see STACK-NOTES).
    priors : BayesPriors or mapping, optional
        Other prior settings, as for :func:`~workbench.bayes.sampling.fit_bayes`.
    sampler, chains, draws, tune, random_seed, cores
        As for :func:`~workbench.bayes.sampling.fit_bayes`.

    Returns
    -------
    SparseMixtureResult

    Raises
    ------
    ValueError
        For bad settings, naming the value.

    Notes
    -----
    Measured here (2 chains x 500 draws after 500 tuning steps, nutpie): on a
    well-separated K = 3, d = 2, n = 500 dataset, ``max_components=6`` with full
    covariances put 0.979 of its draws on 3 non-empty components (31 divergences;
    compile 549 s and sampling 616 s on the loaded 2-core machine). The spherical model
    on n = 300 (the test case): 0.996 (chains 0.994 and 0.998), 30 divergences, compile
    45 s, sampling 53 s. The divergences come from the empty components, whose weights
    drift towards 0 on the log scale; both chains still agreed on the count.
    """
    if isinstance(max_components, bool) or not isinstance(max_components, int | np.integer):
        raise ValueError(f"max_components={max_components!r} is not allowed; use an integer >= 2")
    if max_components < 2:
        raise ValueError(f"max_components={max_components!r} is not allowed; use an integer >= 2")
    if true_components is not None and (
        isinstance(true_components, bool)
        or not isinstance(true_components, int | np.integer)
        or not 1 <= true_components <= max_components
    ):
        raise ValueError(
            f"true_components={true_components!r} is not allowed; use None or an integer in "
            f"[1, max_components={max_components}]"
        )
    base = BayesPriors() if priors is None else priors
    if not isinstance(base, BayesPriors):
        base = BayesPriors.from_dict(base)
    resolved = BayesPriors(
        dirichlet_concentration=concentration,
        mean_loc=base.mean_loc,
        mean_scale=base.mean_scale,
        scale_prior=base.scale_prior,
        lkj_eta=base.lkj_eta,
    )
    rng = np.random.default_rng(random_seed)
    X = np.asarray(X, dtype=float)
    start = init if init is not None else _overfitted_start(X, max_components, covariance_type, rng)
    fit = fit_bayes(
        X,
        max_components,
        covariance_type=covariance_type,
        sampler=sampler,
        chains=chains,
        draws=draws,
        tune=tune,
        priors=resolved,
        init=start,
        # Relabelling to the start is cheap (Hungarian per draw); Stephens' algorithm on
        # K_max components would cost far more, and the count needs no labels.
        reference=start,
        random_seed=rng,
        cores=cores,
    )
    weights, means, covariances = fit.flat_draws()
    counts = occupied_counts(X, weights, means, covariances, rng).reshape(fit.weights.shape[:2])
    posterior = np.bincount(counts.ravel(), minlength=max_components + 1) / counts.size
    chain_posteriors = np.stack(
        [np.bincount(chain, minlength=max_components + 1) / chain.size for chain in counts]
    )
    return SparseMixtureResult(
        fit=fit,
        counts=counts,
        posterior=posterior,
        chain_posteriors=chain_posteriors,
        mode=int(np.argmax(posterior)),
        prob_true=None if true_components is None else float(posterior[true_components]),
        concentration=float(concentration),
    )


def _overfitted_start(
    X: np.ndarray, max_components: int, covariance_type: str, rng: np.random.Generator
) -> MixtureParams:
    from workbench.em import GaussianMixture

    seed = int(rng.integers(2**32))
    return (
        GaussianMixture(
            max_components,
            covariance_type=covariance_type,
            n_init=3,
            random_state=seed,
            on_collapse="reseed",
        )
        .fit(X)
        .to_params()
    )
