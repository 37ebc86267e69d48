"""Compile and sampling speed of the numba fast model against nutpie's PyMC compile (issue 12).

For each case, both ways of building the nutpie model that ``fit_bayes`` samples:

``fast``
    :mod:`workbench.bayes.fast_model`: hand-written numba log density and gradient, two C
    entry points cached by numba (what ``sampler="auto"`` uses).
``pymc``
    ``nutpie.compile_pymc_model`` on the PyMC model (the fallback; what ``fit_bayes`` used
    before), forced by making ``fast_model.supported`` return False.

Each runs in child processes on its own fresh cache folders (``NUMBA_CACHE_DIR`` and
``PYTENSOR_FLAGS=base_compiledir``): a cold child (empty caches, as on a new machine), then a
warm one (a new process on the folders the cold one filled). Each child times
``precompile(d, K)`` (the model plus its start-value map, as ``fit_bayes`` compiles them),
then runs ``fit_bayes`` three times (seeds 1-3 in the cold child, 11-13 in the warm one,
the same for both models) with the defaults (4 chains x (1000 tuning + 1000 draws), 2 cores,
low-rank adaptation) from the EM estimate (10 starts), and reports the sampling seconds and
min bulk ESS of the relabelled component parameters. ESS per sampling second is the median
over a model's six fits (ESS varies with the seed far more than the sampler's speed). The
script prints each model's row and the ratios; the logp-and-gradient cost alone is measured
by ``--gradient``.

Run: ``.venv/bin/python experiments/benchmarks/fast_model.py [--cases n500-d2-k3 n500-d1-k2]``.
Timings on this shared 2-core machine are noisy: compare the ratios of one run.

Measured 2026-12-03 08:27-08:32 UTC on a quiet machine (load average 0.3-1.1 on 2 cores,
the long study had finished), ``--gradient``::

    case         model  cold s  warm s  sample s  min ESS   ESS/s max r_hat
    n500-d2-k3   fast    15.11    0.04      1.58     1460     876    1.0069
    n500-d2-k3   pymc    84.46   13.89      2.17     1274     588    1.0054
    n500-d2-k3: cold compile pymc/fast 5.6x, warm compile pymc/fast 334x, ESS/s fast/pymc 1.49x
    n500-d1-k2   fast    14.97    0.04      0.40     5645   14063    1.0024
    n500-d1-k2   pymc    27.07    7.06      0.44     5673   12790    1.0024
    n500-d1-k2: cold compile pymc/fast 1.8x, warm compile pymc/fast 161x, ESS/s fast/pymc 1.10x
    logp + gradient, one call through nutpie's C entry point, at the EM estimate
    n500-d2-k3   fast   37.8 us, pymc   47.7 us: pymc/fast 1.26x
    n500-d1-k2   fast   21.2 us, pymc   23.7 us: pymc/fast 1.12x

The same seeds give the same draws in every run, so min ESS is the same in a run on the
loaded machine (07:53-08:00, load average 2.5-3.3, the code before its last two commits,
which changed no arithmetic on ordinary points): there the fast model's cold compile took
27.8 s against 86.0 s (d=2, K=3) and 15.7 s against 28.7 s (1-D), warm 0.06 s against
14.6 s, and ESS per sampling second came out at 1.00x and 1.03x, the sampling seconds
being dominated by the load. The cold compile of the fast model is one generic function for
every structure (about half of it LLVM optimisation; ``logp_and_grad`` took 8.5 s of a
profiled 19 s under load), so a second structure on the same machine loads from the cache.
A gradient is 1.1-1.26x cheaper: the EM's fused pass does the likelihood, and its exp and
log per row and component are most of the cost, as in PyTensor's; the rest of the speed-up
in the sampler is the chains' different (equally valid) paths and nutpie's per-draw work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from child_json import cache_env, run_child

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "n500-d2-k3": (500, 2, 3),
    "n500-d1-k2": (500, 1, 2),
}
MODELS = ("fast", "pymc")

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from workbench.bayes import fast_model, sampling
from workbench.em import GaussianMixture
from workbench.simulate import Scenario, simulate

n, d, k, which, seed = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                        int(sys.argv[5]))
if which == "pymc":
    fast_model.supported = lambda nutpie_version=None: False
scenario = Scenario(n_components=k, n_features=d, n_train=n, n_test=10, covariance="full",
                    condition_number=3.0 if d > 1 else 1.0, overlap=0.01)
X = simulate(scenario, 1).X_train
em = GaussianMixture(k, n_init=10, random_state=0).fit(X).to_params()
compile_s = sampling.precompile(d, k)
fits = []
for s in range(seed, seed + 3):
    diag = sampling.fit_bayes(X, k, init=em, random_seed=s, cores=2).diagnostics
    assert diag["model_reused"] and diag["compile_seconds"] == 0.0
    fits.append({"sample": diag["sampling_seconds"], "min_ess": diag["min_ess_bulk"],
                 "max_r_hat": diag["max_r_hat"]})
print(json.dumps({"compile": compile_s, "fits": fits}))
"""

GRADIENT_CHILD = r"""
import ctypes, json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
import nutpie
from workbench.bayes import fast_model
from workbench.bayes.model import DATA, BayesPriors, build_model, initial_values
from workbench.em import GaussianMixture
from workbench.simulate import Scenario, simulate

n, d, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
scenario = Scenario(n_components=k, n_features=d, n_train=n, n_test=10, covariance="full",
                    condition_number=3.0 if d > 1 else 1.0, overlap=0.01)
X = simulate(scenario, 1).X_train
em = GaussianMixture(k, n_init=10, random_state=0).fit(X).to_params()
model = build_model(X, k)
priors = BayesPriors()
structure = fast_model.structure_of(model, "full", priors)
x = fast_model.unconstrained_point(initial_values(model, em, "full"), structure)
data = {DATA: X, **priors.resolve(X)}
models = {"fast": fast_model.compile_fast_model(model, "full", priors).with_data(**data),
          "pymc": nutpie.compile_pymc_model(model).with_data(**data)}
pointer = ctypes.POINTER(ctypes.c_double)
grad, logp = np.empty_like(x), np.empty(())
args = (x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer), logp.ctypes.data_as(pointer))
seconds = {name: [] for name in models}
for _ in range(5):  # interleaved, the fastest round of each counts
    for name, compiled in models.items():
        f, user = compiled.compiled_logp_func.ctypes, compiled.user_data.ctypes.data
        t0 = time.perf_counter()
        for _ in range(2000):
            f(x.size, *args, user)
        seconds[name].append((time.perf_counter() - t0) / 2000)
print(json.dumps({name: min(values) for name, values in seconds.items()}))
"""


def run(cases: list[str]) -> None:
    print(f"load average at start: {os.getloadavg()}")
    print(
        f"{'case':12s} {'model':5s} {'cold s':>7s} {'warm s':>7s} {'sample s':>9s} "
        f"{'min ESS':>8s} {'ESS/s':>7s} {'max r_hat':>9s}"
    )
    for case in cases:
        n, d, k = CASES[case]
        rows = {}
        for model in MODELS:
            with tempfile.TemporaryDirectory() as cache:
                env = cache_env(cache)
                args = [str(n), str(d), str(k), model]
                runs = [run_child(CHILD, [*args, "1"], env), run_child(CHILD, [*args, "11"], env)]
            fits = runs[0]["fits"] + runs[1]["fits"]
            rate = statistics.median(f["min_ess"] / f["sample"] for f in fits)
            rows[model] = (runs, rate)
            cold, warm = runs
            print(
                f"{case:12s} {model:5s} {cold['compile']:7.2f} {warm['compile']:7.2f} "
                f"{statistics.median(f['sample'] for f in fits):9.2f} "
                f"{statistics.median(f['min_ess'] for f in fits):8.0f} {rate:7.0f} "
                f"{max(f['max_r_hat'] for f in fits):9.4f}",
                flush=True,
            )
        (fast_cold, fast_warm), fast_rate = rows["fast"]
        (pymc_cold, pymc_warm), pymc_rate = rows["pymc"]
        print(
            f"{case}: cold compile pymc/fast {pymc_cold['compile'] / fast_cold['compile']:.1f}x, "
            f"warm compile pymc/fast {pymc_warm['compile'] / fast_warm['compile']:.0f}x, "
            f"ESS/s fast/pymc {fast_rate / pymc_rate:.2f}x",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()}")


def run_gradient(cases: list[str]) -> None:
    print("logp + gradient, one call through nutpie's C entry point, at the EM estimate")
    for case in cases:
        n, d, k = CASES[case]
        seconds = run_child(GRADIENT_CHILD, [str(n), str(d), str(k)])
        print(
            f"{case:12s} fast {seconds['fast'] * 1e6:6.1f} us, pymc {seconds['pymc'] * 1e6:6.1f} "
            f"us: pymc/fast {seconds['pymc'] / seconds['fast']:.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--gradient", action="store_true", help="also time one logp + gradient call of each"
    )
    args = parser.parse_args()
    run(args.cases)
    if args.gradient:
        run_gradient(args.cases)


if __name__ == "__main__":
    main()
