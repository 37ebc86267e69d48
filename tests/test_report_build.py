"""The report builds from a stored study, opens in Chromium, and shows the store's numbers.

The stored study here is written through the store's own API (``StudyStore.write_task``)
with real simulated data and real scores (``workbench.metrics``), but synthetic fits: the
report must not care how a fit was made, and this keeps the test fast. Every kind of
problem the report must name is planted: a failed fit, an unconverged EM fit, a bad r_hat,
divergences, label switching, and EM standard errors that could not be computed. EM fits
carry synthetic Wald intervals (``hessian-wald``, ``sandwich-wald``) and their standard
errors, so EM's interval methods appear beside the posterior's.
"""

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import norm

from workbench.em import ConfidenceIntervals, EMHistory
from workbench.metrics import score_point_estimate, score_posterior
from workbench.mixture import MixtureParams, flatten_parameters, parameter_names
from workbench.report import build_report
from workbench.report.tables import format_mcse
from workbench.simulate import Scenario, simulate
from workbench.study.store import FitRecord, StoreError, StudyStore, TaskRecord

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCENARIOS = [
    Scenario(n_components=2, n_features=1, n_train=120, n_test=200, overlap=0.01),
    Scenario(n_components=2, n_features=2, n_train=150, n_test=200, covariance="full"),
]
REPLICATIONS = 4
LEVELS = (0.5, 0.9)
BIAS_FIGURES = ("bias-weight.png", "bias-mean.png", "bias-covariance.png")


def _perturbed(truth: MixtureParams, rng: np.random.Generator, scale: float) -> MixtureParams:
    weights = truth.weights + rng.normal(0, scale / 10, truth.n_components)
    weights = np.clip(weights, 0.05, None)
    weights /= weights.sum()
    means = truth.means + rng.normal(0, scale, truth.means.shape)
    covariances = truth.covariances * np.exp(rng.normal(0, scale / 2))
    return MixtureParams(weights, means, covariances)


def _draws(truth: MixtureParams, rng: np.random.Generator, chains: int, draws: int):
    s = chains * draws
    k, d = truth.n_components, truth.n_features
    weights = rng.dirichlet(truth.weights * 200, size=s)
    means = truth.means + rng.normal(0, 0.08, (s, k, d))
    covariances = truth.covariances * np.exp(rng.normal(0, 0.05, (s, 1, 1, 1)))
    return weights, means, covariances


def _idata(weights, means, covariances, chains: int) -> xr.DataTree:
    s, k, d = means.shape
    draws = s // chains
    # the layout of workbench.bayes.BayesFit.idata: relabelled draws in their own group
    relabelled = xr.Dataset(
        {
            "w": (("chain", "draw", "component"), weights.reshape(chains, draws, k)),
            "mu": (("chain", "draw", "component", "feature"), means.reshape(chains, draws, k, d)),
            "cov": (
                ("chain", "draw", "component", "feature", "feature_bis"),
                covariances.reshape(chains, draws, k, d, d),
            ),
        }
    )
    return xr.DataTree.from_dict({"posterior_relabelled": relabelled})


def _task(
    condition_id: int, replication: int, scenario: Scenario, *, bayes: bool = True
) -> TaskRecord:
    seed = 1000 * condition_id + replication
    rng = np.random.default_rng(seed)
    dataset = simulate(scenario, seed)
    truth = dataset.truth
    keep = replication == 0
    record = TaskRecord(
        condition_id=condition_id,
        replication=replication,
        seed=seed,
        status="ok",
        started_at="2026-11-30T10:00:00+00:00",
        finished_at="2026-11-30T10:00:01+00:00",
        seconds=1.0,
        worker="test:1",
        truth=truth,
        dataset=dataset if keep else None,
        kept=keep,
    )
    # EM: an estimate near the truth, its lower-bound trace and (kept) history, and Wald
    # intervals from synthetic standard errors; condition 0, replication 1 has no Hessian SEs
    estimate = _perturbed(truth, rng, 0.1)
    names = tuple(p.name for p in parameter_names(truth.n_components, truth.n_features))
    flat = flatten_parameters(estimate.weights, estimate.means, estimate.covariances)
    hessian_fails = bayes and condition_id == 0 and replication == 1
    ses = {
        se_method: 0.02 + factor * np.abs(flat)
        for se_method, factor in (("hessian", 0.05), ("sandwich", 0.08))
        if not (hessian_fails and se_method == "hessian")
    }
    intervals = [
        ConfidenceIntervals(
            names,
            flat,
            flat - norm.ppf(0.5 + level / 2) * se,
            flat + norm.ppf(0.5 + level / 2) * se,
            level,
            f"{se_method}-wald",
        )
        for se_method, se in ses.items()
        for level in LEVELS
    ]
    em_score = score_point_estimate(
        dataset,
        estimate,
        method="em",
        fit_seconds=0.1,
        intervals=intervals,
        standard_errors=ses,
    )
    n_iter = 6
    trace = -2.0 - np.exp(-np.arange(n_iter))
    converged = not (condition_id == 1 and replication == 2)
    history = None
    if keep:
        start = _perturbed(truth, rng, 1.0)
        steps = np.linspace(0, 1, n_iter + 1)
        history = EMHistory(
            lower_bound=np.concatenate([[trace[0] - 1], trace]),
            weights=np.stack([(1 - t) * start.weights + t * estimate.weights for t in steps]),
            means=np.stack([(1 - t) * start.means + t * estimate.means for t in steps]),
            covariances=np.stack(
                [(1 - t) * start.covariances + t * estimate.covariances for t in steps]
            ),
        )
    em = FitRecord(
        method="em",
        status="ok",
        fit_seconds=0.1,
        metrics=dict(em_score.metrics),
        estimates=list(em_score.estimates),
        standard_errors=list(em_score.standard_errors),
        diagnostics={
            "converged": converged,
            "n_iter": n_iter if converged else 100,
            "lower_bound": trace[-1],
            "n_init": 1,
            "inference_seconds": 0.01,
            **(
                {"se_error_hessian": "component 1 holds an effective 2.4 points (weight 0.02)"}
                if hessian_fails
                else {}
            ),
        },
        em_trace=trace,
        em_history=history,
        params=estimate,
    )
    if not bayes:
        record.fits = [em]
        return record
    if condition_id == 0 and replication == 3:
        bayes = FitRecord(
            method="bayes",
            status="failed",
            error="SamplingError: Initial evaluation of model at starting point failed!",
            traceback="Traceback (most recent call last):\n  ...",
            fit_seconds=0.5,
        )
        record.status = "failed"
        record.error = f"bayes fit failed: {bayes.error}"
        record.fits = [em, bayes]
        return record
    weights, means, covariances = _draws(truth, rng, chains=2, draws=60)
    b_score = score_posterior(
        dataset, weights, means, covariances, method="bayes", levels=LEVELS, fit_seconds=0.5
    )
    bad = condition_id == 1 and replication == 1
    bayes = FitRecord(
        method="bayes",
        status="ok",
        fit_seconds=0.5,
        metrics=dict(b_score.metrics),
        estimates=list(b_score.estimates),
        diagnostics={
            "max_r_hat": 1.2 if bad else 1.002 + 0.001 * replication,
            "min_ess_bulk": 35.0 if bad else 900.0 - replication,
            "min_ess_tail": 50.0 if bad else 800.0,
            "n_divergences": 7 if bad else 0,
            "n_max_treedepth": 0,
            "label_switching": int(bad),
            "sampler": "nutpie",
            "chains": 2,
            "started_at_em": 1,
            "sampling_seconds": 0.4,
            "compile_seconds": 0.0,
        },
        params=MixtureParams(weights.mean(0), means.mean(0), covariances.mean(0)),
        draws=_idata(weights, means, covariances, chains=2) if keep else None,
    )
    record.fits = [em, bayes]
    return record


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("study") / "reports" / "tiny"
    toml = 'name = "tiny"\nreplications = 4\n'
    store = StudyStore.create(
        directory,
        name="tiny",
        config_toml=toml,
        config={"name": "tiny", "replications": REPLICATIONS, "description": "A tiny study."},
        config_hash="0" * 64,
        conditions=[(s.label(), s.to_dict()) for s in SCENARIOS],
    )
    with store:
        for condition_id, scenario in enumerate(SCENARIOS):
            for replication in range(REPLICATIONS):
                store.write_task(_task(condition_id, replication, scenario))
    return directory


@pytest.fixture(scope="module")
def report(stored_study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return build_report(stored_study, output_dir=out)


def _sql(directory: Path, query: str) -> pd.DataFrame:
    with sqlite3.connect(directory / "study.db") as conn:
        return pd.read_sql_query(query, conn)


def test_report_writes_html_markdown_tables_and_figures(report):
    out = report.parent
    assert report.name == "index.html"
    assert (out / "report.md").is_file()
    for name in ("metrics", "recovery", "coverage", "flagged", "fit_diagnostics"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    # one bias figure per parameter type (its conditions side by side), one coverage
    # figure per condition
    assert {"bias-weight.png", "bias-mean.png", "bias-covariance.png"} <= set(figures)
    assert not any(name.startswith("bias") and name not in BIAS_FIGURES for name in figures)
    assert {"coverage-c000.png", "coverage-c001.png"} <= set(figures)
    # replication 0 of each condition is kept: data, EM and posterior plots for both
    for stem in ("c000-r0000", "c001-r0000"):
        assert f"data-{stem}.png" in figures
        assert f"em-{stem}.png" in figures
        assert f"posterior-{stem}-bayes.png" in figures
    html = report.read_text()
    for src in [s.split('"')[0] for s in html.split('src="')[1:]]:
        assert not src.startswith(("/", "http")), f"{src} is not a relative path"
        assert (out / src).is_file()
    assert "under DGP" not in html  # well specified: DGP = truth, not repeated
    markdown = (out / "report.md").read_text()
    assert "![" in markdown
    assert all(f"figures/{name}" in markdown and f"figures/{name}" in html for name in BIAS_FIGURES)


def test_loglik_numbers_equal_the_store(stored_study, report):
    table = pd.read_csv(report.parent / "tables" / "metrics.csv")
    sql = _sql(
        stored_study,
        "SELECT condition_id, method, metric, AVG(value) AS mean, COUNT(value) AS n "
        "FROM metrics GROUP BY condition_id, method, metric",
    )
    merged = sql.merge(table, on=["condition_id", "method", "metric"], suffixes=("_sql", ""))
    assert len(merged) == len(sql)
    np.testing.assert_allclose(merged["mean"], merged["mean_sql"], rtol=1e-12)
    np.testing.assert_array_equal(merged["n_sim"], merged["n"])
    # the MCSE of a mean is its SD over replications / sqrt(n)
    values = _sql(
        stored_study,
        "SELECT value FROM metrics WHERE condition_id = 1 AND method = 'bayes' "
        "AND metric = 'lpd_test'",
    )["value"]
    row = table[
        (table.condition_id == 1) & (table.method == "bayes") & (table.metric == "lpd_test")
    ]
    assert row["mcse"].item() == pytest.approx(values.std(ddof=1) / math.sqrt(len(values)))
    html = report.read_text()
    assert format_mcse(row["mean"].item(), row["mcse"].item()) in html
    # the failed bayes fit of condition 0 counts as a failure rate of 1/4
    failed = table[
        (table.condition_id == 0) & (table.method == "bayes") & (table.metric == "failed")
    ]
    assert failed["mean"].item() == pytest.approx(0.25)


def test_paired_differences_equal_the_store(stored_study, report):
    diffs = pd.read_csv(report.parent / "tables" / "loglik_differences.csv")
    sql = _sql(
        stored_study,
        "SELECT b.condition_id, AVG(b.value - e.value) AS mean, COUNT(*) AS n "
        "FROM metrics b JOIN metrics e USING (condition_id, replication, metric) "
        "WHERE b.method = 'bayes' AND e.method = 'em' AND b.metric = 'lpd_test' "
        "GROUP BY b.condition_id",
    )
    got = diffs[diffs.metric == "lpd_test"].sort_values("condition_id")
    np.testing.assert_allclose(got["mean"], sql["mean"], rtol=1e-12)
    np.testing.assert_array_equal(got["n_sim"], sql["n"])
    assert set(got["method"]) == {"bayes - em"}


def test_recovery_numbers_equal_the_store(stored_study, report):
    table = pd.read_csv(report.parent / "tables" / "recovery.csv")
    sql = _sql(
        stored_study,
        "SELECT condition_id, method, parameter, AVG(estimate - truth) AS bias, "
        "SQRT(AVG((estimate - truth) * (estimate - truth))) AS rmse, COUNT(*) AS n "
        "FROM estimates GROUP BY condition_id, method, parameter",
    )
    merged = sql.merge(table, on=["condition_id", "method", "parameter"], suffixes=("_sql", ""))
    assert len(merged) == len(sql) == len(table)
    np.testing.assert_allclose(merged["bias"], merged["bias_sql"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(merged["rmse"], merged["rmse_sql"], rtol=1e-9)
    np.testing.assert_array_equal(merged["n_sim"], merged["n"])
    html = report.read_text()
    row = merged[(merged.condition_id == 1) & (merged.method == "em")].iloc[0]
    assert format_mcse(row["bias"], row["bias_mcse"]) in html


def test_coverage_numbers_equal_the_store(stored_study, report):
    table = pd.read_csv(report.parent / "tables" / "coverage.csv")
    sql = _sql(
        stored_study,
        "SELECT condition_id, method, parameter, interval, level, AVG(covered) AS coverage, "
        "COUNT(*) AS n FROM intervals GROUP BY condition_id, method, parameter, interval, level",
    )
    merged = sql.merge(
        table,
        on=["condition_id", "method", "parameter", "interval", "level"],
        suffixes=("_sql", ""),
    )
    assert len(merged) == len(sql) == len(table)
    np.testing.assert_allclose(merged["coverage"], merged["coverage_sql"], rtol=1e-12)
    c, n = merged["coverage"], merged["n"]
    np.testing.assert_allclose(merged["coverage_mcse"], np.sqrt(c * (1 - c) / n), rtol=1e-12)


def test_diagnostics_numbers_equal_the_store(stored_study, report):
    table = pd.read_csv(report.parent / "tables" / "diagnostics_bayes.csv")
    sql = _sql(
        stored_study,
        "SELECT condition_id, MAX(value) AS max_r_hat FROM diagnostics "
        "WHERE key = 'max_r_hat' GROUP BY condition_id",
    )
    np.testing.assert_allclose(table.sort_values("condition_id")["max_r_hat"], sql["max_r_hat"])
    ess = _sql(
        stored_study,
        "SELECT condition_id, MIN(value) AS v FROM diagnostics WHERE key = 'min_ess_bulk' "
        "GROUP BY condition_id",
    )
    np.testing.assert_allclose(table.sort_values("condition_id")["min_ess_bulk"], ess["v"])
    divergences = _sql(
        stored_study,
        "SELECT condition_id, SUM(value) AS v FROM diagnostics WHERE key = 'n_divergences' "
        "GROUP BY condition_id",
    )
    np.testing.assert_allclose(table.sort_values("condition_id")["divergences"], divergences["v"])


def test_every_planted_problem_is_flagged_by_name(stored_study, report):
    flagged = pd.read_csv(report.parent / "tables" / "flagged.csv")
    problems = set(
        zip(
            flagged["condition_id"],
            flagged["replication"],
            flagged["method"],
            flagged["problem"],
            strict=True,
        )
    )
    assert problems == {
        (0, 3, "bayes", "fit failed"),
        (1, 2, "em", "EM not converged"),
        (1, 1, "bayes", "r_hat > 1.01"),
        (1, 1, "bayes", "ESS < 100 per chain"),
        (1, 1, "bayes", "divergences"),
        (1, 1, "bayes", "label switching"),
        (0, 1, "em", "hessian SEs not available"),
    }
    seeds = _sql(stored_study, "SELECT condition_id, replication, seed FROM tasks")
    merged = flagged.merge(seeds, on=["condition_id", "replication"], suffixes=("", "_sql"))
    np.testing.assert_array_equal(merged["seed"], merged["seed_sql"])
    html = report.read_text()
    assert "Flagged fits (4)" in html
    assert "SamplingError: Initial evaluation of model at starting point failed!" in html
    assert "max r_hat 1.200" in html
    assert "min bulk ESS 35, tail 50, 2 chains" in html
    assert "component 1 holds an effective 2.4 points (weight 0.02)" in html


def test_interval_methods_table_equals_the_store(stored_study, report):
    table = pd.read_csv(report.parent / "tables" / "intervals.csv")
    key = ["condition_id", "method", "parameter", "interval", "level"]
    sql = _sql(
        stored_study,
        "SELECT i.condition_id, i.method, i.parameter, i.interval, i.level, "
        "AVG(i.covered) AS coverage, AVG(i.upper - i.lower) AS width, COUNT(*) AS n "
        "FROM intervals i GROUP BY i.condition_id, i.method, i.parameter, i.interval, i.level",
    )
    merged = sql.merge(table, on=key, suffixes=("_sql", ""))
    assert len(merged) == len(sql) == len(table)
    assert {"hessian-wald", "sandwich-wald", "central", "hdi"} == set(merged["interval"])
    np.testing.assert_allclose(merged["coverage"], merged["coverage_sql"], rtol=1e-12)
    np.testing.assert_allclose(merged["width"], merged["width_sql"], rtol=1e-9)
    np.testing.assert_array_equal(merged["n_sim"], merged["n"])
    # the failed Hessian SEs leave one replication out of hessian-wald in condition 0
    em = merged[merged["method"] == "em"]
    counts = em.groupby(["condition_id", "interval"])["n"].first().to_dict()
    assert counts == {
        (0, "hessian-wald"): REPLICATIONS - 1,
        (0, "sandwich-wald"): REPLICATIONS,
        (1, "hessian-wald"): REPLICATIONS,
        (1, "sandwich-wald"): REPLICATIONS,
    }
    # ModSE / EmpSE from the stored SEs (EM) and posterior SDs (Bayes), recomputed here
    rows = _sql(
        stored_study,
        "SELECT e.condition_id, e.method, e.parameter, e.estimate, e.truth, e.sd, s.se "
        "FROM estimates e LEFT JOIN standard_errors s ON s.condition_id = e.condition_id "
        "AND s.replication = e.replication AND s.method = e.method "
        "AND s.parameter = e.parameter AND s.se_method = 'sandwich'",
    )
    for (condition_id, method, parameter), group in rows.groupby(
        ["condition_id", "method", "parameter"]
    ):
        model_se = group["se"] if method == "em" else group["sd"]
        errors = group["estimate"] - group["truth"]
        if not errors.std(ddof=1) > 0:
            continue
        expected = np.sqrt(np.mean(model_se**2)) / errors.std(ddof=1)
        interval = "sandwich-wald" if method == "em" else "central"
        got = table[
            (table.condition_id == condition_id)
            & (table.method == method)
            & (table.parameter == parameter)
            & (table.interval == interval)
        ]["se_ratio"]
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    markdown = (report.parent / "report.md").read_text()
    assert "## Interval methods" in markdown
    assert "| weight[0] | em | sandwich-wald |" in markdown


def test_posterior_draws_are_aligned_like_the_scorer(stored_study):
    from workbench.report.build import _posterior_by_parameter

    with StudyStore(stored_study) as store:
        idata = store.load_draws(1, 0, "bayes")
        truth = store.load_params(1, 0)["truth"]
        rows = store.table("estimates")
    rows = rows[(rows.condition_id == 1) & (rows.replication == 0) & (rows.method == "bayes")]
    # swap the stored components: the report must undo it, as score_posterior did
    swapped = idata.copy()
    for name in ("w", "mu", "cov"):
        group = swapped["posterior_relabelled"]
        group[name] = idata["posterior_relabelled"][name].isel(component=[1, 0])
    posterior = _posterior_by_parameter(swapped, truth, list(rows["parameter"]))
    means = posterior["value"].mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(means, rows["estimate"].to_numpy(), rtol=1e-10)


def test_selection_can_name_fits_and_rejects_unknown_ones(stored_study, report, tmp_path):
    # rebuilt over the default report: its figures of other fits must not linger
    out = tmp_path / "again"
    shutil.copytree(report.parent, out)
    index = build_report(stored_study, output_dir=out, selected=[(1, 2)])
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    # replication 2 was not kept: its data are regenerated from the seed, EM has only a
    # trace, and the page says that the draws were not kept
    assert "data-c001-r0002.png" in figures and "em-c001-r0002.png" in figures
    assert not any(name.startswith("posterior-") for name in figures)
    assert "data-c000-r0000.png" not in figures
    assert "draws of this fit were not kept" in index.read_text()
    with pytest.raises(ValueError, match=r"\(5, 0\)"):
        build_report(stored_study, output_dir=tmp_path, selected=[(5, 0)])


def test_large_studies_split_bias_by_conditions_and_coverage_by_parameter_type(
    stored_study, tmp_path, monkeypatch
):
    from workbench.report import build

    # as if the study had more conditions and parameters than one figure shows legibly
    monkeypatch.setattr(build, "_PANELS_PER_FIGURE", 1)
    monkeypatch.setattr(build, "_ROWS_PER_FIGURE", 2)
    index = build_report(stored_study, output_dir=tmp_path)
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    kinds = ("weight", "mean", "covariance")
    expected = {f"bias-{kind}-c{c:03d}.png" for kind in kinds for c in (0, 1)}
    expected |= {f"coverage-c{c:03d}-{kind}.png" for kind in kinds for c in (0, 1)}
    assert {name for name in figures if name.startswith(("bias", "coverage"))} == expected
    html = index.read_text()
    assert all(f"figures/{name}" in html for name in expected)
    assert "of the covariance parameters, K2 d2" in html


def test_figures_drawn_by_worker_processes_equal_those_drawn_here(stored_study, report, tmp_path):
    out = tmp_path / "workers"
    index = build_report(stored_study, output_dir=out, workers=2)
    here = sorted(p.name for p in (report.parent / "figures").glob("*.png"))
    there = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert here == there and len(here) >= 8
    for name in here:
        assert (out / "figures" / name).read_bytes() == (
            report.parent / "figures" / name
        ).read_bytes(), name
    assert index.read_text() == report.read_text()


def test_cli_select_picks_the_detailed_fits(stored_study, tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "selected"
    code = main(["report", str(stored_study), "--output", str(out), "--select", "1:2"])
    assert code == 0
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "data-c001-r0002.png" in figures and "data-c000-r0000.png" not in figures
    assert main(["report", str(stored_study), "--output", str(out), "--select", "5:0"]) == 2
    assert "(5, 0)" in capsys.readouterr().err


def test_report_from_toml_and_errors(stored_study, tmp_path, monkeypatch):
    study_dir = tmp_path / "proj"
    shutil.copytree(stored_study, study_dir / "reports" / "tiny")
    (study_dir / "tiny.toml").write_text(
        'name = "tiny"\nreplications = 4\n[scenario]\nn_components = 2\n[methods.em]\n'
    )
    monkeypatch.chdir(study_dir)
    index = build_report("tiny.toml")
    assert index == Path("reports/tiny/index.html")
    assert index.is_file()
    with pytest.raises(StoreError, match="holds no study results"):
        build_report(tmp_path)
    with pytest.raises(StoreError, match="neither a study TOML file nor an output folder"):
        build_report(tmp_path / "missing.txt")


def test_em_only_misspecified_study(tmp_path):
    scenario = Scenario(
        n_components=2, n_features=1, n_train=120, n_test=200, misspecification="student_t"
    )
    directory = tmp_path / "em_only"
    store = StudyStore.create(
        directory,
        name="em_only",
        config_toml='name = "em_only"\n',
        config={"name": "em_only", "replications": 3},
        config_hash="1" * 64,
        conditions=[(scenario.label(), scenario.to_dict())],
    )
    with store:
        for replication in range(3):
            store.write_task(_task(0, replication, scenario, bayes=False))
    index = build_report(directory)
    figures = {p.name for p in (directory / "figures").glob("*.png")}
    assert figures == {
        *BIAS_FIGURES,
        "coverage-c000.png",  # EM's Wald intervals
        "data-c000-r0000.png",
        "em-c000-r0000.png",
    }
    html = index.read_text()
    assert "MCMC diagnostics" not in html and "EM convergence" in html
    assert "Bayes" not in html.split("Colours used in every plot")[1].split("</p>")[0]
    assert "No fit was flagged." in html
    # misspecified: the log-likelihoods under the data-generating distribution are shown
    assert "held-out lpd under DGP" in html


def test_page_loads_every_image_without_console_errors(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.resolve().as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
            )
            page.screenshot(path=str(report.parent / "screenshot.png"), full_page=True)
        finally:
            browser.close()
    assert len(widths) >= 8
    broken = [src for src, complete, width in widths if not (complete and width > 0)]
    assert not broken, f"images failed to load: {broken}"
    assert not errors, errors


def test_config_metadata_is_shown(stored_study, report):
    html = report.read_text()
    meta = _sql(stored_study, "SELECT key, value FROM study").set_index("key")["value"]
    assert json.loads(meta["config"])["description"] in html
    assert "tiny: EM against Bayesian inference" in html


REAL_STUDY = """
name = "report_real"
seed = 5
replications = 2
[scenario]
n_components = 2
n_features = 1
n_train = 80
n_test = 100
overlap = 0.01
[methods.em]
n_init = 2
[methods.bayes]
chains = 2
draws = 150
tune = 150
start_at_em = true
[output]
keep_draws = "first"
levels = [0.5, 0.9]
"""


@pytest.mark.slow
def test_report_of_a_study_run_by_the_runner(tmp_path):
    from workbench.study.config import parse_study
    from workbench.study.runner import run_study

    config = parse_study(REAL_STUDY, source="report_real.toml")
    out = tmp_path / "out"
    summary = run_study(config, output=out, progress=False)
    assert summary.n_run == 2
    index = build_report(out)
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"data-c000-r0000.png", "em-c000-r0000.png", "posterior-c000-r0000-bayes.png"} <= figures
    recovery = pd.read_csv(out / "tables" / "recovery.csv")
    sql = _sql(
        out,
        "SELECT method, parameter, AVG(estimate - truth) AS bias FROM estimates "
        "GROUP BY method, parameter",
    )
    merged = sql.merge(recovery, on=["method", "parameter"], suffixes=("_sql", ""))
    assert len(merged) == len(sql) == len(recovery)
    np.testing.assert_allclose(merged["bias"], merged["bias_sql"], rtol=1e-9, atol=1e-15)
    # the posterior plot used the stored relabelled draws: their mean is the stored estimate
    from workbench.report.build import _posterior_by_parameter

    with StudyStore(out) as store:
        idata = store.load_draws(0, 0, "bayes")
        truth = store.load_params(0, 0)["truth"]
        rows = store.table("estimates")
    rows = rows[(rows.replication == 0) & (rows.method == "bayes")]
    posterior = _posterior_by_parameter(idata, truth, list(rows["parameter"]))
    means = posterior["value"].mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(means, rows["estimate"].to_numpy(), rtol=1e-9)
    assert "Flagged fits" in index.read_text()
