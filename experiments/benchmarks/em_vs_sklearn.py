"""Time and memory per EM iteration: workbench.GaussianMixture against scikit-learn's.

Both estimators start from the same weights, means and precisions and run the same
number of iterations (``tol=0``). The time of each iteration comes from the estimators'
own ``verbose=2`` trace, which both print the same way ("time lapse" between consecutive
iteration ends, i.e. one E-step plus one M-step). The first lapse also covers the
initialisation and is dropped; the per-iteration time is the median of the rest, and the
minimum of that over ``--repeats`` fits, alternating the two estimators so that load from
other processes hits both alike.

Peak memory is measured in a fresh subprocess per estimator and case, so neither inherits
memory the other freed but the allocator kept: the rise of the process's peak resident
set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) during one ``fit`` of
``m`` iterations. It counts numba's allocations as well as numpy's.

Run from the repository root::

    .venv/bin/python experiments/benchmarks/em_vs_sklearn.py

Targets (issue 2): >= 5x at (1e6, 2, 5, full), >= 2x at (1e5, 10, 8, full), never slower
(ratio >= 1) anywhere, peak memory no higher than scikit-learn's, and a relative
difference of the final lower bound below 1e-8.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from workbench import GaussianMixture

CASES = [(10_000, 2, 3), (100_000, 10, 8), (1_000_000, 2, 5)]
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
TARGETS = {(1_000_000, 2, 5, "full"): 5.0, (100_000, 10, 8, "full"): 2.0}


def _rss_kib() -> tuple[int, int]:
    status = open("/proc/self/status").read()
    current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return current, peak


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_data(n: int, d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(0.0, 4.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    return centres[labels] + rng.standard_normal((n, d))


def shared_init(X: np.ndarray, k: int, covariance_type: str, rng) -> dict:
    """Means at random rows, unit-variance precisions: a start that needs real EM work."""
    d = X.shape[1]
    precisions = {
        "full": np.stack([np.eye(d)] * k),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[covariance_type]
    return dict(
        weights_init=np.full(k, 1.0 / k),
        means_init=X[rng.choice(len(X), k, replace=False)],
        precisions_init=precisions,
    )


def timed_fit(cls, X, kwargs, max_iter):
    """Fit once; return the model, the per-iteration lapses (s) and the peak memory (MiB)."""
    model = cls(**kwargs, max_iter=max_iter, tol=0.0, verbose=2, verbose_interval=1)
    trace = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(trace):
        # tol=0 never converges, by design: a fixed number of iterations.
        warnings.simplefilter("ignore", ConvergenceWarning)
        _reset_peak()
        before, _ = _rss_kib()
        model.fit(X)
        _, peak = _rss_kib()
    lapses = [
        float(t) for t in re.findall(r"Iteration \d+\t time lapse ([0-9.]+)s", trace.getvalue())
    ]
    assert len(lapses) == max_iter, trace.getvalue()
    return model, lapses[1:], (peak - before) / 1024.0


ESTIMATORS = {"sk": SklearnGaussianMixture, "ours": GaussianMixture}


def iterations_for(n: int) -> int:
    return 21 if n <= 10_000 else 9 if n <= 100_000 else 5


def case_inputs(seed: int, n: int, d: int, k: int, covariance_type: str):
    """Data and shared init of one case; the same in the parent and in every child."""
    rng = np.random.default_rng([seed, n, d, k])
    X = make_data(n, d, k, rng)
    init_rng = np.random.default_rng([seed, n, d, k, COVARIANCE_TYPES.index(covariance_type)])
    kwargs = dict(
        n_components=k,
        covariance_type=covariance_type,
        **shared_init(X, k, covariance_type, init_rng),
    )
    return X, kwargs


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel specialisation before measuring."""
    warm = make_data(5000, 2, 2, np.random.default_rng(0))
    for covariance_type in COVARIANCE_TYPES:
        for cls in ESTIMATORS.values():
            timed_fit(cls, warm, dict(n_components=2, covariance_type=covariance_type), 2)


def memory_child(seed: int, n: int, d: int, k: int, covariance_type: str, name: str) -> None:
    X, kwargs = case_inputs(seed, n, d, k, covariance_type)
    warm_up()
    _, _, peak = timed_fit(ESTIMATORS[name], X, kwargs, iterations_for(n))
    print(peak)


def peak_memory_mib(seed: int, n: int, d: int, k: int, covariance_type: str, name: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(seed), str(n), str(d), str(k)]
        + [covariance_type, name],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        seed, n, d, k, covariance_type, name = args.memory_child
        memory_child(int(seed), int(n), int(d), int(k), covariance_type, name)
        return
    warm_up()

    header = (
        f"{'n':>9} {'d':>3} {'k':>2} {'type':>9} | {'sklearn ms':>10} {'ours ms':>9} "
        f"{'ratio':>6} | {'sk MiB':>7} {'ours MiB':>8} | {'rel diff LB':>11} | target"
    )
    print(header)
    print("-" * len(header))
    failures = []
    for n, d, k in CASES:
        iterations = iterations_for(n)
        for covariance_type in COVARIANCE_TYPES:
            X, kwargs = case_inputs(args.seed, n, d, k, covariance_type)
            per_iter = {name: np.inf for name in ESTIMATORS}
            models = {}
            for _ in range(args.repeats):
                for name, cls in ESTIMATORS.items():
                    model, lapses, _ = timed_fit(cls, X, kwargs, iterations)
                    per_iter[name] = min(per_iter[name], float(np.median(lapses)))
                    models[name] = model
            memory = {
                name: peak_memory_mib(args.seed, n, d, k, covariance_type, name)
                for name in ESTIMATORS
            }
            ratio = per_iter["sk"] / per_iter["ours"]
            lb_sk, lb_ours = models["sk"].lower_bound_, models["ours"].lower_bound_
            rel = abs(lb_ours - lb_sk) / abs(lb_sk)
            target = TARGETS.get((n, d, k, covariance_type), 1.0)
            ok = ratio >= target and memory["ours"] <= memory["sk"] and rel < 1e-8
            if not ok:
                failures.append((n, d, k, covariance_type))
            print(
                f"{n:>9} {d:>3} {k:>2} {covariance_type:>9} | "
                f"{per_iter['sk'] * 1e3:>10.1f} {per_iter['ours'] * 1e3:>9.1f} {ratio:>6.1f} | "
                f"{memory['sk']:>7.1f} {memory['ours']:>8.1f} | {rel:>11.1e} | "
                f">={target:g}x {'ok' if ok else 'MISSED'}",
                flush=True,
            )
    print()
    print("all targets met" if not failures else f"targets missed: {failures}")


if __name__ == "__main__":
    main()
