"""Choosing the number of components: EM criteria over a grid of K, LOO across Bayesian fits.

This module sits one floor above :mod:`workbench.em` and :mod:`workbench.bayes`: it fits
or compares several models and reports which K each criterion picks.

* :func:`select_components` fits every (K, covariance type) with our EM and tabulates
  log-likelihood, parameter count, BIC (both sign conventions), ICL and AIC; see
  :mod:`workbench.em.criteria` for the formulas and signs (ours: lower is better).
* :func:`compare_loo` turns Bayesian fits for several K into a PSIS-LOO table with a
  stacking comparison (:mod:`workbench.bayes.loo`).
* The sparse overfitted mixture lives in :mod:`workbench.bayes.sparse`.

The Bayesian layers import PyMC and ArviZ; they are imported only when a Bayesian function
is called, so EM-only selection stays light.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from workbench._validation import check_int, check_real, is_int, not_allowed
from workbench.em import GaussianMixture
from workbench.em.criteria import information_criteria
from workbench.mixture import COVARIANCE_TYPES, MixtureParams, sample

if TYPE_CHECKING:
    from workbench.bayes.sampling import BayesFit

__all__ = [
    "CRITERIA",
    "BootstrapLRT",
    "CriterionChoice",
    "LooComparison",
    "ModelKey",
    "SelectionResult",
    "bootstrap_lrt",
    "compare_loo",
    "select_components",
]


class Criterion(NamedTuple):
    """One row of the criteria vocabulary: the table column it minimises and what it is."""

    column: str
    description: str


# The one table of criteria: validation, docs and the choice all read it. Every column is
# lower-is-better (scikit-learn's sign); mclust's larger-is-better values are extra columns.
CRITERIA: dict[str, Criterion] = {
    "bic": Criterion("bic", "-2 loglik + p log n (Schwarz 1978); consistent for K"),
    "icl": Criterion("icl", "BIC - 2 sum_i log z_i,MAP (Biernacki et al. 2000); merges overlap"),
    "aic": Criterion("aic", "-2 loglik + 2 p (Akaike 1974); tends to overfit K"),
}

TABLE_COLUMNS: tuple[str, ...] = (
    "n_components",
    "covariance_type",
    "loglik",
    "n_parameters",
    "bic",
    "bic_mclust",
    "icl",
    "icl_mclust",
    "aic",
    "converged",
    "n_iter",
    "seed",
    "n_starts",
    "n_failed_starts",
    "failed",
    "error",
)

# Below this many rows the k-means start of every fit runs on one OpenMP thread: on this
# 2-core machine under load, scikit-learn's threaded Lloyd iterations on a few hundred
# rows took 0.26 s per call against 0.02 s single-threaded (the whole 1..6 grid: 3.9 s
# against 0.4 s). The EM passes themselves stay on one core below 100,000 rows too.
SINGLE_THREAD_ROWS = 100_000


class ModelKey(NamedTuple):
    """Which model a row fits: ``K`` and the covariance type."""

    n_components: int
    covariance_type: str


class CriterionChoice(NamedTuple):
    """The model a criterion picks, and its value there (lower is better)."""

    criterion: str
    n_components: int
    covariance_type: str
    value: float


@dataclass(frozen=True)
class SelectionResult:
    """Result of :func:`select_components`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (K, covariance type), columns ``TABLE_COLUMNS``: ``loglik``,
        ``n_parameters``, ``bic``/``icl``/``aic`` (lower is better), ``bic_mclust`` and
        ``icl_mclust`` (= minus those, R mclust's larger-is-better), ``converged`` and
        ``n_iter`` of the best start, ``seed`` (the best start's ``random_state``: the
        row's fit is ``GaussianMixture(K, covariance_type=..., random_state=seed)`` with the
        same options), ``n_starts``, ``n_failed_starts``, and ``failed``/``error`` when every
        start failed (the numbers are then NaN).
    choices : dict of str to CriterionChoice
        Each requested criterion's choice among the rows that did not fail. Ties go to the
        smaller K, then the earlier covariance type.
    estimates : dict of ModelKey to MixtureParams
        The best start's parameters for every row that did not fail.
    """

    table: pd.DataFrame
    choices: dict[str, CriterionChoice]
    estimates: dict[ModelKey, MixtureParams]


def _checked_components(components: Iterable[int], n_samples: int) -> tuple[int, ...]:
    try:
        values = tuple(components)
    except TypeError:
        raise not_allowed("components", components, "an iterable of integers") from None
    if not values:
        raise not_allowed("components", components, "at least one number of components")
    for value in values:
        if not is_int(value) or value < 1 or value > n_samples:
            raise ValueError(
                f"components contains {value!r}, which is not allowed; every number of "
                f"components must be an integer in [1, n_samples={n_samples}]"
            )
    if len(set(values)) != len(values):
        duplicate = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"components contains {duplicate!r} twice; give each K once")
    return tuple(sorted(int(v) for v in values))


def _checked_names(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise not_allowed(name, values, f"at least one of {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise ValueError(
                f"{name} contains {value!r}, which is not allowed; use {', '.join(allowed)}"
            )
    if len(set(values)) != len(values):
        duplicate = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"{name} contains {duplicate!r} twice; give each once")
    return values


def _checked_data(X: np.ndarray) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"X must be a numeric array of shape (n_samples, n_features), got {type(X).__name__}"
        ) from None
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(
            f"X must have shape (n_samples >= 2, n_features >= 1), got shape {X.shape}"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values; remove or impute them first")
    return np.ascontiguousarray(X)


def _base_entropy(random_state: int | np.random.Generator | np.random.SeedSequence | None) -> int:
    if isinstance(random_state, np.random.SeedSequence):
        return int(random_state.generate_state(2, dtype=np.uint64)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if is_int(random_state) and random_state >= 0:
        return int(random_state)
    raise not_allowed(
        "random_state", random_state, "an int >= 0, a numpy Generator, SeedSequence or None"
    )


def _start_seeds(entropy: int, key: ModelKey, n_init: int) -> np.ndarray:
    # The seed of a (K, type) depends on nothing else in the grid, so adding a K to the
    # grid never changes the fits already there.
    spawn_key = (key.n_components, COVARIANCE_TYPES.index(key.covariance_type))
    return np.random.SeedSequence(entropy, spawn_key=spawn_key).generate_state(n_init)


class _Best(NamedTuple):
    model: GaussianMixture
    seed: int
    converged: bool


def _fit_row(
    X: np.ndarray, key: ModelKey, seeds: np.ndarray, options: dict[str, Any]
) -> tuple[dict[str, object], MixtureParams | None]:
    """Fit one (K, type) from every seed; keep the start with the largest lower bound."""
    best: _Best | None = None
    errors: list[str] = []
    for seed in seeds:
        model = GaussianMixture(
            key.n_components,
            covariance_type=key.covariance_type,
            random_state=int(seed),
            **options,
        )
        with warnings.catch_warnings(record=True) as caught:
            # Non-convergence is recorded in the table, not raised.
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                model.fit(X)
            except (ValueError, np.linalg.LinAlgError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
        converged = bool(model.converged_) and not any(
            issubclass(w.category, ConvergenceWarning) for w in caught
        )
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if best is None or model.lower_bound_ > best.model.lower_bound_:
            best = _Best(model, int(seed), converged)
    row: dict[str, object] = {
        "n_components": key.n_components,
        "covariance_type": key.covariance_type,
        "n_starts": len(seeds),
        "n_failed_starts": len(errors),
    }
    if best is None:
        nan = math.nan
        row.update(
            loglik=nan,
            n_parameters=nan,
            bic=nan,
            bic_mclust=nan,
            icl=nan,
            icl_mclust=nan,
            aic=nan,
            converged=False,
            n_iter=0,
            seed=pd.NA,
            failed=True,
            error=errors[-1],
        )
        return row, None
    criteria = information_criteria(best.model, X)
    row.update(
        loglik=criteria.loglik,
        n_parameters=criteria.n_parameters,
        bic=criteria.bic,
        bic_mclust=criteria.bic_mclust,
        icl=criteria.icl,
        icl_mclust=criteria.icl_mclust,
        aic=criteria.aic,
        converged=best.converged,
        n_iter=int(best.model.n_iter_),
        seed=best.seed,
        failed=False,
        error="",
    )
    return row, best.model.to_params()


def select_components(
    X: np.ndarray,
    *,
    components: Iterable[int] = range(1, 7),
    covariance_types: Sequence[str] = ("full",),
    criteria: Sequence[str] = ("bic", "icl", "aic"),
    n_init: int = 3,
    random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    init_params: str = "kmeans",
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 200,
    on_collapse: str = "raise",
) -> SelectionResult:
    """Fit every (K, covariance type) by EM and report each criterion's choice of K.

    Each (K, type) runs ``n_init`` single-start fits of
    :class:`workbench.em.GaussianMixture`, each from its own seed, and keeps the one with
    the largest lower bound. A start that fails (a collapsing component with
    ``on_collapse='raise'``) is counted; if every start of a row fails, the row is recorded
    as failed with the last error, and the other rows go on. The data are validated and
    made contiguous once, and each kept fit's criteria come from one pass over the data
    (:func:`workbench.em.criteria.information_criteria`).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    components : iterable of int, default range(1, 7)
        Numbers of components to fit, each in ``[1, n_samples]``, each once.
    covariance_types : sequence of {'full', 'tied', 'diag', 'spherical'}, default ('full',)
    criteria : sequence of {'bic', 'icl', 'aic'}, default all three
        Criteria whose choice is reported (the table always has every column).
    n_init : int >= 1, default 3
        Starts per (K, type).
    random_state : int, numpy Generator, SeedSequence or None
        Seeds every start. The seed of a (K, type) depends only on this and (K, type), and
        is stored in the table's ``seed`` column.
    init_params, tol, reg_covar, max_iter, on_collapse
        Passed to :class:`workbench.em.GaussianMixture`.

    Returns
    -------
    SelectionResult

    Raises
    ------
    ValueError
        For bad data or settings (a K of 0, a negative K or a K above ``n_samples``, an
        unknown covariance type or criterion), naming the value; or if every fit failed.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (150, 2)), rng.normal(4, 1, (150, 2))])
    >>> result = select_components(X, components=range(1, 5), random_state=0)
    >>> result.choices["bic"].n_components
    2
    >>> list(result.table.columns[:5])
    ['n_components', 'covariance_type', 'loglik', 'n_parameters', 'bic']
    """
    X = _checked_data(X)
    ks = _checked_components(components, X.shape[0])
    types = _checked_names("covariance_types", covariance_types, COVARIANCE_TYPES)
    wanted = _checked_names("criteria", criteria, tuple(CRITERIA))
    check_int("n_init", n_init, minimum=1)
    entropy = _base_entropy(random_state)
    options: dict[str, Any] = {
        "n_init": 1,
        "init_params": init_params,
        "tol": tol,
        "reg_covar": reg_covar,
        "max_iter": max_iter,
        "on_collapse": on_collapse,
    }
    # Option errors are user errors: check them once, before any fitting.
    GaussianMixture(1, **options)._validate_params()

    rows = []
    estimates: dict[ModelKey, MixtureParams] = {}
    threads = 1 if X.shape[0] < SINGLE_THREAD_ROWS else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        for covariance_type in types:
            for k in ks:
                key = ModelKey(k, covariance_type)
                row, params = _fit_row(X, key, _start_seeds(entropy, key, n_init), options)
                rows.append(row)
                if params is not None:
                    estimates[key] = params
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["seed"] = table["seed"].astype("Int64")
    ok = table[~table["failed"]]
    if ok.empty:
        raise ValueError(
            f"every fit failed for components={list(ks)} and covariance_types={list(types)}; "
            f"last error: {table['error'].iloc[-1]}"
        )
    type_order = ok["covariance_type"].map(types.index).to_numpy()
    choices = {}
    for name in wanted:
        column = CRITERIA[name].column
        # Ties go to the smaller K, then the earlier covariance type.
        top = ok.iloc[np.lexsort((type_order, ok["n_components"].to_numpy(), ok[column]))[0]]
        choices[name] = CriterionChoice(
            name, int(top["n_components"]), str(top["covariance_type"]), float(top[column])
        )
    return SelectionResult(table=table, choices=choices, estimates=estimates)


# ------------------------------------------------------------------ bootstrap LRT


@dataclass(frozen=True)
class BootstrapLRT:
    """Sequential parametric-bootstrap likelihood-ratio tests of g against g + 1 components.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per test done: ``n_components`` (g), ``lrt`` (observed ``2 (loglik_{g+1} -
        loglik_g)``), ``p_value`` ``= (1 + #{LRT* >= lrt}) / (n_ok + 1)``, ``n_boot`` and
        ``n_failed`` (bootstrap replicates whose fits failed and were left out).
    replicates : dict of int to ndarray of shape (n_ok,)
        The bootstrap statistics LRT* of each g.
    choice : int
        The first g whose test does not reject at ``level`` (mclust's sequential rule); the
        last g + 1 tested if every test rejects.
    level : float
    """

    table: pd.DataFrame
    replicates: dict[int, np.ndarray]
    choice: int
    level: float


def bootstrap_lrt(
    X: np.ndarray,
    *,
    max_components: int = 6,
    covariance_type: str = "full",
    n_boot: int = 99,
    level: float = 0.05,
    n_init: int = 3,
    random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    reg_covar: float = 1e-6,
    max_iter: int = 200,
) -> BootstrapLRT:
    """mclust's ``mclustBootstrapLRT``: test g against g + 1 for g = 1, 2, ... in turn.

    For each g, the observed statistic is ``2 (loglik_{g+1} - loglik_g)`` of the EM fits
    (best of ``n_init`` starts, as in :func:`select_components`). ``n_boot`` datasets of
    the same size are drawn from the fitted g-component mixture, both models are refitted
    to each, and the p-value is ``(1 + #{LRT* >= observed}) / (n_ok + 1)``. Testing stops
    at the first g that is not rejected at ``level``, or after g = ``max_components - 1``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    max_components : int >= 2, default 6
        The largest g + 1 tested; at most ``n_samples``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    n_boot : int >= 1, default 99
    level : float in (0, 1), default 0.05
    n_init : int >= 1, default 3
    random_state : int, numpy Generator, SeedSequence or None
    reg_covar, max_iter
        Passed to :class:`workbench.em.GaussianMixture`.

    Returns
    -------
    BootstrapLRT

    Raises
    ------
    ValueError
        For bad settings (naming the value), or if a fit to ``X`` itself fails.
    """
    X = _checked_data(X)
    n = X.shape[0]
    if not is_int(max_components) or not 2 <= max_components <= n:
        raise not_allowed("max_components", max_components, f"an integer in [2, n_samples={n}]")
    (covariance_type,) = _checked_names("covariance_types", (covariance_type,), COVARIANCE_TYPES)
    check_int("n_boot", n_boot, minimum=1)
    check_real("level", level, above=0.0, below=1.0)
    check_int("n_init", n_init, minimum=1)
    entropy = _base_entropy(random_state)
    options: dict[str, object] = {"n_init": 1, "reg_covar": reg_covar, "max_iter": max_iter}

    def fit(data: np.ndarray, k: int, seed_key: tuple[int, ...]):
        seeds = np.random.SeedSequence(entropy, spawn_key=seed_key).generate_state(n_init)
        return _fit_row(data, ModelKey(k, covariance_type), seeds, options)

    rows, replicates = [], {}
    choice = max_components
    threads = 1 if n < SINGLE_THREAD_ROWS else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        fits = {1: fit(X, 1, (0, 1))}
        for g in range(1, max_components):
            fits[g + 1] = fit(X, g + 1, (0, g + 1))
            (smaller, params), (larger, _) = fits[g], fits[g + 1]
            for row in (smaller, larger):
                if row["failed"]:
                    raise ValueError(
                        f"the {row['n_components']}-component fit to X failed: {row['error']}"
                    )
            observed = 2.0 * (larger["loglik"] - smaller["loglik"])
            collected: list[float] = []
            n_failed = 0
            for b in range(n_boot):
                rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(g, b)))
                boot = sample(params, n, rng)[0]
                small_b, _ = fit(boot, g, (g, b, 0))
                large_b, _ = fit(boot, g + 1, (g, b, 1))
                if small_b["failed"] or large_b["failed"]:
                    n_failed += 1
                    continue
                collected.append(2.0 * (large_b["loglik"] - small_b["loglik"]))
            stats = np.asarray(collected)
            p_value = (1 + int(np.sum(stats >= observed))) / (stats.size + 1)
            rows.append(
                {
                    "n_components": g,
                    "lrt": observed,
                    "p_value": p_value,
                    "n_boot": n_boot,
                    "n_failed": n_failed,
                }
            )
            replicates[g] = stats
            if p_value > level:
                choice = g
                break
    return BootstrapLRT(pd.DataFrame(rows), replicates, choice, float(level))


# ------------------------------------------------------------------------ Bayes: LOO


@dataclass(frozen=True)
class LooComparison:
    """PSIS-LOO per K and the stacking comparison across K (:func:`compare_loo`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per K (ascending): ``n_components``, ``elpd``, ``se``, ``p_loo``,
        ``n_high_pareto_k`` (observations with Pareto k above ``pareto_k_threshold`` =
        min(1 - 1/log10 S, 0.7)), ``pareto_k_threshold``, ``n_samples`` (S), ``elpd_diff``
        and ``dse`` (against the best K, from ``arviz_stats.compare``), ``rank`` (0 best)
        and ``stacking_weight``.
    choice : int
        The K with the largest elpd (rank 0).
    stacking_choice : int
        The K with the largest stacking weight.
    n_high_pareto_k : int
        Total count over all K, so no Pareto-k warning is dropped.
    failed : dict of int to str
        The K whose PSIS could not be computed (``PsisError``), with the reason; they are
        left out of ``table`` and of both choices.
    """

    table: pd.DataFrame
    choice: int
    stacking_choice: int
    n_high_pareto_k: int
    failed: dict[int, str]


def compare_loo(fits: Mapping[int, BayesFit]) -> LooComparison:
    """PSIS-LOO of each fit and ``arviz_stats.compare(method="stacking")`` across them.

    Parameters
    ----------
    fits : mapping of int to BayesFit
        Fits of the same data, keyed by their number of components (at least two).

    Returns
    -------
    LooComparison

    A fit whose PSIS fails (repeated draws, see :class:`~workbench.bayes.loo.PsisError`) is
    left out and listed in ``failed``; the others are compared.

    Raises
    ------
    ValueError
        If fewer than two fits are given or fewer than two have a PSIS-LOO, a key is not the
        fit's K, or the fits are of different data sizes.
    """
    from arviz_stats import compare

    from workbench.bayes.loo import PsisError, loo_of_fit

    if len(fits) < 2:
        raise not_allowed("fits", dict(fits), "fits for at least two numbers of components")
    results = {}
    failed: dict[int, str] = {}
    for k, fit in sorted(fits.items()):
        fitted_k = fit.weights.shape[-1]
        if not is_int(k) or k != fitted_k:
            raise ValueError(f"fits has key {k!r} for a fit with {fitted_k} components")
        try:
            results[int(k)] = loo_of_fit(fit)
        except PsisError as exc:
            failed[int(k)] = str(exc)
    if len(results) < 2:
        reasons = "; ".join(f"K={k}: {reason}" for k, reason in failed.items())
        raise ValueError(f"PSIS-LOO needs at least two fits to compare; it failed for {reasons}")
    sizes = {r.n_data_points for r in results.values()}
    if len(sizes) != 1:
        raise ValueError(f"fits were made on different data sizes {sorted(sizes)}; use one X")
    with warnings.catch_warnings():
        # compare re-warns about high Pareto k; they are counted in the table instead.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        compared = compare(
            {str(k): r.elpd_data for k, r in results.items()}, method="stacking", round_to="none"
        )
    rows = []
    for k, r in results.items():
        c = compared.loc[str(k)]
        rows.append(
            {
                "n_components": k,
                "elpd": r.elpd,
                "se": r.se,
                "p_loo": r.p_loo,
                "n_high_pareto_k": r.n_high_pareto_k,
                "pareto_k_threshold": r.pareto_k_threshold,
                "n_samples": r.n_samples,
                "elpd_diff": float(c["elpd_diff"]),
                "dse": float(c["dse"]),
                "rank": int(c["rank"]),
                "stacking_weight": float(c["weight"]),
            }
        )
    table = pd.DataFrame(rows)
    return LooComparison(
        table=table,
        choice=int(table.loc[table["rank"].idxmin(), "n_components"]),
        stacking_choice=int(table.loc[table["stacking_weight"].idxmax(), "n_components"]),
        n_high_pareto_k=int(table["n_high_pareto_k"].sum()),
        failed=failed,
    )
