"""The ``workbench`` command: a thin layer that parses arguments and calls the library.

Exit codes: 0 success; 1 the study stopped after too many errors, or its workers or its Dask
scheduler were lost; 2 a usage, config, data or folder error, a full disk or a damaged store
(a :class:`~workbench.errors.WorkbenchError`, printed on one line without a traceback;
``--traceback`` shows it); 130 interrupted. Any other
exception is a bug of ours and keeps its traceback.

The library is imported inside each command, so ``workbench --help``, ``status`` and
``results`` start without loading PyMC, ArviZ or matplotlib.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from workbench.bayes.options import DEFAULT_CHAINS, DEFAULT_DRAWS, DEFAULT_TUNE, SAMPLERS
from workbench.em.options import INTERVAL_METHODS, WORKBENCH_N_INIT
from workbench.errors import WorkbenchError
from workbench.mixture import COVARIANCE_TYPES
from workbench.study.executors import (
    DaskExecutor,
    Executor,
    ExecutorError,
    LocalExecutor,
    default_workers,
)
from workbench.study.export import status_table, write_results
from workbench.study.locate import resolve_study, stored_study_directory
from workbench.study.store import (
    BACKUP_NAME,
    DB_NAME,
    StudyStore,
    damaged_error,
    os_error,
)

__all__ = ["main"]


class UsageError(WorkbenchError):
    """A bad command line (named value, what is allowed)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _components(text: str) -> tuple[int, ...]:
    """``"3"`` -> ``(3,)``; ``"1-6"`` -> ``(1, ..., 6)``: one K or a range of K to choose from."""
    low, dash, high = text.partition("-")
    if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not K or a range LOW-HIGH; give integers >= 1, e.g. 3 or 1-6"
        )
    first, last = int(low), int(high) if dash else int(low)
    if first < 1 or last < first:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; give K >= 1 or a range LOW-HIGH with 1 <= LOW <= HIGH"
        )
    return tuple(range(first, last + 1))


def _open_store(study: str) -> StudyStore:
    return StudyStore(stored_study_directory(study))


def _cmd_run(args: argparse.Namespace) -> int:
    config, directory = resolve_study(args.study, args.output)
    if config is None:
        raise UsageError(f"run needs the study TOML file, not the output folder {args.study!r}")
    executor: Executor
    if args.scheduler is not None:
        executor = DaskExecutor(scheduler=args.scheduler)
    elif args.dask_local is not None:
        executor = DaskExecutor(local_workers=args.dask_local)
    else:
        executor = LocalExecutor(args.workers or default_workers())
    print(
        f"study {config.name!r}: {len(config.conditions)} conditions x {config.replications} "
        f"replications, methods {', '.join(config.methods)}; running {executor.description}"
    )
    from workbench.study.runner import run_study

    summary = run_study(
        config,
        output=directory,
        executor=executor,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
    )
    minutes, seconds = divmod(summary.seconds, 60)
    print(
        f"{summary.n_run} tasks run in {int(minutes)}m{seconds:04.1f}s "
        f"({summary.n_failed} failed); {summary.n_already_done + summary.n_run} of "
        f"{summary.n_tasks} stored in {directory / DB_NAME}"
    )
    if summary.aborted:
        print(
            f"workbench: error: stopped after {summary.n_errors} errors (max_errors = "
            f"{config.output.max_errors}); see `workbench status {args.study}`; "
            f"{summary.n_remaining} tasks were not run",
            file=sys.stderr,
        )
        return 1
    if summary.n_failed:
        print(f"{summary.n_failed} tasks failed: see `workbench status {args.study}`")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    config, directory = resolve_study(args.study)
    if not (directory / DB_NAME).is_file():
        assert config is not None  # a folder without a store was rejected by resolve_study
        print(f"study {config.name!r}: not run yet ({directory / DB_NAME} does not exist)")
        print(f"tasks: {config.n_tasks} total, 0 ok, 0 failed, {config.n_tasks} remaining")
        return 0
    with StudyStore(directory) as store:
        store.check()
        replications = config.replications if config else None
        table = status_table(store, replications)
        meta = store.metadata()
        failed = store.table("tasks").query("status == 'failed'")
    total = int(table[["ok", "failed", "remaining"]].to_numpy().sum())
    print(f"study {meta['name']!r}: {directory / DB_NAME}")
    if config is not None and config.config_hash() != meta["config_hash"]:
        print(
            f"note: {args.study} has changed since these results were stored (seed, conditions, "
            "methods or levels); `run` will refuse to mix them"
        )
    print(
        f"tasks: {total} total, {table['ok'].sum()} ok, {table['failed'].sum()} failed, "
        f"{table['remaining'].sum()} remaining"
    )
    print(table.to_string(index=False))
    if len(failed):
        print("\nfailed tasks (condition, replication, seed: error):")
        for row in failed.itertuples(index=False):
            print(f"  {row.condition_id}, {row.replication}, {row.seed}: {row.error}")
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    with _open_store(args.study) as store:
        path = Path(args.output) if args.output else store.directory / f"results.{args.format}"
        try:
            n_rows = write_results(store, path, args.format)
        except OSError as exc:
            raise (os_error(exc, path, "writing the results") or exc) from None
    print(f"wrote {n_rows} rows to {path}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from workbench.study.doctor import check_store, repair_store

    directory = stored_study_directory(args.study)
    check = check_store(directory / DB_NAME)
    tasks = f", {check.n_tasks} tasks" if check.n_tasks is not None else ""
    print(f"{check.path}: {check.summary()}{tasks}")
    backup = directory / BACKUP_NAME
    if backup.is_file():
        backup_check = check_store(backup)
        backup_tasks = f", {backup_check.n_tasks} tasks" if backup_check.n_tasks is not None else ""
        print(f"{backup}: {backup_check.summary()}{backup_tasks}")
    if check.ok:
        return 0
    if not args.repair:
        raise damaged_error(check.path, check.summary())
    result = repair_store(directory)
    print(
        f"repaired {result.path}: {len(result.recovered)} tasks recovered, "
        f"{len(result.restored)} restored from {BACKUP_NAME}, {len(result.lost)} lost; "
        f"the damaged file is kept as {result.damaged_copy}"
    )
    if result.lost:
        print("lost tasks (condition, replication): " + ", ".join(map(str, result.lost)))
    print("run the study again to redo the missing tasks: workbench run STUDY.toml")
    return 0


def _task_id(text: str) -> tuple[int, int]:
    """``"2:5"`` -> ``(2, 5)``: a condition id and a replication."""
    condition, _, replication = text.partition(":")
    if not (condition.isdigit() and replication.isdigit()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not CONDITION:REPLICATION; give two integers >= 0, e.g. 0:0"
        )
    return int(condition), int(replication)


def _cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import build_report

    try:
        index = build_report(args.study, output_dir=args.output, selected=args.select)
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else Path(args.output or args.study)
        raise (os_error(exc, where, "writing the report") or exc) from None
    print(f"report written: {index}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from workbench.realdata import DataError, fit_data, format_fit, read_data_csv

    X = read_data_csv(args.data)
    components = args.components
    if components[-1] > len(X):
        raise DataError(
            f"{args.data}: --components {components[-1]} is more than the "
            f"{len(X)} observations; use at most {len(X)}"
        )
    k, covariance_type = components[0], args.covariance_type
    if len(components) > 1:
        from workbench.realdata.choose import choose_components, format_choice

        choice = choose_components(
            X,
            components,
            covariance_type=args.covariance_type,
            n_init=args.n_init,
            loo=not args.no_loo,
            sparse=args.sparse,
            sampler=args.sampler,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            seed=args.seed,
        )
        print(format_choice(choice))
        # BIC picks the model that is then fitted as for a single K
        bic = choice.em.choices["bic"]
        k, covariance_type = bic.n_components, bic.covariance_type
        print(f"\nfitting the BIC choice: K = {k}, {covariance_type}\n")
    result = fit_data(
        X,
        k,
        covariance_type=covariance_type,
        n_init=args.n_init,
        sampler=args.sampler,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        level=args.level,
        se_method=args.se_method,
        seed=args.seed,
    )
    print(format_fit(result, X))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Compare EM and Bayesian inference for Gaussian mixtures.",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full traceback of every error, user errors included",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    study_help = "the study's TOML file or its output folder"

    run = sub.add_parser("run", help="run a study (resumes: only missing tasks run)")
    run.add_argument("study", metavar="STUDY.toml", help="the study's TOML file")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local worker processes (default: min(2, CPUs))",
    )
    where.add_argument(
        "--scheduler", metavar="ADDR", help="address of a Dask scheduler, e.g. tcp://host:8786"
    )
    where.add_argument(
        "--dask-local",
        type=_positive_int,
        metavar="N",
        help="start a Dask LocalCluster of N workers",
    )
    run.add_argument("--output", metavar="DIR", help="output folder (default: reports/<name>)")
    run.add_argument(
        "--overwrite", action="store_true", help="delete existing results in the output folder"
    )
    run.add_argument("--retry-failed", action="store_true", help="run stored failed tasks again")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    status = sub.add_parser("status", help="done, failed and remaining tasks")
    status.add_argument("study", metavar="STUDY", help=study_help)
    status.set_defaults(handler=_cmd_status)

    results = sub.add_parser(
        "results", help="export tidy results (one row per task x method x quantity)"
    )
    results.add_argument("study", metavar="STUDY", help=study_help)
    results.add_argument("--format", choices=("csv", "parquet"), default="csv")
    results.add_argument(
        "--output",
        metavar="FILE",
        help="output file (default: results.FORMAT in the output folder)",
    )
    results.set_defaults(handler=_cmd_results)

    report = sub.add_parser("report", help="write the HTML/Markdown comparison report")
    report.add_argument("study", metavar="STUDY", help=study_help)
    report.add_argument(
        "--output", metavar="DIR", help="report folder (default: the study's output folder)"
    )
    report.add_argument(
        "--select",
        metavar="CONDITION:REPLICATION",
        action="append",
        type=_task_id,
        help="a fit to show in detail, e.g. 2:5 (repeatable; default: the first kept "
        "replication of each condition)",
    )
    report.set_defaults(handler=_cmd_report)

    doctor = sub.add_parser(
        "doctor", help="check the study's database for damage (SQLite integrity_check)"
    )
    doctor.add_argument("study", metavar="STUDY", help=study_help)
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="keep the damaged file and copy every readable task into a fresh database "
        "(tasks it cannot read come from study.db.bak when it holds them)",
    )
    doctor.set_defaults(handler=_cmd_doctor)

    fit = sub.add_parser("fit", help="fit EM and the Bayesian mixture to a CSV of real data")
    fit.add_argument("data", metavar="DATA.csv", help="numeric CSV, one row per observation")
    fit.add_argument(
        "--components",
        "-k",
        type=_components,
        required=True,
        metavar="K",
        help="K, or a range such as 1-6: print BIC/ICL by covariance type and K, PSIS-LOO "
        "per K and each criterion's choice, then fit the BIC choice",
    )
    fit.add_argument(
        "--no-loo", action="store_true", help="with a range: skip the Bayesian fit at every K"
    )
    fit.add_argument(
        "--sparse",
        action="store_true",
        help="with a range: also fit the sparse overfitted mixture (slow)",
    )
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full")
    fit.add_argument(
        "--n-init", type=_positive_int, default=WORKBENCH_N_INIT, metavar="N", help="EM starts"
    )
    fit.add_argument("--sampler", choices=SAMPLERS, default="auto")
    fit.add_argument("--chains", type=_positive_int, default=DEFAULT_CHAINS, metavar="N")
    fit.add_argument("--draws", type=_positive_int, default=DEFAULT_DRAWS, metavar="N")
    fit.add_argument("--tune", type=_positive_int, default=DEFAULT_TUNE, metavar="N")
    fit.add_argument(
        "--level",
        type=float,
        default=0.94,
        help="level of the credible and EM confidence intervals (default 0.94)",
    )
    fit.add_argument(
        "--se-method",
        choices=INTERVAL_METHODS,
        default="sandwich",
        help="EM standard errors: a Wald interval from the inverse observed information "
        "(hessian), the outer product of scores (opg) or the sandwich (default), or 999 "
        "bootstrap refits",
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=_cmd_fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``workbench`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code.
    """
    args = _parser().parse_args(argv)
    # PyTensor warns once per process that its C backend found no BLAS. The samplers run
    # on numba (nutpie, and PyMC's NUTS inside fit_bayes), so it is noise to a CLI user.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    try:
        return args.handler(args)
    except WorkbenchError as exc:
        # user errors (config, data, folders) end in one line; our bugs keep their traceback
        if args.traceback:
            traceback.print_exc()
        message = " ".join(str(exc).split())
        print(f"workbench: error: {message}", file=sys.stderr)
        return 2
    except ExecutorError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader (e.g. `| head`) stopped reading: not an error of ours
        sys.stdout = open(os.devnull, "w")  # so that flushing at exit does not raise again
        return 0
    except KeyboardInterrupt:
        print(
            "workbench: interrupted; finished tasks are stored, run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
