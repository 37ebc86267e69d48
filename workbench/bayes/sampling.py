"""Fit the Bayesian Gaussian mixture: one function, four samplers, one compiled model per structure.

:func:`fit_bayes` builds (or reuses) the model of :mod:`workbench.bayes.model`, starts
the chains at a given estimate (the EM fit in a study) or at a data-sliced default,
samples, relabels the draws, and returns a :class:`BayesFit` with the raw ArviZ
``DataTree`` and the relabelled arrays.

Samplers
--------
``"nutpie"``
    nutpie's NUTS with its low-rank mass-matrix adaptation, on the hand-written numba log
    density and gradient of :mod:`workbench.bayes.fast_model` (the same model, PyMC's
    unconstrained layout and variable names). Its two C entry points compile once per
    machine and load from numba's disk cache in a new process (about 0.3 s), where
    compiling the PyMC model for nutpie took 80-100 s cold and 13-21 s in every new
    process. With a nutpie release the fast model was not written for
    (:data:`~workbench.bayes.fast_model.NUTPIE_VERSIONS`) the PyMC model is compiled
    with ``nutpie.compile_pymc_model`` instead. Either way one compiled model serves a
    structure (number of features and components, covariance type, Dirichlet
    concentration, LKJ eta) whatever the number of samples: later fits swap the data with
    ``CompiledPyMCModel.with_data``, which accepts data of any length (nutpie checks only
    the number of dimensions), and cost only their sampling. :func:`precompile` compiles
    a structure ahead of the first fit, e.g. in a study runner's parent process before it
    forks its workers.
``"pymc"``
    PyMC's own NUTS (``pm.sample(nuts_sampler="pymc")``, no jitter, chains in parallel
    up to the CPU count). PyMC recompiles its logp for every call; the C cache in
    ``~/.pytensor`` makes that a few seconds after the first time.
``"numpyro"``
    numpyro's NUTS through ``pm.sample(nuts_sampler="numpyro")``; JAX re-jits per call.
``"advi"``
    Mean-field ADVI (``pm.fit``) with ``tune`` optimisation steps, then ``chains * draws``
    draws from the approximation, reshaped to (chains, draws). It is approximate: r_hat
    and ESS are NaN, and so are the divergence and tree-depth counts (not applicable).
``"auto"``
    nutpie: on this machine it was the fastest sampler that converged on the 1-D and
    2-D benchmark cases when started at the EM estimate
    (``experiments/benchmarks/bayes_samplers.py``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pymc as pm
import pytensor
import xarray as xr

from workbench._platform import available_cpus
from workbench._validation import check_choice, check_int, check_real
from workbench.bayes import fast_model
from workbench.bayes.diagnostics import (
    BayesDiagnostics,
    component_parameters,
    convergence,
    sampler_counts,
)
from workbench.bayes.model import (
    DATA,
    OBSERVED,
    BayesPriors,
    build_model,
    check_data,
    initial_values,
    spread_start,
)
from workbench.bayes.options import (
    AUTO_SAMPLER,
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_ORDERING,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    ORDERINGS,
    SAMPLERS,
    TARGET_ACCEPT_SAMPLERS,
)
from workbench.bayes.relabel import (
    apply_orders,
    canonical_orders,
    label_switching_report,
    reference_orders,
    stephens_orders,
)
from workbench.draws import draw_allocation_probabilities, draw_log_density
from workbench.mixture import (
    MixtureParams,
)

__all__ = ["BayesFit", "SamplingError", "clear_model_cache", "fit_bayes", "precompile"]


# Chains start at the given estimate plus U(-JITTER, JITTER) on the unconstrained scale:
# enough to make the chains differ, small enough (10% on log-sds and log-gaps of the
# ordered means) to stay in the estimate's mode, which in 2-D is what makes them converge.
JITTER = 0.1
# Stephens' relabelling uses at most this many (evenly strided) observations; its
# allocation array is (draws, observations, K) and this bounds the memory.
STEPHENS_MAX_OBS = 1000
_CACHE_SIZE = 8
# nutpie's low-rank mass matrix adapts to the correlations between weights, means and
# scales; measured here (4 chains x 1000 draws, K=3, n=1000) it raised the minimum
# ESS from 2028 to 3426 in 1-D and from 860 to 5957 in 2-D at about the same run time.
NUTPIE_ADAPTATION = "low_rank"
ADVI_START_SIGMA = 0.1


class SamplingError(RuntimeError):
    """A sampler could not start or failed; the message names the sampler and the reason."""


@dataclass
class BayesFit:
    """Result of :func:`fit_bayes`.

    Attributes
    ----------
    idata : xarray.DataTree
        Groups ``posterior`` (raw draws on the model's ordered labelling; see ``ordering`` of
        :func:`fit_bayes`), ``posterior_relabelled``
        (``w``, ``mu``, ``cov`` after relabelling), ``sample_stats`` (empty for ADVI),
        ``observed_data`` and ``log_likelihood`` (pointwise, variable ``x``, dims
        (chain, draw, obs)).
    weights : ndarray of shape (chains, draws, K)
        Relabelled.
    means : ndarray of shape (chains, draws, K, d)
        Relabelled.
    covariances : ndarray of shape (chains, draws, K, d, d)
        Relabelled, dense.
    diagnostics : dict
        ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` (on the relabelled component
        parameters; NaN for ADVI), ``n_divergences``, ``n_max_treedepth`` (NaN for ADVI),
        ``label_switching``, ``n_relabelled_draws``, ``n_chains_disagreeing``,
        ``relabel_method`` ('reference' or 'stephens'), ``sampler``, ``started_at_em``
        (chains started at the given ``init``), ``sampling_seconds``,
        ``compile_seconds`` (0 when a compiled model was reused; NaN for ADVI, whose
        compile cannot be separated from its optimisation), ``model_reused``, ``chains``,
        ``draws``, ``tune``, ``covariance_type``, ``ordering``.
    """

    idata: xr.DataTree
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    diagnostics: BayesDiagnostics

    def posterior_mean(self) -> MixtureParams:
        """Posterior means of the relabelled weights, means and covariances."""
        weights = self.weights.mean(axis=(0, 1))
        return MixtureParams(
            weights / weights.sum(),
            self.means.mean(axis=(0, 1)),
            self.covariances.mean(axis=(0, 1)),
        )

    def flat_draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Relabelled draws with chains stacked: shapes (S, K), (S, K, d), (S, K, d, d)."""
        c, s = self.weights.shape[:2]
        return (
            self.weights.reshape(c * s, *self.weights.shape[2:]),
            self.means.reshape(c * s, *self.means.shape[2:]),
            self.covariances.reshape(c * s, *self.covariances.shape[2:]),
        )

    def to_netcdf(self, path: str | os.PathLike[str]) -> None:
        """Write ``idata`` (with the diagnostics as root attributes) to NetCDF via h5netcdf."""
        tree = self.idata.copy()
        tree.attrs.update(
            {k: (int(v) if isinstance(v, bool) else v) for k, v in self.diagnostics.items()}
        )
        tree.to_netcdf(path, engine="h5netcdf")


@dataclass
class _CachedModel:
    model: pm.Model
    covariance_type: str
    # The first fit's priors: the fast model reads only the structural ones (in the key).
    priors: BayesPriors
    lock: threading.Lock
    nutpie: Any = None
    # Maps untransformed start values (set on shared variables) to unconstrained ones.
    to_unconstrained: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None


_CACHE: OrderedDict[tuple, _CachedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget all cached models and compiled samplers (the next fit compiles again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached_model(
    X: np.ndarray, n_components: int, covariance_type: str, priors: BayesPriors, ordering: str
) -> tuple[_CachedModel, bool]:
    # The data and the data-scaled hyperparameters are pm.Data, and the compiled nutpie
    # model reads their lengths at call time, so only the structure is in the key: one
    # model serves every n (checked in tests/test_bayes_compile.py).
    key = (
        X.shape[1],
        n_components,
        covariance_type,
        priors.dirichlet_concentration,
        priors.lkj_eta,
        ordering,
    )
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            return entry, True
    model = build_model(
        X,
        n_components,
        covariance_type=covariance_type,
        priors=priors,
        ordered_means=ordering == "transform",
    )
    entry = _CachedModel(
        model=model, covariance_type=covariance_type, priors=priors, lock=threading.Lock()
    )
    with _CACHE_LOCK:
        # another thread may have built the same model meanwhile: keep the first
        entry = _CACHE.setdefault(key, entry)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return entry, False


def _placeholder_data(n_features: int, n_components: int) -> np.ndarray:
    """Fixed standard-normal data of the right width to build a model before any dataset.

    Every fit replaces the data and the data-scaled hyperparameters, so the values only
    need to pass :func:`~workbench.bayes.model.check_data`.
    """
    return np.random.default_rng(0).standard_normal((10 * max(2, n_components), n_features))


def precompile(
    n_features: int,
    n_components: int,
    *,
    covariance_type: str = "full",
    priors: BayesPriors | Mapping[str, Any] | None = None,
    sampler: str = "auto",
    ordering: str = DEFAULT_ORDERING,
) -> float:
    """Build and compile the model of one structure now, for every later fit of that structure.

    Later calls of :func:`fit_bayes` with the same number of features, components,
    covariance type and prior structure (any number of samples) reuse it:
    ``diagnostics['model_reused']`` is True and ``compile_seconds`` 0. A process forked
    (``multiprocessing`` 'fork' context) after this call inherits the compiled sampler, so a
    study runner that precompiles its structures before starting a fork-based pool compiles
    once per run instead of once per worker (tested in ``tests/test_bayes_compile.py``).

    Parameters
    ----------
    n_features : int >= 1
    n_components : int >= 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    priors : BayesPriors or mapping, optional
        Only the structural settings (``dirichlet_concentration``, ``lkj_eta``) select the
        model; the data-scaled values are set by each fit.
    sampler : {'auto', 'nutpie', 'pymc', 'numpyro', 'advi'}, default 'auto'
        Only nutpie keeps a compiled sampler between fits. PyMC's NUTS, numpyro and ADVI
        compile inside every call, so for them the PyMC model is built and cached and
        nothing is compiled.
    ordering : {'transform', 'sort'}, default DEFAULT_ORDERING
        As for :func:`fit_bayes`; each ordering is its own model.

    Returns
    -------
    float
        Seconds spent compiling; 0.0 when the structure was already compiled, or for the
        samplers that compile per call.

    Raises
    ------
    ValueError
        For a bad setting; the message names the value and what is allowed.
    """
    n_features = check_int("n_features", n_features, minimum=1)
    n_components = check_int("n_components", n_components, minimum=1)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("ordering", ordering, ORDERINGS)
    priors = _resolve_priors(priors)
    X = _placeholder_data(n_features, n_components)
    entry, _ = _cached_model(X, n_components, covariance_type, priors, ordering)
    if (AUTO_SAMPLER if sampler == "auto" else sampler) != "nutpie":
        return 0.0
    return _compile_nutpie(entry)


def _unconstrained_map(model: pm.Model) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Compile once: untransformed start values -> flat unconstrained vector (nutpie order)."""
    from pymc.initial_point import make_initial_point_fn

    shared: dict[str, Any] = {}
    point_fn = None

    def to_unconstrained(values: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal point_fn
        if point_fn is None:
            shared.update(
                {name: pytensor.shared(np.asarray(v, dtype=float)) for name, v in values.items()}
            )
            point_fn = make_initial_point_fn(
                model=model, overrides=shared, jitter_rvs=set(), return_transformed=True
            )
        for name, value in values.items():
            shared[name].set_value(np.asarray(value, dtype=float))
        point = point_fn(0)
        return np.concatenate(
            [np.ravel(point[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
        )

    return to_unconstrained


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _data_updates(X: np.ndarray, priors: BayesPriors) -> dict[str, np.ndarray]:
    return {DATA: X, **priors.resolve(X)}


def _compile_nutpie(entry: _CachedModel) -> float:
    """Compile the entry's nutpie sampler and start-value map once; return the seconds spent.

    Both are compiled here, before any fit needs them, so that a compiled entry is complete:
    a process forked after this call samples without compiling anything. The fast model
    (numba, :mod:`workbench.bayes.fast_model`) is used whenever the installed nutpie is one
    it supports; otherwise nutpie compiles the PyMC model.
    """
    import nutpie

    with entry.lock:
        if entry.nutpie is not None:
            return 0.0
        t0 = time.perf_counter()
        to_unconstrained: Callable[[dict[str, np.ndarray]], np.ndarray]
        if fast_model.supported():
            compiled = fast_model.compile_fast_model(
                entry.model, entry.covariance_type, entry.priors
            )
            structure = fast_model.structure_of(entry.model, entry.covariance_type, entry.priors)

            def to_unconstrained(values: dict[str, np.ndarray]) -> np.ndarray:
                return fast_model.unconstrained_point(values, structure)

        else:
            compiled = nutpie.compile_pymc_model(entry.model)
            to_unconstrained = _unconstrained_map(entry.model)
            X = entry.model[DATA].get_value()
            n_components = len(entry.model.coords["component"])
            # the map compiles its PyTensor function on the first call
            to_unconstrained(
                initial_values(entry.model, spread_start(X, n_components), entry.covariance_type)
            )
        entry.nutpie, entry.to_unconstrained = compiled, to_unconstrained
        return time.perf_counter() - t0


def _sample_nutpie(
    entry: _CachedModel,
    X: np.ndarray,
    priors: BayesPriors,
    start: dict[str, np.ndarray],
    *,
    chains: int,
    draws: int,
    tune: int,
    cores: int,
    rng: np.random.Generator,
    progressbar: bool,
    target_accept: float,
) -> tuple[xr.DataTree, float, float]:
    import nutpie

    compile_seconds = _compile_nutpie(entry)
    to_unconstrained = entry.to_unconstrained
    assert to_unconstrained is not None  # set by _compile_nutpie
    with entry.lock:
        centre = to_unconstrained(start)
    if not np.all(np.isfinite(centre)):
        raise SamplingError(
            "sampler 'nutpie' cannot start: the initial point is not finite on the "
            "unconstrained scale (check init: weights > 0, positive definite covariances)"
        )

    def initial_point(seed: Any) -> np.ndarray:
        jitter = np.random.default_rng(seed).uniform(-JITTER, JITTER, size=centre.shape)
        return centre + jitter

    compiled = dataclasses.replace(
        entry.nutpie.with_data(**_data_updates(X, priors)), initial_point_func=initial_point
    )
    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=_seed(rng),
        save_warmup=False,
        progress_bar=progressbar,
        adaptation=NUTPIE_ADAPTATION,
        target_accept=target_accept,
    )
    return idata, time.perf_counter() - t0, compile_seconds


def _sample_pymc(
    entry: _CachedModel,
    X: np.ndarray,
    priors: BayesPriors,
    start: dict[str, np.ndarray],
    *,
    nuts_sampler: str,
    chains: int,
    draws: int,
    tune: int,
    cores: int,
    rng: np.random.Generator,
    progressbar: bool,
) -> tuple[xr.DataTree, float, float]:
    # PyMC's C backend has no BLAS here and runs the batched matmul of the likelihood in
    # Python; numba is several times faster. numpyro compiles with JAX.
    extra: dict[str, Any] = (
        {"init": "adapt_diag", "backend": "numba"}
        if nuts_sampler == "pymc"
        else {"nuts": {"jitter": False}}
    )
    with entry.lock, entry.model:
        pm.set_data(_data_updates(X, priors), coords={"obs": np.arange(len(X))})
        t0 = time.perf_counter()
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=_seed(rng),
            initvals=start,
            nuts_sampler=nuts_sampler,
            progressbar=progressbar,
            compute_convergence_checks=False,
            **extra,
        )
        wall = time.perf_counter() - t0
    sampling = float(idata["posterior"].attrs.get("sampling_time", wall))
    return idata, sampling, max(wall - sampling, 0.0)


def _fit_advi(
    entry: _CachedModel,
    X: np.ndarray,
    priors: BayesPriors,
    start: dict[str, np.ndarray],
    *,
    chains: int,
    draws: int,
    tune: int,
    rng: np.random.Generator,
    progressbar: bool,
) -> tuple[xr.DataTree, float, float]:
    with entry.lock, entry.model:
        pm.set_data(_data_updates(X, priors), coords={"obs": np.arange(len(X))})
        t0 = time.perf_counter()
        approx = pm.fit(
            n=tune,
            method="advi",
            start=start,
            # PyMC's default initial sd (0.69 on every unconstrained scale) puts the
            # approximation far from the start and makes ADVI need ~40000 steps to come
            # back to it on a 1-D, K=2 example; starting narrow needs a few thousand.
            start_sigma={
                entry.model.rvs_to_values[rv].name: ADVI_START_SIGMA for rv in entry.model.free_RVs
            },
            random_seed=_seed(rng),
            progressbar=progressbar,
            backend="numba",
        )
        draws_tree = approx.sample(draws=chains * draws, random_seed=_seed(rng))
        seconds = time.perf_counter() - t0
    flat = draws_tree["posterior"].to_dataset()
    posterior = xr.Dataset(
        {
            name: (
                ("chain", "draw", *var.dims[2:]),
                var.values.reshape(chains, draws, *var.shape[2:]),
            )
            for name, var in flat.data_vars.items()
        },
        coords={k: v for k, v in flat.coords.items() if k not in ("chain", "draw")},
    )
    posterior = posterior.assign_coords(chain=np.arange(chains), draw=np.arange(draws))
    if not np.all(np.isfinite(posterior["mu"].values)):
        raise SamplingError("sampler 'advi' diverged: the approximation has non-finite means")
    return xr.DataTree.from_dict({"posterior": posterior}), seconds, np.nan


def _resolve_priors(priors: BayesPriors | Mapping[str, Any] | None) -> BayesPriors:
    if priors is None:
        return BayesPriors()
    if isinstance(priors, BayesPriors):
        return priors
    if isinstance(priors, Mapping):
        return BayesPriors.from_dict(priors)
    raise ValueError(f"priors={priors!r} is not allowed; use BayesPriors, a mapping or None")


def fit_bayes(
    X: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    sampler: str = "auto",
    chains: int = DEFAULT_CHAINS,
    draws: int = DEFAULT_DRAWS,
    tune: int = DEFAULT_TUNE,
    priors: BayesPriors | Mapping[str, Any] | None = None,
    init: MixtureParams | None = None,
    reference: MixtureParams | None = None,
    random_seed: int | np.random.Generator | None = None,
    progressbar: bool = False,
    cores: int | None = None,
    target_accept: float = DEFAULT_TARGET_ACCEPT,
    ordering: str = DEFAULT_ORDERING,
) -> BayesFit:
    """Fit the Bayesian Gaussian mixture by MCMC (or ADVI) and relabel the draws.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    sampler : {'auto', 'nutpie', 'pymc', 'numpyro', 'advi'}, default 'auto'
        See the module docstring; 'auto' is nutpie.
    chains, draws : int >= 1
    tune : int >= 0
        Tuning steps per chain; for ADVI the number of optimisation steps (>= 1).
    priors : BayesPriors or mapping, optional
        Mappings are validated by :meth:`BayesPriors.from_dict`.
    init : MixtureParams, optional
        Start every chain here (plus a small jitter on the unconstrained scale), e.g. the
        EM fit; recorded as ``diagnostics['started_at_em']``. Default: the data-sliced
        start of :func:`workbench.bayes.model.spread_start`.
    reference : MixtureParams, optional
        Relabel each draw to this mixture with the Hungarian algorithm (KL cost). Default:
        Stephens' KL relabelling on the allocation probabilities.
    random_seed : int or numpy Generator, optional
    progressbar : bool, default False
    cores : int, optional
        Chains run in parallel; default ``min(chains, CPUs available)``.
    target_accept : float in (0, 1), default DEFAULT_TARGET_ACCEPT
        NUTS' target acceptance rate of the step-size adaptation. Only nutpie ('auto') takes
        it; with 'pymc' or 'numpyro' another value than the default is an error. Higher
        values take smaller steps: fewer divergences in funnel-like regions, at a higher
        cost per draw.
    ordering : {'transform', 'sort'}, default DEFAULT_ORDERING
        How the raw draws (``idata['posterior']``) get the ordered labelling, first mean
        coordinate increasing: 'transform' samples on the ordered transform; 'sort' samples
        the exchangeable model and sorts each draw's components jointly, keeping only ``w``,
        ``mu`` and ``cov`` in the posterior group (the sampled per-component variables carry
        arbitrary labels). Both target the same posterior; see
        :data:`workbench.bayes.options.ORDERINGS` for when they differ in practice.

    Returns
    -------
    BayesFit

    Raises
    ------
    ValueError
        For bad data or settings; the message names the value and what is allowed.
    SamplingError
        If the sampler cannot start or fails; the message names the sampler and the
        reason.
    """
    X = check_data(X, n_components)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("ordering", ordering, ORDERINGS)
    chains = check_int("chains", chains, minimum=1)
    draws = check_int("draws", draws, minimum=1)
    tune = check_int("tune", tune, minimum=1 if sampler == "advi" else 0)
    cores = check_int(
        "cores", cores if cores is not None else min(chains, available_cpus()), minimum=1
    )
    target_accept = check_real("target_accept", target_accept, above=0.0, below=1.0)
    if target_accept != DEFAULT_TARGET_ACCEPT and sampler not in TARGET_ACCEPT_SAMPLERS:
        raise ValueError(
            f"target_accept={target_accept!r} is not allowed with sampler={sampler!r}; it "
            f"applies to sampler {' or '.join(map(repr, TARGET_ACCEPT_SAMPLERS))} only"
        )
    priors = _resolve_priors(priors)
    for name, params in (("init", init), ("reference", reference)):
        if params is not None and not isinstance(params, MixtureParams):
            raise ValueError(f"{name} must be a MixtureParams or None, got {type(params).__name__}")
    if reference is not None and reference.means.shape != (n_components, X.shape[1]):
        raise ValueError(
            f"reference has {reference.n_components} components and {reference.n_features} "
            f"features; the fit has {n_components} and {X.shape[1]}"
        )
    rng = np.random.default_rng(random_seed)
    name = AUTO_SAMPLER if sampler == "auto" else sampler

    entry, reused = _cached_model(X, n_components, covariance_type, priors, ordering)
    start = initial_values(
        entry.model, init if init is not None else spread_start(X, n_components), covariance_type
    )
    settings: dict[str, Any] = {
        "chains": chains,
        "draws": draws,
        "tune": tune,
        "rng": rng,
        "progressbar": progressbar,
    }
    try:
        if name == "nutpie":
            idata, sampling_seconds, compile_seconds = _sample_nutpie(
                entry, X, priors, start, cores=cores, target_accept=target_accept, **settings
            )
        elif name == "advi":
            idata, sampling_seconds, compile_seconds = _fit_advi(
                entry, X, priors, start, **settings
            )
        else:
            idata, sampling_seconds, compile_seconds = _sample_pymc(
                entry, X, priors, start, nuts_sampler=name, cores=cores, **settings
            )
    except SamplingError:
        raise
    except Exception as exc:
        # nutpie appends a Rust backtrace to its message; the reason is what precedes it.
        reason = " ".join(str(exc).split("Stack backtrace:")[0].split())
        raise SamplingError(
            f"sampler {name!r} failed for the {n_components}-component {covariance_type} "
            f"mixture: {type(exc).__name__}: {reason}"
        ) from exc
    return _assemble(
        idata,
        X,
        covariance_type=covariance_type,
        reference=reference,
        run_info={
            "sampler": name,
            "started_at_em": init is not None,
            "sampling_seconds": float(sampling_seconds),
            "compile_seconds": float(compile_seconds),
            "model_reused": reused,
            "chains": chains,
            "draws": draws,
            "tune": tune,
            "covariance_type": covariance_type,
            "ordering": ordering,
        },
    )


def _sorted_by_first_mean(posterior: xr.Dataset) -> xr.Dataset:
    """``w``, ``mu`` and ``cov`` of every draw with components sorted by ``mu[:, 0]``.

    Parameters
    ----------
    posterior : xarray.Dataset
        With ``w`` (chain, draw, K), ``mu`` (chain, draw, K, d), ``cov`` (chain, draw, K, d, d).

    Returns
    -------
    xarray.Dataset
        Only those three variables, same dims and attributes.
    """
    order = np.argsort(posterior["mu"].values[..., 0], axis=-1, kind="stable")
    sorted_vars = {}
    for name in ("w", "mu", "cov"):
        values = posterior[name].values
        index = order.reshape(order.shape + (1,) * (values.ndim - order.ndim))
        sorted_vars[name] = posterior[name].copy(data=np.take_along_axis(values, index, axis=2))
    return xr.Dataset(sorted_vars, attrs=posterior.attrs)


def _assemble(
    idata: xr.DataTree,
    X: np.ndarray,
    *,
    covariance_type: str,
    reference: MixtureParams | None,
    run_info: dict[str, Any],
) -> BayesFit:
    posterior = idata["posterior"].to_dataset()
    if run_info["ordering"] == "sort":
        posterior = _sorted_by_first_mean(posterior)
    raw_w = posterior["w"].values
    raw_mu = posterior["mu"].values
    raw_cov = posterior["cov"].values
    chains, draws, K, d = raw_mu.shape
    S = chains * draws
    flat_w, flat_mu, flat_cov = (
        raw_w.reshape(S, K),
        raw_mu.reshape(S, K, d),
        raw_cov.reshape(S, K, d, d),
    )
    if reference is not None:
        orders = reference_orders(flat_w, flat_mu, flat_cov, reference)
        method = "reference"
    else:
        stride = max(1, -(-X.shape[0] // STEPHENS_MAX_OBS))
        probabilities = draw_allocation_probabilities(X[::stride], flat_w, flat_mu, flat_cov)
        orders = canonical_orders(stephens_orders(probabilities))
        method = "stephens"
    weights = apply_orders(flat_w, orders).reshape(chains, draws, K)
    means = apply_orders(flat_mu, orders).reshape(chains, draws, K, d)
    covariances = apply_orders(flat_cov, orders).reshape(chains, draws, K, d, d)

    stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else None
    diagnostics = cast(
        BayesDiagnostics,
        {
            **convergence(component_parameters(weights, means, covariances, covariance_type)),
            **sampler_counts(stats),
            **label_switching_report(orders, chains),
            "relabel_method": method,
            **run_info,
        },
    )
    if diagnostics["sampler"] == "advi":
        diagnostics.update({"max_r_hat": np.nan, "min_ess_bulk": np.nan, "min_ess_tail": np.nan})

    sample_dims = {"chain": np.arange(chains), "draw": np.arange(draws)}
    groups: dict[str, xr.Dataset] = {"posterior": posterior}
    if stats is not None:
        # nutpie stores divergence messages as Python objects, which NetCDF cannot hold.
        groups["sample_stats"] = stats.drop_vars(
            [v for v, a in stats.data_vars.items() if a.dtype == object]
        )
    groups["observed_data"] = xr.Dataset({OBSERVED: (("obs", "feature"), X)})
    groups["log_likelihood"] = xr.Dataset(
        {
            OBSERVED: (
                ("chain", "draw", "obs"),
                draw_log_density(X, flat_w, flat_mu, flat_cov).reshape(chains, draws, -1),
            )
        },
        coords=sample_dims,
    )
    groups["posterior_relabelled"] = xr.Dataset(
        {
            "w": (("chain", "draw", "component"), weights),
            "mu": (("chain", "draw", "component", "feature"), means),
            "cov": (("chain", "draw", "component", "feature", "feature_bis"), covariances),
        },
        coords=sample_dims,
    )
    tree = xr.DataTree.from_dict(groups)
    return BayesFit(
        idata=tree,
        weights=weights,
        means=means,
        covariances=covariances,
        diagnostics=diagnostics,
    )
