"""One task of a study: simulate a dataset, fit every method, score the fits.

:func:`run_task` is a pure function of its :class:`TaskSpec` (the seed included), so it gives
the same record in the main process, in a process pool or on a Dask worker. It never
raises for a failing simulation or fit: the failure, its traceback and the task's seed go
into the returned :class:`~workbench.study.store.TaskRecord`.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import numpy as np

from workbench.align import align_to_reference
from workbench.bayes import fit_bayes
from workbench.em import EMHistory, GaussianMixture
from workbench.metrics import score_point_estimate, score_posterior
from workbench.mixture import MixtureParams, to_full_covariances
from workbench.simulate import Dataset, Scenario, simulate
from workbench.study.choose_k import run_selection
from workbench.study.config import AdviOptions, BayesOptions, EMOptions, SelectionOptions
from workbench.study.seeds import task_streams
from workbench.study.store import FitRecord, TaskRecord

__all__ = ["TaskSpec", "run_task"]


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs to run one task.

    Attributes
    ----------
    condition_id, replication : int
    seed : int
        The task seed (:func:`workbench.study.seeds.task_seed`).
    scenario : Scenario
    methods : dict of str to EMOptions, BayesOptions or AdviOptions
    levels : tuple of float
        Credible-interval levels to score.
    keep : bool
        Keep the training data, the EM history and the posterior draws.
    chain_cores : int or None
        Chains sampled in parallel within the task; None lets the sampler use every CPU
        (right when tasks run one at a time), 1 avoids oversubscribing a pool of workers.
        Results do not depend on it.
    selection : SelectionOptions or None
        The study's ``[selection]`` table: also fit a range of K and score each criterion.
    """

    condition_id: int
    replication: int
    seed: int
    scenario: Scenario
    methods: dict[str, EMOptions | BayesOptions | AdviOptions]
    levels: tuple[float, ...]
    keep: bool
    chain_cores: int | None = None
    selection: SelectionOptions | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_task(spec: TaskSpec) -> TaskRecord:
    """Run one task: simulate, fit every method, score against the truth.

    Parameters
    ----------
    spec : TaskSpec

    Returns
    -------
    TaskRecord
        ``status='failed'`` (with error and traceback) when the simulation or any fit
        failed; the other fits are still recorded.
    """
    started_at = _now()
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    streams = task_streams(spec.seed)
    record = TaskRecord(
        condition_id=spec.condition_id,
        replication=spec.replication,
        seed=spec.seed,
        status="ok",
        started_at=started_at,
        finished_at=started_at,
        seconds=0.0,
        worker=worker,
        kept=spec.keep,
    )
    try:
        dataset = simulate(spec.scenario, streams.simulate)
    except Exception as exc:
        record.status = "failed"
        record.error = f"simulation failed: {type(exc).__name__}: {exc}"
        record.traceback = traceback.format_exc()
    else:
        record.simulate_seconds = time.perf_counter() - start
        record.truth = dataset.truth
        if spec.keep:
            record.dataset = dataset
        em_params: MixtureParams | None = None
        for name, options in spec.methods.items():
            seed = getattr(streams, name)
            if isinstance(options, EMOptions):
                fit = _guarded(name, partial(_fit_em, dataset, options, seed, spec.keep))
                if fit.status == "ok":
                    # the EM estimate (components in the truth's order) starts and
                    # relabels the Bayesian fits, so their draws line up with the truth too
                    em_params = fit.params
            else:
                fit = _guarded(
                    name,
                    partial(_fit_bayes, dataset, name, options, seed, em_params, spec),
                )
            record.fits.append(fit)
            if fit.status == "failed" and record.status == "ok":
                record.status = "failed"
                record.error = f"{name} fit failed: {fit.error}"
                record.traceback = fit.traceback
        if spec.selection is not None:
            _select(dataset, spec, streams.selection, record)
    record.finished_at = _now()
    record.seconds = time.perf_counter() - start
    return record


def _select(dataset: Dataset, spec: TaskSpec, seed: int, record: TaskRecord) -> None:
    """The ``[selection]`` step. Failed K are recorded inside it; only a bug of ours raises,
    and that fails the task (with its traceback) without losing the fits above."""
    assert spec.selection is not None
    em, bayes = spec.methods.get("em"), spec.methods.get("bayes")
    try:
        record.selection = run_selection(
            dataset,
            spec.selection,
            em=em if isinstance(em, EMOptions) else EMOptions(),
            bayes=bayes if isinstance(bayes, BayesOptions) else BayesOptions(),
            seed=seed,
            replication=spec.replication,
            chain_cores=spec.chain_cores,
        )
    except Exception as exc:
        if record.status == "ok":
            record.status = "failed"
            record.error = f"selection failed: {type(exc).__name__}: {exc}"
            record.traceback = traceback.format_exc()


def _guarded(name: str, fit: Callable[[], FitRecord]) -> FitRecord:
    """Run a fit, turning an exception into a failed record and warnings into a diagnostic."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        # a warning (non-convergence, r_hat) is a finding to store, not an error
        warnings.simplefilter("always")
        # PyTensor says this once per process, at its first C compilation: it describes the
        # installation, not the fit, and storing it would make a task's rows depend on
        # which task its worker happened to run first
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        try:
            record = fit()
        except Exception as exc:
            return FitRecord(
                method=name,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
                fit_seconds=time.perf_counter() - start,
            )
    messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    if messages:
        record.diagnostics["warnings"] = " | ".join(messages)
    return record


def _aligned(estimate: MixtureParams, truth: MixtureParams) -> MixtureParams:
    return estimate.permuted(align_to_reference(estimate, truth))


def _fit_em(dataset: Dataset, options: EMOptions, seed: int, keep: bool) -> FitRecord:
    model = GaussianMixture(
        n_components=dataset.truth.n_components,
        covariance_type=options.covariance_type,
        tol=options.tol,
        reg_covar=options.reg_covar,
        max_iter=options.max_iter,
        n_init=options.n_init,
        init_params=options.init,
        random_state=seed,
        keep_history=keep,
    )
    start = time.perf_counter()
    model.fit(dataset.X_train)
    seconds = time.perf_counter() - start
    estimate = model.to_params()
    score = score_point_estimate(dataset, estimate, method="em", fit_seconds=seconds)
    return FitRecord(
        method="em",
        status="ok",
        fit_seconds=seconds,
        metrics=dict(score.metrics),
        estimates=list(score.estimates),
        diagnostics={
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "lower_bound": float(model.lower_bound_),
            "n_init": options.n_init,
        },
        em_trace=np.asarray(model.lower_bounds_, dtype=float),
        em_history=(
            _dense_history(model.history_, options.covariance_type)
            if keep and model.history_ is not None  # keep_history=keep always sets history_
            else None
        ),
        params=_aligned(estimate, dataset.truth),
    )


def _dense_history(history: EMHistory, covariance_type: str) -> EMHistory:
    """EM ``history_`` with dense covariances of shape (T, K, d, d)."""
    k, d = history.means.shape[1:]
    covariances = np.stack(
        [to_full_covariances(c, covariance_type, k, d) for c in history.covariances]
    )
    return history._replace(covariances=covariances)


def _fit_bayes(
    dataset: Dataset,
    name: str,
    options: BayesOptions | AdviOptions,
    seed: int,
    em_params: MixtureParams | None,
    spec: TaskSpec,
) -> FitRecord:
    if isinstance(options, BayesOptions):
        sampler, chains = options.sampler, options.chains
    else:
        sampler, chains = "advi", 1
    start = time.perf_counter()
    fit = fit_bayes(
        dataset.X_train,
        dataset.truth.n_components,
        covariance_type=options.covariance_type,
        sampler=sampler,
        chains=chains,
        draws=options.draws,
        tune=options.tune,
        priors=options.priors,
        init=em_params if options.start_at_em else None,
        reference=em_params,
        random_seed=seed,
        progressbar=False,
        cores=spec.chain_cores,
    )
    seconds = time.perf_counter() - start
    weights, means, covariances = fit.flat_draws()
    score = score_posterior(
        dataset,
        weights,
        means,
        covariances,
        method=name,
        levels=spec.levels,
        fit_seconds=seconds,
    )
    return FitRecord(
        method=name,
        status="ok",
        fit_seconds=seconds,
        metrics=dict(score.metrics),
        estimates=list(score.estimates),
        diagnostics=fit.diagnostics,
        params=_aligned(fit.posterior_mean(), dataset.truth),
        # the pointwise log-likelihood (draws x observations) is most of the file and can be
        # recomputed from the draws and the kept data
        draws=fit.idata.drop_nodes("log_likelihood", errors="ignore") if spec.keep else None,
    )
