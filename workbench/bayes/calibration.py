"""Simulation-based calibration (SBC) of the Bayesian mixture fit.

Talts, Betancourt, Simpson, Vehtari & Gelman (2018): draw a truth ``theta`` from the
prior, data from the model at ``theta``, fit, and rank each scalar of ``theta`` among
``L`` posterior draws. Under correct inference each rank is uniform on ``0..L``; a model
bug, a wrong prior or a sampler that misses part of the posterior shows up as
non-uniform ranks over many simulations.

What is ranked
--------------
Every free parameter of the covariance type on the model's *ordered* labelling (the first
mean coordinate increasing), named as in :func:`sbc_quantity_names`: ``weight[k]``,
``mean[k,j]``, the free covariance entries ``cov[k,i,j]`` (``i <= j``; ``cov[i,j]`` for the
one ``tied`` matrix), and the derived quantity ``loglik``, the data log-likelihood
``sum_i log p(x_i | theta)``. A derived quantity that depends on the data makes SBC far more
sensitive (Modrák et al. 2023). The truth is drawn from the ordered prior
(:func:`workbench.bayes.prior_sampling.draw_prior_mixture`), so it is ranked against the *raw*
posterior (``fit.idata["posterior"]``), which is on that labelling (by the ordered transform,
or sorted after sampling with ``ordering='sort'``). The
relabelled arrays of :class:`~workbench.bayes.sampling.BayesFit` are not used: Stephens'
relabelling may permute draws away from the ordered labelling, which would make the
comparison with an ordered truth wrong.

Thinning rule
-------------
Autocorrelated draws make ranks non-uniform even for a correct posterior, so the draws
are thinned to about their effective sample size (Talts et al. 2018, section 4.1): ``L``
is the smallest bulk ESS (Vehtari et al. 2021, over the ranked quantities of this fit and
its chains), rounded down so that ``L + 1`` is a multiple of ``rank_bins`` (then ranks
fall into ``rank_bins`` equally likely bins, as R ``SBC``'s ``ensure_num_ranks_divisor``
does), at least ``rank_bins - 1`` and at most the number of draws. The ``L`` kept draws are
evenly spaced over the chains. ``L`` therefore differs between fits; the uniformity test
bins each rank on its own ``0..L`` scale. (R ``SBC`` instead keeps every 10th draw by
default; an ESS rule adapts to how well each fit mixed.) Ties between the truth and a
draw (a weight of a one-component model) are broken at random.

Uniformity and multiplicity
---------------------------
:func:`sbc_check` bins the ranks of each quantity over simulations into ``n_bins`` equally
likely bins and applies Pearson's chi-square test (``n_bins - 1`` degrees of freedom;
it needs at least 5 simulations per bin). With ``Q`` quantities, a quantity is flagged
when its Bonferroni-adjusted p-value ``min(1, Q p)`` is below ``alpha``; the check passes
when nothing is flagged and no fit failed.

Negative control
----------------
To show that the check has power, fit with a prior other than the simulating one:
``run_sbc(priors, ..., fit_priors=dataclasses.replace(priors, scale_prior=priors.scale_prior
/ 2))`` draws the truths with ``priors`` and fits with a halved scale of the standard
deviations; :func:`sbc_check` must then fail.

Empty components
----------------
A truth whose weight is so small that no data point falls in a component is kept and
fitted like any other (its posterior for that component is close to its prior);
:func:`run_sbc` records ``n_empty_components``. A fit that raises
:class:`~workbench.bayes.sampling.SamplingError` is stored with ``ranks=None`` and the
message, and counts as a failure in :func:`sbc_check`: dropping hard draws would bias SBC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import arviz as az
import numpy as np
import xarray as xr
from scipy import stats

from workbench.bayes.diagnostics import BayesDiagnostics
from workbench.bayes.model import _parametrisation
from workbench.bayes.prior_sampling import draw_prior_mixture
from workbench.bayes.priors import BayesPriors
from workbench.bayes.sampling import BayesFit, SamplingError, fit_bayes
from workbench.mixture import MixtureParams, log_prob, sample

__all__ = [
    "RANK_BINS",
    "RankTable",
    "SBCCheck",
    "SBCRanks",
    "SBCSimulation",
    "UniformityTest",
    "OrderedInterval",
    "kept_draw_count",
    "ordered_intervals",
    "rank_table",
    "rank_uniformity",
    "run_sbc",
    "sbc_check",
    "sbc_quantities",
    "sbc_quantity_names",
    "sbc_ranks",
]

# Bins of the uniformity test, and the divisor of L + 1. With 200 simulations this gives 20
# expected ranks per bin (Talts et al. suggest about n_simulations / 20 bins).
RANK_BINS = 10
LOGLIK = "loglik"


@dataclass(frozen=True)
class SBCRanks:
    """SBC ranks of one fit.

    Attributes
    ----------
    quantities : tuple of str, length Q
        Names from :func:`sbc_quantity_names`, ``loglik`` last.
    kinds : tuple of str, length Q
        ``weight``, ``mean``, ``variance``, ``covariance`` (off-diagonal) or ``loglik``.
    ranks : ndarray of int, shape (Q,)
        Number of kept draws below the true value (ties broken at random), in ``0..L``.
    n_draws : int
        ``L``, the number of kept draws; ``L + 1`` is a multiple of ``rank_bins``.
    ess_bulk : float
        Smallest bulk ESS over the ranked quantities, which set ``L``.
    total_draws : int
        Draws of the fit before thinning (chains x draws).
    """

    quantities: tuple[str, ...]
    kinds: tuple[str, ...]
    ranks: np.ndarray
    n_draws: int
    ess_bulk: float
    total_draws: int

    def as_dict(self) -> dict[str, int]:
        """Rank of each quantity by name, e.g. for a results table."""
        return {q: int(r) for q, r in zip(self.quantities, self.ranks, strict=True)}


class RankTable(NamedTuple):
    """The ranks of many simulations of one model, stacked (e.g. for storing or plotting).

    Attributes
    ----------
    quantities, kinds : tuple of str, length Q
    ranks : ndarray of int, shape (n_simulations, Q)
    n_draws : ndarray of int, shape (n_simulations,)
        ``L`` of each simulation.
    n_failed : int
        Simulations without ranks (failed fits), left out of ``ranks``.
    """

    quantities: tuple[str, ...]
    kinds: tuple[str, ...]
    ranks: np.ndarray
    n_draws: np.ndarray
    n_failed: int


class UniformityTest(NamedTuple):
    """Chi-square test that one quantity's ranks are uniform over simulations."""

    quantity: str
    kind: str
    n_simulations: int
    n_bins: int
    statistic: float
    p_value: float
    p_adjusted: float


class SBCCheck(NamedTuple):
    """Verdict of :func:`sbc_check`.

    Attributes
    ----------
    tests : tuple of UniformityTest
        One per quantity, in the order of the ranks.
    n_simulations : int
        Simulations with ranks.
    n_failed : int
        Simulations whose fit failed (``None`` in the input).
    alpha : float
        Level applied to the Bonferroni-adjusted p-values.
    flagged : tuple of str
        Quantities with ``p_adjusted < alpha``.
    passed : bool
        Nothing flagged and no failed fit.
    """

    tests: tuple[UniformityTest, ...]
    n_simulations: int
    n_failed: int
    alpha: float
    flagged: tuple[str, ...]
    passed: bool


class SBCSimulation(NamedTuple):
    """One simulation of :func:`run_sbc`; never dropped, even when the fit failed.

    Attributes
    ----------
    truth : MixtureParams
        Drawn from the ordered prior.
    n_empty_components : int
        Components with no data point.
    ranks : SBCRanks or None
        ``None`` when the fit raised :class:`SamplingError`.
    error : str or None
        The error message of a failed fit.
    diagnostics : BayesDiagnostics
        The fit's diagnostics (empty for a failed fit).
    """

    truth: MixtureParams
    n_empty_components: int
    ranks: SBCRanks | None
    error: str | None
    diagnostics: BayesDiagnostics


def sbc_quantity_names(
    n_components: int, n_features: int, covariance_type: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names and kinds of the ranked quantities, in the order of :func:`sbc_quantities`.

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    names, kinds : tuples of str
        The free parameters of the model's parametrisation (``K`` weights, ``K d``
        means, then the covariance entries) followed by ``loglik``.
    """
    K, d = n_components, n_features
    names = [f"weight[{k}]" for k in range(K)] + [
        f"mean[{k},{j}]" for k in range(K) for j in range(d)
    ]
    kinds = ["weight"] * K + ["mean"] * (K * d)
    for label, i, j in _covariance_entries(K, d, covariance_type):
        names.append(f"cov[{label}{i},{j}]")
        kinds.append("variance" if i == j else "covariance")
    return (*names, LOGLIK), (*kinds, LOGLIK)


def _covariance_entries(K: int, d: int, covariance_type: str) -> list[tuple[str, int, int]]:
    """(component label prefix, row, column) of each free covariance entry."""
    kind = _parametrisation(covariance_type, d)
    upper = list(zip(*np.triu_indices(d), strict=True))
    if kind == "full_lkj":
        return [(f"{k},", int(i), int(j)) for k in range(K) for i, j in upper]
    if kind in ("tied_lkj", "tied_sigma"):
        return [("", int(i), int(j)) for i, j in upper]
    if kind == "diag":
        return [(f"{k},", j, j) for k in range(K) for j in range(d)]
    return [(f"{k},", 0, 0) for k in range(K)]  # spherical: one variance per component


def sbc_quantities(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> np.ndarray:
    """The ranked parameters (all but ``loglik``) of one mixture or a batch of draws.

    Parameters
    ----------
    weights : ndarray of shape (..., K)
    means : ndarray of shape (..., K, d)
    covariances : ndarray of shape (..., K, d, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of shape (..., Q - 1)
        In the order of :func:`sbc_quantity_names` without its last name.
    """
    K, d = means.shape[-2:]
    lead = weights.shape[:-1]
    entries = _covariance_entries(K, d, covariance_type)
    component = np.array([int(label[:-1]) if label else 0 for label, _, _ in entries], dtype=int)
    rows = np.array([i for _, i, _ in entries], dtype=int)
    cols = np.array([j for _, _, j in entries], dtype=int)
    return np.concatenate(
        [weights, means.reshape(*lead, K * d), covariances[..., component, rows, cols]], axis=-1
    )


def kept_draw_count(ess_bulk: float, total_draws: int, rank_bins: int = RANK_BINS) -> int:
    """``L``, the number of draws kept by the thinning rule of the module docstring.

    Parameters
    ----------
    ess_bulk : float
        Smallest bulk ESS; NaN (undefined) counts as ``total_draws``.
    total_draws : int
    rank_bins : int >= 1

    Returns
    -------
    int
        The largest ``L <= min(ess_bulk, total_draws)`` with ``(L + 1) % rank_bins == 0``,
        and at least ``rank_bins - 1``.

    Raises
    ------
    ValueError
        If ``total_draws < rank_bins - 1``.
    """
    if total_draws < rank_bins - 1:
        raise ValueError(
            f"the fit has {total_draws} draws but rank_bins={rank_bins} needs at least "
            f"{rank_bins - 1}; draw more or use fewer bins"
        )
    target = total_draws if not math.isfinite(ess_bulk) else min(ess_bulk, total_draws)
    kept = (int(target) + 1) // rank_bins * rank_bins - 1
    return max(kept, rank_bins - 1)


def _ess_bulk(values: np.ndarray) -> float:
    """Smallest bulk ESS over the columns that vary; NaN if none does."""
    varying = np.ptp(values.reshape(-1, values.shape[-1]), axis=0) > 0
    if values.shape[1] < 4 or not varying.any():
        return math.nan
    ess = np.asarray(az.ess(values[..., varying], method="bulk", chain_axis=0, draw_axis=1))
    return float(np.nanmin(ess)) if np.isfinite(ess).any() else math.nan


def _group(fit: BayesFit, name: str) -> xr.Dataset:
    node = fit.idata[name]
    assert isinstance(node, xr.DataTree), f"{name} is a group of BayesFit.idata"
    return node.to_dataset()


def sbc_ranks(
    truth: MixtureParams,
    fit: BayesFit,
    *,
    rank_bins: int = RANK_BINS,
    rng: np.random.Generator | int | None = None,
) -> SBCRanks:
    """Ranks of the true parameters and log-likelihood among the fit's thinned draws.

    Parameters
    ----------
    truth : MixtureParams
        The mixture the data were drawn from, on the ordered labelling (as
        :func:`~workbench.bayes.prior_sampling.draw_prior_mixture` returns it).
    fit : BayesFit
        Of the data drawn from ``truth``; its raw posterior, observed data, pointwise
        log-likelihood and ``diagnostics['covariance_type']`` are read.
    rank_bins : int, default RANK_BINS
        ``L + 1`` is made a multiple of it; use the ``n_bins`` of :func:`sbc_check`.
    rng : numpy.random.Generator or seed
        Breaks ties between the truth and a draw.

    Returns
    -------
    SBCRanks

    Raises
    ------
    ValueError
        If ``truth`` and the fit differ in K or d, the truth's first mean coordinates
        are not increasing, or the fit has too few draws.
    """
    rng = np.random.default_rng(rng)
    covariance_type = str(fit.diagnostics["covariance_type"])
    posterior = _group(fit, "posterior")
    w = posterior["w"].to_numpy()
    mu = posterior["mu"].to_numpy()
    cov = posterior["cov"].to_numpy()
    chains, draws, K, d = mu.shape
    if truth.means.shape != (K, d):
        raise ValueError(
            f"truth has {truth.n_components} components and {truth.n_features} features; "
            f"the fit has {K} and {d}"
        )
    if np.any(np.diff(truth.means[:, 0]) < 0):
        raise ValueError(
            f"truth's first mean coordinates {truth.means[:, 0].tolist()} are not increasing; "
            "SBC needs the ordered labelling of the model (sort the components jointly, as "
            "draw_prior_mixture does)"
        )
    X = _group(fit, "observed_data")["x"].to_numpy()
    loglik = _group(fit, "log_likelihood")["x"].to_numpy().sum(axis=-1)  # (chains, draws)
    values = np.concatenate(
        [sbc_quantities(w, mu, cov, covariance_type), loglik[..., None]], axis=-1
    )
    true_values = np.append(
        sbc_quantities(truth.weights, truth.means, truth.covariances, covariance_type),
        float(np.sum(log_prob(X, truth))),
    )

    ess = _ess_bulk(values)
    total = chains * draws
    L = kept_draw_count(ess, total, rank_bins)
    keep = np.linspace(0, total - 1, L).round().astype(np.intp)
    kept = values.reshape(total, -1)[keep]
    below = np.sum(kept < true_values, axis=0)
    ties = np.sum(kept == true_values, axis=0)
    ranks = below + rng.integers(0, ties + 1)
    names, kinds = sbc_quantity_names(K, d, covariance_type)
    return SBCRanks(
        quantities=names,
        kinds=kinds,
        ranks=ranks.astype(np.int64),
        n_draws=int(L),
        ess_bulk=ess,
        total_draws=int(total),
    )


class OrderedInterval(NamedTuple):
    """A central credible interval of one parameter on the model's ordered labelling.

    Attributes
    ----------
    quantity, kind : str
        As in :func:`sbc_quantity_names`.
    level : float
    lower, upper : float
        The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of all raw draws.
    truth : float
    covered : bool
        ``lower <= truth <= upper``.
    """

    quantity: str
    kind: str
    level: float
    lower: float
    upper: float
    truth: float
    covered: bool


def ordered_intervals(
    truth: MixtureParams, fit: BayesFit, levels: Sequence[float]
) -> tuple[OrderedInterval, ...]:
    """Central intervals of every parameter from the raw (ordered-label) draws, against the truth.

    Averaged over truths drawn from the ordered prior, a calibrated posterior's ``level``
    intervals cover with probability exactly ``level``, for every parameter: the event is
    a function of the parameter's posterior rank, which is uniform. This needs the model's
    own labelling on both sides: the raw draws (ordered by the first mean coordinate) and
    the sorted truth. The relabelled or truth-aligned draws of
    :func:`workbench.metrics.score_posterior` permute components depending on the data and
    the truth, which breaks the exact argument (their coverage is still reported, as usual).

    Parameters
    ----------
    truth : MixtureParams
        On the ordered labelling (``means[:, 0]`` increasing).
    fit : BayesFit
    levels : sequence of float in (0, 1)

    Returns
    -------
    tuple of OrderedInterval
        Parameter-major (names of :func:`sbc_quantity_names` without ``loglik``), then
        level.

    Raises
    ------
    ValueError
        If the truth is not ordered or differs from the fit in K or d.
    """
    covariance_type = str(fit.diagnostics["covariance_type"])
    posterior = _group(fit, "posterior")
    mu = posterior["mu"].to_numpy()
    K, d = mu.shape[-2:]
    if truth.means.shape != (K, d) or np.any(np.diff(truth.means[:, 0]) < 0):
        raise ValueError(
            "the truth must have the fit's K and d and increasing first mean coordinates "
            "(the model's ordered labelling)"
        )
    values = sbc_quantities(
        posterior["w"].to_numpy(), mu, posterior["cov"].to_numpy(), covariance_type
    ).reshape(-1, len(_covariance_entries(K, d, covariance_type)) + K + K * d)
    true_values = sbc_quantities(truth.weights, truth.means, truth.covariances, covariance_type)
    names, kinds = sbc_quantity_names(K, d, covariance_type)
    out = []
    for q, (name, kind) in enumerate(zip(names[:-1], kinds[:-1], strict=True)):
        for level in levels:
            lower, upper = np.quantile(values[:, q], [(1 - level) / 2, (1 + level) / 2])
            out.append(
                OrderedInterval(
                    quantity=name,
                    kind=kind,
                    level=float(level),
                    lower=float(lower),
                    upper=float(upper),
                    truth=float(true_values[q]),
                    covered=bool(lower <= true_values[q] <= upper),
                )
            )
    return tuple(out)


def rank_uniformity(
    ranks: np.ndarray, n_draws: np.ndarray, *, n_bins: int = RANK_BINS
) -> tuple[float, float]:
    """Pearson chi-square test that ranks on ``0..L_s`` are uniform.

    Rank ``r`` of a simulation with ``L`` kept draws falls into bin ``r * n_bins // (L + 1)``;
    when ``n_bins`` divides ``L + 1`` each bin has probability ``1 / n_bins`` under
    uniformity, whatever ``L``.

    Parameters
    ----------
    ranks : array-like of int, shape (n_simulations,)
    n_draws : array-like of int, shape (n_simulations,)
        ``L`` of each simulation.
    n_bins : int >= 2

    Returns
    -------
    statistic, p_value : float

    Raises
    ------
    ValueError
        If a rank is outside ``0..L``, ``n_bins`` does not divide some ``L + 1``, or there
        are fewer than ``5 * n_bins`` simulations (the chi-square approximation needs about
        5 expected ranks per bin).
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    n_draws = np.broadcast_to(np.asarray(n_draws, dtype=np.int64), ranks.shape)
    if n_bins < 2:
        raise ValueError(f"n_bins={n_bins!r} is not allowed; use an integer >= 2")
    if ranks.size < 5 * n_bins:
        raise ValueError(
            f"{ranks.size} simulations are too few for {n_bins} bins; need at least "
            f"{5 * n_bins} (5 per bin) or fewer bins"
        )
    if np.any((ranks < 0) | (ranks > n_draws)):
        raise ValueError("every rank must lie in 0..L, L the number of kept draws")
    if np.any((n_draws + 1) % n_bins):
        bad = int(n_draws[np.flatnonzero((n_draws + 1) % n_bins)[0]])
        raise ValueError(
            f"n_bins={n_bins} does not divide L + 1 = {bad + 1}; compute the ranks with "
            f"rank_bins={n_bins} (or a multiple)"
        )
    counts = np.bincount(ranks * n_bins // (n_draws + 1), minlength=n_bins)
    result = stats.chisquare(counts)
    return float(result.statistic), float(result.pvalue)


def rank_table(results: Sequence[SBCRanks | None]) -> RankTable:
    """Stack the ranks of many simulations of one model.

    Parameters
    ----------
    results : sequence of SBCRanks or None
        ``None`` marks a failed fit; it is counted in ``n_failed``.

    Returns
    -------
    RankTable

    Raises
    ------
    ValueError
        If no simulation has ranks, or they rank different quantities.
    """
    done = [r for r in results if r is not None]
    if not done:
        raise ValueError("no simulation has ranks; nothing to test")
    if any(r.quantities != done[0].quantities for r in done):
        raise ValueError("the simulations rank different quantities; check one model at a time")
    return RankTable(
        quantities=done[0].quantities,
        kinds=done[0].kinds,
        ranks=np.stack([r.ranks for r in done]),
        n_draws=np.array([r.n_draws for r in done]),
        n_failed=len(results) - len(done),
    )


def sbc_check(
    results: Sequence[SBCRanks | None] | RankTable,
    *,
    n_bins: int = RANK_BINS,
    alpha: float = 0.001,
) -> SBCCheck:
    """Test every quantity's ranks for uniformity, with a Bonferroni correction.

    Parameters
    ----------
    results : sequence of SBCRanks or None, or RankTable
        One per simulation, all of the same model; ``None`` marks a failed fit.
    n_bins : int, default RANK_BINS
    alpha : float in (0, 1), default 0.001
        Level of the adjusted p-values: ``p_adjusted = min(1, Q p)`` for ``Q`` quantities.

    Returns
    -------
    SBCCheck

    Raises
    ------
    ValueError
        If the results rank different quantities, or :func:`rank_uniformity` rejects them.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} is not allowed; use a number in (0, 1)")
    table = results if isinstance(results, RankTable) else rank_table(results)
    n_simulations, n_quantities = table.ranks.shape
    tests = []
    for q, (name, kind) in enumerate(zip(table.quantities, table.kinds, strict=True)):
        statistic, p_value = rank_uniformity(table.ranks[:, q], table.n_draws, n_bins=n_bins)
        tests.append(
            UniformityTest(
                quantity=name,
                kind=kind,
                n_simulations=n_simulations,
                n_bins=n_bins,
                statistic=statistic,
                p_value=p_value,
                p_adjusted=min(1.0, p_value * n_quantities),
            )
        )
    flagged = tuple(t.quantity for t in tests if t.p_adjusted < alpha)
    return SBCCheck(
        tests=tuple(tests),
        n_simulations=n_simulations,
        n_failed=table.n_failed,
        alpha=alpha,
        flagged=flagged,
        passed=not flagged and table.n_failed == 0,
    )


def run_sbc(
    priors: BayesPriors,
    n_components: int,
    n_features: int,
    *,
    n_samples: int,
    n_simulations: int,
    covariance_type: str = "full",
    fit_priors: BayesPriors | None = None,
    rank_bins: int = RANK_BINS,
    rng: np.random.Generator | int | None = None,
    **fit_options: Any,
) -> tuple[SBCSimulation, ...]:
    """Run SBC: draw truths from the prior, simulate data, fit by :func:`fit_bayes`, rank.

    Every simulation uses its own child of ``rng`` (``Generator.spawn``) for the truth,
    the data, the sampler seed and the tie-breaks, so a run is reproducible.

    Parameters
    ----------
    priors : BayesPriors
        Simulating prior, with fixed ``mean_loc``, ``mean_scale`` and ``scale_prior``.
    n_components, n_features : int
    n_samples : int
        Data points per simulation.
    n_simulations : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    fit_priors : BayesPriors, optional
        Prior of the fit; default ``priors``. Give a different one for a negative control
        (see the module docstring).
    rank_bins : int, default RANK_BINS
    rng : numpy.random.Generator or seed
    **fit_options
        Passed to :func:`fit_bayes` (``chains``, ``draws``, ``tune``, ``sampler``,
        ``cores``, ``init``...).

    Returns
    -------
    tuple of SBCSimulation, length n_simulations
        In simulation order; failed fits included.
    """
    rng = np.random.default_rng(rng)
    fit_priors = priors if fit_priors is None else fit_priors
    out = []
    for child in rng.spawn(n_simulations):
        truth = draw_prior_mixture(
            priors, n_components, n_features, covariance_type=covariance_type, rng=child
        )
        X, labels = sample(truth, n_samples, rng=child)
        n_empty = int(np.sum(np.bincount(labels, minlength=n_components) == 0))
        try:
            fit = fit_bayes(
                X,
                n_components,
                covariance_type=covariance_type,
                priors=fit_priors,
                random_seed=child,
                **fit_options,
            )
        except SamplingError as exc:
            out.append(SBCSimulation(truth, n_empty, None, str(exc), BayesDiagnostics()))
            continue
        ranks = sbc_ranks(truth, fit, rank_bins=rank_bins, rng=child)
        out.append(SBCSimulation(truth, n_empty, ranks, None, fit.diagnostics))
    return tuple(out)
