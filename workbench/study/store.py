"""The study store: one SQLite database per study output folder.

A study's output folder (default ``reports/<study name>/``) holds

``study.db``
    The SQLite database described below (plus ``study.db-wal`` / ``study.db-shm`` while it is
    open: the database runs in WAL mode).
``study.db.bak``
    The last periodic copy of the database (:meth:`StudyStore.backup`; ``[output]
    backup_every`` / ``backup_minutes``), a complete store of its own.
``draws/c{condition:03d}-r{replication:04d}-{method}.nc``
    Posterior draws of kept fits as NetCDF: the fit's ArviZ ``DataTree`` (``posterior``
    with the draws as sampled, ``posterior_relabelled`` with ``w``, ``mu``, ``cov`` after
    relabelling, ``sample_stats``, ``observed_data``) without the pointwise
    ``log_likelihood`` group, which would dominate the file. Open it with
    ``StudyStore.load_draws``, ``xarray.open_datatree`` or ``arviz.from_netcdf``. Which
    fits are kept is ``[output] keep_draws`` in the study config: ``"first"`` (replication
    0 of every condition, the default), ``"all"`` or ``"none"``.

Crash safety
------------
Only the main process writes. Every finished task is written in ONE transaction (all of its
rows in every table below, or none of them), and a kept fit's NetCDF file is written to a
temporary name and renamed into place *before* that transaction commits. A run killed with
``kill -9`` therefore loses at most the tasks that were in flight: a task is either fully in
the database or absent, and an absent task is simply run again on resume (an orphaned NetCDF
file from the killed run is overwritten). ``PRAGMA synchronous=FULL`` makes each commit
durable.

Faults of the environment
-------------------------
A full disk (``SQLITE_FULL``, ``ENOSPC``, ``EDQUOT``), a folder that cannot be written
(a file in its place, no permission, a read-only file system) and a damaged database
(``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) raise a :class:`StoreError` subclass whose one-line
message names the file, the cause and the next step; the transaction in progress is rolled
back (only while one is still open, so the original cause is what is reported) and every
task committed before is kept. ``study.db.bak`` is the last periodic copy of the database
(:meth:`StudyStore.backup`, taken by the runner); :mod:`workbench.study.doctor` checks and
repairs a damaged store.

Every row of the per-task tables is keyed by ``(condition_id, replication)``; the pair is the
task's identity. Both numbers are stable for a given config: ``condition_id`` is the
position of the condition in the expanded design, ``replication`` counts from 0. ``method``
is the name of the method's table in the study config: ``"em"``, ``"bayes"`` or ``"advi"``.
NaN values are stored as SQL ``NULL`` (SQLite has no NaN), which pandas reads back as NaN.

Tables
------
``study``
    ``key TEXT PRIMARY KEY, value TEXT`` - study metadata, one row per key:
    ``name``; ``config_toml`` (the text of the TOML file as last run); ``config`` (the
    validated, normalised config as JSON: seed, replications, methods, output options);
    ``config_hash`` (SHA-256 of everything that changes results; a run with a different hash
    refuses to write here); ``created_at`` / ``updated_at`` (ISO 8601 UTC); ``versions``
    (JSON: python, workbench, numpy, scipy, scikit-learn, pymc, pytensor, arviz, nutpie,
    numpyro, xarray, dask, distributed - as installed in the main process);
    ``schema_version`` (a store of another version is refused, see :data:`SCHEMA_VERSION`).
``conditions``
    ``condition_id INTEGER PRIMARY KEY, label TEXT, scenario TEXT`` - one row per condition
    of the design. ``label`` is ``Scenario.label()``; ``scenario`` is ``Scenario.to_dict()``
    as JSON (every scenario field, so the condition can be rebuilt with
    ``Scenario.from_dict``).
``tasks``
    ``condition_id, replication, seed, status, error, traceback, started_at, finished_at,
    seconds, simulate_seconds, worker, kept`` - one row per FINISHED task (a missing row is
    a task still to run). ``seed`` is the task's 63-bit integer seed (see
    ``workbench.study.seeds``); ``status`` is ``'ok'`` when the simulation and every fit
    succeeded and ``'failed'`` otherwise, in which case ``error`` / ``traceback`` hold the
    first failure (``'ok'`` rows have NULLs there). ``seconds`` is the task's wall time on
    its worker, ``worker`` is ``host:pid``, ``kept`` is 1 when the task's dataset, EM history
    and posterior draws were kept (see ``keep_draws``).
``fits``
    ``condition_id, replication, method, status, error, traceback, fit_seconds`` - one row
    per method per task (absent when the simulation itself failed). ``status`` is ``'ok'`` or
    ``'failed'``; a failed fit has no rows in the tables below.
``metrics``
    ``condition_id, replication, method, metric, value REAL`` - the metrics of one fit, as
    computed by ``workbench.metrics`` (``FitScore.metrics``), e.g. log-likelihoods, held-out
    log predictive density, ARI, run time.
``estimates``
    ``condition_id, replication, method, parameter, kind, truth, estimate, sd`` - one row per
    scalar parameter after aligning the fit to the truth (``FitScore.estimates``).
    ``parameter`` names the scalar (e.g. ``weight[0]``, ``mean[1,0]``, ``cov[0,1,1]``),
    ``kind`` its type (e.g. ``weight``, ``mean``, ``covariance``); ``sd`` is the posterior SD
    for Bayesian methods and NULL for EM.
``intervals``
    ``condition_id, replication, method, parameter, interval, level, lower, upper, covered`` -
    credible intervals of Bayesian fits and confidence intervals of EM fits, aligned to the
    truth like the estimates. ``level`` is e.g. 0.95 (every level of ``[output] levels``),
    ``covered`` is 1 when the interval contains the truth, else 0. ``interval`` names how
    the interval was made: Bayesian fits ``central`` (equal-tailed) or ``hdi``; EM fits (one
    name per entry of ``[methods.em] intervals``, see :mod:`workbench.em.inference`)
    ``hessian-wald``, ``opg-wald``, ``sandwich-wald`` (``estimate +- z se`` from the
    inverse observed information, the outer product of the scores, or the sandwich),
    the same with ``-transformed`` appended when ``wald_scale = "transformed"``, and
    ``nonparametric-bootstrap-percentile`` (or ``parametric-`` / ``weighted-``): the
    quantiles of the bootstrap draws.
``standard_errors``
    ``condition_id, replication, method, parameter, se_method, se`` - standard errors of EM
    estimates, one row per parameter and SE method of ``[methods.em] intervals``
    (``hessian``, ``opg``, ``sandwich``, or ``bootstrap``: the SD of the bootstrap draws),
    aligned to the truth. An SE method that failed (a singular information matrix, a
    bootstrap draw that kept failing) has no rows here and a diagnostic
    ``se_error_<se_method>`` with the reason instead; the EM estimate is still stored.
``diagnostics``
    ``condition_id, replication, method, key, value`` - per-fit diagnostics; ``value`` keeps
    its SQLite type (REAL, INTEGER or TEXT; booleans are 0/1). Bayesian fits store every
    entry of ``BayesFit.diagnostics``, among them ``max_r_hat``, ``min_ess_bulk``,
    ``min_ess_tail``, ``n_divergences``, ``n_max_treedepth`` (all NULL for ADVI),
    ``label_switching``, ``sampler``, ``started_at_em``, ``sampling_seconds`` and
    ``compile_seconds``. EM: ``converged``, ``n_iter``, ``lower_bound``, ``n_init``; with
    intervals also ``inference_seconds`` (SEs and bootstrap), ``se_error_<se_method>``
    (text: why that SE method is not available) and, with the bootstrap,
    ``bootstrap_failed_refits`` (refits redrawn) and ``bootstrap_label_mismatches`` (kept
    draws whose Hungarian matching to the fit is not the identity). Any
    fit may have ``warnings``: the distinct warnings raised during the fit (e.g. EM's
    ConvergenceWarning), joined by `` | ``.
``em_traces``
    ``condition_id, replication, method, iteration, lower_bound`` - the EM lower bound (mean
    log-likelihood per sample) at each iteration of the best start (``lower_bounds_``), for
    every EM fit. ``iteration`` counts from 1.
``params``
    ``condition_id, replication, role, weights, means, covariances`` - whole mixtures as
    JSON arrays of shapes (K,), (K, d) and (K, d, d): ``role`` is ``'truth'`` or a method
    name (EM: its estimate; Bayes/ADVI: the posterior mean). Every task stores its truth and
    every successful fit its point estimate. The components of a fit are permuted to match
    the truth's order (component k of a fit is aligned to true component k).
``datasets``
    ``condition_id, replication, data BLOB`` - for kept tasks only: the training data as an
    ``.npz`` file with arrays ``X_train`` (n, d) and ``y_train`` (n,) (the true labels).
    Read it with ``StudyStore.load_dataset``. Tasks that are not kept can regenerate their
    data exactly from their seed with ``workbench.study.regenerate_dataset``.
``em_history``
    ``condition_id, replication, method, data BLOB`` - for kept EM fits: the per-iteration
    snapshots of the best start (``history_``) as an ``.npz`` file with arrays
    ``lower_bound`` (T,), ``weights`` (T, K), ``means`` (T, K, d) and ``covariances``
    (T, K, d, d); snapshot 0 is the initialisation. Components are in the fit's own order
    (the history is not aligned to the truth). Read it with ``StudyStore.load_em_history``.
``draws``
    ``condition_id, replication, method, path`` - for kept Bayesian fits: the NetCDF file of
    the posterior draws, relative to the output folder. Read it with
    ``StudyStore.load_draws``.
``sbc_ranks``
    ``condition_id, replication, method, quantity, kind, rank, n_draws, ess_bulk,
    total_draws`` - only in studies with ``truth = "prior"``, one row per ranked quantity of
    every successful MCMC fit: the simulation-based calibration rank of the true value among
    ``n_draws`` (``L``) thinned raw draws (``workbench.bayes.calibration.sbc_ranks``; rank in
    ``0..L``, ``L + 1`` a multiple of ``RANK_BINS``). ``quantity`` is e.g. ``weight[0]``,
    ``mean[1,0]``, ``cov[0,1,1]`` or ``loglik`` on the model's ordered labelling; ``kind``
    is ``weight``, ``mean``, ``variance``, ``covariance`` or ``loglik``; ``ess_bulk`` is the
    smallest bulk ESS that set ``L`` and ``total_draws`` the draws before thinning.
``ordered_intervals``
    ``condition_id, replication, method, quantity, kind, level, lower, upper, truth,
    covered`` - only with ``truth = "prior"``, for the same fits: central intervals of every
    parameter from all raw draws on the ordered labelling, against the (sorted) truth
    (``workbench.bayes.calibration.ordered_intervals``). Averaged over the prior their
    coverage has the exact target ``level``.

Stores written before the last two tables existed get them (empty) when opened.

Studies with a ``[selection]`` table (choosing K) also fill these three tables; every task
of such a study writes them (no rows when its simulation failed):

``selection_scores``
    ``condition_id, replication, method, n_components, covariance_type, criterion, value`` -
    the per-K scores. ``method = 'em'`` (one row per K, covariance type and criterion):
    ``loglik``, ``n_parameters``, ``bic``, ``icl``, ``aic`` (lower is better, scikit-learn's
    sign; mclust's BIC is ``-bic``), ``converged`` (0/1), ``fit_seconds``.
    ``method = 'bayes'`` (PSIS-LOO of the MCMC fit at each K; ``covariance_type`` is the
    Bayesian model's): ``elpd_loo``, ``se``, ``p_loo``, ``n_high_pareto_k`` (observations
    with Pareto k above ``pareto_k_threshold``, never dropped), ``pareto_k_threshold``,
    ``elpd_diff`` and ``dse`` (against the best K), ``stacking_weight``, ``max_r_hat``,
    ``n_divergences``, ``fit_seconds``. ``method = 'sparse'`` (the overfitted mixture with K_max
    components): one ``posterior`` row per count k in ``1..K_max`` (``n_components`` = k,
    the share of draws with k non-empty components), plus ``fit_seconds`` and
    ``n_divergences`` at ``n_components = K_max``.
``selection_choices``
    ``condition_id, replication, criterion, chosen_k, covariance_type, true_k, outcome`` -
    one row per criterion that could choose: ``bic``, ``icl``, ``aic`` (EM), ``loo`` (largest
    elpd), ``loo_stacking`` (largest stacking weight), ``sparse`` (posterior mode of the
    non-empty count). ``covariance_type`` is the chosen model's (NULL for ``sparse``);
    ``outcome`` is ``'under'``, ``'correct'`` or ``'over'`` (``chosen_k`` against
    ``true_k``). A criterion whose fits all failed has no row here.
``selection_failures``
    ``condition_id, replication, method, n_components, covariance_type, error`` - a K whose
    fit failed (every EM start, or the MCMC fit), recorded while the other K go on;
    ``n_components`` is NULL when a whole method of the step failed (e.g. fewer than two
    Bayesian fits left to compare, or the sparse fit).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, cast

import numpy as np
import pandas as pd

from workbench._platform import exclusive_lock
from workbench.errors import WorkbenchError
from workbench.metrics import ParameterEstimate, StandardError
from workbench.mixture import MixtureParams

if TYPE_CHECKING:
    from workbench.bayes.calibration import OrderedInterval, SBCRanks
    from workbench.bayes.diagnostics import BayesDiagnostics
    from workbench.em import EMHistory
    from workbench.simulate import Dataset

__all__ = [
    "BACKUP_NAME",
    "DB_NAME",
    "DrawsUnavailableError",
    "EMDiagnostics",
    "FitRecord",
    "OutputFolderError",
    "StoreDamagedError",
    "SelectionChoice",
    "SelectionFailure",
    "SelectionRecord",
    "SelectionScore",
    "StoreError",
    "StoreFullError",
    "StoreMismatchError",
    "StudyStore",
    "TaskRecord",
    "create_tables",
    "damaged_error",
    "ensure_folder",
    "os_error",
    "package_versions",
    "sqlite_error",
]

DB_NAME = "study.db"
BACKUP_NAME = DB_NAME + ".bak"
DRAWS_DIR = "draws"
LOCK_NAME = ".study.lock"
#: 2 added the ``standard_errors`` table. A store of another version is refused with a
#: clear error: rerun the study with ``--overwrite`` or ``--output NEW_FOLDER``.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conditions (
    condition_id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    scenario TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    condition_id INTEGER NOT NULL REFERENCES conditions (condition_id),
    replication INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    traceback TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    seconds REAL NOT NULL,
    simulate_seconds REAL,
    worker TEXT NOT NULL,
    kept INTEGER NOT NULL,
    PRIMARY KEY (condition_id, replication)
);
CREATE TABLE IF NOT EXISTS fits (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    traceback TEXT,
    fit_seconds REAL,
    PRIMARY KEY (condition_id, replication, method)
);
CREATE TABLE IF NOT EXISTS metrics (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (condition_id, replication, method, metric)
);
CREATE TABLE IF NOT EXISTS estimates (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    parameter TEXT NOT NULL,
    kind TEXT NOT NULL,
    truth REAL,
    estimate REAL,
    sd REAL,
    PRIMARY KEY (condition_id, replication, method, parameter)
);
CREATE TABLE IF NOT EXISTS intervals (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    parameter TEXT NOT NULL,
    interval TEXT NOT NULL,
    level REAL NOT NULL,
    lower REAL,
    upper REAL,
    covered INTEGER,
    PRIMARY KEY (condition_id, replication, method, parameter, interval, level)
);
CREATE TABLE IF NOT EXISTS standard_errors (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    parameter TEXT NOT NULL,
    se_method TEXT NOT NULL,
    se REAL,
    PRIMARY KEY (condition_id, replication, method, parameter, se_method)
);
CREATE TABLE IF NOT EXISTS diagnostics (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY (condition_id, replication, method, key)
);
CREATE TABLE IF NOT EXISTS em_traces (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    lower_bound REAL,
    PRIMARY KEY (condition_id, replication, method, iteration)
);
CREATE TABLE IF NOT EXISTS params (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    role TEXT NOT NULL,
    weights TEXT NOT NULL,
    means TEXT NOT NULL,
    covariances TEXT NOT NULL,
    PRIMARY KEY (condition_id, replication, role)
);
CREATE TABLE IF NOT EXISTS datasets (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (condition_id, replication)
);
CREATE TABLE IF NOT EXISTS em_history (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (condition_id, replication, method)
);
CREATE TABLE IF NOT EXISTS draws (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (condition_id, replication, method)
);
CREATE TABLE IF NOT EXISTS selection_scores (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    n_components INTEGER NOT NULL,
    covariance_type TEXT NOT NULL,
    criterion TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (condition_id, replication, method, n_components, covariance_type, criterion)
);
CREATE TABLE IF NOT EXISTS selection_choices (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    criterion TEXT NOT NULL,
    chosen_k INTEGER NOT NULL,
    covariance_type TEXT,
    true_k INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('under', 'correct', 'over')),
    PRIMARY KEY (condition_id, replication, criterion)
);
CREATE TABLE IF NOT EXISTS selection_failures (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    n_components INTEGER,
    covariance_type TEXT,
    error TEXT NOT NULL
);
"""

# The calibration tables, also created when an older store is opened (see StudyStore).
_CALIBRATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS sbc_ranks (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    quantity TEXT NOT NULL,
    kind TEXT NOT NULL,
    rank INTEGER NOT NULL,
    n_draws INTEGER NOT NULL,
    ess_bulk REAL,
    total_draws INTEGER NOT NULL,
    PRIMARY KEY (condition_id, replication, method, quantity)
);
CREATE TABLE IF NOT EXISTS ordered_intervals (
    condition_id INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    method TEXT NOT NULL,
    quantity TEXT NOT NULL,
    kind TEXT NOT NULL,
    level REAL NOT NULL,
    lower REAL,
    upper REAL,
    truth REAL,
    covered INTEGER NOT NULL,
    PRIMARY KEY (condition_id, replication, method, quantity, level)
);
"""

#: Tables keyed by task, in the order a task's rows are written.
TASK_TABLES: tuple[str, ...] = (
    "tasks",
    "fits",
    "metrics",
    "estimates",
    "intervals",
    "standard_errors",
    "diagnostics",
    "em_traces",
    "params",
    "datasets",
    "em_history",
    "draws",
    "sbc_ranks",
    "ordered_intervals",
    "selection_scores",
    "selection_choices",
    "selection_failures",
)

_VERSIONED_PACKAGES = (
    "workbench",
    "numpy",
    "scipy",
    "scikit-learn",
    "pymc",
    "pytensor",
    "arviz",
    "nutpie",
    "numpyro",
    "xarray",
    "dask",
    "distributed",
)


class StoreError(WorkbenchError, ValueError):
    """The output folder cannot be used as it is (locked, missing, another study's)."""


class StoreMismatchError(StoreError):
    """The output folder holds results of a different study configuration."""


class StoreFullError(StoreError):
    """The disk (or the user's quota) is full: nothing more can be written."""


class OutputFolderError(StoreError):
    """The output folder cannot be written: a file is in its place, no permission, or a
    read-only file system."""


class StoreDamagedError(StoreError):
    """The database file is damaged (it fails SQLite's integrity check)."""


class DrawsUnavailableError(StoreError):
    """A kept fit's NetCDF draws file is missing or unreadable."""


#: ``errno`` values meaning the disk or the quota is full.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: ``errno`` values meaning the folder cannot be written to.
_UNWRITABLE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}
)


def _os_cause(exc: OSError) -> str:
    """``exc`` as a short cause, e.g. ``'No space left on device (ENOSPC)'``."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


def os_error(exc: OSError, path: Path, doing: str) -> StoreError | None:
    """The user error that an ``OSError`` raised while ``doing`` something to ``path`` means.

    Parameters
    ----------
    exc : OSError
    path : Path
        The file or folder being written.
    doing : str
        What was being done, e.g. ``"writing the draws file"``.

    Returns
    -------
    StoreError or None
        None when the error is not one the user's environment causes (then it is a bug of
        ours and keeps its traceback).
    """
    if exc.errno in _FULL_ERRNOS:
        return StoreFullError(
            f"{path}: the disk is full while {doing} ({_os_cause(exc)}); every task stored "
            "before is kept: free some space (or choose another --output folder) and run the "
            "same command again to resume"
        )
    if exc.errno in _UNWRITABLE_ERRNOS:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            cause = "a file is in the way of the output folder"
        elif exc.errno == errno.EISDIR:
            cause = "a folder is in the way of the file"
        elif exc.errno == errno.EROFS:
            cause = "the file system is read-only"
        else:
            cause = "permission denied"
        return OutputFolderError(
            f"{path}: cannot write while {doing}: {cause} ({_os_cause(exc)}); give a writable "
            "folder with --output, or fix the folder and run the same command again"
        )
    return None


def ensure_folder(directory: Path) -> None:
    """Create ``directory`` (and its parents) for writing, or say in one line why not.

    Raises
    ------
    OutputFolderError
        A file is in the way, the folder is not writable or on a read-only file system.
    StoreFullError
        No space is left to create it.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (os_error(exc, directory, "creating the output folder") or exc) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        read_only = os.statvfs(directory).f_flag & os.ST_RDONLY
        cause = "the file system is read-only" if read_only else "permission denied"
        raise OutputFolderError(
            f"{directory}: cannot write to the output folder: {cause}; give a writable "
            "folder with --output, or fix the folder and run the same command again"
        )


def _sqlite_cause(exc: BaseException) -> sqlite3.Error | None:
    """The ``sqlite3.Error`` behind ``exc`` (pandas wraps it in its own DatabaseError)."""
    while exc is not None:
        if isinstance(exc, sqlite3.Error):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _damage(path: Path) -> str:
    """What ``PRAGMA integrity_check`` says about the database at ``path``, in one line."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute("PRAGMA integrity_check(3)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"integrity_check: {exc}"
    return "integrity_check: " + "; ".join(str(row[0]) for row in rows)


def damaged_error(path: Path, detail: str) -> StoreDamagedError:
    """The one-line error for a damaged database at ``path``."""
    directory = path.parent
    backup = directory / BACKUP_NAME
    restore = f" (or from {backup})" if backup.is_file() else ""
    return StoreDamagedError(
        f"{path} is damaged ({detail}); run `workbench doctor {directory} --repair` to keep "
        f"the damaged file and copy every readable task into a fresh store{restore}"
    )


def sqlite_error(exc: BaseException, path: Path, doing: str) -> StoreError | None:
    """The user error that an SQLite failure while ``doing`` something to ``path`` means.

    Returns
    -------
    StoreError or None
        None for errors the environment does not cause (constraint violations, SQL
        mistakes): those are bugs and keep their traceback.
    """
    cause = _sqlite_cause(exc)
    if cause is None:
        return None
    code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
    name = getattr(cause, "sqlite_errorname", "")
    if code == sqlite3.SQLITE_FULL:
        return StoreFullError(
            f"{path}: the disk is full while {doing} ({cause}, {name}); every task stored "
            "before is kept: free some space (or choose another --output folder) and run the "
            "same command again to resume"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return damaged_error(path, _damage(path))
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return OutputFolderError(
            f"{path}: cannot write while {doing} ({cause}, {name}); make the folder and the "
            "file writable, or give another folder with --output"
        )
    if code == sqlite3.SQLITE_IOERR:
        return StoreError(
            f"{path}: the disk failed while {doing} ({cause}, {name}); check the disk, then "
            f"run `workbench doctor {path.parent}` before going on"
        )
    return None


class EMDiagnostics(TypedDict, total=False):
    """What a study stores about an EM fit's convergence (one ``diagnostics`` row each)."""

    converged: bool
    n_iter: int
    lower_bound: float
    n_init: int
    warnings: str
    inference_seconds: float
    se_error_hessian: str
    se_error_opg: str
    se_error_sandwich: str
    se_error_bootstrap: str
    bootstrap_failed_refits: int
    bootstrap_label_mismatches: int


@dataclass
class FitRecord:
    """Everything stored about one method's fit of one task.

    Attributes
    ----------
    method : str
        ``"em"``, ``"bayes"`` or ``"advi"``.
    status : {'ok', 'failed'}
    error, traceback : str or None
        Set when ``status == 'failed'``.
    fit_seconds : float or None
    metrics : dict of str to float
    estimates : list of ParameterEstimate
        One per scalar parameter, aligned to the truth, each with its intervals.
    standard_errors : list of StandardError
        EM standard errors per SE method, aligned to the truth.
    diagnostics : EMDiagnostics or BayesDiagnostics
    em_trace : ndarray of shape (n_iter,) or None
        EM lower bound per iteration.
    em_history : EMHistory or None
        With dense ``covariances`` (T, K, d, d); only for kept EM fits.
    params : MixtureParams or None
        The point estimate aligned to the truth (EM estimate or posterior mean).
    draws : xarray.DataTree or None
        Posterior draws, only for kept Bayesian fits.
    sbc : SBCRanks or None
        SBC ranks of an MCMC fit in a ``truth = "prior"`` study.
    ordered_intervals : tuple of OrderedInterval
        Its central intervals on the ordered labelling (same studies).
    """

    method: str
    status: str
    error: str | None = None
    traceback: str | None = None
    fit_seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    estimates: list[ParameterEstimate] = field(default_factory=list)
    standard_errors: list[StandardError] = field(default_factory=list)
    diagnostics: EMDiagnostics | BayesDiagnostics = field(default_factory=dict)  # type: ignore[assignment]
    em_trace: np.ndarray | None = None
    em_history: EMHistory | None = None
    params: MixtureParams | None = None
    draws: Any = None
    sbc: SBCRanks | None = None
    ordered_intervals: tuple[OrderedInterval, ...] = ()


class SelectionScore(NamedTuple):
    """One per-K score of the ``[selection]`` step (a ``selection_scores`` row)."""

    method: str
    n_components: int
    covariance_type: str
    criterion: str
    value: float


class SelectionChoice(NamedTuple):
    """One criterion's choice of K (a ``selection_choices`` row)."""

    criterion: str
    chosen_k: int
    covariance_type: str | None
    true_k: int
    outcome: str


class SelectionFailure(NamedTuple):
    """A failed K (or a failed method when ``n_components`` is None)."""

    method: str
    n_components: int | None
    covariance_type: str | None
    error: str


@dataclass
class SelectionRecord:
    """What the ``[selection]`` step of one task stores (see the module docstring).

    Attributes
    ----------
    scores : list of SelectionScore
    choices : list of SelectionChoice
    failures : list of SelectionFailure
    """

    scores: list[SelectionScore] = field(default_factory=list)
    choices: list[SelectionChoice] = field(default_factory=list)
    failures: list[SelectionFailure] = field(default_factory=list)


@dataclass
class TaskRecord:
    """Everything stored about one finished task (a condition x replication).

    Attributes
    ----------
    condition_id, replication, seed : int
    status : {'ok', 'failed'}
    error, traceback : str or None
        The first failure (of the simulation or of a fit).
    started_at, finished_at : str
        ISO 8601 UTC.
    seconds : float
        Wall time of the whole task on its worker.
    simulate_seconds : float or None
    worker : str
        ``host:pid`` of the process that ran the task.
    truth : MixtureParams or None
        None when the simulation failed.
    dataset : Dataset or None
        The simulated data, only for kept tasks (the store keeps ``X_train`` and
        ``y_train``).
    kept : bool
    fits : list of FitRecord
    selection : SelectionRecord or None
        The ``[selection]`` step's results, when the study chooses K.
    """

    condition_id: int
    replication: int
    seed: int
    status: str
    started_at: str
    finished_at: str
    seconds: float
    worker: str
    error: str | None = None
    traceback: str | None = None
    simulate_seconds: float | None = None
    truth: MixtureParams | None = None
    dataset: Dataset | None = None
    kept: bool = False
    fits: list[FitRecord] = field(default_factory=list)
    selection: SelectionRecord | None = None

    @property
    def n_errors(self) -> int:
        """Number of failures in this task: failed fits, or 1 if the simulation failed."""
        if self.truth is None:
            return 1
        return sum(fit.status == "failed" for fit in self.fits)


def package_versions() -> dict[str, str]:
    """Installed versions of Python and the packages that shape results."""
    import platform

    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _real(value: Any) -> float | None:
    """A Python float for SQLite, with NaN and None as NULL."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _scalar(value: Any) -> float | int | str | None:
    """A diagnostic value as the SQLite type that keeps its meaning."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return _real(value)


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    # cast: NumPy's stubs type **kwds as if a key could be ``allow_pickle``.
    named = cast(dict[str, Any], {k: np.asarray(v) for k, v in arrays.items()})
    np.savez_compressed(buffer, **named)
    return buffer.getvalue()


def _unnpz(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as data:
        return {name: data[name] for name in data.files}


def draws_relpath(condition_id: int, replication: int, method: str) -> str:
    """Path of a fit's NetCDF draws, relative to the output folder."""
    return f"{DRAWS_DIR}/c{condition_id:03d}-r{replication:04d}-{method}.nc"


class StudyStore:
    """Read and write a study's SQLite database.

    Parameters
    ----------
    directory : path-like
        The study's output folder; the database is ``directory / "study.db"``.

    Notes
    -----
    Opening never creates anything; use :meth:`create` (or
    :func:`workbench.study.runner.open_store_for_run`) to start a new store. Readers may
    open the store while a run writes to it (WAL mode).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if not self.path.is_file():
            raise StoreError(f"no study results in {self.directory}: {self.path} is missing")
        self._conn = self._connect(self.path)
        version = self.metadata().get("schema_version")
        if version != str(SCHEMA_VERSION):
            self._conn.close()
            raise StoreError(
                f"the results in {self.directory} were written by another version of "
                f"workbench (store schema {version}, this one reads {SCHEMA_VERSION}); run "
                "the study again with --overwrite, or into a new --output folder"
            )
        # stores written before the calibration tables existed get them, empty
        with self._guard("adding the calibration tables"):
            self._conn.executescript(_CALIBRATION_SCHEMA)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), one per task
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise (sqlite_error(exc, path, "opening the database") or exc) from None
        return conn

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn failures the environment causes (full disk, damage) into one-line errors.

        An open transaction is rolled back first, and only when SQLite has not already
        done so (``in_transaction``): a failed ``ROLLBACK`` must never hide the cause.
        """
        try:
            yield
        except BaseException as exc:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error as second:
                    exc.add_note(f"the rollback that followed failed too: {second}")
            user_error = sqlite_error(exc, self.path, doing) if isinstance(exc, Exception) else None
            if user_error is None:
                raise
            raise user_error from exc

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        name: str,
        config_toml: str,
        config: Mapping[str, Any],
        config_hash: str,
        conditions: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> StudyStore:
        """Create a new, empty store and record the study's metadata and conditions.

        Parameters
        ----------
        directory : path-like
            Output folder (created if missing). Must not hold a store yet.
        name : str
        config_toml : str
            Text of the study's TOML file.
        config : mapping
            The normalised config (JSON-serialisable).
        config_hash : str
        conditions : sequence of (label, scenario dict)
            In condition-id order.
        """
        directory = Path(directory)
        ensure_folder(directory)
        path = directory / DB_NAME
        if path.exists():
            raise FileExistsError(f"{path} already exists")
        try:
            conn = cls._connect(path)
        except sqlite3.Error as exc:
            raise (sqlite_error(exc, path, "creating the database") or exc) from None
        try:
            cls._create_schema(conn, name, config_toml, config, config_hash, conditions)
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            # a half-created store would block the next run; nothing was stored in it yet
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if isinstance(exc, Exception):
                user_error = sqlite_error(exc, path, "creating the database")
                if user_error is not None:
                    raise user_error from exc
            raise
        conn.close()
        return cls(directory)

    @staticmethod
    def _create_schema(
        conn: sqlite3.Connection,
        name: str,
        config_toml: str,
        config: Mapping[str, Any],
        config_hash: str,
        conditions: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        create_tables(conn)
        now = _now()
        meta = {
            "name": name,
            "config_toml": config_toml,
            "config": json.dumps(config, sort_keys=True),
            "config_hash": config_hash,
            "created_at": now,
            "updated_at": now,
            "versions": json.dumps(package_versions(), sort_keys=True),
            "schema_version": str(SCHEMA_VERSION),
        }
        conn.executemany("INSERT INTO study (key, value) VALUES (?, ?)", meta.items())
        conn.executemany(
            "INSERT INTO conditions (condition_id, label, scenario) VALUES (?, ?, ?)",
            [
                (i, label, json.dumps(scenario, sort_keys=True))
                for i, (label, scenario) in enumerate(conditions)
            ],
        )
        conn.execute("COMMIT")

    def check(self) -> None:
        """Run SQLite's ``PRAGMA quick_check`` (every page, without the index cross-checks).

        Raises
        ------
        StoreDamagedError
            If the database is damaged; the message quotes ``integrity_check`` and says how
            to repair it.
        """
        with self._guard("checking the database"):
            rows = self._conn.execute("PRAGMA quick_check(3)").fetchall()
        if [str(row[0]) for row in rows] != ["ok"]:
            raise damaged_error(self.path, _damage(self.path))

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> dict[str, str]:
        """The ``study`` table as a dict (values are strings; ``config`` and ``versions``
        are JSON)."""
        with self._guard("reading the study metadata"):
            return dict(self._conn.execute("SELECT key, value FROM study").fetchall())

    @property
    def config_hash(self) -> str:
        return self.metadata()["config_hash"]

    def config(self) -> dict[str, Any]:
        """The normalised study config stored at the last run."""
        return json.loads(self.metadata()["config"])

    def update_metadata(self, *, config_toml: str, config: Mapping[str, Any]) -> None:
        """Record the config text of a resumed run (same hash, e.g. more replications)."""
        rows = {
            "config_toml": config_toml,
            "config": json.dumps(config, sort_keys=True),
            "updated_at": _now(),
            "versions": json.dumps(package_versions(), sort_keys=True),
        }
        with self._guard("recording the study config"):
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "UPDATE study SET value = ? WHERE key = ?", [(v, k) for k, v in rows.items()]
            )
            self._conn.execute("COMMIT")

    def conditions(self) -> pd.DataFrame:
        """``condition_id``, ``label`` and ``scenario`` (a dict) per condition."""
        frame = self.table("conditions")
        frame["scenario"] = frame["scenario"].map(json.loads)
        return frame

    # ------------------------------------------------------------------ reading
    def table(self, name: str) -> pd.DataFrame:
        """A whole table as a DataFrame (see the module docstring for the tables)."""
        if name not in ("study", "conditions", *TASK_TABLES):
            raise ValueError(
                f"unknown table {name!r}; tables are: study, conditions, {', '.join(TASK_TABLES)}"
            )
        with self._guard(f"reading the {name} table"):
            return pd.read_sql_query(f"SELECT * FROM {name}", self._conn)  # noqa: S608

    def finished_tasks(self) -> dict[tuple[int, int], str]:
        """Status (``'ok'`` / ``'failed'``) of every stored task, keyed by
        ``(condition_id, replication)``."""
        with self._guard("reading the tasks table"):
            rows = self._conn.execute("SELECT condition_id, replication, status FROM tasks")
            return {(c, r): s for c, r, s in rows}

    def load_params(self, condition_id: int, replication: int) -> dict[str, MixtureParams]:
        """Stored mixtures of one task keyed by role (``'truth'`` and each method)."""
        with self._guard("reading the params table"):
            rows = self._conn.execute(
                "SELECT role, weights, means, covariances FROM params "
                "WHERE condition_id = ? AND replication = ?",
                (condition_id, replication),
            ).fetchall()
        return {
            role: MixtureParams(json.loads(w), json.loads(m), json.loads(c))
            for role, w, m, c in rows
        }

    def load_dataset(self, condition_id: int, replication: int) -> dict[str, np.ndarray]:
        """Kept training data: ``X_train`` (n, d) and ``y_train`` (n,)."""
        with self._guard("reading the datasets table"):
            row = self._conn.execute(
                "SELECT data FROM datasets WHERE condition_id = ? AND replication = ?",
                (condition_id, replication),
            ).fetchone()
        if row is None:
            raise KeyError(
                f"no kept dataset for condition {condition_id}, replication {replication}"
            )
        return _unnpz(row[0])

    def load_em_history(
        self, condition_id: int, replication: int, method: str = "em"
    ) -> dict[str, np.ndarray]:
        """Kept EM snapshots: ``lower_bound`` (T,), ``weights`` (T, K), ``means`` (T, K, d),
        ``covariances`` (T, K, d, d)."""
        with self._guard("reading the em_history table"):
            row = self._conn.execute(
                "SELECT data FROM em_history "
                "WHERE condition_id = ? AND replication = ? AND method = ?",
                (condition_id, replication, method),
            ).fetchone()
        if row is None:
            raise KeyError(
                f"no EM history for condition {condition_id}, replication {replication}, {method}"
            )
        return _unnpz(row[0])

    def load_draws(self, condition_id: int, replication: int, method: str) -> Any:
        """Kept posterior draws of one fit as an ``xarray.DataTree``.

        Raises
        ------
        KeyError
            If the fit's draws were not kept.
        DrawsUnavailableError
            If its NetCDF file is missing or unreadable (the message names it and why).
        """
        import xarray as xr

        with self._guard("reading the draws table"):
            row = self._conn.execute(
                "SELECT path FROM draws WHERE condition_id = ? AND replication = ? AND method = ?",
                (condition_id, replication, method),
            ).fetchone()
        if row is None:
            raise KeyError(
                f"no kept draws for condition {condition_id}, replication {replication}, {method}"
            )
        path = self.directory / row[0]
        if not path.is_file():
            raise DrawsUnavailableError(f"{path} is missing")
        try:
            return xr.load_datatree(path)
        except (OSError, ValueError, KeyError) as exc:
            # h5py reports a truncated or overwritten file as OSError; xarray as ValueError
            reason = " ".join(str(exc).split())
            raise DrawsUnavailableError(f"{path} is unreadable ({reason})") from exc

    # ------------------------------------------------------------------ writing
    def write_task(self, record: TaskRecord) -> None:
        """Store one finished task atomically (all of its rows, or none).

        Kept posterior draws are written to NetCDF first (temporary name, then renamed), so a
        committed ``draws`` row always points to a complete file.
        """
        key = (record.condition_id, record.replication)
        draw_rows = []
        for fit in record.fits:
            if fit.draws is not None:
                rel = draws_relpath(*key, fit.method)
                self._write_draws(fit.draws, self.directory / rel)
                draw_rows.append((*key, fit.method, rel))

        conn = self._conn
        with self._guard(f"storing task {key}"):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO tasks (condition_id, replication, seed, status, error, traceback, "
                "started_at, finished_at, seconds, simulate_seconds, worker, kept) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    int(record.seed),
                    record.status,
                    record.error,
                    record.traceback,
                    record.started_at,
                    record.finished_at,
                    float(record.seconds),
                    _real(record.simulate_seconds),
                    record.worker,
                    int(record.kept),
                ),
            )
            if record.truth is not None:
                conn.execute(
                    "INSERT INTO params VALUES (?, ?, 'truth', ?, ?, ?)",
                    (*key, *_params_json(record.truth)),
                )
            if record.dataset is not None:
                data = {"X_train": record.dataset.X_train, "y_train": record.dataset.y_train}
                conn.execute("INSERT INTO datasets VALUES (?, ?, ?)", (*key, _npz(data)))
            for fit in record.fits:
                self._insert_fit(key, fit)
            if record.selection is not None:
                self._insert_selection(key, record.selection)
            conn.executemany("INSERT INTO draws VALUES (?, ?, ?, ?)", draw_rows)
            conn.execute("COMMIT")

    @staticmethod
    def _write_draws(draws: Any, target: Path) -> None:
        """Write NetCDF draws to a temporary name, then rename into place."""
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            draws.to_netcdf(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a partial file would only take up the space freed
            user_error = os_error(exc, target, "writing the draws file")
            if user_error is None:
                raise
            raise user_error from exc

    def _insert_fit(self, key: tuple[int, int], fit: FitRecord) -> None:
        conn = self._conn
        m = fit.method
        conn.execute(
            "INSERT INTO fits VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*key, m, fit.status, fit.error, fit.traceback, _real(fit.fit_seconds)),
        )
        conn.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
            [(*key, m, name, _real(value)) for name, value in fit.metrics.items()],
        )
        conn.executemany(
            "INSERT INTO estimates VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (*key, m, e.parameter, e.kind, _real(e.truth), _real(e.estimate), _real(e.sd))
                for e in fit.estimates
            ],
        )
        conn.executemany(
            "INSERT INTO intervals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    *key,
                    m,
                    e.parameter,
                    iv.kind,
                    iv.level,
                    _real(iv.lower),
                    _real(iv.upper),
                    int(iv.covered),
                )
                for e in fit.estimates
                for iv in e.intervals
            ],
        )
        conn.executemany(
            "INSERT INTO standard_errors VALUES (?, ?, ?, ?, ?, ?)",
            [(*key, m, e.parameter, e.method, _real(e.se)) for e in fit.standard_errors],
        )
        conn.executemany(
            "INSERT INTO diagnostics VALUES (?, ?, ?, ?, ?)",
            [(*key, m, name, _scalar(value)) for name, value in fit.diagnostics.items()],
        )
        if fit.em_trace is not None:
            conn.executemany(
                "INSERT INTO em_traces VALUES (?, ?, ?, ?, ?)",
                [(*key, m, i + 1, _real(lb)) for i, lb in enumerate(fit.em_trace)],
            )
        if fit.params is not None:
            conn.execute(
                "INSERT INTO params VALUES (?, ?, ?, ?, ?, ?)", (*key, m, *_params_json(fit.params))
            )
        if fit.em_history is not None:
            conn.execute(
                "INSERT INTO em_history VALUES (?, ?, ?, ?)",
                (*key, m, _npz(fit.em_history._asdict())),
            )
        if fit.sbc is not None:
            sbc = fit.sbc
            conn.executemany(
                "INSERT INTO sbc_ranks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (*key, m, q, kind, int(rank), sbc.n_draws, _real(sbc.ess_bulk), sbc.total_draws)
                    for q, kind, rank in zip(sbc.quantities, sbc.kinds, sbc.ranks, strict=True)
                ],
            )
        conn.executemany(
            "INSERT INTO ordered_intervals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    *key,
                    m,
                    iv.quantity,
                    iv.kind,
                    iv.level,
                    _real(iv.lower),
                    _real(iv.upper),
                    _real(iv.truth),
                    int(iv.covered),
                )
                for iv in fit.ordered_intervals
            ],
        )

    def _insert_selection(self, key: tuple[int, int], selection: SelectionRecord) -> None:
        conn = self._conn
        conn.executemany(
            "INSERT INTO selection_scores VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    *key,
                    s.method,
                    int(s.n_components),
                    s.covariance_type,
                    s.criterion,
                    _real(s.value),
                )
                for s in selection.scores
            ],
        )
        conn.executemany(
            "INSERT INTO selection_choices VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (*key, c.criterion, int(c.chosen_k), c.covariance_type, int(c.true_k), c.outcome)
                for c in selection.choices
            ],
        )
        conn.executemany(
            "INSERT INTO selection_failures VALUES (?, ?, ?, ?, ?, ?)",
            [
                (*key, f.method, f.n_components, f.covariance_type, f.error)
                for f in selection.failures
            ],
        )

    def delete_tasks(self, keys: Sequence[tuple[int, int]]) -> None:
        """Remove every row of the given tasks (used to rerun failed tasks)."""
        with self._guard("deleting failed tasks"):
            self._conn.execute("BEGIN IMMEDIATE")
            for table in TASK_TABLES:
                self._conn.executemany(
                    f"DELETE FROM {table} WHERE condition_id = ? AND replication = ?",  # noqa: S608
                    keys,
                )
            self._conn.execute("COMMIT")

    def backup(self) -> Path:
        """Copy the database to ``study.db.bak`` with SQLite's online backup API.

        The copy is a consistent snapshot of every committed task, taken while the store
        stays open. It is written to a temporary file, checked with ``quick_check`` (the
        backup API copies pages as they are, damaged ones too) and only then renamed over
        the previous backup, so a failed backup (a full disk, a damaged store) leaves the
        last good one in place.

        Returns
        -------
        Path
            The backup file.

        Raises
        ------
        StoreFullError, OutputFolderError
            If the disk is full or the folder cannot be written.
        StoreDamagedError
            If the store is damaged (the previous backup is kept).
        """
        target = self.directory / BACKUP_NAME
        tmp = self.directory / f"{BACKUP_NAME}.tmp{os.getpid()}"
        try:
            dest = sqlite3.connect(tmp)
            try:
                self._conn.backup(dest)
                # the copy is a self-contained file: no -wal beside it once it is renamed
                dest.execute("PRAGMA journal_mode=DELETE")
                intact = [str(r[0]) for r in dest.execute("PRAGMA quick_check(1)")] == ["ok"]
            finally:
                dest.close()
            if intact:
                os.replace(tmp, target)
        except (sqlite3.Error, OSError) as exc:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
            if isinstance(exc, OSError):
                user_error = os_error(exc, target, "writing the backup")
            else:
                user_error = sqlite_error(exc, target, "writing the backup")
                if isinstance(user_error, StoreDamagedError):
                    # the source failed to read: that is the store's damage, not the copy's
                    user_error = damaged_error(self.path, _damage(self.path))
            if user_error is None:
                raise
            raise user_error from exc
        if not intact:
            tmp.unlink(missing_ok=True)
            raise damaged_error(self.path, _damage(self.path))
        return target


def create_tables(conn: sqlite3.Connection) -> None:
    """Create every table of the store (see the module docstring) on ``conn``."""
    for statement in (_SCHEMA + _CALIBRATION_SCHEMA).split(";"):
        if statement.strip():
            conn.execute(statement)


def _params_json(params: MixtureParams) -> tuple[str, str, str]:
    return (
        json.dumps(params.weights.tolist()),
        json.dumps(params.means.tolist()),
        json.dumps(params.covariances.tolist()),
    )


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for the duration of a run.

    The operating system releases it when the process dies, even by ``kill -9``.

    Raises
    ------
    StoreError
        If another run holds the lock.
    OutputFolderError, StoreFullError
        If the folder cannot be created or written.
    """
    ensure_folder(directory)
    try:
        handle = open(directory / LOCK_NAME, "w")  # closed by the with statement below
    except OSError as exc:
        raise (os_error(exc, directory, "creating the run lock") or exc) from None
    with handle, exclusive_lock(handle) as locked:
        if not locked:
            raise StoreError(
                f"another workbench run is writing to {directory}; wait for it to finish "
                "or use a different --output folder"
            )
        yield
