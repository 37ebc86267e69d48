"""select_components: table, choices, seeds, failed K, bad input, how often BIC is right."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.em import GaussianMixture
from workbench.em.criteria import information_criteria
from workbench.mixture import MixtureParams, sample
from workbench.selection import (
    CRITERIA,
    TABLE_COLUMNS,
    ModelKey,
    bootstrap_lrt,
    select_components,
)
from workbench.simulate import Scenario, simulate

TWO = MixtureParams(
    weights=np.array([0.5, 0.5]),
    means=np.array([[-4.0, 0.0], [4.0, 1.0]]),
    covariances=np.stack([np.eye(2), 0.7 * np.eye(2)]),
)


@pytest.fixture(scope="module")
def two_clusters() -> np.ndarray:
    return sample(TWO, 300, rng=3)[0]


@pytest.fixture(scope="module")
def grid(two_clusters):
    return select_components(
        two_clusters,
        components=range(1, 5),
        covariance_types=("full", "diag"),
        n_init=2,
        random_state=11,
    )


def test_table_has_one_row_per_model_and_every_column(grid):
    table = grid.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(zip(table["covariance_type"], table["n_components"], strict=True)) == [
        (t, k) for t in ("full", "diag") for k in range(1, 5)
    ]
    assert not table["failed"].any()
    assert (table["n_starts"] == 2).all()
    np.testing.assert_array_equal(table["bic_mclust"], -table["bic"])
    np.testing.assert_array_equal(table["icl_mclust"], -table["icl"])
    assert set(grid.estimates) == {ModelKey(k, t) for t in ("full", "diag") for k in range(1, 5)}


def test_each_row_is_reproduced_by_its_recorded_seed(grid, two_clusters):
    for row in grid.table.itertuples():
        refit = GaussianMixture(
            row.n_components,
            covariance_type=row.covariance_type,
            random_state=int(row.seed),
            max_iter=200,
        ).fit(two_clusters)
        ic = information_criteria(refit, two_clusters)
        np.testing.assert_allclose(
            [row.loglik, row.bic, row.icl, row.aic], [ic.loglik, ic.bic, ic.icl, ic.aic], rtol=1e-12
        )
        assert row.n_parameters == ic.n_parameters


def test_choices_are_the_minima_of_their_columns(grid):
    table = grid.table
    for name, choice in grid.choices.items():
        best = table.loc[table[CRITERIA[name].column].idxmin()]
        assert (choice.n_components, choice.covariance_type) == (
            best["n_components"],
            best["covariance_type"],
        )
        assert choice.value == best[CRITERIA[name].column]
    # Two well-separated clusters: BIC and ICL find them.
    assert grid.choices["bic"].n_components == 2
    assert grid.choices["icl"].n_components == 2


def test_a_row_does_not_depend_on_the_rest_of_the_grid(grid, two_clusters):
    alone = select_components(
        two_clusters, components=[3], covariance_types=["diag"], n_init=2, random_state=11
    )
    row = grid.table.query("n_components == 3 and covariance_type == 'diag'").iloc[0]
    assert alone.table["seed"].iloc[0] == row["seed"]
    assert alone.table["bic"].iloc[0] == row["bic"]


def test_a_k_whose_fits_all_fail_is_recorded_and_the_others_go_on():
    # Three triangles of repeated points: 3 components fit them exactly; a fourth must sit
    # on at most two distinct points, a singular covariance without reg_covar.
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    X = np.repeat(np.concatenate([triangle, triangle + [10, 0], triangle + [0, 10]]), 10, axis=0)
    result = select_components(X, components=range(1, 6), n_init=2, random_state=0, reg_covar=0.0)
    table = result.table.set_index("n_components")
    assert list(table.index[table["failed"]]) == [4, 5]
    assert (table.loc[[4, 5], "n_failed_starts"] == 2).all()
    assert table.loc[4, "error"].startswith("ValueError: Fitting the mixture model failed")
    assert "collapsed" in table.loc[4, "error"]
    assert math.isnan(table.loc[4, "bic"]) and table.loc[4, "seed"] is pd.NA
    assert not table.loc[[1, 2, 3], "failed"].any()
    assert result.choices["bic"].n_components == 3
    assert ModelKey(4, "full") not in result.estimates


def test_every_fit_failing_is_an_error():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)
    with pytest.raises(ValueError, match="every fit failed for components=\\[2, 3\\]"):
        select_components(X, components=[2, 3], random_state=0, reg_covar=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"components": [0, 1]}, "components contains 0"),
        ({"components": [-2]}, "components contains -2"),
        ({"components": [1, 31]}, r"contains 31.*\[1, n_samples=30\]"),
        ({"components": [2.5]}, "components contains 2.5"),
        ({"components": [True]}, "components contains True"),
        ({"components": []}, r"components=\[\] is not allowed"),
        ({"components": [2, 3, 2]}, "components contains 2 twice"),
        ({"components": 3}, "components=3 is not allowed"),
        ({"covariance_types": ["VVV"]}, "covariance_types contains 'VVV'"),
        ({"criteria": ["waic"]}, "criteria contains 'waic'.*bic, icl, aic"),
        ({"n_init": 0}, "n_init=0 is not allowed"),
        ({"random_state": -1}, "random_state=-1 is not allowed"),
        ({"init_params": "hc"}, "init_params"),
    ],
)
def test_bad_settings_name_the_value(kwargs, message):
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match=message):
        select_components(X, **kwargs)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.ones(10), r"got shape \(10,\)"),
        (np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 2.0]]), "NaN or infinite"),
        ([["a", "b"]], "numeric array"),
    ],
)
def test_bad_data_is_named(X, message):
    with pytest.raises(ValueError, match=message):
        select_components(X, components=[1])


# ------------------------------------------------------------------ statistical behaviour

REPLICATIONS = 100


def _bic_hits(overlap: float, replications: int, entropy: int) -> int:
    """How many of ``replications`` simulated K=3, d=2, n=500 datasets BIC assigns K=3."""
    scenario = Scenario(n_components=3, n_features=2, n_train=500, n_test=1, overlap=overlap)
    hits = 0
    for r in range(replications):
        data = simulate(scenario, np.random.SeedSequence(entropy, spawn_key=(r,)))
        result = select_components(
            data.X_train, components=range(1, 7), criteria=["bic"], n_init=3, random_state=r
        )
        hits += result.choices["bic"].n_components == 3
    return hits


@pytest.mark.slow
def test_bic_finds_three_well_separated_components():
    # Overlap 0.001: independent runs (other seeds) found K=3 in 400 of 400 replications,
    # so with 95% confidence the rate is >= 0.05 ** (1 / 400) = 0.9925 (one-sided
    # Clopper-Pearson). At that rate P(Binomial(100, 0.9925) <= 94) = 1.1e-4 < 1/1000: the
    # threshold of 95 in 100 sits 4.9 binomial MCSEs (sqrt(p (1 - p) / 100) = 0.0086)
    # below the rate.
    hits = _bic_hits(0.001, REPLICATIONS, entropy=20261202)
    assert hits >= 95, hits


@pytest.mark.slow
def test_bic_is_right_less_often_as_overlap_grows():
    # Cochran-Armitage test for a trend in the proportion correct across three overlaps.
    # In an independent run of 100 replications each the rates were 1.00, 0.46 and 0.08
    # at 0.001, 0.1 and 0.2, so the expected z is about -8 with 40 per overlap; the test
    # asks for z < -3.09 (one-sided p < 0.001) and for each rate to fall.
    overlaps = np.array([0.001, 0.1, 0.2])
    n = 40
    hits = np.array([_bic_hits(o, n, entropy=77) for o in overlaps])
    rates = hits / n
    assert rates[0] > rates[1] > rates[2], rates
    scores = np.arange(len(overlaps), dtype=float)
    p_bar = hits.sum() / (n * len(overlaps))
    numerator = np.sum(scores * (hits - n * p_bar))
    variance = p_bar * (1 - p_bar) * n * (np.sum(scores**2) - np.sum(scores) ** 2 / len(scores))
    z = numerator / math.sqrt(variance)
    assert z < stats.norm.ppf(0.001), (z, rates)


# --------------------------------------------------------------------- bootstrap LRT


@pytest.fixture(scope="module")
def lrt(two_clusters):
    return bootstrap_lrt(two_clusters, max_components=4, n_boot=19, random_state=0)


def test_bootstrap_lrt_stops_at_the_true_k(lrt, two_clusters):
    table = lrt.table.set_index("n_components")
    # 1 vs 2 is rejected with the smallest possible p; 2 vs 3 is not, so testing stops.
    assert list(table.index) == [1, 2]
    assert table.loc[1, "p_value"] == pytest.approx(1 / 20)
    assert table.loc[2, "p_value"] > lrt.level
    assert lrt.choice == 2
    one = select_components(two_clusters, components=[1, 2], random_state=0)
    assert table.loc[1, "lrt"] > 100 and one.choices["bic"].n_components == 2


def test_bootstrap_lrt_p_value_is_mclusts_formula(lrt):
    for row in lrt.table.itertuples():
        stats_b = lrt.replicates[row.n_components]
        assert stats_b.size == row.n_boot - row.n_failed
        expected = (1 + np.sum(stats_b >= row.lrt)) / (stats_b.size + 1)
        assert row.p_value == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_components": 1}, "max_components=1 is not allowed"),
        ({"max_components": 31}, r"max_components=31 .*\[2, n_samples=30\]"),
        ({"n_boot": 0}, "n_boot=0 is not allowed"),
        ({"level": 1.5}, "level=1.5 is not allowed"),
        ({"covariance_type": "EEE"}, "'EEE'"),
    ],
)
def test_bootstrap_lrt_bad_settings(kwargs, message):
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match=message):
        bootstrap_lrt(X, **kwargs)
