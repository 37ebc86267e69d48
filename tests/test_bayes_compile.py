"""One compiled nutpie model per structure: any n, and inherited by forked workers.

The tests use the 1-D, K=2 'full' structure of tests/test_bayes_sampling.py, so in a run of
both files the model compiles once. Each test counts calls of nutpie's compiler, which is
what "no second compile" means whatever compiled first.
"""

import multiprocessing
import os

import numpy as np
import pytest

from workbench.bayes import fit_bayes
from workbench.bayes.sampling import clear_model_cache, precompile
from workbench.mixture import MixtureParams, log_prob, sample

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning"),
]

TRUTH = MixtureParams(np.array([0.4, 0.6]), np.array([[-3.0], [2.0]]), np.array([[[1.0]], [[0.5]]]))
SETTINGS = {"chains": 2, "draws": 300, "tune": 300, "cores": 1}


@pytest.fixture
def compiles(monkeypatch):
    """Compiles of a nutpie model during the test: the fast model's or PyMC's."""
    import nutpie

    from workbench.bayes import fast_model

    calls = []

    def counting(module, name):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    counting(nutpie, "compile_pymc_model")
    counting(fast_model, "compile_fast_model")
    return calls


def assert_recovers_means(fit, truth: MixtureParams) -> None:
    """Every true mean lies within 4 posterior sds of its posterior mean."""
    means = fit.means.reshape(-1, *fit.means.shape[2:])
    z = np.abs(means.mean(axis=0) - truth.means) / means.std(axis=0)
    assert np.all(z < 4), z


def test_precompile_compiles_once_and_fits_reuse_it(compiles):
    # Runs first: alone it compiles here; after tests/test_bayes_sampling.py in the same
    # process the structure is already compiled and nothing is.
    seconds = precompile(1, 2)
    assert len(compiles) <= 1
    assert (seconds > 0) == (len(compiles) == 1)
    assert precompile(1, 2, priors={"dirichlet_concentration": 1.0}) == 0.0
    fit = fit_bayes(sample(TRUTH, 120, 1)[0], 2, random_seed=1, **SETTINGS)
    assert fit.diagnostics["model_reused"] is True
    assert fit.diagnostics["compile_seconds"] == 0.0
    assert len(compiles) <= 1


def test_fits_of_n_50_and_5000_share_one_compiled_model(compiles):
    fits = {}
    for n in (50, 5000):
        X = sample(TRUTH, n, n)[0]
        fit = fit_bayes(X, 2, random_seed=n, **SETTINGS)
        fits[n] = (X, fit)
    assert len(compiles) <= 1
    _, second = fits[5000]
    assert second.diagnostics["model_reused"] is True
    assert second.diagnostics["compile_seconds"] == 0.0
    for n, (X, fit) in fits.items():
        assert fit.diagnostics["max_r_hat"] < 1.05
        assert_recovers_means(fit, TRUTH)
        loglik = fit.idata["log_likelihood"]["x"].values
        assert loglik.shape == (2, 300, n)
        post = fit.idata["posterior"]
        for chain, draw in [(0, 0), (1, 299)]:
            params = MixtureParams(
                post["w"].values[chain, draw],
                post["mu"].values[chain, draw],
                post["cov"].values[chain, draw],
            )
            np.testing.assert_allclose(loglik[chain, draw], log_prob(X, params), rtol=1e-9)
    # n = 5000 pins the posterior far more tightly than n = 50: the data really changed.
    sd = {n: fit.means.std(axis=(0, 1)).max() for n, (_, fit) in fits.items()}
    assert sd[5000] < sd[50] / 4


def test_a_reused_compiled_model_gives_the_draws_of_a_fresh_compile():
    # the cache changes what a fit costs, never what it returns: data of another n swapped
    # in and out of the compiled model leave nothing behind
    X = sample(TRUTH, 80, 3)[0]
    fit_bayes(sample(TRUTH, 400, 4)[0], 2, random_seed=4, **SETTINGS)
    reused = fit_bayes(X, 2, random_seed=3, **SETTINGS)
    assert reused.diagnostics["model_reused"] is True
    clear_model_cache()
    fresh = fit_bayes(X, 2, random_seed=3, **SETTINGS)
    assert fresh.diagnostics["model_reused"] is False
    for name in ("w", "mu", "cov"):
        np.testing.assert_array_equal(
            reused.idata["posterior"][name].values, fresh.idata["posterior"][name].values
        )
    np.testing.assert_array_equal(reused.means, fresh.means)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "gibbs"}, "sampler='gibbs' is not allowed"),
        ({"covariance_type": "banded"}, "covariance_type='banded' is not supported"),
    ],
)
def test_precompile_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        precompile(2, 2, **kwargs)


def _fit_in_child(queue) -> None:
    X = sample(TRUTH, 400, 7)[0]
    fit = fit_bayes(X, 2, random_seed=7, **SETTINGS)
    queue.put(
        {
            "pid": os.getpid(),
            "diagnostics": fit.diagnostics,
            "means": fit.means,
            "loglik_ok": bool(
                np.allclose(
                    fit.idata["log_likelihood"]["x"].values[0, 0],
                    log_prob(
                        X,
                        MixtureParams(
                            fit.idata["posterior"]["w"].values[0, 0],
                            fit.idata["posterior"]["mu"].values[0, 0],
                            fit.idata["posterior"]["cov"].values[0, 0],
                        ),
                    ),
                    rtol=1e-9,
                )
            ),
        }
    )


# Python warns at every fork of a process with threads (OpenBLAS starts its pool at import);
# the fork here is the thing under test.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_samples_with_the_parents_compiled_model(compiles):
    precompile(1, 2)
    n_compiles = len(compiles)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fit_in_child, args=(queue,))
    child.start()
    result = queue.get(timeout=600)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert result["pid"] != os.getpid()
    # the child's compile would not show in the parent's counter: its diagnostics say it
    assert result["diagnostics"]["model_reused"] is True
    assert result["diagnostics"]["compile_seconds"] == 0.0
    assert result["diagnostics"]["max_r_hat"] < 1.05
    assert result["loglik_ok"]
    means = result["means"].reshape(-1, 2, 1)
    z = np.abs(means.mean(axis=0) - TRUTH.means) / means.std(axis=0)
    assert np.all(z < 4), z
    assert len(compiles) == n_compiles


@pytest.mark.parametrize("sampler", ["pymc", "advi"])
def test_samplers_that_compile_per_call_follow_a_new_n(sampler):
    # These samplers share the cached PyMC model too; its data and "obs" dim are resized.
    settings = {"chains": 1, "draws": 200, "tune": 200 if sampler == "pymc" else 3000}
    for n in (40, 400):
        X = sample(TRUTH, n, 100 + n)[0]
        fit = fit_bayes(
            X, 2, sampler=sampler, init=TRUTH, reference=TRUTH, random_seed=n, **settings
        )
        assert fit.idata["log_likelihood"]["x"].shape == (1, 200, n)
        np.testing.assert_array_equal(fit.idata["observed_data"]["x"].values, X)
        np.testing.assert_allclose(fit.posterior_mean().means, TRUTH.means, atol=1.0)
    assert fit.diagnostics["model_reused"] is True
