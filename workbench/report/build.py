"""Build the comparison report of a stored study: ``index.html``, ``report.md``, CSV tables.

The report reads the study's store (:class:`workbench.study.store.StudyStore`) and fits
nothing. It writes into the output folder (by default the study's own folder,
``reports/<study>/``)::

    index.html          opens from disk: images are relative paths, CSS is inline
    report.md           the same content as Markdown
    figures/*.png       every plot
    tables/*.csv        every table, unformatted (full precision), for pandas or R

Selected fits (by default the first kept replication of each condition) get the detailed
plots: the data with the fitted components, the posterior of each parameter against the EM
estimate and the truth, and EM's lower bound and components moving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import xarray as xr
from arviz_base.labels import NoVarLabeller

from workbench.align import align_posterior
from workbench.bayes.priors import BayesPriors
from workbench.mixture import MixtureParams, flatten_parameters, parameter_names
from workbench.report import plots, tables
from workbench.report.figures import FigureWriter, Plot
from workbench.simulate import Scenario
from workbench.study.locate import stored_study_directory
from workbench.study.seeds import PriorTruth, regenerate_dataset
from workbench.study.store import DrawsUnavailableError, StoreError, StudyStore, ensure_folder

__all__ = ["build_report"]

#: Largest figures of the recovery section: conditions in one bias figure (three rows of
#: three panels), parameters in one coverage figure (beyond it, one per parameter type).
_PANELS_PER_FIGURE = 9
_ROWS_PER_FIGURE = 30
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("workbench.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class _Table:
    """A formatted table: strings ready for HTML and Markdown, and where its CSV lives."""

    title: str
    frame: pd.DataFrame
    csv: str
    note: str = ""

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    @property
    def rows(self) -> list[list[str]]:
        return [[tables.display_cell(v) for v in row] for row in self.frame.itertuples(index=False)]

    @property
    def align(self) -> list[str]:
        """``"num"`` for columns of numbers (optionally with an MCSE), else ``"text"``."""
        return tables.column_kinds(self.rows, len(self.columns))

    @property
    def markdown(self) -> str:
        return tables.to_markdown(pd.DataFrame(self.rows, columns=self.columns))


@dataclass(frozen=True)
class _Figure:
    src: str
    alt: str
    caption: str


@dataclass
class _SelectedFit:
    title: str
    figures: list[_Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_report(
    study: str | os.PathLike[str],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    selected: Sequence[tuple[int, int]] | None = None,
    workers: int = 1,
) -> Path:
    """Write the comparison report of a stored study and return the path of its HTML page.

    Parameters
    ----------
    study : path-like
        The study's TOML file (its ``[output] dir``, default ``reports/<name>/``, holds the
        results) or the output folder itself.
    output_dir : path-like, optional
        Where to write the report; default the study's output folder.
    selected : sequence of (condition_id, replication), optional
        Fits that get the detailed plots. Default: per condition, the first replication
        whose data and draws were kept (``[output] keep_draws``), else the first stored
        one.
    workers : int, default 1
        Processes drawing the figures side by side; 0 or 1 draws them in this process,
        which was faster on a busy 2-core machine (see :mod:`workbench.report.figures`).

    Returns
    -------
    pathlib.Path
        ``output_dir / "index.html"``.

    Raises
    ------
    ValueError
        If the study has no stored results, or ``selected`` names a task that is not
        stored.
    """
    directory = stored_study_directory(study)
    out = directory if output_dir is None else Path(output_dir)
    ensure_folder(out / "figures")
    ensure_folder(out / "tables")
    with FigureWriter(workers) as writer, StudyStore(directory) as store:
        report = _Report(store, out, writer)
        context = report.context(selected)
    # Figures of an earlier build that this one did not draw (another selection) would be
    # stale files next to the report; remove them.
    for path in (out / "figures").glob("*.png"):
        if path.name not in report.saved:
            path.unlink()
    for name, template in (("index.html", "report.html.j2"), ("report.md", "report.md.j2")):
        text = _TEMPLATES.get_template(template).render(**context)
        (out / name).write_text(text, encoding="utf-8")
    return out / "index.html"


class _Report:
    """Reads the store once and turns it into the template's context."""

    def __init__(self, store: StudyStore, out: Path, writer: FigureWriter) -> None:
        self.store = store
        self.out = out
        self.writer = writer
        self.meta = store.metadata()
        self.config = json.loads(self.meta["config"])
        self.conditions = store.conditions()
        self.tasks = store.table("tasks")
        self.fits = store.table("fits")
        self.metrics = store.table("metrics")
        self.estimates = store.table("estimates")
        self.intervals = store.table("intervals")
        self.standard_errors = store.table("standard_errors")
        self.diagnostics = store.table("diagnostics")
        self.em_traces = store.table("em_traces")
        self.sbc_ranks = store.table("sbc_ranks")
        self.ordered_intervals = store.table("ordered_intervals")
        self.labels = dict(
            zip(self.conditions["condition_id"], self.conditions["label"], strict=True)
        )
        self.saved: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _csv(self, frame: pd.DataFrame, name: str) -> None:
        frame.to_csv(self.out / "tables" / f"{name}.csv", index=False)

    def _save(self, plot: Plot, name: str, alt: str, caption: str) -> _Figure:
        rel = f"figures/{name}.png"
        self.writer.submit(plot, self.out / rel)
        self.saved.add(f"{name}.png")
        return _Figure(rel, alt, caption)

    # ------------------------------------------------------------------ context
    def context(self, selected: Sequence[tuple[int, int]] | None) -> dict[str, Any]:
        flagged = tables.flagged_fits(self.tasks, self.fits, self.diagnostics, self.conditions)
        self._csv(flagged, "flagged")
        loglik_tables = self._loglik()
        recovery_tables, recovery_figures = self._recovery()
        interval_tables = self._interval_tables()
        diagnostics_tables = self._diagnostics()
        selection = self._selection(selected)
        choose_k = self._choose_k(selection)
        return {
            "choose_k": choose_k,
            "study": self._study_summary(),
            "flagged": _Table(
                "Flagged fits",
                flagged.drop(columns="condition_id"),
                "tables/flagged.csv",
            ),
            "n_flagged_fits": int(
                flagged[["condition_id", "replication", "method"]].drop_duplicates().shape[0]
            ),
            "loglik_tables": loglik_tables,
            "recovery_tables": recovery_tables,
            "recovery_figures": recovery_figures,
            "interval_tables": interval_tables,
            "diagnostics_tables": diagnostics_tables,
            "calibration": self._calibration(),
            "selected_fits": [self._selected_fit(c, r) for c, r in selection],
            "colors": {
                plots.ROLE_LABELS[role]: plots.ROLE_COLORS[role]
                for role in plots.ROLES
                if role == "truth" or role in set(self.fits["method"])
            },
            "thresholds": {"rhat": tables.RHAT_MAX, "ess": tables.ESS_PER_CHAIN},
        }

    def _study_summary(self) -> dict[str, Any]:
        replications = int(self.config.get("replications", 0))
        expected = len(self.conditions) * replications
        done = int((self.tasks["status"] == "ok").sum())
        failed = int((self.tasks["status"] == "failed").sum())
        return {
            "name": self.meta["name"],
            "description": self.config.get("description", ""),
            "created_at": self.meta["created_at"],
            "updated_at": self.meta["updated_at"],
            "config_hash": self.meta["config_hash"],
            "config_toml": self.meta["config_toml"],
            "versions": json.loads(self.meta["versions"]),
            "n_conditions": len(self.conditions),
            "replications": replications,
            "methods": sorted(self.fits["method"].unique(), key=tables.method_rank),
            "n_expected": expected,
            "n_ok": done,
            "n_failed": failed,
            "n_remaining": max(expected - done - failed, 0),
            "conditions": [{"id": int(c), "label": label} for c, label in self.labels.items()],
        }

    def _loglik(self) -> list[_Table]:
        long = tables.loglik_table(self.metrics, self.fits, self.diagnostics, self.conditions)
        diffs = tables.metric_differences(self.metrics, self.conditions)
        self._csv(long, "metrics")
        self._csv(diffs, "loglik_differences")
        both = pd.concat([long, diffs], ignore_index=True)
        misspecified = any(
            scenario.get("misspecification", "none") != "none"
            for scenario in self.conditions["scenario"]
        )
        frame = tables.loglik_display(both, self.labels, misspecified=misspecified)
        note = tables.loglik_note(misspecified=misspecified)
        return [_Table("Log-likelihoods", frame, "tables/metrics.csv", note)]

    def _recovery(self) -> tuple[list[_Table], list[_Figure]]:
        recovery = tables.recovery_table(self.estimates, self.conditions)
        coverage = tables.coverage_table(self.estimates, self.intervals, self.conditions)
        self._csv(recovery, "recovery")
        self._csv(coverage, "coverage")
        figures = []
        # Bias: one figure per parameter type, its conditions side by side on one x scale;
        # a study with many conditions gets several figures of at most _PANELS_PER_FIGURE.
        for kind, group in _by_kind(recovery):
            ids = sorted(group["condition_id"].unique())
            parts = [
                ids[i : i + _PANELS_PER_FIGURE] for i in range(0, len(ids), _PANELS_PER_FIGURE)
            ]
            for part in parts:
                suffix = "" if len(parts) == 1 else f"-c{part[0]:03d}"
                shown = ", ".join(self.labels[c] for c in part) if len(parts) > 1 else ""
                figures.append(
                    self._save(
                        Plot(plots.plot_bias, (group[group["condition_id"].isin(part)],)),
                        f"bias-{kind}{suffix}",
                        f"Forest plot of the bias of the {kind} parameters per condition and "
                        "method",
                        f"Bias of each {kind} parameter (estimate minus truth, averaged over "
                        "replications) with ±1.96 Monte Carlo SE"
                        + (f", for {shown}" if shown else "")
                        + ". Bayes is the posterior mean.",
                    )
                )
        # Coverage: one figure per condition (EM's interval methods beside the posterior's
        # make every condition in one figure too tall to read), and per parameter type
        # when a condition has more parameters than a figure shows legibly.
        for condition_id, group in coverage.groupby("condition_id", sort=True):
            label = self.labels[condition_id]
            if group["parameter"].nunique() <= _ROWS_PER_FIGURE:
                pieces = [("", group)]
            else:
                pieces = [(f"-{kind}", part) for kind, part in _by_kind(group)]
            for suffix, part in pieces:
                what = f" of the {suffix[1:]} parameters" if suffix else ""
                figures.append(
                    self._save(
                        Plot(plots.plot_coverage, (part,)),
                        f"coverage-c{condition_id:03d}{suffix}",
                        f"Coverage of credible and confidence intervals{what}, {label}",
                        f"{label}: share of replications whose interval contains the truth"
                        f"{what}, with ±1.96 MCSE, one marker per interval method (EM "
                        "vermillion, Bayes blue). The black line is the nominal level; the grey "
                        "band is where exactly calibrated intervals would fall 95% of the time.",
                    )
                )
        headline = tables.headline_interval(coverage)
        result = []
        for condition_id, group in recovery.groupby("condition_id", sort=True):
            result.append(
                _Table(
                    self.labels[condition_id],
                    tables.recovery_display(group, coverage, headline),
                    "tables/recovery.csv",
                )
            )
        return result, figures

    def _interval_tables(self) -> list[_Table]:
        """Coverage, ModSE/EmpSE and width per interval method, when EM intervals exist."""
        table = tables.interval_table(
            self.estimates, self.intervals, self.standard_errors, self.conditions
        )
        self._csv(table, "intervals")
        if not (table["method"] == "em").any():
            return []
        levels = sorted(table["level"].unique())
        level = 0.95 if 0.95 in levels else float(levels[-1])
        return [
            _Table(
                self.labels[condition_id],
                tables.interval_display(group, level),
                "tables/intervals.csv",
            )
            for condition_id, group in table.groupby("condition_id", sort=True)
        ]

    def _diagnostics(self) -> list[_Table]:
        per_fit = tables.fit_diagnostics(self.diagnostics)
        per_fit = self.tasks[["condition_id", "replication", "seed"]].merge(
            per_fit, on=["condition_id", "replication"], how="right"
        )
        self._csv(per_fit, "fit_diagnostics")
        result = []
        bayes = tables.bayes_diagnostics_table(self.diagnostics, self.conditions)
        if len(bayes):
            self._csv(bayes, "diagnostics_bayes")
            shown = bayes.drop(columns="condition_id").rename(
                columns=tables.BAYES_DIAGNOSTIC_HEADINGS
            )
            result.append(
                _Table(
                    "MCMC diagnostics",
                    shown,
                    "tables/diagnostics_bayes.csv",
                    "r_hat and ESS are the worst over all parameters of a fit; the table gives "
                    "the worst fit of each condition. Per-fit values: tables/fit_diagnostics.csv.",
                )
            )
        em = tables.em_diagnostics_table(self.diagnostics, self.conditions)
        if len(em):
            self._csv(em, "diagnostics_em")
            shown = em.drop(columns="condition_id").rename(columns=tables.EM_DIAGNOSTIC_HEADINGS)
            result.append(_Table("EM convergence", shown, "tables/diagnostics_em.csv"))
        return result

    # ------------------------------------------------------------------ calibration
    def _calibration(self) -> dict[str, Any] | None:
        """The "Calibration" section: SBC uniformity, its plots and prior-averaged coverage.

        None when the study stored no SBC ranks (its truth was not drawn from the prior).
        """
        if self.sbc_ranks.empty:
            return None
        # SBC needs workbench.bayes.calibration, which imports PyMC: only for SBC studies
        from workbench.report import calibration_plots, calibration_tables

        cases = calibration_tables.rank_cases(self.sbc_ranks, self.fits)
        uniformity = calibration_tables.uniformity_table(cases, self.conditions)
        all_intervals = pd.concat(
            [
                self.ordered_intervals,
                calibration_tables.point_interval_rows(
                    self.intervals, self.estimates, set(self.ordered_intervals["method"])
                ),
            ],
            ignore_index=True,
        )
        coverage = calibration_tables.prior_coverage_table(all_intervals, self.conditions)
        pooled = calibration_tables.pooled_prior_coverage_table(all_intervals, self.conditions)
        self._csv(uniformity, "sbc_uniformity")
        self._csv(coverage, "prior_coverage")
        self._csv(pooled, "prior_coverage_pooled")
        figures = []
        for case in cases:
            stem = f"c{case.condition_id:03d}-{case.method}"
            label = f"{self.labels[case.condition_id]} ({case.method})"
            pairs = list(zip(case.table.quantities, case.table.kinds, strict=True))
            for group, members in _SBC_GROUPS.items():
                names = [q for q, kind in pairs if kind in members]
                if not names:
                    continue
                figures.append(
                    self._save(
                        Plot(
                            calibration_plots.plot_sbc_ecdf,
                            (case.table,),
                            {"quantities": names},
                        ),
                        f"sbc-ecdf-{stem}-{group}",
                        f"SBC ECDF differences of the {group} of {label}",
                        f"{label}, {group}: ECDF of the fractional SBC ranks minus the uniform "
                        "CDF, with the 95% simultaneous band of uniform ranks "
                        f"({case.table.ranks.shape[0]} simulations).",
                    )
                )
            bins = calibration_tables.uniformity_bins(case.table.ranks.shape[0])
            if bins is not None:
                figures.append(
                    self._save(
                        Plot(
                            calibration_plots.plot_rank_histograms, (case.table,), {"n_bins": bins}
                        ),
                        f"sbc-hist-{stem}",
                        f"SBC rank histograms of {label}",
                        f"{label}: ranks in {bins} equally likely bins; the grey band is the "
                        "central 99% range of a bin count under uniformity.",
                    )
                )
        n_flagged = int(uniformity["flagged"].sum())
        n_off = int((~coverage["within_2_mcse"]).sum()) if len(coverage) else 0
        return {
            "uniformity": _Table(
                "Uniformity of the SBC ranks",
                calibration_tables.uniformity_display(uniformity),
                "tables/sbc_uniformity.csv",
                "Pearson chi-square test per quantity over the simulations (bins: the largest "
                "divisor of the rank resolution with 5 expected ranks per bin), Bonferroni "
                f"over the quantities of a case; flagged when the adjusted p < "
                f"{calibration_tables.CALIBRATION_ALPHA}. L is the number of thinned draws "
                "(about the bulk ESS).",
            ),
            "pooled": _Table(
                "Coverage averaged over the prior, pooled over parameters",
                calibration_tables.pooled_coverage_display(pooled),
                "tables/prior_coverage_pooled.csv",
                "Each simulation's share of covering intervals (all parameters of the fit), "
                "averaged over the simulations; MCSE over the simulations, so the correlation "
                "between the parameters of one fit is allowed for. * marks more than 2 MCSEs "
                "from nominal. A shortfall shared by all parameters shows here first.",
            ),
            "coverage": _Table(
                "Coverage averaged over the prior (ordered labelling)",
                calibration_tables.coverage_display(coverage),
                "tables/prior_coverage.csv",
                "Bayes: central intervals from all raw draws on the model's ordered labelling "
                "against the sorted truth. EM interval methods ('em sandwich-wald', ...): their "
                "confidence intervals aligned to the truth, as in Parameter recovery. Coverage "
                "(MCSE); * marks a cell more than 2 MCSEs (at the nominal level) from the "
                "nominal level: about 5% of cells by chance.",
            ),
            "figures": figures,
            "n_flagged": n_flagged,
            "n_tests": len(uniformity),
            "n_coverage_off": n_off,
            "n_coverage": len(coverage),
        }

    # ------------------------------------------------------------------ choosing K
    def _choose_k(self, selected: Sequence[tuple[int, int]]) -> dict[str, Any] | None:
        """The "Choosing K" section, for studies with a ``[selection]`` table."""
        if self.config.get("selection") is None:
            return None
        choices = self.store.table("selection_choices")
        scores = self.store.table("selection_scores")
        failures = self.store.table("selection_failures")
        accuracy = tables.selection_accuracy(choices, self.conditions)
        distribution = tables.chosen_k_distribution(choices, self.conditions)
        pareto = tables.pareto_k_warnings(scores, self.conditions)
        self._csv(accuracy, "selection_accuracy")
        self._csv(distribution, "selection_chosen_k")
        self._csv(pareto, "selection_pareto_k")
        self._csv(failures, "selection_failures")
        result: dict[str, Any] = {
            "accuracy": _Table(
                "Share of replications choosing the true K",
                tables.selection_display(accuracy),
                "tables/selection_accuracy.csv",
                "Each share is over the replications in which the criterion chose, with its "
                "Monte Carlo SE sqrt(p (1 - p) / n) in brackets.",
            ),
            "distribution": _Table(
                "Chosen K (replications)",
                distribution.drop(columns="condition_id"),
                "tables/selection_chosen_k.csv",
            ),
            "pareto": _Table(
                "Bayesian fits with high Pareto k",
                pareto.drop(columns="condition_id"),
                "tables/selection_pareto_k.csv",
            ),
            "n_pareto_fits": len(pareto),
            "n_pareto_points": int(pareto["n_high_pareto_k"].sum()) if len(pareto) else 0,
            "n_bayes_fits": int(
                scores[(scores["method"] == "bayes") & (scores["criterion"] == "elpd_loo")].shape[0]
            ),
            "failures": _Table(
                "Failed K",
                failures.drop(columns="condition_id").assign(
                    error=failures["error"].map(lambda e: str(e).splitlines()[0][:120])
                ),
                "tables/selection_failures.csv",
            ),
            "figures": [],
        }
        factors = self._varying_factors()
        if factors and len(accuracy):
            scenario = pd.DataFrame(
                [
                    {"condition_id": c, **s}
                    for c, s in self.conditions[["condition_id", "scenario"]].itertuples(
                        index=False
                    )
                ]
            )
            joined = accuracy.merge(scenario[["condition_id", *factors]], on="condition_id")
            x, group = factors[0], (factors[1] if len(factors) > 1 else None)
            result["figures"].append(
                self._save(
                    Plot(plots.plot_selection_accuracy, (joined,), {"factor": x, "group": group}),
                    "selection-accuracy",
                    f"Share choosing the true K against {x}, per criterion",
                    f"Share of replications in which each criterion chose the true K, against "
                    f"{x}" + (f", one line per {group}" if group else "") + ", with ±1.96 MCSE.",
                )
            )
        for condition_id, replication in selected:
            task = scores[
                (scores["condition_id"] == condition_id) & (scores["replication"] == replication)
            ]
            if task.empty:
                continue
            true_k = int(
                self.conditions.set_index("condition_id").at[condition_id, "scenario"][
                    "n_components"
                ]
            )
            stem = f"c{condition_id:03d}-r{replication:04d}"
            result["figures"].append(
                self._save(
                    Plot(plots.plot_selection_curves, (task,), {"true_k": true_k}),
                    f"selection-{stem}",
                    f"Criteria by K for {self.labels[condition_id]}, replication {replication}",
                    f"{self.labels[condition_id]}, replication {replication}: BIC and ICL of "
                    "the EM fit at each K (lower is better)"
                    + (
                        "; PSIS-LOO elpd of the Bayesian fit at each K with ±1 SE (higher is "
                        "better), annotated with the number of observations above the Pareto-k "
                        "threshold"
                        if (task["method"] == "bayes").any()
                        else ""
                    )
                    + f". The vertical line is the true K = {true_k}.",
                )
            )
        return result

    def _varying_factors(self) -> list[str]:
        """Scenario fields that differ between conditions: the one with most levels first
        (ties: overlap first, then Scenario's field order), so it becomes the x axis."""
        scenarios = list(self.conditions["scenario"])
        order = [f.name for f in fields(Scenario) if f.name != "truth_seed"]
        levels = {k: len({json.dumps(s.get(k)) for s in scenarios}) for k in order}
        varying = [k for k in order if levels[k] > 1]
        return sorted(varying, key=lambda k: (-levels[k], k != "overlap", order.index(k)))

    # ------------------------------------------------------------------ selected fits
    def _selection(self, selected: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
        stored = {
            (int(c), int(r)): bool(k)
            for c, r, k in self.tasks[["condition_id", "replication", "kept"]].itertuples(
                index=False
            )
        }
        if selected is not None:
            chosen = [(int(c), int(r)) for c, r in selected]
            missing = [key for key in chosen if key not in stored]
            if missing:
                raise StoreError(
                    f"selected fits {missing} are not stored; stored (condition_id, "
                    f"replication) pairs are {sorted(stored)}"
                )
            return chosen
        chosen = []
        for condition_id in sorted({c for c, _ in stored}):
            reps = sorted(r for c, r in stored if c == condition_id)
            kept = [r for r in reps if stored[(condition_id, r)]]
            chosen.append((condition_id, (kept or reps)[0]))
        return chosen

    def _selected_fit(self, condition_id: int, replication: int) -> _SelectedFit:
        label = self.labels[condition_id]
        entry = _SelectedFit(f"{label}, replication {replication}")
        stem = f"c{condition_id:03d}-r{replication:04d}"
        params = self.store.load_params(condition_id, replication)
        truth = params.get("truth")
        if truth is None:
            entry.notes.append("The simulation failed: there is nothing to draw.")
            return entry
        X = self._training_data(condition_id, replication)
        entry.figures.append(
            self._save(
                Plot(
                    plots.plot_data_fit,
                    (X,),
                    {role: params.get(role) for role in ("truth", "em", "bayes", "advi")},
                ),
                f"data-{stem}",
                f"Training data of {label}, replication {replication}, with fitted components",
                "Training data with the true mixture, the EM estimate and the posterior mean.",
            )
        )
        for method in self.fits.loc[
            (self.fits["condition_id"] == condition_id)
            & (self.fits["replication"] == replication)
            & (self.fits["status"] == "ok"),
            "method",
        ]:
            if method == "em":
                entry.figures.append(self._em_figure(condition_id, replication, X, truth, stem))
            else:
                try:
                    figure = self._posterior_figure(condition_id, replication, method, truth, stem)
                except DrawsUnavailableError as exc:
                    # the rest of the report does not need the draws: say why this is missing
                    entry.notes.append(
                        f"The {method} posterior plot of this fit is unavailable: {exc}."
                    )
                    continue
                if figure is None:
                    entry.notes.append(
                        f"The {method} draws of this fit were not kept ([output] keep_draws)."
                    )
                else:
                    entry.figures.append(figure)
        return entry

    def _training_data(self, condition_id: int, replication: int) -> np.ndarray:
        try:
            return self.store.load_dataset(condition_id, replication)["X_train"]
        except KeyError:
            scenario = self.conditions.set_index("condition_id").at[condition_id, "scenario"]
            seed = int(
                self.tasks.loc[
                    (self.tasks["condition_id"] == condition_id)
                    & (self.tasks["replication"] == replication),
                    "seed",
                ].iloc[0]
            )
            prior = None
            if self.config.get("truth") == "prior":
                bayes = self.config["methods"]["bayes"]
                prior = PriorTruth(BayesPriors.from_dict(bayes["priors"]), bayes["covariance_type"])
            return regenerate_dataset(Scenario.from_dict(scenario), seed, prior=prior).X_train

    def _em_figure(
        self, condition_id: int, replication: int, X: np.ndarray, truth: MixtureParams, stem: str
    ) -> _Figure:
        trace = self.em_traces[
            (self.em_traces["condition_id"] == condition_id)
            & (self.em_traces["replication"] == replication)
            & (self.em_traces["method"] == "em")
        ].sort_values("iteration")
        try:
            history = self.store.load_em_history(condition_id, replication, "em")
        except KeyError:
            snapshots = []
        else:
            snapshots = [
                (i, MixtureParams(w, m, c))
                for i, (w, m, c) in enumerate(
                    zip(history["weights"], history["means"], history["covariances"], strict=True)
                )
            ]
        caption = "EM's lower bound (mean log-likelihood per point) after each iteration."
        if snapshots:
            caption += (
                " Right: the components after selected iterations (iteration 0 is the "
                "initialisation), fainter when earlier, against the truth."
            )
        return self._save(
            Plot(
                plots.plot_em_trace,
                (trace["lower_bound"].to_numpy(float),),
                {"snapshots": snapshots, "X": X, "truth": truth},
            ),
            f"em-{stem}",
            "EM lower bound per iteration and components moving",
            caption,
        )

    def _posterior_figure(
        self, condition_id: int, replication: int, method: str, truth: MixtureParams, stem: str
    ) -> _Figure | None:
        try:
            idata = self.store.load_draws(condition_id, replication, method)
        except KeyError:
            return None
        rows = self.estimates[
            (self.estimates["condition_id"] == condition_id)
            & (self.estimates["replication"] == replication)
        ]
        names = list(rows.loc[rows["method"] == method, "parameter"])
        posterior = _posterior_by_parameter(idata, truth, names)
        references = {}
        for role in ("em", "truth"):
            source = rows[rows["method"] == ("em" if role == "em" else method)]
            column = "estimate" if role == "em" else "truth"
            if len(source):
                values = source.set_index("parameter").loc[names, column].to_numpy(float)
                references[role] = xr.Dataset(
                    {"value": ("parameter", values)}, coords={"parameter": names}
                )
        em_interval, level = self._em_interval(condition_id, replication, names)
        plot = Plot(
            plots.plot_posterior_vs_point,
            (posterior,),
            {
                "em": references.get("em"),
                "truth": references.get("truth"),
                "em_interval": em_interval if "em" in references else None,
                "ci_prob": level,
                "labeller": NoVarLabeller(),
            },
        )
        caption = (
            f"Marginal posterior ({method}) of every parameter, aligned to the truth, with the "
            f"EM estimate and the true value; the blue bar is the {level:.0%} HDI."
        )
        if em_interval is not None:
            caption += f" The vermillion bar is EM's {em_interval.label.removeprefix('EM ')}."
        return self._save(
            plot,
            f"posterior-{stem}-{method}",
            f"Posterior densities of {method} against the EM estimate and the truth",
            caption,
        )

    def _em_interval(
        self, condition_id: int, replication: int, names: Sequence[str]
    ) -> tuple[plots.EMInterval | None, float]:
        """EM's interval for the posterior plot, and the level to draw both at.

        The sandwich Wald interval if it was scored (robust, and what ``workbench fit``
        prints), else the first EM interval method; at 95% if scored, else the highest
        level. Without EM intervals: (None, 0.94), ArviZ's usual level.
        """
        rows = self.intervals[
            (self.intervals["condition_id"] == condition_id)
            & (self.intervals["replication"] == replication)
            & (self.intervals["method"] == "em")
        ]
        if rows.empty:
            return None, 0.94
        kinds = list(dict.fromkeys(rows["interval"]))
        kind = "sandwich-wald" if "sandwich-wald" in kinds else kinds[0]
        levels = sorted(rows["level"].unique())
        level = 0.95 if 0.95 in levels else float(levels[-1])
        chosen = rows[(rows["interval"] == kind) & (rows["level"] == level)].set_index("parameter")
        if not set(names) <= set(chosen.index):
            return None, level
        bounds = {
            bound: xr.Dataset(
                {"value": ("parameter", chosen.loc[list(names), bound].to_numpy(float))},
                coords={"parameter": list(names)},
            )
            for bound in ("lower", "upper")
        }
        return plots.EMInterval(bounds["lower"], bounds["upper"], f"EM {kind} {level:.0%}"), level


def _by_kind(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of each parameter type (``kind``): weights, then means, then covariances."""
    groups = [(str(kind), group) for kind, group in frame.groupby("kind")]
    return sorted(groups, key=lambda g: min(map(plots.parameter_sort_key, g[1]["parameter"])))


# Parameter groups of the SBC ECDF plots, by the kinds of workbench.bayes.calibration.
_SBC_GROUPS: dict[str, tuple[str, ...]] = {
    "weights": ("weight",),
    "means": ("mean",),
    "covariances": ("variance", "covariance"),
    "log-likelihood": ("loglik",),
}


def _posterior_by_parameter(
    idata: xr.DataTree, truth: MixtureParams, names: Sequence[str]
) -> xr.Dataset:
    """Draws of every named scalar parameter, aligned to the truth as the scores were.

    The relabelled draws (``posterior_relabelled``, written by
    :class:`workbench.bayes.BayesFit`) are aligned by :func:`workbench.align.align_posterior`
    and flattened by :func:`workbench.metrics.flatten_parameters`, exactly as
    :func:`workbench.metrics.score_posterior` does.

    Returns
    -------
    Dataset
        One variable ``value`` with dims ``(chain, draw, parameter)``; ``parameter`` holds
        the store's names (``weight[k]``, ``mean[k,j]``, ``cov[k,i,j]``).
    """
    posterior = idata["posterior_relabelled"]
    weights, means, covariances = (
        posterior[name].transpose("chain", "draw", ...).to_numpy() for name in ("w", "mu", "cov")
    )
    n_chain, n_draw, k, d = means.shape
    aligned = align_posterior(
        weights.reshape(-1, k), means.reshape(-1, k, d), covariances.reshape(-1, k, d, d), truth
    )
    flat = flatten_parameters(aligned.weights, aligned.means, aligned.covariances)
    column = {p.name: i for i, p in enumerate(parameter_names(k, d))}
    unknown = [name for name in names if name not in column]
    if unknown:
        raise ValueError(
            f"stored parameter names {unknown} are not parameters of a {k}-component "
            f"{d}-feature mixture"
        )
    values = flat[:, [column[name] for name in names]].reshape(n_chain, n_draw, len(names))
    return xr.Dataset(
        {"value": (("chain", "draw", "parameter"), values)},
        coords={"parameter": list(names)},
    )
