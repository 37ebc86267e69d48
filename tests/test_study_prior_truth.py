"""Studies whose truth is drawn from the Bayesian prior: config, SBC ranks, empty components.

One tiny study (1-D, K = 2, n = 20, 12 replications, one compiled model) is run once per
session and shared; its seed is chosen so that at least one replication draws a truth that
leaves a training component empty.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.study import StudyStore, load_study, parse_study, run_study
from workbench.study.config import ConfigError
from workbench.study.export import tidy_results

PRIOR_STUDY = """
name = "prior-tiny"
seed = {seed}
replications = 12
truth = "prior"

[scenario]
n_components = 2
n_features = 1
n_train = 20
n_test = 30

[methods.em]
n_init = 1
intervals = ["sandwich"]

[methods.bayes]
chains = 2
draws = 60
tune = 60
start_at_em = true

[methods.bayes.priors]
mean_loc = 0.0
mean_scale = 2.0
scale_prior = 1.0

[output]
keep_draws = "none"
max_errors = 100
levels = [0.5, 0.9]
"""


def _config(text: str):
    return parse_study(text, source="s.toml")


# --------------------------------------------------------------------------- config
def test_prior_truth_with_data_scaled_priors_is_one_line_error_naming_the_keys():
    text = (
        PRIOR_STUDY.format(seed=1)
        .replace("mean_scale = 2.0\n", "")
        .replace("scale_prior = 1.0\n", "")
    )
    with pytest.raises(ConfigError) as info:
        _config(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("s.toml: ")
    assert "missing mean_scale, scale_prior" in message
    assert "mean_loc" not in message.split("missing")[1].split("(")[0]


def test_prior_truth_needs_a_bayes_method_and_no_misspecification():
    no_bayes = PRIOR_STUDY.format(seed=1).split("[methods.bayes]")[0] + "[output]\n"
    with pytest.raises(ConfigError, match=r"truth = \"prior\".*needs \[methods.bayes\]"):
        _config(no_bayes)
    skewed = PRIOR_STUDY.format(seed=1).replace(
        "n_test = 30\n", 'n_test = 30\nmisspecification = "skew"\n'
    )
    with pytest.raises(ConfigError, match="misspecification"):
        _config(skewed)
    wrong_loc = PRIOR_STUDY.format(seed=1).replace("mean_loc = 0.0", "mean_loc = [0.0, 1.0]")
    with pytest.raises(ConfigError, match="mean_loc.*1 features"):
        _config(wrong_loc)


def test_prior_truth_changes_the_hash_but_fixed_and_random_hashes_are_unchanged():
    prior = _config(PRIOR_STUDY.format(seed=1))
    assert prior.truth == "prior" and prior.to_dict()["truth"] == "prior"
    random = _config(PRIOR_STUDY.format(seed=1).replace('truth = "prior"', 'truth = "random"'))
    assert random.config_hash() != prior.config_hash()
    # a "random" study hashes exactly what it hashed before truth = "prior" existed
    relevant = {
        "seed": 1,
        "conditions": random.to_dict()["conditions"],
        "methods": random.to_dict()["methods"],
        "levels": [0.5, 0.9],
    }
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    assert random.config_hash() == hashlib.sha256(blob.encode()).hexdigest()


def test_sbc_experiment_config_loads():
    config = load_study(Path(__file__).resolve().parents[1] / "experiments" / "sbc.toml")
    assert config.truth == "prior" and config.replications == 200


# --------------------------------------------------------------------------- the tiny study
def _datasets(config):
    """Every task's dataset, regenerated from its seed as the report does."""
    from workbench.study.runner import task_specs
    from workbench.study.seeds import PriorTruth, regenerate_dataset

    bayes = config.methods["bayes"]
    prior = PriorTruth(bayes.priors, bayes.covariance_type)
    for spec in task_specs(config):
        yield spec.replication, regenerate_dataset(spec.scenario, spec.seed, prior=prior)


def _has_empty_component(seed: int) -> bool:
    config = _config(PRIOR_STUDY.format(seed=seed))
    return any(np.bincount(d.y_train, minlength=2).min() == 0 for _, d in _datasets(config))


@pytest.fixture(scope="session")
def prior_study(tmp_path_factory):
    """The tiny prior-truth study, run in this process; its output folder."""
    seed = next(s for s in range(200) if _has_empty_component(s))
    out = tmp_path_factory.mktemp("prior-study")
    config = _config(PRIOR_STUDY.format(seed=seed))
    run_study(config, output=out, progress=False)
    return out


@pytest.mark.slow
def test_prior_study_stores_ranks_and_ordered_intervals(prior_study):
    with StudyStore(prior_study) as store:
        tasks = store.table("tasks")
        fits = store.table("fits")
        ranks = store.table("sbc_ranks")
        ordered = store.table("ordered_intervals")
        truths = {r: store.load_params(0, r)["truth"] for r in range(12)}
    assert len(tasks) == 12  # every task stored, hard draws included
    ok_bayes = fits[(fits["method"] == "bayes") & (fits["status"] == "ok")]
    assert len(ok_bayes) == 12
    # 2 weights, 2 means, 2 variances and the log-likelihood per fit
    assert len(ranks) == 12 * 7
    assert set(ranks["quantity"]) == {
        "weight[0]",
        "weight[1]",
        "mean[0,0]",
        "mean[1,0]",
        "cov[0,0,0]",
        "cov[1,0,0]",
        "loglik",
    }
    assert ((ranks["rank"] >= 0) & (ranks["rank"] <= ranks["n_draws"])).all()
    assert ((ranks["n_draws"] + 1) % 10 == 0).all()
    assert (ranks["total_draws"] == 120).all()
    # truths are on the ordered labelling, as SBC needs
    assert all(np.all(np.diff(t.means[:, 0]) >= 0) for t in truths.values())
    assert len(ordered) == 12 * 6 * 2
    inside = (ordered["lower"] <= ordered["truth"]) & (ordered["truth"] <= ordered["upper"])
    assert (inside.astype(int) == ordered["covered"]).all()
    for r, truth in truths.items():
        row = ordered[(ordered["replication"] == r) & (ordered["quantity"] == "mean[1,0]")]
        assert np.allclose(row["truth"], truth.means[1, 0])


@pytest.mark.slow
def test_empty_component_task_is_stored_with_its_fits_outcome(prior_study):
    with StudyStore(prior_study) as store:
        tasks = store.table("tasks").set_index("replication")
        fits = store.table("fits")
        diagnostics = store.table("diagnostics")
        stored_truths = [store.load_params(0, r)["truth"] for r in range(12)]
        config = parse_study(store.metadata()["config_toml"], source="stored")
    # regenerate the training labels exactly as the task drew them
    hits = []
    for replication, dataset in _datasets(config):
        truth = stored_truths[replication]
        assert np.array_equal(dataset.truth.weights, truth.weights)
        assert np.array_equal(dataset.truth.covariances, truth.covariances)
        if np.bincount(dataset.y_train, minlength=2).min() == 0:
            hits.append(replication)
    assert hits, "the fixture's seed gives an empty component"
    for r in hits:
        assert r in tasks.index  # stored, never dropped
        these = fits[fits["replication"] == r].set_index("method")
        assert set(these.index) == {"em", "bayes"}
        assert these.at["bayes", "status"] == "ok"
        started = diagnostics[
            (diagnostics["replication"] == r)
            & (diagnostics["method"] == "bayes")
            & (diagnostics["key"] == "started_at_em")
        ]["value"].item()
        # EM either fitted (and started the chains) or failed with its error recorded and the
        # chains started from the default spread start
        if these.at["em", "status"] == "failed":
            assert these.at["em", "error"]
            assert tasks.at[r, "status"] == "failed" and started == 0
        else:
            assert started == 1


@pytest.mark.slow
def test_report_calibration_tables_recompute_from_sql(prior_study):
    from workbench.report import calibration_tables

    with StudyStore(prior_study) as store:
        cases = calibration_tables.rank_cases(store.table("sbc_ranks"), store.table("fits"))
        uniformity = calibration_tables.uniformity_table(cases, store.conditions())
        coverage = calibration_tables.prior_coverage_table(
            store.table("ordered_intervals"), store.conditions()
        )
        pooled = calibration_tables.pooled_prior_coverage_table(
            store.table("ordered_intervals"), store.conditions()
        )
        tidy = tidy_results(store)
    db = sqlite3.connect(prior_study / "study.db")
    # 12 simulations: 2 bins (5 expected per bin); rank r of L falls in bin r * 2 // (L + 1)
    assert set(uniformity["n_bins"]) == {2}
    for quantity, stat, p in uniformity[["quantity", "statistic", "p_value"]].itertuples(
        index=False
    ):
        counts = dict(
            db.execute(
                "SELECT (rank * 2) / (n_draws + 1) AS bin, COUNT(*) FROM sbc_ranks "
                "WHERE quantity = ? GROUP BY bin",
                (quantity,),
            ).fetchall()
        )
        observed = [counts.get(0, 0), counts.get(1, 0)]
        expected = stats.chisquare(observed)
        assert stat == pytest.approx(expected.statistic)
        assert p == pytest.approx(expected.pvalue)
    assert (uniformity["p_adjusted"] == np.minimum(1, uniformity["p_value"] * 7)).all()
    sql = pd.read_sql_query(
        "SELECT quantity, level, AVG(covered) AS coverage, COUNT(*) AS n "
        "FROM ordered_intervals GROUP BY quantity, level",
        db,
    )
    merged = coverage.merge(sql, on=["quantity", "level"])
    assert len(merged) == len(coverage) == 12
    assert np.allclose(merged["coverage_x"], merged["coverage_y"])
    assert np.allclose(
        merged["coverage_mcse"],
        np.sqrt(merged["coverage_y"] * (1 - merged["coverage_y"]) / merged["n"]),
    )
    # pooled: each simulation's share of covering intervals, then mean and sd / sqrt(n)
    shares = pd.read_sql_query(
        "SELECT level, replication, AVG(covered) AS share FROM ordered_intervals "
        "GROUP BY level, replication",
        db,
    )
    assert len(pooled) == 2 and (pooled["n_quantities"] == 6).all()
    for level, group in shares.groupby("level"):
        row = pooled[pooled["level"] == level].iloc[0]
        assert row["n_sim"] == len(group) == 12
        assert row["coverage"] == pytest.approx(group["share"].mean())
        assert row["coverage_mcse"] == pytest.approx(group["share"].std(ddof=1) / math.sqrt(12))
    db.close()
    # `workbench results` exports the ranks
    rank_rows = tidy[tidy["quantity"] == "sbc_rank"]
    assert len(rank_rows) == 12 * 7
    assert (rank_rows["sbc_n_draws"] >= rank_rows["value"]).all()
    assert not math.isnan(float(rank_rows["sbc_ess_bulk"].iloc[0]))


@pytest.mark.slow
def test_report_has_the_calibration_section_with_its_tables_and_figures(prior_study, tmp_path):
    import re

    from workbench.report import build_report

    index = build_report(prior_study, output_dir=tmp_path)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    html = index.read_text(encoding="utf-8")
    section = markdown.split("## Calibration", 1)[1].split("\n## ", 1)[0]
    for title in (
        "### Uniformity of the SBC ranks",
        "### Coverage averaged over the prior, pooled over parameters",
        "### Coverage averaged over the prior (ordered labelling)",
    ):
        assert title in section
        assert title.removeprefix("### ") in html
    pooled = pd.read_csv(tmp_path / "tables" / "prior_coverage_pooled.csv")
    assert sorted(pooled.loc[pooled["method"] == "bayes", "level"]) == [0.5, 0.9]
    # the pooled row of the 90% level is shown with its MCSE
    row = pooled[(pooled["method"] == "bayes") & (pooled["level"] == 0.9)].iloc[0]
    assert f"{row['coverage']:.3f}"[:4] in section
    # EM's Wald intervals stand beside the posterior's, aligned to the truth
    coverage = pd.read_csv(tmp_path / "tables" / "prior_coverage.csv")
    assert set(pooled["method"]) == set(coverage["method"]) == {"bayes", "em sandwich-wald"}
    db = sqlite3.connect(prior_study / "study.db")
    sql = pd.read_sql_query(
        "SELECT parameter AS quantity, level, AVG(covered) AS share, COUNT(covered) AS n "
        "FROM intervals WHERE method = 'em' AND interval = 'sandwich-wald' "
        "GROUP BY parameter, level",
        db,
    )
    db.close()
    em = coverage[coverage["method"] == "em sandwich-wald"].merge(sql, on=["quantity", "level"])
    assert len(em) == len(sql) > 0
    assert np.allclose(em["coverage"], em["share"]) and (em["n_sim"] == em["n"]).all()
    assert "| em sandwich-wald |" in section
    figures = re.findall(r"\(figures/(sbc-[^)]+\.png)\)", section)
    assert any(f.startswith("sbc-ecdf-") for f in figures)
    assert any(f.startswith("sbc-hist-") for f in figures)
    assert all((tmp_path / "figures" / f).stat().st_size > 0 for f in figures)


# --------------------------------------------------------------------------- pieces
def test_simulate_from_truth_samples_the_given_mixture_and_checks_sizes():
    from workbench.mixture import MixtureParams
    from workbench.simulate import Scenario, simulate_from_truth

    truth = MixtureParams(np.array([0.25, 0.75]), np.array([[-3.0], [2.0]]), np.ones((2, 1, 1)))
    scenario = Scenario(n_components=2, n_features=1, n_train=4000, n_test=10)
    data = simulate_from_truth(truth, scenario, 0)
    assert data.X_train.shape == (4000, 1) and data.X_test.shape == (10, 1)
    assert data.truth is truth
    # share of component 1: Binomial(4000, 0.75) has SD 0.0068; 4 SD tolerance
    assert abs(np.mean(data.y_train == 1) - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    # its mean: SD 1 / sqrt(3000) = 0.018; 4 SD tolerance
    assert abs(data.X_train[data.y_train == 1].mean() - 2.0) < 4 / math.sqrt(3000)
    with pytest.raises(ValueError, match="K=3"):
        simulate_from_truth(truth, Scenario(n_components=3, n_features=1), 0)


def test_uniformity_bins_need_five_ranks_per_bin():
    from workbench.report.calibration_tables import uniformity_bins

    assert uniformity_bins(200) == 10
    assert uniformity_bins(49) == 5
    assert uniformity_bins(12) == 2
    assert uniformity_bins(9) is None


def test_readme_states_what_experiments_sbc_ran_and_its_committed_result():
    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    config = load_study(root / "experiments" / "sbc.toml")
    assert [(s.n_components, s.n_features) for s in config.conditions] == [
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    assert {s.n_train for s in config.conditions} == {100}
    bayes = config.methods["bayes"]
    start = "the EM estimate" if bayes.start_at_em else "the data-sliced start"
    stated = (
        f"K = 2 and 3 in 1-D and 2-D, n = {config.conditions[0].n_train}, {bayes.chains} "
        f"chains x {bayes.draws} draws after {bayes.tune} tuning steps, target_accept "
        f'{bayes.target_accept:g}, ordering "{bayes.ordering}", chains started at {start}, '
        f"{config.replications} "
        "simulations per case"
    )
    assert stated in readme
    uniformity = pd.read_csv(root / "reports" / "sbc" / "tables" / "sbc_uniformity.csv")
    coverage = pd.read_csv(root / "reports" / "sbc" / "tables" / "prior_coverage.csv")
    em_coverage = coverage[coverage["method"] != "bayes"]
    coverage = coverage[coverage["method"] == "bayes"]
    assert set(uniformity["n_sim"] + uniformity["n_failed"]) == {config.replications}
    result = (
        f"{int(uniformity['flagged'].sum())} of {len(uniformity)} rank distributions "
        f"non-uniform (smallest Bonferroni-adjusted p = {uniformity['p_adjusted'].min():.2g}); "
        f"{int((~coverage['within_2_mcse']).sum())} of {len(coverage)} prior-averaged coverage "
        "cells more than 2 MCSEs from nominal"
    )
    assert result in readme, result
    em_result = (
        f"{int((em_coverage['coverage'] < em_coverage['level']).sum())}\nof their "
        f"{len(em_coverage)} cells are below nominal, "
        f"{int((em_coverage['z'] < -2).sum())} by more than 2 MCSE and "
        f"{'none' if (em_coverage['z'] <= 2).all() else 'some'} above"
    )
    assert " ".join(em_result.split()) in readme, em_result
    pooled = pd.read_csv(root / "reports" / "sbc" / "tables" / "prior_coverage_pooled.csv")
    pooled = pooled[pooled["method"] == "bayes"]
    for (k, d), rows in pooled.groupby(
        [pooled["condition"].str.extract(r"K(\d)")[0], pooled["condition"].str.extract(r"d(\d)")[0]]
    ):
        cells = " | ".join(
            f"{c:.3f} ({m:.3f})"
            for c, m in zip(rows["coverage"], rows["coverage_mcse"], strict=True)
        )
        assert f"| K = {k}, {d}-D | " in readme and cells in readme, cells


@pytest.mark.slow
def test_em_collapse_is_stored_and_bayes_starts_from_its_spread_start(
    prior_study, monkeypatch, tmp_path
):
    """A collapsing EM fit fails on the record; the Bayes fit still runs and is ranked."""
    import dataclasses

    from workbench.study import task as task_module

    real = task_module.draw_dataset

    def collapsing(scenario, rng, prior=None):
        data = real(scenario, rng, prior)
        X = data.X_train.copy()
        X[:12] = 100.0  # twelve identical, far-away points: a zero-variance cluster for EM
        return dataclasses.replace(data, X_train=X)

    monkeypatch.setattr(task_module, "draw_dataset", collapsing)
    # reg_covar = 0: the default 1e-6 would keep the zero-variance cluster just non-singular
    text = PRIOR_STUDY.format(seed=0).replace("replications = 12", "replications = 1")
    config = _config(text.replace("n_init = 1", "n_init = 1\nreg_covar = 0.0"))
    run_study(config, output=tmp_path, progress=False)  # in this process: the patch applies
    with StudyStore(tmp_path) as store:
        tasks = store.table("tasks")
        fits = store.table("fits").set_index("method")
        diagnostics = store.table("diagnostics")
        ranks = store.table("sbc_ranks")
    assert tasks["status"].tolist() == ["failed"]
    assert fits.at["em", "status"] == "failed" and "collapsed" in fits.at["em", "error"]
    assert fits.at["bayes", "status"] == "ok"
    started = diagnostics[
        (diagnostics["method"] == "bayes") & (diagnostics["key"] == "started_at_em")
    ]["value"].item()
    assert started == 0
    assert len(ranks) == 7


# --------------------------------------------------------------------------- target_accept
def test_fit_bayes_target_accept_errors_name_the_value_and_what_is_allowed():
    from workbench.bayes import fit_bayes

    X = np.random.default_rng(0).standard_normal((20, 1))
    with pytest.raises(
        ValueError, match=r"target_accept=1\.5 is not allowed; use a number in \(0, 1\)"
    ):
        fit_bayes(X, 2, target_accept=1.5)
    with pytest.raises(ValueError, match=r"target_accept=0\.9 .*sampler='pymc'.*'nutpie'"):
        fit_bayes(X, 2, sampler="pymc", target_accept=0.9)


@pytest.mark.slow
def test_study_target_accept_reaches_nutpie(prior_study, monkeypatch, tmp_path):
    """``[methods.bayes] target_accept`` is what nutpie.sample receives (the study's compiled
    model is reused from ``prior_study``, so this costs one small fit)."""
    import nutpie

    seen: list[object] = []
    real = nutpie.sample

    def recording(*args, **kwargs):
        seen.append(kwargs.get("target_accept"))
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", recording)
    text = PRIOR_STUDY.format(seed=0).replace("replications = 12", "replications = 1")
    config = _config(text.replace("start_at_em = true", "start_at_em = true\ntarget_accept = 0.93"))
    run_study(config, output=tmp_path, progress=False)  # in this process: the patch applies
    assert seen == [0.93]
    with StudyStore(tmp_path) as store:
        assert store.table("fits").set_index("method").at["bayes", "status"] == "ok"
