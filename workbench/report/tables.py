"""Tables for the comparison report, computed from the store's tables as DataFrames.

Every function takes DataFrames shaped like the store's tables (see
:mod:`workbench.study.store`) and returns a tidy DataFrame; nothing here touches the database
or fits anything. Monte Carlo standard errors come from :mod:`workbench.study.summaries`, the
one place where they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.study.summaries import (
    mean_with_mcse,
    status_indicators,
    summarise,
    summarise_metrics,
)

__all__ = [
    "DGP_METRICS",
    "ESS_PER_CHAIN",
    "LOGLIK_METRICS",
    "RHAT_MAX",
    "bayes_diagnostics_table",
    "coverage_table",
    "em_diagnostics_table",
    "fit_diagnostics",
    "flagged_fits",
    "format_mcse",
    "loglik_table",
    "metric_differences",
    "recovery_table",
    "to_markdown",
]

#: The log-likelihood metrics of :mod:`workbench.metrics`, in the order the report shows
#: them, with their column headings.
LOGLIK_METRICS: dict[str, str] = {
    "loglik_train_truth": "train loglik at truth",
    "loglik_train_dgp": "train loglik under DGP",
    "loglik_train_estimate": "train loglik at estimate",
    "lpd_test_truth": "held-out lpd at truth",
    "lpd_test_dgp": "held-out lpd under DGP",
    "lpd_test": "held-out lpd",
}
#: Metrics under the data-generating distribution; they equal the ``*_truth`` ones unless a
#: scenario is misspecified.
DGP_METRICS: tuple[str, ...] = ("loglik_train_dgp", "lpd_test_dgp")

#: A Bayesian fit whose largest r_hat exceeds this is flagged (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: A Bayesian fit whose smallest bulk or tail ESS is below this many per chain is flagged
#: (Vehtari et al. 2021 recommend 100 per chain, 400 for four chains).
ESS_PER_CHAIN = 100.0
#: Chains assumed when a fit does not record its number of chains.
DEFAULT_CHAINS = 4

_TASK_KEY = ["condition_id", "replication"]
_FIT_KEY = ["condition_id", "replication", "method"]


def _with_labels(frame: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    labels = conditions[["condition_id", "label"]].rename(columns={"label": "condition"})
    return labels.merge(frame, on="condition_id", how="right")


def loglik_table(
    metrics: pd.DataFrame,
    fits: pd.DataFrame,
    diagnostics: pd.DataFrame,
    conditions: pd.DataFrame,
) -> pd.DataFrame:
    """Mean and MCSE of every fit metric, plus failure and non-convergence rates.

    Parameters
    ----------
    metrics, fits, diagnostics, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        Long: one row per condition, method and metric with ``condition_id, condition,
        method, metric, n_sim, mean, mcse`` (from
        :func:`workbench.study.summaries.summarise_metrics`). ``failed`` and
        ``nonconverged`` are rates over the attempted fits; every other metric is averaged
        over the fits that succeeded.
    """
    indicators = status_indicators(fits, diagnostics)
    long = pd.concat([metrics, indicators], ignore_index=True)
    table = summarise_metrics(long, by=["condition_id", "method"])
    return _with_labels(table, conditions)


def metric_differences(
    metrics: pd.DataFrame,
    conditions: pd.DataFrame,
    *,
    metric_names: Sequence[str] = tuple(LOGLIK_METRICS),
    reference: str = "em",
) -> pd.DataFrame:
    """Paired differences ``method - reference`` of each metric, per condition.

    Both methods scored the same dataset in a replication, so the paired difference has a
    much smaller Monte Carlo error than the two means apart: this is where the methods
    disagree beyond noise.

    Parameters
    ----------
    metrics, conditions : DataFrame
        The store's ``metrics`` and ``conditions`` tables.
    metric_names : sequence of str
    reference : str, default "em"

    Returns
    -------
    DataFrame
        ``condition_id, condition, method, metric, n_sim, mean, mcse``, where ``method`` is
        ``"<other> - <reference>"`` and ``n_sim`` counts replications where both succeeded.
    """
    rows = []
    data = metrics[metrics["metric"].isin(metric_names)].dropna(subset=["value"])
    for (condition_id, metric), group in data.groupby(["condition_id", "metric"], sort=True):
        wide = group.pivot(index="replication", columns="method", values="value")
        if reference not in wide.columns:
            continue
        for other in wide.columns:
            if other == reference:
                continue
            paired = (wide[other] - wide[reference]).dropna().to_numpy()
            if paired.size == 0:
                continue
            value, mcse = mean_with_mcse(paired)
            rows.append(
                {
                    "condition_id": condition_id,
                    "method": f"{other} - {reference}",
                    "metric": metric,
                    "n_sim": float(paired.size),
                    "mean": value,
                    "mcse": mcse,
                }
            )
    columns = ["condition_id", "method", "metric", "n_sim", "mean", "mcse"]
    return _with_labels(pd.DataFrame(rows, columns=columns), conditions)


def recovery_table(estimates: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """Bias, empirical SE, RMSE (and, for Bayes, model SE) per parameter, with MCSEs.

    Parameters
    ----------
    estimates, conditions : DataFrame
        The store's ``estimates`` and ``conditions`` tables.

    Returns
    -------
    DataFrame
        One row per condition, method and parameter: ``condition_id, condition, method,
        kind, parameter`` and the columns of :func:`workbench.study.summaries.summarise`
        (``n_sim, bias, bias_mcse, empse, empse_mcse, rmse, rmse_mcse, ...``, and
        ``relprec`` / ``relprec_mcse`` of every method against EM).
    """
    by = ["condition_id", "method", "kind", "parameter"]
    table = summarise(estimates, by=by, reference="em")
    return _with_labels(table, conditions)


def coverage_table(
    estimates: pd.DataFrame, intervals: pd.DataFrame, conditions: pd.DataFrame
) -> pd.DataFrame:
    """Coverage of the truth by each kind and level of credible interval, with MCSE.

    Parameters
    ----------
    estimates, intervals, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        One row per condition, method, parameter, interval kind and level:
        ``condition_id, condition, method, kind, parameter, interval, level, n_sim,
        coverage, coverage_mcse``.
    """
    key = ["condition_id", "replication", "method", "parameter"]
    merged = intervals[[*key, "interval", "level", "covered"]].merge(
        estimates[[*key, "kind", "truth", "estimate"]], on=key, how="inner"
    )
    by = ["condition_id", "method", "kind", "parameter", "interval", "level"]
    columns = [*by, "n_sim", "coverage", "coverage_mcse"]
    if merged.empty:
        return _with_labels(pd.DataFrame(columns=columns), conditions)
    table = summarise(merged, by=by, reference=None)
    return _with_labels(table[columns], conditions)


def format_mcse(value: float, mcse: float) -> str:
    """``value (MCSE)``, with the value rounded to the MCSE's second significant digit.

    Examples
    --------
    >>> format_mcse(0.012345, 0.00321)
    '0.0123 (0.0032)'
    >>> format_mcse(-1234.4, 25.0)
    '-1234 (25)'
    >>> format_mcse(1.0, 0.0)
    '1 (0)'
    >>> format_mcse(8.4e-17, 3e-17)
    '8.4e-17 (3e-17)'
    """
    if value is None or not np.isfinite(value):
        return ""
    if mcse is None or not np.isfinite(mcse):
        return f"{value:.4g}"
    if mcse == 0:
        return f"{value:.3g} (0)"
    decimals = max(0, 1 - math.floor(math.log10(mcse)))
    if decimals > 6:
        # fixed point would print only zeros; keep two significant digits of each
        return f"{value:.2g} ({mcse:.2g})"
    return f"{value:.{decimals}f} ({mcse:.{decimals}f})"


def fit_diagnostics(diagnostics: pd.DataFrame) -> pd.DataFrame:
    """The long ``diagnostics`` table turned into one row per fit.

    Parameters
    ----------
    diagnostics : DataFrame
        Columns ``condition_id, replication, method, key, value``.

    Returns
    -------
    DataFrame
        One row per ``(condition_id, replication, method)``, one column per key. Numeric
        keys are numeric columns; ``sampler`` stays text.
    """
    if diagnostics.empty:
        return pd.DataFrame(columns=_FIT_KEY)
    wide = diagnostics.pivot(index=_FIT_KEY, columns="key", values="value")
    wide.columns.name = None
    for column in wide.columns:
        converted = pd.to_numeric(wide[column], errors="coerce")
        # Keep text keys (the sampler's name) as text; convert the others to numbers.
        if converted.notna().sum() == wide[column].notna().sum():
            wide[column] = converted
    return wide.reset_index()


def bayes_diagnostics_table(diagnostics: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """MCMC diagnostics per condition and sampling method.

    Parameters
    ----------
    diagnostics : DataFrame
        The store's ``diagnostics`` table.
    conditions : DataFrame
        The store's ``conditions`` table (``condition_id``, ``label``).

    Returns
    -------
    DataFrame
        One row per condition and method that reports ``max_r_hat``, with ``n_fits``, the
        largest and median per-fit ``max_r_hat``, the smallest ``min_ess_bulk`` and
        ``min_ess_tail``, the total and the number of fits with divergences, the number of
        fits with label switching, and the number flagged for r_hat above ``RHAT_MAX``.
    """
    wide = fit_diagnostics(diagnostics)
    if "max_r_hat" not in wide.columns:
        return pd.DataFrame()
    wide = wide[wide["max_r_hat"].notna()]
    grouped = wide.groupby(["condition_id", "method"], sort=True)
    table = pd.DataFrame(
        {
            "n_fits": grouped.size(),
            "max_r_hat": grouped["max_r_hat"].max(),
            "median_r_hat": grouped["max_r_hat"].median(),
            "n_r_hat_above": grouped["max_r_hat"].agg(lambda s: int((s > RHAT_MAX).sum())),
            "min_ess_bulk": grouped["min_ess_bulk"].min(),
            "min_ess_tail": grouped["min_ess_tail"].min(),
            "divergences": grouped["n_divergences"].sum(),
            "n_fits_divergent": grouped["n_divergences"].agg(lambda s: int((s > 0).sum())),
            "n_label_switching": grouped["label_switching"].sum(),
        }
    ).reset_index()
    return _with_labels(table, conditions)


def em_diagnostics_table(diagnostics: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """EM convergence per condition: fits, converged fits, iterations.

    Parameters
    ----------
    diagnostics, conditions : DataFrame
        The store's ``diagnostics`` and ``conditions`` tables.

    Returns
    -------
    DataFrame
        One row per condition and method that reports ``converged``, with ``n_fits``,
        ``n_converged``, and the median and largest ``n_iter``.
    """
    wide = fit_diagnostics(diagnostics)
    if "converged" not in wide.columns:
        return pd.DataFrame()
    wide = wide[wide["converged"].notna()]
    grouped = wide.groupby(["condition_id", "method"], sort=True)
    table = pd.DataFrame(
        {
            "n_fits": grouped.size(),
            "n_converged": grouped["converged"].sum().astype(int),
            "median_n_iter": grouped["n_iter"].median(),
            "max_n_iter": grouped["n_iter"].max(),
        }
    ).reset_index()
    return _with_labels(table, conditions)


def flagged_fits(
    tasks: pd.DataFrame,
    fits: pd.DataFrame,
    diagnostics: pd.DataFrame,
    conditions: pd.DataFrame,
) -> pd.DataFrame:
    """Every fit or task that went wrong, one row per problem, named by condition and seed.

    A fit is flagged for: a failed simulation (the whole task), a failed fit, EM not
    converged, r_hat above ``RHAT_MAX``, bulk or tail ESS below ``ESS_PER_CHAIN`` times its
    number of chains (diagnostic ``chains``, else ``DEFAULT_CHAINS``), divergent
    transitions, or label switching. A fit with several problems appears once per problem.

    Parameters
    ----------
    tasks, fits, diagnostics, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        Columns ``condition_id, condition, replication, seed, method, problem, detail``,
        sorted by condition, replication and method. ``method`` is empty for a failed
        simulation.
    """
    rows: list[dict[str, object]] = []
    fit_keys = fits[_TASK_KEY].drop_duplicates()
    sim_failed = tasks.merge(fit_keys, on=_TASK_KEY, how="left", indicator=True)
    sim_failed = sim_failed[(sim_failed["_merge"] == "left_only") & (sim_failed["status"] != "ok")]
    for row in sim_failed.itertuples(index=False):
        rows.append(
            {
                "condition_id": row.condition_id,
                "replication": row.replication,
                "method": "",
                "problem": "task failed",
                "detail": _first_line(row.error),
            }
        )
    for row in fits[fits["status"] != "ok"].itertuples(index=False):
        rows.append(
            {
                "condition_id": row.condition_id,
                "replication": row.replication,
                "method": row.method,
                "problem": "fit failed",
                "detail": _first_line(row.error),
            }
        )
    wide = fit_diagnostics(diagnostics)
    if "min_ess_bulk" in wide.columns or "min_ess_tail" in wide.columns:
        for column in ("min_ess_bulk", "min_ess_tail"):
            if column not in wide.columns:
                wide[column] = np.nan
        chains = wide["chains"] if "chains" in wide.columns else DEFAULT_CHAINS
        wide["chains"] = pd.Series(chains, index=wide.index).fillna(DEFAULT_CHAINS)
        smallest = wide[["min_ess_bulk", "min_ess_tail"]].min(axis=1)
        wide["ess_shortfall"] = ESS_PER_CHAIN * wide["chains"] - smallest
    checks = [
        ("converged", lambda v: v == 0, "EM not converged", lambda r: f"{r.n_iter:.0f} iterations"),
        (
            "max_r_hat",
            lambda v: v > RHAT_MAX,
            f"r_hat > {RHAT_MAX}",
            lambda r: f"max r_hat {r.max_r_hat:.3f}",
        ),
        (
            "ess_shortfall",
            lambda v: v > 0,
            f"ESS < {ESS_PER_CHAIN:.0f} per chain",
            lambda r: (
                f"min bulk ESS {r.min_ess_bulk:.0f}, tail {r.min_ess_tail:.0f}, "
                f"{r.chains:.0f} chains"
            ),
        ),
        (
            "n_divergences",
            lambda v: v > 0,
            "divergences",
            lambda r: f"{r.n_divergences:.0f} divergent transitions",
        ),
        (
            "label_switching",
            lambda v: v == 1,
            "label switching",
            lambda r: "chains or draws disagree on component order",
        ),
    ]
    for key, is_bad, problem, detail in checks:
        if key not in wide.columns:
            continue
        for row in wide[is_bad(wide[key])].itertuples(index=False):
            rows.append(
                {
                    "condition_id": row.condition_id,
                    "replication": row.replication,
                    "method": row.method,
                    "problem": problem,
                    "detail": detail(row),
                }
            )
    columns = ["condition_id", "condition", "replication", "seed", "method", "problem", "detail"]
    if not rows:
        return pd.DataFrame(columns=columns)
    flagged = pd.DataFrame(rows).merge(tasks[[*_TASK_KEY, "seed"]], on=_TASK_KEY, how="left")
    flagged = _with_labels(flagged, conditions)
    return flagged[columns].sort_values(["condition_id", "replication", "method"], kind="stable")


def _first_line(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    return text.strip().splitlines()[0][:200]


def to_markdown(frame: pd.DataFrame, *, columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (values as already formatted).

    Parameters
    ----------
    frame : DataFrame
    columns : sequence of str, optional
        Columns to show, in order; default all.

    Returns
    -------
    str
        One line per row plus the header and separator; empty frames give the header only.
    """
    columns = list(frame.columns) if columns is None else list(columns)

    def cell(value: object) -> str:
        if isinstance(value, float) and np.isnan(value):
            return ""
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |"
        for row in frame[columns].itertuples(index=False, name=None)
    ]
    return "\n".join(lines)
