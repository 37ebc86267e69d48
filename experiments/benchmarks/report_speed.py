"""How long ``workbench report`` takes: the code at a baseline ref against this checkout.

For each study given (a study TOML or its output folder, holding ``study.db``), the report
is built by the code at ``--baseline`` (default ``main``, exported with ``git archive``
and imported through ``PYTHONPATH``) and by this checkout, alternately, each build in a
fresh process on its own copy of the store (``study.db`` and the kept draws), so nothing
stored is modified and both read the same data. A build's seconds include importing
``workbench.report`` (as the ``workbench report`` command does). With ``--workers 1,2``
this checkout is also timed with ``build_report(workers=2)``: the main process and one
worker process draw the figures.

Run: ``.venv/bin/python experiments/benchmarks/report_speed.py STUDY [STUDY ...]
[--baseline REF] [--repeat N] [--workers 1,2]``. The machine has 2 cores shared with
other work, so seconds are noisy: only the ratios of one run mean anything.

Measured 2026-12-02 16:38-16:47 UTC (``--repeat 2 --workers 1,2``; before = main at
9deafbb, whose report code is that of 165bf04; after = this branch), with other sessions'
work sharing the 2 cores: load average 4.0 at the start and 3.3 at the end, so absolute
seconds are inflated; median seconds of 2 fresh processes each, import included:

=====================================================  ======  =====  ============
study                                                  before  after  before/after
=====================================================  ======  =====  ============
quickstart (4 conditions, K=2, d=1/2, 3 levels)        37.65   12.95  2.91
separation-sized (6 conditions, K=3 d=2 full: 18
parameters, 4 levels; 20 replications, 2 x 200 draws)  90.64   15.99  5.67
=====================================================  ======  =====  ============

Two figure processes (``--workers 1,2``: the main process plus one worker) were slower
than one in the same run: 18.84 s (quickstart) and 19.12 s (separation-sized), because
the worker's import of matplotlib and ArviZ competes with the main process for the same
busy cores. ``build_report`` therefore draws in the main process by default. An earlier
run (load average 5-6) gave 51.27 -> 17.11 s (3.00x) and 129.52 -> 21.50 s (6.02x).

Where the quickstart's time goes now (one process, load average 2.3): importing 2.2 s,
posterior plots 1.9 s (4), bias 1.2 s (3, the first figure also loads matplotlib's fonts),
loading the kept draws 0.9 s, coverage 0.9 s (4), EM traces 0.6 s, data plots 0.4 s,
tables and templates 0.8 s: 8.8 s in all. Before, the bias figure alone took 90 s: its
rows were subfigures whose axes shared x, and matplotlib redraws the whole figure (with
constrained layout) on every change of limits of an axis shared with another subfigure.

The separation-sized store was made by running a copy of ``experiments/separation.toml``
with ``replications = 20``, ``chains = 2``, ``draws = 200``, ``tune = 200`` and
``n_init = 3`` in a temporary folder: the report's cost depends on conditions x
parameters x levels (and the kept draws of one replication per condition), not on the
number of replications or on sampling settings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

from child_json import run_child

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import workbench.report
from workbench.report import build_report
t1 = time.perf_counter()
study, workers, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if not workbench.report.__file__.startswith(expected):
    raise SystemExit(f"imported {workbench.report.__file__}, not the code under {expected}")
kwargs = {} if workers == 0 else {"workers": workers}
build_report(study, **kwargs)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "total": t2 - t0}))
"""

#: What a build needs from a study's output folder; the rest (figures, tables) it writes.
STORE_FILES = ("study.db", "draws")


def _export(ref: str, into: Path) -> Path:
    """The ``workbench`` package at ``ref``, extracted under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "baseline.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "workbench"], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _store_folder(study: str) -> Path:
    """The output folder of a study TOML (or the folder itself), with its ``study.db``."""
    from workbench.study.locate import stored_study_directory

    return stored_study_directory(study)


def _copy_store(source: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    for name in STORE_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, into / name)
        elif path.is_file():
            shutil.copy2(path, into / name)
    return into


def _build(code: Path, store: Path, workers: int) -> dict[str, float]:
    """Seconds of one report build in a fresh process importing ``code/workbench``."""
    return run_child(
        CHILD, [str(store), str(workers), str(code / "workbench")], {"PYTHONPATH": str(code)}, code
    )


def main() -> None:
    """Time the report builds and print seconds and before/after ratios per study."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", metavar="STUDY", help="study TOML or folder")
    parser.add_argument("--baseline", default="main", help="git ref of the 'before' code")
    parser.add_argument("--repeat", type=int, default=1, help="builds per variant (median)")
    parser.add_argument(
        "--workers",
        default="1",
        help="comma-separated figure worker counts to time for this checkout (e.g. 1,2)",
    )
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = _export(args.baseline, Path(tmp) / "baseline")
        variants = [(f"before ({args.baseline})", base, 0)] + [
            (f"after, workers={w}", ROOT, w) for w in worker_counts
        ]
        for n, study in enumerate(args.studies):
            source = _store_folder(study)
            seconds: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in variants}
            for r in range(args.repeat):
                for i, (label, code, workers) in enumerate(variants):
                    store = _copy_store(source, Path(tmp) / f"store-{n}-{r}-{i}")
                    seconds[label].append(_build(code, store, workers))
                    shutil.rmtree(store)
            print(f"\n## {study} ({source}), median of {args.repeat}")
            print(f"{'variant':28s} {'import s':>9s} {'build s':>9s} {'total s':>9s} {'ratio':>7s}")
            before = statistics.median(s["total"] for s in seconds[variants[0][0]])
            for label, _, _ in variants:
                row = {
                    k: statistics.median(s[k] for s in seconds[label]) for k in seconds[label][0]
                }
                print(
                    f"{label:28s} {row['import']:9.2f} {row['build']:9.2f} {row['total']:9.2f} "
                    f"{before / row['total']:7.2f}"
                )
    print(f"\nload average at end: {os.getloadavg()}  (ratio = before total / this total)")


if __name__ == "__main__":
    main()
