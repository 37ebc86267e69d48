"""The ``[selection]`` step of a study task: fit a range of K and score each criterion's choice.

:func:`run_selection` takes one simulated dataset and returns a
:class:`~workbench.study.store.SelectionRecord`: per-K scores, each criterion's chosen K
scored against the truth's K (under / correct / over), and every failed K. It calls
:func:`workbench.selection.select_components` for the EM criteria, fits the Bayesian
mixture at every K for PSIS-LOO (:func:`workbench.selection.compare_loo`), and the sparse
overfitted mixture (:func:`workbench.bayes.sparse.fit_sparse_mixture`). A K whose fits all
fail is recorded as failed and the other K go on; a method that cannot choose at all
(every EM fit failed, fewer than two Bayesian fits left) is recorded as a failure of that
method and the others go on.

Seeds: one ``selection`` stream per task (:func:`workbench.study.seeds.task_streams`),
split by a spawn key per part (0: the EM grid, 1 + K: the Bayesian fit at K, 999: the
sparse fit), so turning a part on or off never changes the others.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from workbench.selection import select_components
from workbench.simulate import Dataset
from workbench.study.config import BayesOptions, EMOptions, SelectionOptions
from workbench.study.store import (
    SelectionChoice,
    SelectionFailure,
    SelectionRecord,
    SelectionScore,
)

if TYPE_CHECKING:
    from workbench.bayes.sampling import BayesFit
    from workbench.mixture import MixtureParams

__all__ = ["OUTCOMES", "outcome", "run_selection"]

#: How a chosen K compares with the truth's, in display order.
OUTCOMES: tuple[str, ...] = ("under", "correct", "over")
#: EM table columns stored as ``selection_scores`` criteria.
EM_SCORES: tuple[str, ...] = ("loglik", "n_parameters", "bic", "icl", "aic")
_SPARSE_KEY = 999


def outcome(chosen_k: int, true_k: int) -> str:
    """``'under'``, ``'correct'`` or ``'over'``.

    >>> outcome(2, 3), outcome(3, 3), outcome(5, 3)
    ('under', 'correct', 'over')
    """
    if chosen_k < true_k:
        return "under"
    return "correct" if chosen_k == true_k else "over"


def _seed(entropy: int, key: int) -> int:
    return int(np.random.SeedSequence(entropy, spawn_key=(key,)).generate_state(1, np.uint32)[0])


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_selection(
    dataset: Dataset,
    options: SelectionOptions,
    *,
    em: EMOptions,
    bayes: BayesOptions,
    seed: int,
    replication: int,
    chain_cores: int | None = None,
) -> SelectionRecord:
    """Fit every K of ``options.components`` to ``dataset.X_train`` and score the choices.

    Parameters
    ----------
    dataset : Dataset
        ``X_train`` of shape (n_train, n_features); ``truth.n_components`` is the true K.
    options : SelectionOptions
    em : EMOptions
        ``init``, ``tol``, ``max_iter`` and ``reg_covar`` of the EM fits (``[methods.em]``,
        or its defaults); the starts and covariance types come from ``options``.
    bayes : BayesOptions
        Sampler settings and priors of the per-K and sparse Bayesian fits.
    seed : int
        The task's ``selection`` stream.
    replication : int
        Decides whether the Bayesian parts run (``bayes_replications``,
        ``sparse_replications``).
    chain_cores : int, optional
        Chains sampled in parallel (see :class:`~workbench.study.task.TaskSpec`).

    Returns
    -------
    SelectionRecord
    """
    X = dataset.X_train
    true_k = dataset.truth.n_components
    record = SelectionRecord()

    def choose(criterion: str, chosen_k: int, covariance_type: str | None) -> None:
        record.choices.append(
            SelectionChoice(
                criterion, int(chosen_k), covariance_type, true_k, outcome(chosen_k, true_k)
            )
        )

    em_estimates: dict[tuple[int, str], MixtureParams] = {}
    start = time.perf_counter()
    try:
        result = select_components(
            X,
            components=options.components,
            covariance_types=options.covariance_types,
            criteria=options.criteria,
            n_init=options.n_init,
            random_state=_seed(seed, 0),
            init_params=em.init,
            tol=em.tol,
            reg_covar=em.reg_covar,
            max_iter=em.max_iter,
            on_collapse="raise",
        )
    except ValueError as exc:
        # select_components raises only when every fit failed (the options were validated)
        record.failures.append(SelectionFailure("em", None, None, _error(exc)))
    else:
        seconds = time.perf_counter() - start
        em_estimates = {(k.n_components, k.covariance_type): p for k, p in result.estimates.items()}
        for row in result.table.itertuples(index=False):
            if row.failed:
                record.failures.append(
                    SelectionFailure(
                        "em", int(row.n_components), str(row.covariance_type), row.error
                    )
                )
                continue
            values = {name: float(getattr(row, name)) for name in EM_SCORES}
            values["converged"] = float(row.converged)
            # the grid is timed as a whole; each row gets its share
            values["fit_seconds"] = seconds / len(result.table)
            record.scores.extend(
                SelectionScore("em", int(row.n_components), str(row.covariance_type), name, v)
                for name, v in values.items()
            )
        for choice in result.choices.values():
            choose(choice.criterion, choice.n_components, choice.covariance_type)

    if options.runs_bayes(replication):
        _loo_part(X, options, bayes, seed, em_estimates, chain_cores, record, choose)
    if options.runs_sparse(replication):
        _sparse_part(X, options, bayes, seed, true_k, chain_cores, record, choose)
    return record


def _fit_at(
    X: np.ndarray,
    k: int,
    bayes: BayesOptions,
    seed: int,
    start: MixtureParams | None,
    chain_cores: int | None,
) -> BayesFit:
    from workbench.bayes import fit_bayes

    return fit_bayes(
        X,
        k,
        covariance_type=bayes.covariance_type,
        sampler=bayes.sampler,
        chains=bayes.chains,
        draws=bayes.draws,
        tune=bayes.tune,
        target_accept=bayes.target_accept,
        ordering=bayes.ordering,
        priors=bayes.priors,
        init=start,
        reference=start,
        random_seed=seed,
        progressbar=False,
        cores=chain_cores,
    )


def _loo_part(
    X: np.ndarray,
    options: SelectionOptions,
    bayes: BayesOptions,
    seed: int,
    em_estimates: dict[tuple[int, str], MixtureParams],
    chain_cores: int | None,
    record: SelectionRecord,
    choose: Callable[[str, int, str | None], None],
) -> None:
    from workbench.selection import compare_loo

    cov = bayes.covariance_type
    fits: dict[int, BayesFit] = {}
    seconds: dict[int, float] = {}
    for k in options.components:
        start = time.perf_counter()
        try:
            # fit_bayes caches one compiled model per (K, shape, covariance type, priors), so
            # every replication after the first reuses it. Sampler warnings are silenced: the
            # diagnostics (r_hat, divergences) are stored as scores instead.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start_at = em_estimates.get((k, cov))
                fits[k] = _fit_at(X, k, bayes, _seed(seed, 1 + k), start_at, chain_cores)
        except Exception as exc:
            record.failures.append(SelectionFailure("bayes", k, cov, _error(exc)))
            continue
        seconds[k] = time.perf_counter() - start
    try:
        comparison = compare_loo(fits)
    except Exception as exc:
        record.failures.append(SelectionFailure("bayes", None, cov, _error(exc)))
        return
    for k, reason in comparison.failed.items():
        record.failures.append(SelectionFailure("bayes", k, cov, f"PsisError: {reason}"))
    for row in comparison.table.itertuples(index=False):
        k = int(row.n_components)
        diagnostics = fits[k].diagnostics
        values = {
            "elpd_loo": row.elpd,
            "se": row.se,
            "p_loo": row.p_loo,
            "n_high_pareto_k": row.n_high_pareto_k,
            "pareto_k_threshold": row.pareto_k_threshold,
            "elpd_diff": row.elpd_diff,
            "dse": row.dse,
            "stacking_weight": row.stacking_weight,
            "max_r_hat": diagnostics.get("max_r_hat", float("nan")),
            "n_divergences": diagnostics.get("n_divergences", float("nan")),
            "fit_seconds": seconds[k],
        }
        record.scores.extend(
            SelectionScore("bayes", k, cov, name, float(v)) for name, v in values.items()
        )
    choose("loo", comparison.choice, cov)
    choose("loo_stacking", comparison.stacking_choice, cov)


def _sparse_part(
    X: np.ndarray,
    options: SelectionOptions,
    bayes: BayesOptions,
    seed: int,
    true_k: int,
    chain_cores: int | None,
    record: SelectionRecord,
    choose: Callable[[str, int, str | None], None],
) -> None:
    from workbench.bayes.sparse import fit_sparse_mixture

    k_max = options.sparse_max_components
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparse = fit_sparse_mixture(
                X,
                k_max,
                concentration=options.sparse_concentration,
                covariance_type=bayes.covariance_type,
                true_components=true_k if true_k <= k_max else None,
                priors=bayes.priors,
                sampler=bayes.sampler,
                chains=bayes.chains,
                draws=bayes.draws,
                tune=bayes.tune,
                random_seed=_seed(seed, _SPARSE_KEY),
                cores=chain_cores,
            )
    except Exception as exc:
        record.failures.append(SelectionFailure("sparse", None, bayes.covariance_type, _error(exc)))
        return
    cov = bayes.covariance_type
    record.scores.extend(
        SelectionScore("sparse", k, cov, "posterior", float(sparse.posterior[k]))
        for k in range(1, k_max + 1)
    )
    record.scores.append(
        SelectionScore("sparse", k_max, cov, "fit_seconds", time.perf_counter() - start)
    )
    record.scores.append(
        SelectionScore(
            "sparse",
            k_max,
            cov,
            "n_divergences",
            float(sparse.fit.diagnostics.get("n_divergences", float("nan"))),
        )
    )
    choose("sparse", sparse.mode, None)
