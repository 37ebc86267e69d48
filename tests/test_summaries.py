import math

import numpy as np
import pandas as pd
import pytest

from workbench.study.summaries import (
    bias,
    empirical_se,
    mean_with_mcse,
    model_se,
    mse,
    proportion,
    relative_error_model_se,
    relative_precision,
    rmse,
    status_indicators,
    summarise,
    summarise_metrics,
)


def test_mcse_of_coverage_is_the_binomial_formula():
    flags = np.r_[np.ones(95), np.zeros(5)]
    value, mcse = proportion(flags)
    assert value == 0.95
    assert mcse == pytest.approx(math.sqrt(0.95 * 0.05 / 100), rel=1e-14)
    assert proportion(np.ones(20)) == (1.0, 0.0)


def test_measures_on_a_small_hand_computed_example():
    estimates = np.array([1.0, 2.0, 4.0, 5.0])
    truth = 2.0
    errors = estimates - truth  # -1, 0, 2, 3: mean 1, squares 1 0 4 9
    assert bias(estimates, truth) == pytest.approx((1.0, math.sqrt(10 / 3) / 2))
    empse = math.sqrt(10 / 3)
    assert empirical_se(estimates, truth) == pytest.approx((empse, empse / math.sqrt(6)))
    sq = errors**2
    mse_mcse = math.sqrt(np.sum((sq - 3.5) ** 2) / 12)
    assert mse(estimates, truth) == pytest.approx((3.5, mse_mcse))
    assert rmse(estimates, truth) == pytest.approx(
        (math.sqrt(3.5), mse_mcse / (2 * math.sqrt(3.5)))
    )
    assert mean_with_mcse(estimates) == pytest.approx((3.0, math.sqrt(10 / 3) / 2))
    sds = np.array([1.0, 2.0, 2.0, 1.0])
    modse = math.sqrt(2.5)
    var_sq = np.var(sds**2, ddof=1)
    assert model_se(sds) == pytest.approx((modse, math.sqrt(var_sq / (16 * 2.5))))
    rel = relative_error_model_se(estimates, truth, sds)
    assert rel.value == pytest.approx(100 * (modse / empse - 1))


def test_measures_with_a_truth_that_varies_between_replications():
    rng = np.random.default_rng(0)
    truth = rng.normal(scale=10.0, size=5000)
    estimates = truth + 0.3 + rng.normal(scale=0.5, size=5000)
    assert abs(bias(estimates, truth).value - 0.3) < 4 * bias(estimates, truth).mcse
    assert empirical_se(estimates, truth).value == pytest.approx(0.5, rel=0.05)
    assert mse(estimates, truth).value == pytest.approx(0.34, rel=0.05)


def test_mcse_formulas_match_the_spread_over_repeated_studies():
    # Repeat a study of n_sim replications many times: each MCSE should estimate the standard
    # deviation of its measure over the repeats.
    rng = np.random.default_rng(1)
    n_repeats, n_sim = 3000, 60
    truth = 1.0
    rows = {name: [] for name in ("bias", "empse", "mse", "coverage", "relprec")}
    for _ in range(n_repeats):
        a = truth + rng.normal(size=n_sim)
        b = truth + 0.6 * (a - truth) + rng.normal(scale=0.5, size=n_sim)
        flags = rng.random(n_sim) < 0.9
        rows["bias"].append(bias(a, truth))
        rows["empse"].append(empirical_se(a, truth))
        rows["mse"].append(mse(a, truth))
        rows["coverage"].append(proportion(flags))
        rows["relprec"].append(relative_precision(a - truth, b - truth))
    for name, measures in rows.items():
        values, mcses = np.array(measures).T
        assert np.mean(mcses) == pytest.approx(np.std(values, ddof=1), rel=0.1), name


def test_relative_precision_known_answer():
    rng = np.random.default_rng(2)
    n = 20_000
    a = rng.normal(scale=1.0, size=n)
    b = rng.normal(scale=0.5, size=n)
    value, mcse = relative_precision(a, b)
    # (1 / 0.5)**2 - 1 = 3: method B is 300% more precise.
    assert abs(value - 300.0) < 4 * mcse
    assert mcse == pytest.approx(200 * 4 * math.sqrt(1 / (n - 1)), rel=0.05)
    with pytest.raises(ValueError, match="same shape"):
        relative_precision(a, b[:-1])


def study_table(rng, n_rep=200):
    rows = []
    for rep in range(n_rep):
        for parameter, truth in (("mean[0,0]", 1.0), ("weight[0]", 0.3)):
            em = truth + rng.normal(scale=0.2)
            bayes = truth + 0.5 * (em - truth) + rng.normal(scale=0.05)
            rows.append(
                dict(
                    condition_id=1,
                    replication=rep,
                    method="em",
                    parameter=parameter,
                    truth=truth,
                    estimate=em,
                    sd=np.nan,
                )
            )
            for level in (0.5, 0.9):
                rows.append(
                    dict(
                        condition_id=1,
                        replication=rep,
                        method="bayes",
                        parameter=parameter,
                        truth=truth,
                        estimate=bayes,
                        sd=0.1,
                        interval="central",
                        level=level,
                        covered=float(rng.random() < level),
                    )
                )
    return pd.DataFrame(rows)


def test_summarise_groups_and_matches_the_array_functions():
    table = study_table(np.random.default_rng(3))
    estimates = table.drop_duplicates(subset=["replication", "method", "parameter"])
    out = summarise(estimates, by=["condition_id", "method", "parameter"])
    assert len(out) == 4
    row = out[(out.method == "bayes") & (out.parameter == "weight[0]")].iloc[0]
    group = estimates[(estimates.method == "bayes") & (estimates.parameter == "weight[0]")]
    assert row.n_sim == 200
    assert (row.bias, row.bias_mcse) == pytest.approx(bias(group.estimate, group.truth))
    assert (row.rmse, row.rmse_mcse) == pytest.approx(rmse(group.estimate, group.truth))
    assert (row.modse, row.modse_mcse) == pytest.approx(model_se(group.sd))
    em = estimates[(estimates.method == "em") & (estimates.parameter == "weight[0]")]
    expected = relative_precision(
        (em.estimate - em.truth).to_numpy(), (group.estimate - group.truth).to_numpy()
    )
    assert (row.relprec, row.relprec_mcse) == pytest.approx(expected)
    # Bayes errors have variance 0.25 * 0.04 + 0.0025 against 0.04 for EM.
    assert abs(row.relprec - 100 * (0.04 / 0.0125 - 1)) < 4 * row.relprec_mcse
    em_row = out[(out.method == "em") & (out.parameter == "weight[0]")].iloc[0]
    assert math.isnan(em_row.relprec) and math.isnan(em_row.modse)


def test_summarise_coverage_per_interval_with_paired_relative_precision():
    table = study_table(np.random.default_rng(4))
    out = summarise(
        table, by=["condition_id", "method", "parameter", "interval", "level"], reference="em"
    )
    bayes = out[out.method == "bayes"].sort_values(["parameter", "level"])
    assert list(bayes.level) == [0.5, 0.9, 0.5, 0.9]
    for _, row in bayes.iterrows():
        assert row.n_sim == 200
        assert row.coverage_mcse == pytest.approx(
            math.sqrt(row.coverage * (1 - row.coverage) / 200)
        )
        assert abs(row.coverage - row.level) < 4.5 * math.sqrt(row.level * (1 - row.level) / 200)
        assert not math.isnan(row.relprec)
    # Both interval rows of a parameter repeat the same estimates, so the same relprec.
    per_parameter = bayes.groupby("parameter")["relprec"].nunique()
    assert (per_parameter == 1).all()
    assert "coverage" in out.columns and out[out.method == "em"].coverage.isna().all()


def test_summarise_without_reference_and_errors():
    table = study_table(np.random.default_rng(5), n_rep=10)
    out = summarise(table[table.method == "em"], by=["method", "parameter"], reference=None)
    assert "relprec" not in out.columns
    with pytest.raises(ValueError, match=r"missing columns \['truth'\]"):
        summarise(table.drop(columns="truth"), by=["method"])
    with pytest.raises(ValueError, match="missing columns"):
        summarise(table.drop(columns="replication"), by=["method"])
    with pytest.raises(ValueError, match="one estimate per replication and method"):
        summarise(table, by=["condition_id", "method"])
    pooled = summarise(table, by=["condition_id", "method"], reference=None)
    assert list(pooled.n_sim) == [40, 20]


def test_summarise_metrics_means_rates_and_status_indicators():
    rng = np.random.default_rng(6)
    fits = pd.DataFrame(
        {
            "condition_id": 1,
            "replication": np.repeat(np.arange(40), 2),
            "method": ["em", "bayes"] * 40,
            "status": ["ok"] * 70 + ["failed"] * 10,
        }
    )
    ok = fits[fits.status == "ok"]
    metrics = ok[["condition_id", "replication", "method"]].assign(
        metric="ari", value=rng.uniform(size=len(ok))
    )
    em_fits = fits[fits.method == "em"]
    diagnostics = em_fits[["condition_id", "replication", "method"]].assign(
        key="converged", value=[1] * 30 + [0] * 10
    )
    indicators = status_indicators(fits, diagnostics)
    assert set(indicators.metric) == {"failed", "nonconverged"}
    out = summarise_metrics(pd.concat([metrics, indicators]), by=["condition_id", "method"])
    rows = {(r.method, r.metric): r for r in out.itertuples()}
    failed_em = rows[("em", "failed")]
    assert failed_em.n_sim == 40 and failed_em.mean == 5 / 40
    assert failed_em.mcse == pytest.approx(math.sqrt((5 / 40) * (35 / 40) / 40))
    assert rows[("em", "nonconverged")].mean == 0.25
    assert ("bayes", "nonconverged") not in rows
    ari = metrics[metrics.method == "bayes"].value
    assert (rows[("bayes", "ari")].mean, rows[("bayes", "ari")].mcse) == pytest.approx(
        (ari.mean(), ari.std(ddof=1) / math.sqrt(len(ari)))
    )
    with pytest.raises(ValueError, match="missing columns"):
        summarise_metrics(metrics.drop(columns="value"), by=["method"])
