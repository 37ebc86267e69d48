"""The numba fast model is the PyMC model: same log density (up to a constant), gradient,
layout and draws, for every parametrisation; nutpie samples it; new processes load it.

PyMC's reference functions are compiled with ``mode="FAST_COMPILE"`` (Python linker): no
C or numba compile, so every parametrisation costs a second or two.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytensor
import pytest

from workbench.bayes import fast_model
from workbench.bayes.model import build_model, initial_values
from workbench.bayes.priors import BayesPriors
from workbench.bayes.sampling import _unconstrained_map, clear_model_cache, fit_bayes
from workbench.mixture import MixtureParams, sample

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")

# (n_features, n_components, covariance_type, ordered_means): every parametrisation of
# model._parametrisation, d = 1 and d > 1, ordered and not, K = 1.
CASES = [
    (2, 3, "full", True),
    (3, 2, "full", False),
    (2, 3, "tied", True),
    (3, 2, "diag", True),
    (2, 3, "spherical", False),
    (1, 2, "full", True),
    (1, 3, "spherical", False),
    (1, 2, "tied", True),
    (2, 1, "full", True),
    (1, 1, "tied", True),
]
# Non-default structural priors, so that alpha and eta enter the comparison.
PRIORS = BayesPriors(dirichlet_concentration=0.7, lkj_eta=1.5, mean_scale=3.0)


def _data(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.normal(size=(n, d)) * np.linspace(1.0, 2.0, d) + np.arange(d)


class Case:
    """One parametrisation: the PyMC model, its reference functions and the fast model."""

    def __init__(self, d: int, K: int, covariance_type: str, ordered: bool):
        self.X = _data(np.random.default_rng(d * 10 + K), 60, d)
        self.covariance_type = covariance_type
        self.model = build_model(
            self.X, K, covariance_type=covariance_type, priors=PRIORS, ordered_means=ordered
        )
        self.structure = fast_model.structure_of(self.model, covariance_type, PRIORS)
        self.compiled = fast_model.compile_fast_model(self.model, covariance_type, PRIORS)
        self.logp = self.model.compile_logp(jacobian=True, mode="FAST_COMPILE")
        self.dlogp = self.model.compile_dlogp(jacobian=True, mode="FAST_COMPILE")
        self.free = [self.model.rvs_to_values[rv] for rv in self.model.free_RVs]

    def point(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The flat vector split into PyMC's value variables (nutpie's order)."""
        names, shapes, _ = fast_model.layout(self.structure)
        point, pos = {}, 0
        n_free = len(self.free)
        for name, shape in zip(names[:n_free], shapes[:n_free], strict=True):
            size = int(np.prod(shape, dtype=int))
            point[name] = x[pos : pos + size].reshape(shape)
            pos += size
        assert pos == x.size
        return point

    def set_data(self, X: np.ndarray) -> object:
        """Swap ``X`` and its hyperparameters into the PyMC model and the fast model."""
        updates = {"x_data": X, **PRIORS.resolve(X)}
        for name, value in updates.items():
            self.model[name].set_value(value)
        return self.compiled.with_data(**updates)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(map(str, c)))
def case(request) -> Case:
    return Case(*request.param)


def _c_logp(compiled, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call the C entry point nutpie calls, with the compiled model's user data."""
    pointer = ctypes.POINTER(ctypes.c_double)
    grad, logp = np.full(x.size, np.nan), np.full((), np.nan)
    code = compiled.compiled_logp_func.ctypes(
        x.size,
        x.ctypes.data_as(pointer),
        grad.ctypes.data_as(pointer),
        logp.ctypes.data_as(pointer),
        compiled.user_data.ctypes.data,
    )
    return code, float(logp), grad


def _c_expand(compiled, x: np.ndarray) -> tuple[int, np.ndarray]:
    pointer = ctypes.POINTER(ctypes.c_double)
    out = np.full(compiled.n_expanded, np.nan)
    code = compiled.compiled_expand_func.ctypes(
        x.size,
        compiled.n_expanded,
        x.ctypes.data_as(pointer),
        out.ctypes.data_as(pointer),
        compiled.user_data.ctypes.data,
    )
    return code, out


def test_layout_is_pymcs(case):
    from nutpie.compile_pymc import _compute_shapes

    shapes = _compute_shapes(case.model)
    free = [value.name for value in case.free]
    rest = [v.name for v in case.model.unobserved_value_vars if v.name not in free]
    names, fast_shapes, reparameterized = fast_model.layout(case.structure)
    assert names == free + rest
    assert fast_shapes == [tuple(int(s) for s in shapes[name]) for name in names]
    transformed = [
        case.model.rvs_to_values[rv].name
        for rv in case.model.free_RVs
        if case.model.rvs_to_transforms[rv] is not None
    ]
    assert reparameterized == transformed
    assert case.compiled.n_dim == sum(int(np.prod(s, dtype=int)) for s in fast_shapes[: len(free)])


@pytest.mark.parametrize("n", [60, 7, 400])
def test_logp_and_gradient_match_pymc_for_any_n(case, n):
    # one compiled function, data of three lengths swapped in with with_data
    rng = np.random.default_rng(n)
    X = case.X if n == 60 else _data(rng, n, case.X.shape[1])
    compiled = case.set_data(X)
    differences = []
    for _ in range(4):
        x = rng.normal(scale=0.8, size=compiled.n_dim)
        code, value, grad = _c_logp(compiled, x)
        assert code == 0
        point = case.point(x)
        differences.append(value - case.logp(point))
        np.testing.assert_allclose(grad, case.dlogp(point), rtol=1e-8, atol=1e-8)
    # the constant offset is the same at every point
    np.testing.assert_allclose(differences, differences[0], rtol=0, atol=1e-8)


def test_expanded_draw_matches_pymcs_variables(case):
    compiled = case.set_data(case.X)
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.8, size=compiled.n_dim)
    code, out = _c_expand(compiled, x)
    assert code == 0
    free = {value.name for value in case.free}
    rest = [v for v in case.model.unobserved_value_vars if v.name not in free]
    reference = pytensor.function(case.free, rest, mode="FAST_COMPILE", on_unused_input="ignore")
    expected = [x, *(np.ravel(v) for v in reference(*case.point(x).values()))]
    np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-12, atol=1e-14)


def test_start_values_map_as_pymcs_initial_point(case):
    rng = np.random.default_rng(11)
    K, d = case.structure.n_components, case.structure.n_features
    a = rng.normal(size=(K, d, d))
    start = MixtureParams(
        rng.dirichlet(np.ones(K)), rng.normal(size=(K, d)), a @ a.transpose(0, 2, 1) + np.eye(d)
    )
    values = initial_values(case.model, start, case.covariance_type)
    np.testing.assert_allclose(
        fast_model.unconstrained_point(values, case.structure),
        _unconstrained_map(case.model)(values),
        rtol=1e-13,
    )


def test_a_weight_that_underflows_keeps_the_log_density_of_pymcs_compiled_model():
    # nutpie compiles PyMC's logp with PyTensor's rewrites, which turn log(softmax) into a
    # log-softmax: a weight of exactly 0.0 keeps a finite log density. The near-empty
    # components of a sparse mixture (Dirichlet 0.01) go there; FAST_COMPILE (no rewrites)
    # would say -inf, so the reference here is compiled with the numba backend.
    rng = np.random.default_rng(0)
    priors = BayesPriors(dirichlet_concentration=0.01)
    X = _data(rng, 80, 1)
    model = build_model(X, 2, priors=priors)
    compiled = fast_model.compile_fast_model(model, "full", priors)
    logp = model.compile_logp(jacobian=True, mode="NUMBA")
    dlogp = model.compile_dlogp(jacobian=True, mode="NUMBA")
    offsets = []
    for y in (-2.0, -800.0):  # w = softmax([y, -y]): exp(-1600) underflows
        x = np.array([y, -1.0, 0.5, 0.1, -0.2])
        point = {
            "w_simplex__": x[:1],
            "mu_first_ordered__": x[1:3],
            "sigma_log__": x[3:].reshape(2, 1),
        }
        code, value, grad = _c_logp(compiled, x)
        assert code == 0
        offsets.append(value - logp(point))
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-8, atol=1e-8)
    assert np.isfinite(offsets).all()
    np.testing.assert_allclose(offsets[1], offsets[0], rtol=0, atol=1e-8)


def test_entry_point_rejects_a_wrong_size_and_flags_non_finite_values():
    case = Case(1, 2, "full", True)
    compiled = case.set_data(case.X)
    assert _c_logp(compiled, np.zeros(compiled.n_dim + 1))[0] == -1
    # a log-gap of 800 overflows exp: nutpie gets "non-finite", a divergence, not a crash
    x = np.zeros(compiled.n_dim)
    x[2] = 800.0
    assert _c_logp(compiled, x)[0] in (3, 4)


def test_supported_nutpie_versions():
    assert fast_model.supported("0.16.11")
    assert not fast_model.supported("0.17.0")


# ---------------------------------------------------------------------------------------
# nutpie end to end
# ---------------------------------------------------------------------------------------

SETTINGS = {"chains": 2, "draws": 300, "tune": 300, "cores": 1}
TRUTH_1D = MixtureParams(
    np.array([0.4, 0.6]), np.array([[-3.0], [2.0]]), np.array([[[1.0]], [[0.5]]])
)
TRUTH_2D = MixtureParams(
    np.array([0.5, 0.5]),
    np.array([[-3.0, 1.0], [3.0, -1.0]]),
    np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]]),
)


def _posterior_layout(fit) -> dict[str, tuple[int, ...]]:
    return {name: var.shape for name, var in fit.idata["posterior"].data_vars.items()}


def _model_layout(X: np.ndarray, K: int, chains: int, draws: int) -> dict[str, tuple[int, ...]]:
    """What PyMC's model has to store: its free variables and deterministics, per draw."""
    from nutpie.compile_pymc import _compute_shapes

    model = build_model(X, K)
    shapes = _compute_shapes(model)
    names = [rv.name for rv in model.free_RVs] + [v.name for v in model.deterministics]
    return {name: (chains, draws, *map(int, shapes[name])) for name in names}


@pytest.mark.slow
@pytest.mark.parametrize("truth", [TRUTH_1D, TRUTH_2D], ids=["1d", "2d"])
def test_fit_recovers_the_truth_with_pymcs_variables(truth):
    X = sample(truth, 400, 3)[0]
    fit = fit_bayes(X, 2, random_seed=3, **SETTINGS)
    assert fit.diagnostics["sampler"] == "nutpie"
    assert fit.diagnostics["max_r_hat"] < 1.05
    means = fit.means.reshape(-1, *fit.means.shape[2:])
    z = np.abs(means.mean(axis=0) - truth.means) / means.std(axis=0)
    assert np.all(z < 4), z
    assert _posterior_layout(fit) == _model_layout(X, 2, 2, 300)


@pytest.mark.slow
def test_sort_ordering_samples_the_unordered_fast_model():
    X = sample(TRUTH_2D, 300, 4)[0]
    fit = fit_bayes(X, 2, covariance_type="diag", ordering="sort", random_seed=4, **SETTINGS)
    assert fit.diagnostics["max_r_hat"] < 1.05
    np.testing.assert_allclose(fit.posterior_mean().means, TRUTH_2D.means, atol=0.5)


@pytest.mark.slow
def test_unsupported_nutpie_falls_back_to_compiling_the_pymc_model(monkeypatch):
    import nutpie

    calls = []
    original = nutpie.compile_pymc_model

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(nutpie, "compile_pymc_model", counted)
    monkeypatch.setattr(fast_model, "supported", lambda: False)
    X = sample(TRUTH_1D, 200, 5)[0]
    clear_model_cache()
    try:
        fit = fit_bayes(X, 2, random_seed=5, **SETTINGS)
    finally:
        clear_model_cache()
    assert len(calls) == 1
    assert fit.diagnostics["max_r_hat"] < 1.05
    assert _posterior_layout(fit) == _model_layout(X, 2, 2, 300)


CHILD = """
import json, sys, time
import numpy as np
from workbench.bayes import fast_model
from workbench.bayes.model import build_model
from workbench.bayes.priors import BayesPriors

model = build_model(np.random.default_rng(0).normal(size=(30, 2)), 3)
t0 = time.perf_counter()
fast_model.compile_fast_model(model, "full", BayesPriors())
seconds = time.perf_counter() - t0
print(json.dumps({"hits": [f.cache_hits for f in fast_model._cfuncs()], "seconds": seconds}))
"""


def test_a_new_process_loads_the_compiled_model_from_numbas_disk_cache():
    # This process has compiled (or loaded) the entry points: they are on disk now.
    Case(1, 2, "full", True)
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=300
    )
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["hits"] == [1, 1]
    # generous: loading took 0.3 s on the loaded 2-core machine, compiling 16 s
    assert child["seconds"] < 8.0
