"""Study configuration: a TOML file, validated on load.

A study file has these parts (every key is optional except ``name``; see the README's
"Running studies" section for a full example):

``name`` (str), ``description`` (str), ``seed`` (int >= 0, default 0), ``replications``
(int >= 1, default 10), ``truth`` ("fixed", "random" or "prior", default "fixed")
    ``name`` also names the default output folder ``reports/<name>/``. With ``truth =
    "fixed"`` every replication of a condition shares one set of true parameters (drawn
    from ``seed`` and the condition id unless the condition sets ``truth_seed``), so each
    parameter is a fixed estimand as in Morris, White and Crowther (2019). ``"random"``
    draws a new truth in every replication, averaging performance over the scenario.
    ``"prior"`` draws each replication's truth from the Bayesian model's own prior
    (:func:`workbench.bayes.prior_sampling.draw_prior_mixture`) with the fixed
    hyperparameters of ``[methods.bayes.priors]`` (``mean_loc``, ``mean_scale`` and
    ``scale_prior`` must be given) and ``[methods.bayes] covariance_type``; only the
    scenario's sizes (``n_components``, ``n_features``, ``n_train``, ``n_test``) are used,
    and it must not be misspecified. Performance is then averaged over the prior, and each
    Bayes fit also stores its simulation-based calibration ranks.
``[scenario]``
    Scenario values shared by every condition (any field of
    :class:`workbench.simulate.Scenario`).
``[design]``
    Crossed factors: each key is a scenario field and its value a list of levels. The
    conditions are the Cartesian product of the lists, in file order, with the last factor
    varying fastest.
``[[conditions]]``
    Explicit conditions (tables of scenario fields), appended after the crossed ones. With
    neither ``[design]`` nor ``[[conditions]]`` the study has one condition, ``[scenario]``.
``[methods.em]``, ``[methods.bayes]``, ``[methods.advi]``
    The methods to run, with their options (see :class:`EMOptions`, :class:`BayesOptions`,
    :class:`AdviOptions`). At least one is required. An empty table runs the method with
    its defaults.
``[selection]``
    Optional: choose K as well (see :class:`SelectionOptions`). Every task then fits each K
    in ``components`` and stores each criterion's choice and per-K scores.
``[output]``
    See :class:`OutputOptions`.

Every problem raises :class:`ConfigError`, a ``ValueError`` whose one-line message names the
file, the key, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from workbench._validation import is_int, is_real
from workbench.bayes.options import (
    ADVI_DRAWS,
    ADVI_STEPS,
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_ORDERING,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    MCMC_SAMPLERS,
    ORDERINGS,
    SPARSE_CONCENTRATION,
    TARGET_ACCEPT_SAMPLERS,
)
from workbench.bayes.priors import DATA_SCALED, BayesPriors, data_scaled
from workbench.em.options import (
    BOOTSTRAP_KINDS,
    DEFAULT_N_BOOT,
    INIT_METHODS,
    INTERVAL_METHODS,
    SE_METHODS,
    WALD_SCALES,
    WORKBENCH_N_INIT,
)
from workbench.errors import WorkbenchError
from workbench.metrics import DEFAULT_LEVELS
from workbench.mixture import COVARIANCE_TYPES
from workbench.simulate import Scenario
from workbench.study.seeds import truth_seed

__all__ = [
    "AdviOptions",
    "BayesOptions",
    "ConfigError",
    "EMOptions",
    "OutputOptions",
    "SelectionOptions",
    "StudyConfig",
    "expand_design",
    "load_study",
    "parse_study",
]

METHOD_NAMES: tuple[str, ...] = ("em", "bayes", "advi")
TRUTH_MODES: tuple[str, ...] = ("fixed", "random", "prior")
KEEP_DRAWS: tuple[str, ...] = ("first", "all", "none")
#: ``[output] backup_every`` / ``backup_minutes``: copy the store every 50 tasks or 10 minutes.
DEFAULT_BACKUP_EVERY = 50
DEFAULT_BACKUP_MINUTES = 10.0
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(WorkbenchError, ValueError):
    """A study file has an unknown key or a bad value (one-line message)."""


@dataclass(frozen=True)
class EMOptions:
    """``[methods.em]``: our EM (:class:`workbench.em.GaussianMixture`).

    Attributes
    ----------
    n_init : int >= 1
        Number of starts; the best is kept.
    init : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    tol : float > 0
        Convergence threshold on the change of the mean log-likelihood per sample.
    max_iter : int >= 1
    reg_covar : float >= 0
        Added to the covariance diagonals.
    intervals : tuple of {'hessian', 'opg', 'sandwich', 'bootstrap'}
        Confidence intervals scored for coverage, at every level of ``[output] levels``
        (see :mod:`workbench.em.inference`): a Wald interval from each analytic SE method
        named, and the bootstrap's percentile interval. Empty (the default): none. Kept in
        the order of :data:`workbench.em.options.INTERVAL_METHODS`.
    n_boot : int >= 2
        Bootstrap draws (only with ``"bootstrap"`` in ``intervals``); default 999 as mclust.
    bootstrap : {'nonparametric', 'parametric', 'weighted'}
        The bootstrap's resampling (only with ``"bootstrap"`` in ``intervals``).
    wald_scale : {'natural', 'transformed'}
        Scale of the Wald intervals (only with an SE method in ``intervals``):
        ``estimate +- z se``, or built on logit weights, log variances and Fisher-z
        correlations and mapped back (:func:`workbench.em.wald_intervals`).
    """

    n_init: int = WORKBENCH_N_INIT
    init: str = "kmeans"
    covariance_type: str = "full"
    tol: float = 1e-3
    max_iter: int = 200
    reg_covar: float = 1e-6
    intervals: tuple[str, ...] = ()
    n_boot: int = DEFAULT_N_BOOT
    bootstrap: str = "nonparametric"
    wald_scale: str = "natural"

    @property
    def se_methods(self) -> tuple[str, ...]:
        """The analytic SE methods among ``intervals``."""
        return tuple(m for m in self.intervals if m in SE_METHODS)

    def inference_options(self) -> dict[str, Any]:
        """The interval options that change results: those a study's ``intervals`` use.

        ``n_boot`` and ``bootstrap`` matter only with the bootstrap, ``wald_scale`` only with
        a Wald interval; options that do nothing stay out of the config hash, so a study
        without intervals keeps the hash it had before these options existed.
        """
        out: dict[str, Any] = {}
        if self.intervals:
            out["intervals"] = list(self.intervals)
        if "bootstrap" in self.intervals:
            out |= {"n_boot": self.n_boot, "bootstrap": self.bootstrap}
        if self.se_methods:
            out["wald_scale"] = self.wald_scale
        return out


@dataclass(frozen=True)
class BayesOptions:
    """``[methods.bayes]``: the PyMC mixture sampled by MCMC (:func:`workbench.bayes.fit_bayes`).

    Attributes
    ----------
    sampler : {'auto', 'nutpie', 'pymc', 'numpyro'}
    chains, draws : int >= 1
    tune : int >= 0
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    start_at_em : bool
        Start the chains at the task's EM estimate (needs ``[methods.em]``).
    priors : BayesPriors
        Parsed from the ``priors`` table by :meth:`workbench.bayes.BayesPriors.from_dict`.
    target_accept : float in (0, 1)
        NUTS' target acceptance rate (only with sampler ``'auto'`` or ``'nutpie'``); default
        :data:`workbench.bayes.options.DEFAULT_TARGET_ACCEPT`, which stays out of the
        config hash, so studies that do not set it keep their hash.
    ordering : {'transform', 'sort'}
        How the draws get the ordered labelling (:func:`workbench.bayes.fit_bayes`); the
        default :data:`workbench.bayes.options.DEFAULT_ORDERING` stays out of the hash.
    """

    sampler: str = "auto"
    chains: int = DEFAULT_CHAINS
    draws: int = DEFAULT_DRAWS
    tune: int = DEFAULT_TUNE
    covariance_type: str = "full"
    start_at_em: bool = True
    priors: BayesPriors = field(default_factory=BayesPriors)
    target_accept: float = DEFAULT_TARGET_ACCEPT
    ordering: str = DEFAULT_ORDERING


@dataclass(frozen=True)
class AdviOptions:
    """``[methods.advi]``: the same PyMC mixture fitted by ADVI, a fast approximation.

    Attributes
    ----------
    draws : int >= 1
        Draws taken from the fitted approximation.
    tune : int >= 1
        Optimisation steps of ADVI.
    covariance_type, start_at_em, priors
        As for :class:`BayesOptions`.
    """

    draws: int = ADVI_DRAWS
    tune: int = ADVI_STEPS
    covariance_type: str = "full"
    start_at_em: bool = True
    priors: BayesPriors = field(default_factory=BayesPriors)


@dataclass(frozen=True)
class OutputOptions:
    """``[output]``: where results go and what is kept.

    Attributes
    ----------
    dir : str or None
        Output folder, relative to the working directory; None means ``reports/<name>``.
    keep_draws : {'first', 'all', 'none'}
        Whose posterior draws (NetCDF), training data and EM history to keep: replication
        0 of every condition, every task, or none.
    max_errors : int >= 0
        The run stops once this many fits (or simulations) have failed in it.
    levels : tuple of float in (0, 1)
        Credible-interval levels scored for coverage.
    backup_every : int >= 0
        Copy the store to ``study.db.bak`` after every this many stored tasks (0: never by
        count). A damaged disk then loses at most the tasks since the last copy.
    backup_minutes : float >= 0
        Also copy it once this many minutes have passed since the last copy (0: never by
        time). A run that stored anything ends with a copy either way, unless both are 0.
    """

    dir: str | None = None
    keep_draws: str = "first"
    max_errors: int = 20
    levels: tuple[float, ...] = DEFAULT_LEVELS
    backup_every: int = DEFAULT_BACKUP_EVERY
    backup_minutes: float = DEFAULT_BACKUP_MINUTES


#: The vocabulary of ``[selection] criteria``: EM criteria from :mod:`workbench.selection`.
#: (Kept literal here so that loading a config does not import pandas' selection layer;
#: ``tests/test_study_selection.py`` checks it equals ``workbench.selection.CRITERIA``.)
SELECTION_CRITERIA: tuple[str, ...] = ("bic", "icl", "aic")


@dataclass(frozen=True)
class SelectionOptions:
    """``[selection]``: fit a range of K in every task and record what each criterion picks.

    Attributes
    ----------
    components : tuple of int
        The K to try, ascending; TOML gives a list (``[1, 2, 3]``) or a range string
        (``"1-6"``). Every K must be in ``[1, n_train]`` of every condition.
    covariance_types : tuple of str
        EM covariance types tried at every K (:func:`workbench.selection.select_components`).
    criteria : tuple of {'bic', 'icl', 'aic'}
        EM criteria whose choice is scored.
    n_init : int >= 1
        EM starts per (K, covariance type); ``init``, ``tol``, ``max_iter`` and
        ``reg_covar`` are ``[methods.em]``'s (its defaults without that table).
    bayes : bool
        Also fit the Bayesian mixture at every K and choose by PSIS-LOO (largest elpd) and
        by stacking weight. The fits use ``[methods.bayes]``'s sampler, chains, draws,
        tune, covariance type and priors (their defaults without that table), start at the
        EM fit of that K, and reuse one compiled model per K across replications.
    bayes_replications : int >= 1 or None
        Run the per-K Bayesian fits only in replications ``0 .. bayes_replications - 1``
        (they cost one MCMC fit per K); None: in every replication.
    sparse : bool
        Also fit the sparse overfitted mixture (:func:`workbench.bayes.sparse.fit_sparse_mixture`)
        and choose the posterior mode of the number of non-empty components.
    sparse_max_components : int >= 2
    sparse_concentration : float > 0
    sparse_replications : int >= 1 or None
        As ``bayes_replications``, for the sparse fit.
    """

    components: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    covariance_types: tuple[str, ...] = ("full",)
    criteria: tuple[str, ...] = SELECTION_CRITERIA
    n_init: int = WORKBENCH_N_INIT
    bayes: bool = False
    bayes_replications: int | None = None
    sparse: bool = False
    sparse_max_components: int = 6
    sparse_concentration: float = SPARSE_CONCENTRATION
    sparse_replications: int | None = None

    def runs_bayes(self, replication: int) -> bool:
        """Whether the per-K Bayesian fits run in this replication."""
        return self.bayes and (
            self.bayes_replications is None or replication < self.bayes_replications
        )

    def runs_sparse(self, replication: int) -> bool:
        """Whether the sparse overfitted mixture runs in this replication."""
        return self.sparse and (
            self.sparse_replications is None or replication < self.sparse_replications
        )


@dataclass(frozen=True)
class StudyConfig:
    """A validated study.

    Attributes
    ----------
    name : str
    description : str
    seed : int
    replications : int
    conditions : tuple of Scenario
        The expanded design, in condition-id order.
    methods : dict of str to EMOptions, BayesOptions or AdviOptions
        Keyed by method name, in the order ``em``, ``bayes``, ``advi``.
    output : OutputOptions
    selection : SelectionOptions or None
        ``[selection]``, when the study chooses K.
    source : str
        Where the config came from (a file name), for messages.
    text : str
        The TOML text.
    truth : {'fixed', 'random', 'prior'}
        Where each task's truth comes from (see the module docstring).
    """

    name: str
    description: str
    seed: int
    replications: int
    conditions: tuple[Scenario, ...]
    methods: dict[str, EMOptions | BayesOptions | AdviOptions]
    output: OutputOptions
    source: str
    text: str
    truth: str = "fixed"
    selection: SelectionOptions | None = None

    @property
    def output_dir(self) -> Path:
        """``[output] dir``, or ``reports/<name>``."""
        return Path(self.output.dir) if self.output.dir is not None else Path("reports", self.name)

    @property
    def n_tasks(self) -> int:
        return len(self.conditions) * self.replications

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable normalised config (what the store records)."""
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "replications": self.replications,
            "conditions": [c.to_dict() for c in self.conditions],
            "methods": {name: _options_dict(opts) for name, opts in self.methods.items()},
            "output": {**asdict(self.output), "levels": list(self.output.levels)},
            "truth": self.truth,
            "selection": None if self.selection is None else _selection_dict(self.selection),
        }

    def config_hash(self) -> str:
        """SHA-256 of everything that changes a task's stored rows.

        That is the seed, the conditions, the methods and their options, the interval
        levels and ``[selection]`` (absent from the hash when the study has none, so older
        studies keep their hash). The number of replications, the output folder, ``keep_draws`` and
        ``max_errors`` are left out: changing them never changes a stored task, so a study
        can be extended with more replications and resumed.
        """
        full = self.to_dict()
        relevant = {
            "seed": full["seed"],
            "conditions": full["conditions"],
            "methods": full["methods"],
            "levels": full["output"]["levels"],
        }
        # "fixed" and "random" already show in the conditions' truth_seed; adding the key
        # only for "prior" keeps the hashes of existing studies.
        if self.truth == "prior":
            relevant["truth"] = self.truth
        if full["selection"] is not None:
            relevant["selection"] = full["selection"]
        blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


_INFERENCE_KEYS = ("intervals", "n_boot", "bootstrap", "wald_scale")


def _options_dict(options: EMOptions | BayesOptions | AdviOptions) -> dict[str, Any]:
    """A method's options as JSON; priors keep only what differs from the defaults, EM's
    interval options only those its intervals use (:meth:`EMOptions.inference_options`)."""
    out = {f.name: getattr(options, f.name) for f in fields(options)}
    if isinstance(out.get("priors"), BayesPriors):
        out["priors"] = out["priors"].overrides()
    if isinstance(options, EMOptions):
        out = {k: v for k, v in out.items() if k not in _INFERENCE_KEYS}
        out |= options.inference_options()
    if isinstance(options, BayesOptions):
        # defaults keep the hashes of studies from before these keys
        if options.target_accept == DEFAULT_TARGET_ACCEPT:
            del out["target_accept"]
        if options.ordering == DEFAULT_ORDERING:
            del out["ordering"]
    return out


def _selection_dict(options: SelectionOptions) -> dict[str, Any]:
    out = asdict(options)
    for name in ("components", "covariance_types", "criteria"):
        out[name] = list(out[name])
    return out


# --------------------------------------------------------------------------- validation
def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: is_int(v) and v >= low), f"an integer >= {low}"


def _one_of(options: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in options), "one of " + ", ".join(repr(o) for o in options)


_POSITIVE = ((lambda v: is_real(v) and v > 0), "a number > 0")
_NON_NEGATIVE = ((lambda v: is_real(v) and v >= 0), "a number >= 0")
_PROBABILITY = ((lambda v: is_real(v) and 0 < v < 1), "a number in (0, 1), e.g. 0.95")
_BOOL = ((lambda v: isinstance(v, bool)), "true or false")
_TABLE = ((lambda v: isinstance(v, dict)), "a table")
_LEVELS = (
    (
        lambda v: (
            isinstance(v, list)
            and len(v) > 0
            and all(is_real(x) and 0 < x < 1 for x in v)
            and len(set(v)) == len(v)
        )
    ),
    "a non-empty list of distinct numbers in (0, 1)",
)
_STRING = ((lambda v: isinstance(v, str)), "a string")
_INTERVALS = (
    (
        lambda v: (
            isinstance(v, list) and all(x in INTERVAL_METHODS for x in v) and len(set(v)) == len(v)
        )
    ),
    "a list of distinct names from " + ", ".join(repr(m) for m in INTERVAL_METHODS),
)

_VALIDATORS: dict[type, dict[str, tuple[Callable[[Any], bool], str]]] = {
    EMOptions: {
        "n_init": _int_at_least(1),
        "init": _one_of(INIT_METHODS),
        "covariance_type": _one_of(COVARIANCE_TYPES),
        "tol": _POSITIVE,
        "max_iter": _int_at_least(1),
        "reg_covar": _NON_NEGATIVE,
        "intervals": _INTERVALS,
        "n_boot": _int_at_least(2),
        "bootstrap": _one_of(BOOTSTRAP_KINDS),
        "wald_scale": _one_of(WALD_SCALES),
    },
    BayesOptions: {
        "sampler": _one_of(MCMC_SAMPLERS),
        "chains": _int_at_least(1),
        "draws": _int_at_least(1),
        "tune": _int_at_least(0),
        "covariance_type": _one_of(COVARIANCE_TYPES),
        "start_at_em": _BOOL,
        "priors": _TABLE,
        "target_accept": _PROBABILITY,
        "ordering": _one_of(ORDERINGS),
    },
    AdviOptions: {
        "draws": _int_at_least(1),
        "tune": _int_at_least(1),
        "covariance_type": _one_of(COVARIANCE_TYPES),
        "start_at_em": _BOOL,
        "priors": _TABLE,
    },
    SelectionOptions: {
        "components": (
            (lambda v: _components(v) is not None),
            'a list of distinct integers >= 1 (e.g. [1, 2, 3]) or a range "1-6"',
        ),
        "covariance_types": (
            (lambda v: _distinct_names(v, COVARIANCE_TYPES)),
            "a non-empty list of distinct names from " + ", ".join(COVARIANCE_TYPES),
        ),
        "criteria": (
            (lambda v: _distinct_names(v, SELECTION_CRITERIA)),
            "a non-empty list of distinct names from " + ", ".join(SELECTION_CRITERIA),
        ),
        "n_init": _int_at_least(1),
        "bayes": _BOOL,
        "bayes_replications": _int_at_least(1),
        "sparse": _BOOL,
        "sparse_max_components": _int_at_least(2),
        "sparse_concentration": _POSITIVE,
        "sparse_replications": _int_at_least(1),
    },
    OutputOptions: {
        "dir": _STRING,
        "keep_draws": _one_of(KEEP_DRAWS),
        "max_errors": _int_at_least(0),
        "levels": _LEVELS,
        "backup_every": _int_at_least(0),
        "backup_minutes": _NON_NEGATIVE,
    },
}


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _components(value: object) -> tuple[int, ...] | None:
    """``[1, 2, 3]`` or ``"1-3"`` as a sorted tuple; None when it is neither."""
    if isinstance(value, str):
        match = _RANGE.match(value)
        if match is None:
            return None
        low, high = int(match[1]), int(match[2])
        values = list(range(low, high + 1))
    elif isinstance(value, list):
        values = value
    else:
        return None
    if not values or not all(is_int(v) and v >= 1 for v in values):
        return None
    if len(set(values)) != len(values):
        return None
    return tuple(sorted(int(v) for v in values))


def _distinct_names(value: object, allowed: tuple[str, ...]) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(v in allowed for v in value)
        and len(set(value)) == len(value)
    )


class _Checker:
    """Builds one-line :class:`ConfigError` messages that name the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, value: object, allowed: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key} = {_show(value)} is not allowed; {allowed}")

    def unknown(self, key: str, value: object, allowed: list[str]) -> ConfigError:
        return ConfigError(
            f"{self.source}: unknown key {key} (value {_show(value)}); "
            f"allowed keys here are {', '.join(allowed)}"
        )

    def options(self, cls: type, table: object, prefix: str) -> Any:
        if not isinstance(table, dict):
            raise self.error(prefix, table, "it must be a table")
        checks = _VALIDATORS[cls]
        for key, value in table.items():
            if key not in checks:
                raise self.unknown(f"{prefix}.{key}", value, list(checks))
            ok, allowed = checks[key]
            if not ok(value):
                raise self.error(f"{prefix}.{key}", value, f"use {allowed}")
        values = dict(table)
        if "priors" in values:
            try:
                values["priors"] = BayesPriors.from_dict(values["priors"])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{self.source}: {prefix}.priors: {exc}") from None
        if "levels" in values:
            values["levels"] = tuple(sorted(float(x) for x in values["levels"]))
        if "intervals" in values:
            values["intervals"] = tuple(m for m in INTERVAL_METHODS if m in values["intervals"])
        if cls is EMOptions:
            self._interval_options(values, prefix)
        for name in ("tol", "reg_covar", "sparse_concentration", "target_accept"):
            if name in values:
                values[name] = float(values[name])
        if "components" in values:
            values["components"] = _components(values["components"])
        for name in ("covariance_types", "criteria"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def _interval_options(self, values: Mapping[str, Any], prefix: str) -> None:
        """An interval option the chosen ``intervals`` never use is a mistake: say so."""
        chosen = values.get("intervals", ())
        needs = {"n_boot": "bootstrap", "bootstrap": "bootstrap"}
        for key, method in needs.items():
            if key in values and method not in chosen:
                raise self.error(
                    f"{prefix}.{key}",
                    values[key],
                    f'it has no effect without "{method}" in {prefix}.intervals',
                )
        if "wald_scale" in values and not any(m in SE_METHODS for m in chosen):
            raise self.error(
                f"{prefix}.wald_scale",
                values["wald_scale"],
                f"it has no effect without an SE method ({', '.join(SE_METHODS)}) in "
                f"{prefix}.intervals",
            )

    def scenario(self, mapping: Mapping[str, Any], where: str) -> Scenario:
        try:
            return Scenario.from_dict(_tuples(mapping))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.source}: {where}: {exc}") from None


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | list | dict | bool) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tuples(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """TOML arrays become tuples, which is how Scenario spells explicit weights."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}


def expand_design(
    base: Mapping[str, Any],
    design: Mapping[str, list[Any]],
    conditions: list[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Expand crossed factors and explicit conditions into a list of scenario mappings.

    Parameters
    ----------
    base : mapping
        Values shared by every condition.
    design : mapping of str to list
        Crossed factors; the product is taken in mapping order, last factor fastest.
    conditions : list of mapping
        Explicit conditions, appended after the crossed ones.

    Returns
    -------
    list of dict
        One mapping per condition (``base`` updated with the condition's values). With no
        factors and no explicit conditions, ``[base]``.
    """
    out: list[dict[str, Any]] = []
    if design:
        keys = list(design)
        for levels in itertools.product(*(design[k] for k in keys)):
            out.append({**base, **dict(zip(keys, levels, strict=True))})
    out.extend({**base, **dict(condition)} for condition in conditions)
    return out or [dict(base)]


_TOP_LEVEL = (
    "name",
    "description",
    "seed",
    "replications",
    "truth",
    "scenario",
    "design",
    "conditions",
    "methods",
    "selection",
    "output",
)


def parse_study(text: str, *, source: str = "<string>") -> StudyConfig:
    """Validate the TOML text of a study.

    Parameters
    ----------
    text : str
    source : str
        Named in error messages (the file name).

    Returns
    -------
    StudyConfig

    Raises
    ------
    ConfigError
        For a TOML syntax error, an unknown key or a bad value.
    """
    check = _Checker(source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for key, value in raw.items():
        if key not in _TOP_LEVEL:
            raise check.unknown(key, value, list(_TOP_LEVEL))
    if "name" not in raw:
        raise ConfigError(f"{source}: the key name is missing; give the study a name")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise check.error(
            "name", name, "use letters, digits, '_', '.' and '-' (it names the output folder)"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise check.error("description", description, "use a string")
    seed = raw.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise check.error("seed", seed, "use an integer >= 0")
    replications = raw.get("replications", 10)
    if not is_int(replications) or replications < 1:
        raise check.error("replications", replications, "use an integer >= 1")

    truth = raw.get("truth", "fixed")
    if truth not in TRUTH_MODES:
        raise check.error(
            "truth",
            truth,
            "use 'fixed' (one truth per condition), 'random' or 'prior' (drawn from the "
            "Bayesian prior)",
        )
    conditions = _conditions(raw, check)
    if truth == "fixed":
        conditions = tuple(
            s if s.truth_seed is not None else replace(s, truth_seed=truth_seed(seed, i))
            for i, s in enumerate(conditions)
        )
    methods = _methods(raw.get("methods"), check)
    output = check.options(OutputOptions, raw.get("output", {}), "output")
    if truth == "prior":
        _check_prior_truth(conditions, methods, check)
    selection = _selection(raw.get("selection"), conditions, check)
    return StudyConfig(
        name=name,
        description=description,
        seed=seed,
        replications=replications,
        conditions=conditions,
        methods=methods,
        output=output,
        source=source,
        text=text,
        truth=truth,
        selection=selection,
    )


def _check_prior_truth(
    conditions: tuple[Scenario, ...],
    methods: Mapping[str, EMOptions | BayesOptions | AdviOptions],
    check: _Checker,
) -> None:
    """``truth = "prior"``: a Bayes method with fixed hyperparameters, no misspecification."""
    bayes = methods.get("bayes")
    if not isinstance(bayes, BayesOptions):
        raise check.error(
            "truth", "prior", "a truth drawn from the prior needs [methods.bayes] (its prior)"
        )
    missing = data_scaled(bayes.priors)
    if missing:
        raise ConfigError(
            f'{check.source}: truth = "prior" needs fixed hyperparameters; '
            f"methods.bayes.priors is missing {', '.join(missing)} (give numbers for "
            f"{', '.join(DATA_SCALED)}: data-scaled defaults cannot be drawn from)"
        )
    loc = bayes.priors.mean_loc
    for i, scenario in enumerate(conditions):
        if isinstance(loc, tuple) and len(loc) != scenario.n_features:
            raise check.error(
                "methods.bayes.priors.mean_loc",
                list(loc),
                f"condition {i} has {scenario.n_features} features; give one number or "
                f"{scenario.n_features}",
            )
        if scenario.misspecification != "none":
            raise check.error(
                f"condition {i} misspecification",
                scenario.misspecification,
                'truth = "prior" simulates from the model itself; use "none"',
            )


def _selection(
    table: object, conditions: tuple[Scenario, ...], check: _Checker
) -> SelectionOptions | None:
    if table is None:
        return None
    options: SelectionOptions = check.options(SelectionOptions, table, "selection")
    assert isinstance(table, dict)  # check.options refused anything else
    largest = max(options.components)
    for i, scenario in enumerate(conditions):
        if largest > scenario.n_train:
            raise check.error(
                "selection.components",
                table.get("components", list(options.components)),
                f"K = {largest} is more than n_train = {scenario.n_train} of condition {i} "
                f"({scenario.label()}); use K <= n_train",
            )
    if options.sparse and options.sparse_max_components > min(c.n_train for c in conditions):
        raise check.error(
            "selection.sparse_max_components",
            options.sparse_max_components,
            "use at most the smallest n_train of the conditions",
        )
    return options


def _conditions(raw: Mapping[str, Any], check: _Checker) -> tuple[Scenario, ...]:
    scenario_keys = [f.name for f in fields(Scenario)]
    base = raw.get("scenario", {})
    design = raw.get("design", {})
    explicit = raw.get("conditions", [])
    if not isinstance(base, dict):
        raise check.error("scenario", base, "it must be a table of scenario fields")
    if not isinstance(design, dict):
        raise check.error("design", design, "it must be a table of factor = [levels]")
    if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
        raise check.error("conditions", explicit, "write each condition as a [[conditions]] table")
    for where, table in [("scenario", base), ("design", design)] + [
        (f"conditions[{i}]", c) for i, c in enumerate(explicit)
    ]:
        for key, value in table.items():
            if key not in scenario_keys:
                raise check.unknown(f"{where}.{key}", value, scenario_keys)
    for key, levels in design.items():
        if not isinstance(levels, list) or not levels:
            raise check.error(f"design.{key}", levels, "a factor is a non-empty list of levels")
    mappings = expand_design(base, design, explicit)
    scenarios = []
    for i, mapping in enumerate(mappings):
        scenarios.append(check.scenario(mapping, f"condition {i} ({_brief(mapping, base)})"))
    labels = [s.label() for s in scenarios]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            j = labels.index(label)
            raise ConfigError(
                f"{check.source}: condition {i} ({label}) repeats condition {j}; "
                "every condition must differ in a field other than truth_seed"
            )
    return tuple(scenarios)


def _brief(mapping: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    own = {k: v for k, v in mapping.items() if k not in base or base[k] != v}
    return ", ".join(f"{k}={v!r}" for k, v in own.items()) or "[scenario]"


def _methods(table: object, check: _Checker) -> dict[str, EMOptions | BayesOptions | AdviOptions]:
    if table is None:
        raise ConfigError(
            f"{check.source}: no methods; add at least one of "
            + ", ".join(f"[methods.{m}]" for m in METHOD_NAMES)
        )
    if not isinstance(table, dict) or not table:
        raise check.error(
            "methods",
            table,
            "add at least one of " + ", ".join(f"[methods.{m}]" for m in METHOD_NAMES),
        )
    for key, value in table.items():
        if key not in METHOD_NAMES:
            raise check.unknown(f"methods.{key}", value, list(METHOD_NAMES))
    classes = {"em": EMOptions, "bayes": BayesOptions, "advi": AdviOptions}
    methods = {
        name: check.options(classes[name], table[name], f"methods.{name}")
        for name in METHOD_NAMES
        if name in table
    }
    for name in ("bayes", "advi"):
        opts = methods.get(name)
        if opts is None:
            continue
        if opts.start_at_em and "em" not in methods:
            raise check.error(
                f"methods.{name}.start_at_em",
                True,
                "starting at EM needs [methods.em]; add it or set start_at_em = false",
            )
    bayes = methods.get("bayes")
    if (
        isinstance(bayes, BayesOptions)
        and "target_accept" in table["bayes"]
        and bayes.sampler not in TARGET_ACCEPT_SAMPLERS
    ):
        raise check.error(
            "methods.bayes.target_accept",
            table["bayes"]["target_accept"],
            f"it applies to sampler {' or '.join(map(repr, TARGET_ACCEPT_SAMPLERS))} only "
            f"(methods.bayes.sampler is {bayes.sampler!r})",
        )
    return methods


def load_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Read and validate a study TOML file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    StudyConfig

    Raises
    ------
    ConfigError
        If the file is missing or invalid; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the study file ({exc})") from None
    return parse_study(text, source=str(path))
