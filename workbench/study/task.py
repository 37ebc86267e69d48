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
from typing import TYPE_CHECKING

import numpy as np

from workbench.align import align_to_reference
from workbench.bayes import fit_bayes
from workbench.bayes.options import DEFAULT_ORDERING, DEFAULT_TARGET_ACCEPT
from workbench.em import (
    ConfidenceIntervals,
    EMHistory,
    GaussianMixture,
    bootstrap,
    standard_errors,
    wald_intervals,
)
from workbench.metrics import score_point_estimate, score_posterior
from workbench.mixture import MixtureParams, to_full_covariances
from workbench.simulate import Dataset, Scenario
from workbench.study.choose_k import run_selection
from workbench.study.config import AdviOptions, BayesOptions, EMOptions, SelectionOptions
from workbench.study.seeds import PriorTruth, draw_dataset, task_streams
from workbench.study.store import EMDiagnostics, FitRecord, TaskRecord

if TYPE_CHECKING:
    from workbench.bayes.calibration import OrderedInterval, SBCRanks

__all__ = ["TaskSpec", "lost_task_record", "run_task"]


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
    truth_from_prior : bool
        ``truth = "prior"``: draw the truth from ``methods['bayes']``'s prior (fixed
        hyperparameters, its covariance type), and store SBC ranks and ordered-label
        intervals of the Bayes fit.
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
    truth_from_prior: bool = False
    selection: SelectionOptions | None = None

    @property
    def affinity(self) -> tuple:
        """What selects the task's compiled Bayesian models: features, components, and per
        Bayesian method its covariance type, structural priors and ordering (the data and
        data-scaled hyperparameters are swapped into a compiled model; see
        :func:`workbench.bayes.sampling.precompile`). Tasks without a Bayesian method share
        ``(d, K, ())``. A local pool sends tasks of one affinity to the same worker."""
        methods = tuple(
            (
                name,
                options.covariance_type,
                options.priors.dirichlet_concentration,
                options.priors.lkj_eta,
                options.ordering,
            )
            for name, options in self.methods.items()
            if isinstance(options, BayesOptions)
        )
        return (self.scenario.n_features, self.scenario.n_components, methods)


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
        dataset = _simulate(spec, streams.simulate)
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
                fit = _guarded(
                    name,
                    partial(_fit_em, dataset, options, seed, spec, streams.bootstrap),
                )
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


def lost_task_record(spec: TaskSpec, reason: str) -> TaskRecord:
    """The failed record of a task that never finished because its workers kept dying.

    Parameters
    ----------
    spec : TaskSpec
    reason : str
        What the executor reported, e.g. the number of workers that died.

    Returns
    -------
    TaskRecord
        ``status='failed'`` with no truth and no fits; ``run --retry-failed`` runs it
        again.
    """
    now = _now()
    return TaskRecord(
        condition_id=spec.condition_id,
        replication=spec.replication,
        seed=spec.seed,
        status="failed",
        started_at=now,
        finished_at=now,
        seconds=0.0,
        worker="lost",
        error=f"worker lost: {reason}",
        traceback=f"no traceback: the worker process died ({reason})",
    )


def _simulate(spec: TaskSpec, rng: np.random.Generator) -> Dataset:
    """The task's dataset: the scenario's own truth, or one drawn from the Bayesian prior."""
    if not spec.truth_from_prior:
        return draw_dataset(spec.scenario, rng)
    options = spec.methods["bayes"]
    assert isinstance(options, BayesOptions), "the config requires [methods.bayes]"
    return draw_dataset(spec.scenario, rng, PriorTruth(options.priors, options.covariance_type))


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


def _fit_em(
    dataset: Dataset, options: EMOptions, seed: int, spec: TaskSpec, bootstrap_seed: int
) -> FitRecord:
    keep = spec.keep
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
    diagnostics: EMDiagnostics = {
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "lower_bound": float(model.lower_bound_),
        "n_init": options.n_init,
    }
    inference = _em_inference(model, dataset.X_train, options, spec.levels, bootstrap_seed)
    if options.intervals:
        diagnostics.update(inference.diagnostics)
    score = score_point_estimate(
        dataset,
        estimate,
        method="em",
        fit_seconds=seconds,
        intervals=inference.intervals,
        standard_errors=inference.standard_errors,
    )
    return FitRecord(
        method="em",
        status="ok",
        fit_seconds=seconds,
        metrics=dict(score.metrics),
        estimates=list(score.estimates),
        standard_errors=list(score.standard_errors),
        diagnostics=diagnostics,
        em_trace=np.asarray(model.lower_bounds_, dtype=float),
        em_history=(
            _dense_history(model.history_, options.covariance_type)
            if keep and model.history_ is not None  # keep_history=keep always sets history_
            else None
        ),
        params=_aligned(estimate, dataset.truth),
    )


@dataclass(frozen=True)
class _EMInference:
    """Standard errors and confidence intervals of one EM fit, in the fit's component order.

    Attributes
    ----------
    intervals : list of ConfidenceIntervals
        One per interval method and level.
    standard_errors : dict of str to ndarray of shape (M,)
        Per SE method that succeeded (``'bootstrap'``: SD of the draws).
    diagnostics : EMDiagnostics
        ``inference_seconds``, ``se_error_<method>`` for each method that failed, and the
        bootstrap's counts of redrawn refits and label mismatches.
    """

    intervals: list[ConfidenceIntervals]
    standard_errors: dict[str, np.ndarray]
    diagnostics: EMDiagnostics


def _em_inference(
    model: GaussianMixture,
    X: np.ndarray,
    options: EMOptions,
    levels: tuple[float, ...],
    bootstrap_seed: int,
) -> _EMInference:
    """The study's ``[methods.em] intervals`` for a fitted model.

    A method that cannot be computed (``ValueError``: a singular information matrix, a
    collapsed component, a bootstrap draw that failed ``max_redraws + 1`` times) is recorded
    as ``se_error_<method>`` with its message; the other methods and the estimate stand.
    """
    start = time.perf_counter()
    intervals: list[ConfidenceIntervals] = []
    ses: dict[str, np.ndarray] = {}
    diagnostics: EMDiagnostics = {}
    for se_method in options.se_methods:
        try:
            errors = standard_errors(model, X, method=se_method)
        except ValueError as exc:
            diagnostics[f"se_error_{se_method}"] = str(exc)  # type: ignore[literal-required]
            continue
        ses[se_method] = errors.se
        intervals += [wald_intervals(errors, level=lv, scale=options.wald_scale) for lv in levels]
    if "bootstrap" in options.intervals:
        try:
            # one core: the study's workers already use the machine
            draws = bootstrap(
                model, X, kind=options.bootstrap, n_boot=options.n_boot, rng=bootstrap_seed
            )
        except ValueError as exc:
            diagnostics["se_error_bootstrap"] = str(exc)
        else:
            ses["bootstrap"] = draws.se
            intervals += [draws.interval(lv, method="percentile") for lv in levels]
            diagnostics["bootstrap_failed_refits"] = draws.n_failed
            diagnostics["bootstrap_label_mismatches"] = draws.n_label_mismatches
    diagnostics["inference_seconds"] = time.perf_counter() - start
    return _EMInference(intervals, ses, diagnostics)


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
        target_accept, ordering = options.target_accept, options.ordering
    else:
        sampler, chains = "advi", 1
        target_accept, ordering = DEFAULT_TARGET_ACCEPT, DEFAULT_ORDERING
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
        target_accept=target_accept,
        ordering=ordering,
    )
    seconds = time.perf_counter() - start
    sbc: SBCRanks | None = None
    ordered: tuple[OrderedInterval, ...] = ()
    if spec.truth_from_prior and isinstance(options, BayesOptions):
        from workbench.bayes.calibration import ordered_intervals, sbc_ranks

        # the truth is drawn sorted, on the model's ordered labelling: rank it among the
        # raw draws, never the relabelled ones
        sbc = sbc_ranks(dataset.truth, fit, rng=np.random.default_rng([seed, 1]))
        ordered = ordered_intervals(dataset.truth, fit, spec.levels)
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
        sbc=sbc,
        ordered_intervals=ordered,
    )
