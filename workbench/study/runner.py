"""Run a study: expand it into tasks, run the missing ones, store each as it finishes."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from workbench.study.config import OutputOptions, StudyConfig
from workbench.study.executors import Executor, LocalExecutor, LostTask
from workbench.study.seeds import task_seed
from workbench.study.store import (
    BACKUP_NAME,
    DB_NAME,
    DRAWS_DIR,
    StoreMismatchError,
    StudyStore,
    TaskRecord,
    run_lock,
)
from workbench.study.task import TaskSpec, lost_task_record, run_task

__all__ = ["RunSummary", "open_store_for_run", "run_study", "task_specs"]


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_study` did.

    Attributes
    ----------
    directory : Path
        The output folder.
    n_tasks : int
        Tasks in the study.
    n_already_done : int
        Tasks found in the store before this run.
    n_run : int
        Tasks finished and stored by this run.
    n_failed : int
        Of those, tasks with a failed simulation or fit.
    n_errors : int
        Failed simulations and fits in this run.
    aborted : bool
        True when the run stopped early because ``n_errors`` exceeded ``max_errors``.
    seconds : float
    """

    directory: Path
    n_tasks: int
    n_already_done: int
    n_run: int
    n_failed: int
    n_errors: int
    aborted: bool
    seconds: float

    @property
    def n_remaining(self) -> int:
        return self.n_tasks - self.n_already_done - self.n_run


def task_specs(
    config: StudyConfig,
    skip: set[tuple[int, int]] | None = None,
    chain_cores: int | None = None,
) -> list[TaskSpec]:
    """The study's tasks, replication-major, leaving out those in ``skip``.

    Replication-major order means a run stopped early has results for every condition.
    One exception: the first task of each Bayesian model structure (its
    :attr:`~workbench.study.task.TaskSpec.affinity`) comes first, so that the workers of
    a pool (or a Dask cluster) start by compiling different structures instead of each
    compiling the same one (a cold compile takes one to two minutes).

    Parameters
    ----------
    config : StudyConfig
    skip : set of (condition_id, replication), optional
    chain_cores : int, optional
        See :class:`~workbench.study.task.TaskSpec`.

    Returns
    -------
    list of TaskSpec
    """
    skip = skip or set()
    keep = config.output.keep_draws
    specs = []
    for replication in range(config.replications):
        for condition_id, scenario in enumerate(config.conditions):
            if (condition_id, replication) in skip:
                continue
            specs.append(
                TaskSpec(
                    condition_id=condition_id,
                    replication=replication,
                    seed=task_seed(config.seed, condition_id, replication),
                    scenario=scenario,
                    methods=config.methods,
                    levels=config.output.levels,
                    keep=keep == "all" or (keep == "first" and replication == 0),
                    chain_cores=chain_cores,
                    truth_from_prior=config.truth == "prior",
                    selection=config.selection,
                )
            )
    firsts: dict[tuple, int] = {}
    for index, spec in enumerate(specs):
        firsts.setdefault(spec.affinity, index)
    leading = set(firsts.values())
    return [specs[i] for i in sorted(leading)] + [
        spec for i, spec in enumerate(specs) if i not in leading
    ]


def _remove_store(directory: Path) -> None:
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", BACKUP_NAME):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / DRAWS_DIR, ignore_errors=True)


def _holds_no_study(path: Path) -> bool:
    """True for a database file that exists but has no ``study`` table (nor anything else)."""
    if not path.is_file():
        return False
    if path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # damaged or locked: opening the store reports it
    return tables == 0


def open_store_for_run(
    config: StudyConfig, directory: Path, *, overwrite: bool = False
) -> StudyStore:
    """Open the study's store for writing, creating it if needed.

    Parameters
    ----------
    config : StudyConfig
    directory : Path
        Output folder.
    overwrite : bool
        Delete an existing store (database and draws) first.

    Returns
    -------
    StudyStore

    Raises
    ------
    StoreMismatchError
        If the folder holds results of a study whose config hash differs.
    """
    if overwrite:
        _remove_store(directory)
    # half-written draws of tasks killed in flight (the run lock is held, so none is live)
    for orphan in [*(directory / DRAWS_DIR).glob("*.tmp*"), *directory.glob(f"{BACKUP_NAME}.tmp*")]:
        orphan.unlink()
    if _holds_no_study(directory / DB_NAME):
        # a run killed while creating the store leaves a file without tables: nothing in it
        _remove_store(directory)
    if (directory / DB_NAME).exists():
        store = StudyStore(directory)
        try:
            store.check()  # never add tasks to a damaged file: `workbench doctor` repairs it
        except BaseException:
            store.close()
            raise
        if store.config_hash != config.config_hash():
            name = store.metadata()["name"]
            store.close()
            raise StoreMismatchError(
                f"{directory} holds results of a different configuration of study {name!r} "
                "(the seed, conditions, methods or levels changed); refusing to mix them: "
                "rerun with --output NEW_FOLDER to keep both, or --overwrite to delete the old "
                "results"
            )
        store.update_metadata(config_toml=config.text, config=config.to_dict())
        return store
    return StudyStore.create(
        directory,
        name=config.name,
        config_toml=config.text,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        conditions=[(s.label(), s.to_dict()) for s in config.conditions],
    )


def _as_record(result: TaskRecord | LostTask[TaskSpec]) -> TaskRecord:
    """A task whose workers kept dying is stored as failed, like a failing fit."""
    if isinstance(result, LostTask):
        return lost_task_record(result.item, result.reason)
    return result


class _Backups:
    """Copies the store to ``study.db.bak`` every ``backup_every`` tasks or
    ``backup_minutes`` minutes (``[output]``), and once more when a run that stored
    anything ends, so a damaged disk loses at most the tasks since the last copy."""

    def __init__(self, store: StudyStore, options: OutputOptions) -> None:
        self.store = store
        self.every = options.backup_every
        self.seconds = options.backup_minutes * 60.0
        self.since = 0
        self.last = time.monotonic()

    def task_stored(self) -> None:
        self.since += 1
        due_by_count = self.every > 0 and self.since >= self.every
        due_by_time = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        if due_by_count or due_by_time:
            self._backup()

    def run_ended(self) -> None:
        if self.since and (self.every > 0 or self.seconds > 0):
            self._backup()

    def _backup(self) -> None:
        self.store.backup()
        self.since = 0
        self.last = time.monotonic()


def run_study(
    config: StudyConfig,
    *,
    output: Path | str | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Run the tasks of a study that are not yet in its store.

    Parameters
    ----------
    config : StudyConfig
    output : path-like, optional
        Output folder; default ``config.output_dir``.
    executor : Executor, optional
        Default: :class:`LocalExecutor` with one worker (this process).
    overwrite : bool
        Delete existing results first.
    retry_failed : bool
        Delete stored failed tasks and run them again.
    progress : bool
        Show a progress bar with an ETA on stderr.

    Returns
    -------
    RunSummary

    Raises
    ------
    StoreMismatchError
        If the output folder holds results of a different config.
    StoreError
        If another run is writing to the same folder.
    OutputFolderError, StoreFullError, StoreDamagedError
        If the output folder cannot be written, the disk fills up, or the store is damaged
        (see :mod:`workbench.study.doctor`). Tasks stored before are kept.
    ExecutorError
        If the workers or the Dask scheduler are lost; a rerun resumes.
    """
    directory = Path(output) if output is not None else config.output_dir
    executor = executor or LocalExecutor(1)
    start = time.perf_counter()
    with run_lock(directory), open_store_for_run(config, directory, overwrite=overwrite) as store:
        finished = store.finished_tasks()
        if retry_failed:
            failed = [key for key, status in finished.items() if status == "failed"]
            store.delete_tasks(failed)
            finished = store.finished_tasks()
        # tasks beyond the config's replications (a study shrunk after a run) stay stored
        in_study = {(c, r) for c, r in finished if r < config.replications}
        specs = task_specs(config, skip=in_study, chain_cores=executor.chain_cores)
        n_run = n_failed = n_errors = 0
        aborted = False
        bar = tqdm(
            total=config.n_tasks,
            initial=len(in_study),
            desc=config.name,
            unit="task",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        results = executor.run(run_task, specs)
        backups = _Backups(store, config.output)
        try:
            for result in results:
                record = _as_record(result)
                store.write_task(record)
                backups.task_stored()
                n_run += 1
                n_failed += record.status == "failed"
                n_errors += record.n_errors
                bar.set_postfix(failed=n_failed, refresh=False)
                bar.update()
                if n_errors > config.output.max_errors:
                    aborted = True
                    break
        finally:
            results.close()
            bar.close()
        backups.run_ended()
    return RunSummary(
        directory=directory,
        n_tasks=config.n_tasks,
        n_already_done=len(in_study),
        n_run=n_run,
        n_failed=n_failed,
        n_errors=n_errors,
        aborted=aborted,
        seconds=time.perf_counter() - start,
    )
