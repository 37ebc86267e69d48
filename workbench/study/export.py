"""Read a study's store as tidy tables: task status and a long results table for pandas or R."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pandas as pd

from workbench.simulate import Scenario
from workbench.study.store import StudyStore

__all__ = ["status_table", "tidy_results", "write_results"]

_KEY = ["condition_id", "replication"]
RESULT_FORMATS: tuple[str, ...] = ("csv", "parquet")


def status_table(store: StudyStore, replications: int | None = None) -> pd.DataFrame:
    """Done, failed and remaining tasks per condition.

    Parameters
    ----------
    store : StudyStore
    replications : int, optional
        Replications per condition; default: the number in the stored config.

    Returns
    -------
    DataFrame
        One row per condition: ``condition_id``, ``label``, ``ok``, ``failed``,
        ``remaining`` (``ok + failed + remaining = replications``; tasks stored beyond
        ``replications`` are not counted).
    """
    if replications is None:
        replications = int(store.config()["replications"])
    conditions = store.table("conditions")[["condition_id", "label"]]
    tasks = store.table("tasks")
    tasks = tasks[tasks["replication"] < replications]
    counts = (
        tasks.groupby(["condition_id", "status"]).size().unstack("status", fill_value=0)
        if len(tasks)
        else pd.DataFrame()
    )
    out = conditions.set_index("condition_id")
    for status in ("ok", "failed"):
        out[status] = counts[status] if status in counts else 0
    out = out.fillna({"ok": 0, "failed": 0}).astype({"ok": int, "failed": int})
    out["remaining"] = replications - out["ok"] - out["failed"]
    return out.reset_index()


def _scenario_columns(store: StudyStore) -> pd.DataFrame:
    conditions = store.conditions()
    order = [f.name for f in fields(Scenario)]
    rows = []
    for condition_id, label, scenario in conditions.itertuples(index=False):
        keys = sorted(scenario, key=order.index)  # Scenario's field order, not JSON's
        flat = {
            key: json.dumps(scenario[key])
            if isinstance(scenario[key], list | dict)
            else scenario[key]
            for key in keys
        }
        rows.append({"condition_id": condition_id, "condition": label, **flat})
    return pd.DataFrame(rows)


def tidy_results(store: StudyStore) -> pd.DataFrame:
    """All stored results in long form: one row per task, method and metric or parameter.

    Parameters
    ----------
    store : StudyStore

    Returns
    -------
    DataFrame
        Columns: ``condition_id``, ``condition`` (label), every scenario field,
        ``replication``, ``seed``, ``method``, ``fit_status``, ``quantity``
        (``'metric'``, ``'parameter'``, ``'diagnostic'`` or ``'failure'``), ``name`` (the
        metric, parameter or diagnostic; the error message for a failure), ``kind``
        (parameter type), ``value`` (metric or numeric diagnostic), ``text`` (a
        diagnostic that is text), ``truth``, ``estimate``, ``sd``, per interval kind and
        level ``{kind}{level}_lower``, ``_upper``, ``_covered`` (e.g. ``central95_lower``,
        ``sandwich-wald95_covered``), and per EM standard-error method ``se_{method}``
        (e.g. ``se_hessian``, ``se_bootstrap``). An SE method that failed leaves its
        column empty on that fit's rows, and its reason is the diagnostic
        ``se_error_{method}``.
        Tasks whose simulation failed have one ``'failure'`` row with an empty method.
        Studies with ``truth = "prior"`` add one ``'sbc_rank'`` row per ranked quantity of
        each Bayes fit: ``value`` is the rank, ``sbc_n_draws`` the number of kept draws
        ``L`` and ``sbc_ess_bulk`` the ESS that set it (store table ``sbc_ranks``).

        Studies with ``[selection]`` add ``'selection_score'`` rows (``method`` ``em``,
        ``bayes`` or ``sparse``, ``name`` the criterion, ``kind`` the covariance type,
        ``fitted_k`` the K of the fit (``n_components`` is the scenario's true K),
        ``value``), ``'selection_choice'`` rows (``name`` the criterion, ``chosen_k``,
        ``true_k``, ``outcome``, ``kind`` the chosen covariance type) and
        ``'selection_failure'`` rows (``name`` the error, ``fitted_k``); their
        ``fit_status`` is empty.
    """
    tasks = store.table("tasks")[[*_KEY, "seed", "status", "error"]]
    fits = store.table("fits")[[*_KEY, "method", "status", "error"]].rename(
        columns={"status": "fit_status"}
    )
    metrics = store.table("metrics").rename(columns={"metric": "name"})
    metrics["quantity"] = "metric"

    estimates = store.table("estimates").rename(columns={"parameter": "name"})
    estimates["quantity"] = "parameter"
    intervals = store.table("intervals")
    if len(intervals):
        intervals["column"] = intervals["interval"] + intervals["level"].map(
            lambda level: f"{100 * level:g}"
        )
        wide = intervals.pivot_table(
            index=[*_KEY, "method", "parameter"],
            columns="column",
            values=["lower", "upper", "covered"],
            aggfunc="first",
        )
        wide.columns = [f"{column}_{bound}" for bound, column in wide.columns]
        wide = wide[sorted(wide.columns)].reset_index().rename(columns={"parameter": "name"})
        estimates = estimates.merge(wide, on=[*_KEY, "method", "name"], how="left")
    errors = store.table("standard_errors")
    if len(errors):
        wide = errors.pivot_table(
            index=[*_KEY, "method", "parameter"], columns="se_method", values="se", aggfunc="first"
        )
        wide.columns = [f"se_{se_method}" for se_method in wide.columns]
        wide = wide.reset_index().rename(columns={"parameter": "name"})
        estimates = estimates.merge(wide, on=[*_KEY, "method", "name"], how="left")

    diagnostics = store.table("diagnostics").rename(columns={"key": "name"})
    numeric = diagnostics["value"].map(lambda v: isinstance(v, int | float))
    diagnostics["text"] = diagnostics["value"].where(~numeric)
    diagnostics["value"] = pd.to_numeric(diagnostics["value"].where(numeric))
    diagnostics["quantity"] = "diagnostic"

    ranks = store.table("sbc_ranks").rename(
        columns={
            "quantity": "name",
            "rank": "value",
            "n_draws": "sbc_n_draws",
            "ess_bulk": "sbc_ess_bulk",
            "total_draws": "sbc_total_draws",
        }
    )
    ranks["quantity"] = "sbc_rank"

    failed_fits = fits[fits["fit_status"] == "failed"][[*_KEY, "method", "error"]]
    failed_fits = failed_fits.rename(columns={"error": "name"}).assign(quantity="failure")
    failed_tasks = tasks[(tasks["status"] == "failed")].merge(
        fits[_KEY].drop_duplicates(), on=_KEY, how="left", indicator=True
    )
    failed_sims = failed_tasks[failed_tasks["_merge"] == "left_only"][[*_KEY, "error"]]
    failed_sims = failed_sims.rename(columns={"error": "name"}).assign(
        quantity="failure", method=""
    )

    selection = _selection_rows(store)
    long = pd.concat(
        [metrics, estimates, diagnostics, failed_fits, failed_sims]
        + ([ranks] if len(ranks) else []),
        ignore_index=True,
        sort=False,
    )
    long = long.merge(fits[[*_KEY, "method", "fit_status"]], on=[*_KEY, "method"], how="left")
    if len(selection):
        long = pd.concat([long, selection], ignore_index=True, sort=False)
    long = long.merge(tasks[[*_KEY, "seed"]], on=_KEY, how="left")
    scenarios = _scenario_columns(store)
    long = long.merge(scenarios, on="condition_id", how="left")
    front = [
        "condition_id",
        "condition",
        *[c for c in scenarios.columns if c not in ("condition_id", "condition")],
        "replication",
        "seed",
        "method",
        "fit_status",
        "quantity",
        "name",
        "kind",
        "value",
        "text",
        "truth",
        "estimate",
        "sd",
    ]
    for column in front:
        if column not in long:
            long[column] = None
    rest = sorted(c for c in long.columns if c not in front)
    order = {
        "metric": 0,
        "parameter": 1,
        "diagnostic": 2,
        "sbc_rank": 3,
        "failure": 4,
        "selection_score": 5,
        "selection_choice": 6,
        "selection_failure": 7,
    }
    long["_order"] = long["quantity"].map(order)
    long = long.sort_values([*_KEY, "method", "_order", "name"], kind="stable")
    return long[front + rest].reset_index(drop=True)


def _selection_rows(store: StudyStore) -> pd.DataFrame:
    """The ``selection_*`` tables in the long format of :func:`tidy_results`."""
    if store.config().get("selection") is None:
        return pd.DataFrame()
    # n_components would collide with the scenario's (true) n_components column
    scores = store.table("selection_scores").rename(
        columns={"criterion": "name", "covariance_type": "kind", "n_components": "fitted_k"}
    )
    scores["quantity"] = "selection_score"
    choices = store.table("selection_choices").rename(
        columns={"criterion": "name", "covariance_type": "kind"}
    )
    choices["quantity"] = "selection_choice"
    failures = store.table("selection_failures").rename(
        columns={"error": "name", "covariance_type": "kind", "n_components": "fitted_k"}
    )
    failures["quantity"] = "selection_failure"
    frames = [f for f in (scores, choices, failures) if len(f)]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def write_results(store: StudyStore, path: Path, fmt: str) -> int:
    """Write :func:`tidy_results` to ``path`` as CSV or Parquet.

    Parameters
    ----------
    store : StudyStore
    path : Path
    fmt : {'csv', 'parquet'}

    Returns
    -------
    int
        Number of rows written.
    """
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; use one of {', '.join(RESULT_FORMATS)}")
    table = tidy_results(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return len(table)
