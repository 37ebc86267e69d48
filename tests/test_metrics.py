import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

from workbench.metrics import (
    central_interval,
    hdi_interval,
    score_point_estimate,
    score_posterior,
)
from workbench.mixture import MixtureParams, flatten_parameters, log_prob, parameter_names
from workbench.simulate import Scenario, simulate

REQUIRED_METRICS = {
    "loglik_train_truth",
    "loglik_train_estimate",
    "lpd_test",
    "lpd_test_truth",
    "ari",
    "fit_seconds",
}


@pytest.fixture(scope="module")
def dataset():
    scenario = Scenario(n_components=3, n_features=2, n_train=300, n_test=400, overlap=0.02)
    return simulate(scenario, 42)


def posterior_draws(truth, n_draws, rng, scale=0.05):
    """Fake posterior draws scattered around the truth, in the truth's component order."""
    weights = rng.dirichlet(truth.weights * 2000, size=n_draws)
    means = truth.means + rng.normal(scale=scale, size=(n_draws, *truth.means.shape))
    factors = rng.uniform(0.9, 1.1, size=(n_draws, truth.n_components, 1, 1))
    return weights, means, truth.covariances * factors


def test_parameter_names_cover_every_scalar_once():
    params = parameter_names(3, 2)
    names = [p.name for p in params]
    kinds = [p.kind for p in params]
    assert len(names) == len(set(names)) == 3 + 3 * 2 + 3 * 3
    assert names[:4] == ["weight[0]", "weight[1]", "weight[2]", "mean[0,0]"]
    assert "cov[2,0,1]" in names and "cov[2,1,0]" not in names
    assert kinds.count("covariance") == 9 and kinds.count("mean") == 6


def test_parameter_names_carry_the_indices_that_flatten_uses():
    rng = np.random.default_rng(0)
    k, d = 3, 2
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d))
    covariances = rng.normal(size=(k, d, d))
    flat = flatten_parameters(weights, means, covariances)
    arrays = {"weight": weights, "mean": means, "covariance": covariances}
    for p, value in zip(parameter_names(k, d), flat, strict=True):
        assert arrays[p.kind][(p.component, *p.position)] == value, p.name


def test_scoring_the_truth_itself(dataset):
    truth = dataset.truth
    score = score_point_estimate(dataset, truth.permuted([2, 0, 1]), fit_seconds=1.5)
    assert REQUIRED_METRICS <= set(score.metrics)
    m = score.metrics
    assert m["loglik_train_estimate"] == pytest.approx(m["loglik_train_truth"], rel=1e-12)
    assert m["lpd_test"] == pytest.approx(m["lpd_test_truth"], rel=1e-12)
    assert m["component_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["fit_seconds"] == 1.5
    map_labels = np.argmax(truth.weighted_log_prob(dataset.X_train), axis=1)
    assert m["ari"] == pytest.approx(adjusted_rand_score(dataset.y_train, map_labels))
    assert m["error_rate"] == pytest.approx(np.mean(map_labels != dataset.y_train))
    assert m["ari"] > 0.8
    for est in score.estimates:
        assert est.estimate == pytest.approx(est.truth, rel=1e-12)
        assert math.isnan(est.sd) and est.intervals == ()
    by_name = {e.parameter: e for e in score.estimates}
    assert by_name["cov[1,0,1]"].truth == truth.covariances[1, 0, 1]
    assert by_name["mean[2,1]"].truth == truth.means[2, 1]
    assert by_name["weight[0]"].kind == "weight"


def test_held_out_density_of_the_truth_beats_a_badly_wrong_model(dataset):
    truth = dataset.truth
    wrong = MixtureParams(
        np.array([0.8, 0.1, 0.1]), truth.means[::-1] + 3.0, truth.covariances * 5.0
    )
    good = score_point_estimate(dataset, truth)
    bad = score_point_estimate(dataset, wrong)
    assert good.metrics["lpd_test"] > bad.metrics["lpd_test"] + 0.5
    assert good.metrics["loglik_train_estimate"] > bad.metrics["loglik_train_estimate"]
    assert bad.metrics["lpd_test_truth"] == good.metrics["lpd_test"]
    assert bad.metrics["component_kl"] > 1.0
    errors = [abs(e.estimate - e.truth) for e in bad.estimates if e.kind == "mean"]
    assert min(errors) > 1.0


def test_posterior_lpd_is_the_log_mean_exp_over_draws(dataset):
    rng = np.random.default_rng(0)
    weights, means, covariances = posterior_draws(dataset.truth, 60, rng, scale=0.3)
    score = score_posterior(dataset, weights, means, covariances)
    per_draw = np.stack(
        [
            log_prob(dataset.X_test, MixtureParams(weights[s], means[s], covariances[s]))
            for s in range(60)
        ]
    )
    expected = np.mean(logsumexp(per_draw, axis=0) - math.log(60))
    assert score.metrics["lpd_test"] == pytest.approx(expected, rel=1e-10)
    # Averaging densities beats averaging log densities (Jensen), and the draws are spread.
    assert score.metrics["lpd_test"] > np.mean(per_draw) + 1e-3
    assert REQUIRED_METRICS <= set(score.metrics)
    assert score.metrics["n_draws"] == score.metrics["n_draws_lpd"] == 60


def test_posterior_lpd_thins_large_draw_sets(dataset):
    rng = np.random.default_rng(1)
    draws = posterior_draws(dataset.truth, 90, rng)
    full = score_posterior(dataset, *draws)
    thinned = score_posterior(dataset, *draws, max_lpd_draws=30)
    assert thinned.metrics["n_draws_lpd"] == 30 and thinned.metrics["n_draws"] == 90
    assert thinned.metrics["lpd_test"] == pytest.approx(full.metrics["lpd_test"], abs=0.01)
    assert thinned.metrics["lpd_test"] != full.metrics["lpd_test"]


def test_posterior_is_aligned_with_one_permutation(dataset):
    rng = np.random.default_rng(2)
    truth = dataset.truth
    weights, means, covariances = posterior_draws(truth, 50, rng)
    shuffle = np.array([1, 2, 0])
    score = score_posterior(
        dataset, weights[:, shuffle], means[:, shuffle], covariances[:, shuffle], method="nuts"
    )
    assert score.method == "nuts"
    by_name = {e.parameter: e for e in score.estimates}
    # Component 0 of the truth is column 2 of the shuffled draws, i.e. column 0 before.
    assert by_name["mean[0,1]"].estimate == pytest.approx(means[:, 0, 1].mean())
    assert by_name["mean[0,1]"].sd == pytest.approx(means[:, 0, 1].std(ddof=1))
    assert by_name["weight[2]"].estimate == pytest.approx(weights[:, 2].mean())
    mean_params = MixtureParams(weights.mean(0), means.mean(0), covariances.mean(0))
    assert score.metrics["loglik_train_estimate"] == pytest.approx(
        np.mean(log_prob(dataset.X_train, mean_params))
    )
    assert score.metrics["lpd_test_plugin"] == pytest.approx(
        np.mean(log_prob(dataset.X_test, mean_params))
    )
    map_labels = np.argmax(mean_params.weighted_log_prob(dataset.X_train), axis=1)
    assert score.metrics["ari"] == pytest.approx(adjusted_rand_score(dataset.y_train, map_labels))


def test_intervals_and_coverage_flags(dataset):
    rng = np.random.default_rng(3)
    truth = dataset.truth
    weights, means, covariances = posterior_draws(truth, 400, rng, scale=0.1)
    means[:, 1, 0] += 5.0  # this posterior misses the true mean[1,0] entirely
    score = score_posterior(dataset, weights, means, covariances, levels=(0.8, 0.99))
    for est in score.estimates:
        assert [(i.kind, i.level) for i in est.intervals] == [
            ("central", 0.8),
            ("hdi", 0.8),
            ("central", 0.99),
            ("hdi", 0.99),
        ]
        for iv in est.intervals:
            assert iv.lower <= est.estimate <= iv.upper
            assert iv.covered == (iv.lower <= est.truth <= iv.upper)
    by_name = {e.parameter: e for e in score.estimates}
    assert not any(iv.covered for iv in by_name["mean[1,0]"].intervals)
    assert all(iv.covered for iv in by_name["mean[0,0]"].intervals if iv.level == 0.99)
    lower, upper = central_interval(means[:, 0, 0][:, None], 0.8)
    central = by_name["mean[0,0]"].intervals[0]
    assert (central.lower, central.upper) == (lower[0], upper[0])


def test_central_and_hdi_intervals_have_known_answers():
    rng = np.random.default_rng(4)
    normal = rng.normal(size=(40_000, 1))
    for interval in (central_interval, hdi_interval):
        lower, upper = interval(normal, 0.9)
        np.testing.assert_allclose([lower[0], upper[0]], [-1.6449, 1.6449], atol=0.05)
    # For an exponential, the HDI starts at 0 and is the shortest 90% interval.
    expo = rng.exponential(size=(40_000, 2))
    lower, upper = hdi_interval(expo, 0.9)
    np.testing.assert_allclose(lower, 0.0, atol=0.01)
    np.testing.assert_allclose(upper, -math.log(0.1), atol=0.1)
    assert np.mean((expo >= lower) & (expo <= upper)) == pytest.approx(0.9, abs=1e-3)
    c_lower, c_upper = central_interval(expo, 0.9)
    assert np.all(upper - lower < c_upper - c_lower)


def test_credible_intervals_are_calibrated_for_an_exact_posterior():
    # theta ~ N(0, 1), y ~ N(theta, 1): the posterior is N(y / 2, 1/2). Intervals from its
    # draws must cover the theta that generated y at the nominal rate.
    rng = np.random.default_rng(5)
    n_sim, level = 1000, 0.9
    theta = rng.normal(size=n_sim)
    y = theta + rng.normal(size=n_sim)
    draws = y / 2 + math.sqrt(0.5) * rng.normal(size=(500, n_sim))
    for interval in (central_interval, hdi_interval):
        lower, upper = interval(draws, level)
        coverage = np.mean((lower <= theta) & (theta <= upper))
        assert abs(coverage - level) < 4 * math.sqrt(level * (1 - level) / n_sim)


def test_outliers_are_left_out_of_ari():
    data = simulate(Scenario(misspecification="outliers", n_train=400, outlier_fraction=0.2), 3)
    score = score_point_estimate(data, data.truth)
    inlier = data.y_train >= 0
    map_labels = np.argmax(data.truth.weighted_log_prob(data.X_train[inlier]), axis=1)
    assert score.metrics["ari"] == pytest.approx(
        adjusted_rand_score(data.y_train[inlier], map_labels)
    )


def test_scoring_errors_name_the_problem(dataset):
    rng = np.random.default_rng(6)
    weights, means, covariances = posterior_draws(dataset.truth, 10, rng)
    two = MixtureParams([0.5, 0.5], np.zeros((2, 2)), np.tile(np.eye(2), (2, 1, 1)))
    with pytest.raises(ValueError, match="2 components but the truth has 3"):
        score_point_estimate(dataset, two)
    with pytest.raises(ValueError, match=r"levels \[1.5\]"):
        score_posterior(dataset, weights, means, covariances, levels=(0.9, 1.5))
    with pytest.raises(ValueError, match="sum to 1"):
        score_posterior(dataset, weights * 1.1, means, covariances)
    with pytest.raises(ValueError, match=r"covariances \(10, 3, 2, 2\)"):
        score_posterior(dataset, weights, means, covariances[:, :, :1])
    with pytest.raises(ValueError, match="n_draws >= 2"):
        score_posterior(dataset, weights[:1], means[:1], covariances[:1])
    with pytest.raises(ValueError, match="max_lpd_draws=0"):
        score_posterior(dataset, weights, means, covariances, max_lpd_draws=0)


def test_stats_reference_for_log_prob_sanity(dataset):
    # The score uses workbench.mixture.log_prob; pin it to scipy once on this dataset.
    truth = dataset.truth
    dens = sum(
        w * stats.multivariate_normal(m, c).pdf(dataset.X_test)
        for w, m, c in zip(truth.weights, truth.means, truth.covariances, strict=True)
    )
    score = score_point_estimate(dataset, truth)
    assert score.metrics["lpd_test_truth"] == pytest.approx(np.mean(np.log(dens)), rel=1e-10)


def test_dgp_density_equals_the_truth_when_well_specified_and_beats_it_otherwise(dataset):
    m = score_point_estimate(dataset, dataset.truth).metrics
    assert m["lpd_test_dgp"] == m["lpd_test_truth"]
    assert m["loglik_train_dgp"] == m["loglik_train_truth"]
    for kind in ("student_t", "skew", "outliers"):
        data = simulate(Scenario(n_test=3000, misspecification=kind, df=3.0), 4)
        m = score_point_estimate(data, data.truth).metrics
        # Expected log density is highest under the true distribution (Gibbs' inequality).
        assert m["lpd_test_dgp"] > m["lpd_test_truth"] + 0.02, kind


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_hdi_holds_the_nominal_share_of_draws_and_arviz_holds_one_more(level):
    from arviz_stats.base import array_stats

    draws = np.random.default_rng(3).normal(size=(1000, 4))
    lower, upper = hdi_interval(draws, level)
    inside = ((draws >= lower) & (draws <= upper)).sum(axis=0)
    assert np.all(inside == math.ceil(level * 1000))
    # the shortest such interval: every window of that many sorted draws is at least as wide
    ordered = np.sort(draws, axis=0)
    k = math.ceil(level * 1000)
    assert np.allclose(upper - lower, (ordered[k - 1 :] - ordered[: 1000 - k + 1]).min(axis=0))
    theirs = array_stats.hdi(draws, level, axis=0)
    theirs_inside = ((draws >= theirs[:, 0]) & (draws <= theirs[:, 1])).sum(axis=0)
    assert np.all(theirs_inside == k + 1)
    assert np.all(theirs[:, 1] - theirs[:, 0] >= upper - lower)


def test_central_interval_is_arviz_equal_tailed_interval():
    draws = np.random.default_rng(4).gamma(2.0, size=(999, 3))
    lower, upper = central_interval(draws, 0.9)
    np.testing.assert_allclose(lower, np.quantile(draws, 0.05, axis=0))
    np.testing.assert_allclose(upper, np.quantile(draws, 0.95, axis=0))
