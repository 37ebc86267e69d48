"""Tables for the comparison report, computed from the store's tables as DataFrames.

Every function takes DataFrames shaped like the store's tables (see
:mod:`workbench.study.store`) and returns a tidy DataFrame; nothing here touches the database
or fits anything. Monte Carlo standard errors come from :mod:`workbench.study.summaries`, the
one place where they are computed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.bayes.options import DEFAULT_CHAINS
from workbench.report.plots import ROLES, parameter_sort_key
from workbench.study.summaries import (
    mean_with_mcse,
    model_se_ratio,
    proportion,
    status_indicators,
    summarise,
    summarise_metrics,
)

__all__ = [
    "BAYES_DIAGNOSTIC_HEADINGS",
    "DGP_METRICS",
    "EM_DIAGNOSTIC_HEADINGS",
    "ESS_PER_CHAIN",
    "LOGLIK_METRICS",
    "RHAT_MAX",
    "bayes_diagnostics_table",
    "chosen_k_distribution",
    "column_kinds",
    "coverage_table",
    "display_cell",
    "em_diagnostics_table",
    "fit_diagnostics",
    "flagged_fits",
    "format_mcse",
    "headline_interval",
    "interval_display",
    "interval_se_method",
    "interval_table",
    "loglik_display",
    "loglik_note",
    "loglik_table",
    "method_rank",
    "metric_differences",
    "pareto_k_warnings",
    "recovery_display",
    "recovery_table",
    "selection_accuracy",
    "selection_display",
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

#: Column headings of :func:`bayes_diagnostics_table` in the report.
BAYES_DIAGNOSTIC_HEADINGS: dict[str, str] = {
    "n_fits": "fits",
    "max_r_hat": "max r_hat",
    "median_r_hat": "median r_hat",
    "n_r_hat_above": f"fits r_hat > {RHAT_MAX}",
    "min_ess_bulk": "min bulk ESS",
    "min_ess_tail": "min tail ESS",
    "divergences": "divergences",
    "n_fits_divergent": "fits with divergences",
    "n_label_switching": "fits with label switching",
}
#: Column headings of :func:`em_diagnostics_table` in the report.
EM_DIAGNOSTIC_HEADINGS: dict[str, str] = {
    "n_fits": "fits",
    "n_converged": "converged",
    "median_n_iter": "median iterations",
    "max_n_iter": "max iterations",
}

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


def interval_se_method(interval: str) -> str | None:
    """The standard-error method behind a stored EM interval name, None for a posterior's.

    ``'sandwich-wald'`` and ``'sandwich-wald-transformed'`` -> ``'sandwich'``;
    ``'nonparametric-bootstrap-percentile'`` -> ``'bootstrap'``; ``'central'`` -> None
    (a posterior interval goes with the posterior SD). The names are those of
    :class:`workbench.em.ConfidenceIntervals` (see the store's ``intervals`` table).
    """
    head, _, rest = interval.partition("-")
    if rest.startswith("wald"):
        return head
    if "bootstrap-" in interval:
        return "bootstrap"
    return None


def interval_table(
    estimates: pd.DataFrame,
    intervals: pd.DataFrame,
    standard_errors: pd.DataFrame,
    conditions: pd.DataFrame,
) -> pd.DataFrame:
    """Per interval method: coverage, mean width and ModSE / EmpSE, each with its MCSE.

    Every interval method (a posterior's ``central`` / ``hdi``, EM's ``hessian-wald``,
    ``sandwich-wald``, ``...-bootstrap-percentile``) is scored the same way over the
    replications where it exists. The model SE of an EM interval is the SE it was built
    from (the store's ``standard_errors`` row of its SE method); of a posterior interval the
    posterior SD. ``ModSE / EmpSE`` near 1 means the SEs match the spread of the estimates
    over replications (Morris, White & Crowther 2019); below 1 the intervals are too narrow.

    Parameters
    ----------
    estimates, intervals, standard_errors, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        One row per condition, method, parameter, interval and level: ``condition_id,
        condition, method, kind, parameter, interval, level, n_sim, coverage,
        coverage_mcse, width, width_mcse, se_ratio, se_ratio_mcse``.
    """
    key = ["condition_id", "replication", "method", "parameter"]
    by = ["condition_id", "method", "kind", "parameter", "interval", "level"]
    measures = ["coverage", "width", "se_ratio"]
    columns = [*by, "n_sim", *(c for m in measures for c in (m, f"{m}_mcse"))]
    merged = intervals.merge(
        estimates[[*key, "kind", "truth", "estimate", "sd"]], on=key, how="inner"
    )
    if merged.empty:
        return _with_labels(pd.DataFrame(columns=columns), conditions)
    merged["se_method"] = merged["interval"].map(interval_se_method)
    ses = standard_errors.rename(columns={"se": "model_se"})
    merged = merged.merge(ses, on=[*key, "se_method"], how="left")
    merged["model_se"] = merged["model_se"].where(merged["se_method"].notna(), merged["sd"])
    rows = []
    for group_key, group in merged.groupby(by, sort=True):
        estimate = group["estimate"].to_numpy(float)
        truth = group["truth"].to_numpy(float)
        model_se = group["model_se"].to_numpy(float)
        named = {
            "coverage": proportion(group["covered"].to_numpy(float)),
            "width": mean_with_mcse((group["upper"] - group["lower"]).to_numpy(float)),
            "se_ratio": model_se_ratio(estimate, truth, model_se)
            if np.isfinite(model_se).all()
            else None,
        }
        row: dict[str, object] = dict(zip(by, group_key, strict=True))
        row["n_sim"] = float(len(group))
        for name, measure in named.items():
            row[name], row[f"{name}_mcse"] = measure if measure is not None else (np.nan, np.nan)
        rows.append(row)
    return _with_labels(pd.DataFrame(rows, columns=columns), conditions)


def interval_display(group: pd.DataFrame, level: float) -> pd.DataFrame:
    """One condition's interval methods side by side at one level, MCSEs in brackets.

    Parameters
    ----------
    group : DataFrame
        :func:`interval_table` rows of one condition.
    level : float
        The nominal level shown.

    Returns
    -------
    DataFrame
        Columns ``parameter``, ``method``, ``interval``, ``coverage``, ``ModSE/EmpSE``,
        ``mean width``; parameters in :func:`~workbench.report.plots.parameter_sort_key`
        order, EM's interval methods before the posterior's.
    """
    rows = group[np.isclose(group["level"], level)]
    order = sorted(
        rows.itertuples(index=False),
        key=lambda r: (parameter_sort_key(r.parameter), method_rank(r.method), r.interval),
    )
    return pd.DataFrame(
        [
            {
                "parameter": r.parameter,
                "method": r.method,
                "interval": r.interval,
                f"coverage {level:.0%}": format_mcse(r.coverage, r.coverage_mcse),
                "ModSE/EmpSE": format_mcse(r.se_ratio, r.se_ratio_mcse),
                "mean width": format_mcse(r.width, r.width_mcse),
            }
            for r in order
        ]
    )


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
    transitions, label switching, or an EM standard-error method that could not be computed
    (diagnostic ``se_error_<method>``: a singular information matrix, a failing bootstrap;
    the estimate is kept, but that method's intervals are missing for the fit). A fit with
    several problems appears once per problem.

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
    for column in sorted(c for c in wide.columns if str(c).startswith("se_error_")):
        se_method = str(column).removeprefix("se_error_")
        for row in wide[wide[column].notna()].itertuples(index=False):
            rows.append(
                {
                    "condition_id": row.condition_id,
                    "replication": row.replication,
                    "method": row.method,
                    "problem": f"{se_method} SEs not available",
                    "detail": _first_line(getattr(row, str(column))),
                }
            )
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


def loglik_display(
    long: pd.DataFrame, labels: Mapping[int, str], *, misspecified: bool
) -> pd.DataFrame:
    """The report's log-likelihood table: one row per condition and method, MCSEs in brackets.

    Parameters
    ----------
    long : DataFrame
        :func:`loglik_table` rows followed by :func:`metric_differences` rows.
    labels : mapping of condition id to label
    misspecified : bool
        Show the columns under the data-generating distribution (:data:`DGP_METRICS`).
    """
    columns = {
        metric: heading
        for metric, heading in LOGLIK_METRICS.items()
        if misspecified or metric not in DGP_METRICS
    }
    columns |= {"failed": "failed", "nonconverged": "not converged"}
    rows = []
    for (condition_id, method), group in long.groupby(["condition_id", "method"], sort=False):
        by_metric = group.set_index("metric")
        row: dict[str, str] = {"condition": labels[condition_id], "method": method}
        for metric, heading in columns.items():
            if metric in by_metric.index:
                row[heading] = format_mcse(
                    by_metric.at[metric, "mean"], by_metric.at[metric, "mcse"]
                )
            else:
                row[heading] = ""
        n = by_metric["n_sim"].drop(["failed", "nonconverged"], errors="ignore")
        row["fits"] = f"{int(n.max())}" if len(n) else "0"
        rows.append((condition_id, method_rank(method), row))
    rows.sort(key=lambda r: (r[0], r[1]))
    frame = pd.DataFrame([r[2] for r in rows])
    return frame


def loglik_note(*, misspecified: bool) -> str:
    """The caption under :func:`loglik_display`."""
    note = (
        "Mean per data point, with the Monte Carlo SE in brackets. Rows 'bayes - em' are "
        "paired differences over the replications where both fits succeeded: a "
        "difference several MCSEs from 0 is a real disagreement. 'failed' and 'not "
        "converged' are rates over the attempted fits."
    )
    if misspecified:
        note += (
            " 'under DGP' is the density of the data-generating distribution itself (not "
            "a Gaussian mixture when misspecified): the best any fit can do in expectation."
        )
    return note


def method_rank(method: str) -> tuple[int, str]:
    """EM, then Bayes, then ADVI, then paired differences such as ``bayes - em``."""
    order = {role: i for i, role in enumerate(ROLES)}
    return (order.get(method, len(order)), method)


def headline_interval(coverage: pd.DataFrame) -> tuple[str, float] | None:
    """The interval shown in the recovery tables: central 95% if scored, else the widest."""
    if coverage.empty:
        return None
    kinds = list(coverage["interval"].drop_duplicates())
    kind = "central" if "central" in kinds else kinds[0]
    levels = sorted(coverage.loc[coverage["interval"] == kind, "level"].unique())
    return kind, (0.95 if 0.95 in levels else float(levels[-1]))


def recovery_display(
    group: pd.DataFrame, coverage: pd.DataFrame, headline: tuple[str, float] | None
) -> pd.DataFrame:
    """One condition's recovery table: bias, EmpSE and RMSE per method and parameter (MCSEs in
    brackets), the coverage of the headline interval, and precision relative to EM.

    Parameters
    ----------
    group : DataFrame
        :func:`recovery_table` rows of one condition.
    coverage : DataFrame
        :func:`coverage_table` rows (every condition).
    headline : (interval kind, level) or None
        From :func:`headline_interval`.
    """
    methods = sorted(dict.fromkeys(group["method"]), key=method_rank)
    parameters = sorted(set(group["parameter"]), key=parameter_sort_key)
    frame = pd.DataFrame({"parameter": parameters})
    truth = group.drop_duplicates("parameter").set_index("parameter")["mean_truth"]
    # Off-diagonal covariances of axis-aligned truths are rounding noise around 0.
    frame["truth"] = [f"{0.0 if abs(truth[p]) < 1e-12 else truth[p]:.4g}" for p in parameters]
    for method in methods:
        rows = group[group["method"] == method].set_index("parameter")
        for measure, heading in (("bias", "bias"), ("empse", "EmpSE"), ("rmse", "RMSE")):
            frame[f"{method} {heading}"] = [
                format_mcse(rows.at[p, measure], rows.at[p, f"{measure}_mcse"])
                if p in rows.index
                else ""
                for p in parameters
            ]
        if headline is not None:
            headline_kind, level = headline
            scored = coverage[
                (coverage["condition_id"] == group["condition_id"].iloc[0])
                & (coverage["method"] == method)
                & (coverage["level"] == level)
            ]
            kinds = list(dict.fromkeys(scored["interval"]))
            # a posterior shows its headline kind; EM every interval method it was scored with
            for kind in [headline_kind] if headline_kind in kinds else kinds:
                cov = scored[scored["interval"] == kind].set_index("parameter")
                frame[f"{method} coverage {kind} {level:.0%}"] = [
                    format_mcse(cov.at[p, "coverage"], cov.at[p, "coverage_mcse"])
                    if p in cov.index
                    else ""
                    for p in parameters
                ]
        if "relprec" in rows.columns and rows["relprec"].notna().any():
            frame[f"{method} precision vs EM (%)"] = [
                format_mcse(rows.at[p, "relprec"], rows.at[p, "relprec_mcse"])
                if p in rows.index
                else ""
                for p in parameters
            ]
    return frame


_NUMBER = re.compile(r"^-?[\d.]+(e[-+]?\d+)?( \(-?[\d.]+(e[-+]?\d+)?\))?$")


def display_cell(value: object) -> str:
    """A table value as shown: 4 significant digits, blank for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def column_kinds(rows: Sequence[Sequence[str]], n_columns: int) -> list[str]:
    """``"num"`` for columns of numbers (optionally with an MCSE in brackets), else ``"text"``.

    Parameters
    ----------
    rows : sequence of sequence of str
        Displayed cells, as from :func:`display_cell`.
    n_columns : int
    """
    return [
        "num" if all(_NUMBER.match(row[j]) for row in rows if row[j]) else "text"
        for j in range(n_columns)
    ]


# ------------------------------------------------------------------ choosing K
#: Outcomes of a chosen K against the truth, in display order (as in workbench.study.choose_k,
#: which the report must not import: it would pull in the fitting layers).
SELECTION_OUTCOMES: tuple[str, ...] = ("under", "correct", "over")
#: Criteria in display order: EM's, then the Bayesian ones.
SELECTION_CRITERIA_ORDER: tuple[str, ...] = ("bic", "icl", "aic", "loo", "loo_stacking", "sparse")


def _criterion_rank(criterion: str) -> tuple[int, str]:
    order = SELECTION_CRITERIA_ORDER
    return (order.index(criterion) if criterion in order else len(order), criterion)


def selection_accuracy(choices: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """Per condition and criterion: the share of replications choosing under, at and over K.

    Parameters
    ----------
    choices : DataFrame
        The store's ``selection_choices`` table (``condition_id, replication, criterion,
        chosen_k, true_k, outcome``).
    conditions : DataFrame
        The store's ``conditions`` (``condition_id, label``).

    Returns
    -------
    DataFrame
        One row per condition and criterion: ``condition_id, condition, criterion, n_sim,
        correct, correct_mcse, under, under_mcse, over, over_mcse, mean_chosen_k``. Each
        share is a proportion over the ``n_sim`` replications where the criterion chose,
        with MCSE ``sqrt(p (1 - p) / n_sim)`` (:func:`workbench.study.summaries.proportion`).
    """
    columns = ["condition_id", "criterion", "n_sim"]
    for name in ("correct", "under", "over"):
        columns += [name, f"{name}_mcse"]
    columns.append("mean_chosen_k")
    rows = []
    for (condition_id, criterion), group in choices.groupby(["condition_id", "criterion"]):
        row: dict[str, object] = {
            "condition_id": condition_id,
            "criterion": criterion,
            "n_sim": len(group),
        }
        for name in ("correct", "under", "over"):
            share = proportion((group["outcome"] == name).to_numpy())
            row[name], row[f"{name}_mcse"] = share.value, share.mcse
        row["mean_chosen_k"] = float(group["chosen_k"].mean())
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    frame["_rank"] = frame["criterion"].map(_criterion_rank)
    frame = frame.sort_values(["condition_id", "_rank"]).drop(columns="_rank")
    return _with_labels(frame, conditions).reset_index(drop=True)


def selection_display(accuracy: pd.DataFrame) -> pd.DataFrame:
    """:func:`selection_accuracy` as strings: each share with its MCSE in brackets."""
    out = pd.DataFrame(
        {
            "condition": accuracy["condition"],
            "criterion": accuracy["criterion"],
            "replications": accuracy["n_sim"].astype(int),
        }
    )
    for name in ("correct", "under", "over"):
        out[f"{name} K"] = [
            format_mcse(v, m) for v, m in zip(accuracy[name], accuracy[f"{name}_mcse"], strict=True)
        ]
    out["mean chosen K"] = accuracy["mean_chosen_k"].map(lambda v: f"{v:.2f}")
    return out


def chosen_k_distribution(choices: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """How many replications chose each K, per condition and criterion.

    Returns
    -------
    DataFrame
        ``condition_id, condition, criterion, true_k``, then one column ``K=k`` per chosen
        K seen (counts of replications).
    """
    if choices.empty:
        return pd.DataFrame(columns=["condition_id", "condition", "criterion", "true_k"])
    counts = (
        choices.groupby(["condition_id", "criterion", "true_k", "chosen_k"])
        .size()
        .unstack("chosen_k", fill_value=0)
    )
    counts.columns = [f"K={int(k)}" for k in counts.columns]
    frame = counts.reset_index()
    frame["_rank"] = frame["criterion"].map(_criterion_rank)
    frame = frame.sort_values(["condition_id", "_rank"]).drop(columns="_rank")
    return _with_labels(frame, conditions).reset_index(drop=True)


def pareto_k_warnings(scores: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """Every Bayesian per-K fit with observations above the Pareto-k threshold.

    Parameters
    ----------
    scores : DataFrame
        The store's ``selection_scores``.
    conditions : DataFrame

    Returns
    -------
    DataFrame
        ``condition_id, condition, replication, n_components, n_high_pareto_k,
        pareto_k_threshold``, one row per fit with ``n_high_pareto_k > 0`` (none dropped).
    """
    columns = ["condition_id", "replication", "n_components", "n_high_pareto_k"]
    bayes = scores[scores["method"] == "bayes"]
    wide = bayes.pivot_table(
        index=["condition_id", "replication", "n_components"],
        columns="criterion",
        values="value",
        aggfunc="first",
    ).reset_index()
    if wide.empty or "n_high_pareto_k" not in wide:
        return _with_labels(pd.DataFrame(columns=[*columns, "pareto_k_threshold"]), conditions)
    flagged = wide[wide["n_high_pareto_k"] > 0][[*columns, "pareto_k_threshold"]]
    flagged = flagged.astype({"n_high_pareto_k": int, "n_components": int})
    return _with_labels(flagged.sort_values(columns[:3]), conditions).reset_index(drop=True)
