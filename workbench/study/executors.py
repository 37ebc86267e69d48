"""Where tasks run: in this process, in a local process pool, or on a Dask cluster.

Every executor runs a pure function over task specs and yields the results in the order they
finish. Only the main process writes to the store, so workers need no access to the output
folder, and a Dask cluster may live on other machines. Because each task carries its own
seed, the stored results do not depend on the executor, the number of workers or the order
of completion.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple, Protocol, TypeVar

from workbench._platform import available_cpus
from workbench._validation import check_int
from workbench.errors import WorkbenchError

__all__ = [
    "ALLOWED_FAILURES",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "LostTask",
    "default_workers",
]

#: Workers that may die while running one task before it is given up (Dask's
#: ``distributed.scheduler.allowed-failures``, whose default is also 3). A running scheduler
#: keeps its own setting; this one applies to the LocalCluster of ``--dask-local``.
ALLOWED_FAILURES = 3

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results as they finish.

    ``run`` returns a generator: the runner calls its ``close()`` when it stops early
    (``max_errors`` reached, Ctrl-C), which must cancel the tasks that have not started.
    """

    description: str
    #: Chains each task may sample in parallel: None (all CPUs) when tasks run one at a
    #: time in this process, 1 when several tasks share the machine or run on a cluster.
    chain_cores: int | None

    def run(
        self, fn: Callable[[T], R], items: Iterable[T]
    ) -> Generator[R | LostTask[T], None, None]: ...


class LostTask[Item](NamedTuple):
    """An item given up after the workers running it died too often.

    Attributes
    ----------
    item : Item
        The item (a task spec) that did not finish.
    reason : str
        Why, in one line (e.g. the number of workers that died while running it).
    """

    item: Item
    reason: str


class ExecutorError(RuntimeError):
    """Workers died (killed, out of memory, crashed): the run cannot go on as it is."""


class SchedulerUnreachableError(WorkbenchError, ValueError):
    """The Dask scheduler address given by the user does not answer."""


def default_workers() -> int:
    """``min(2, CPUs available)``: the default size of the local pool."""
    return max(1, min(2, available_cpus()))


class LocalExecutor:
    """Run tasks in this process (``workers=1``) or in a pool of worker processes.

    Parameters
    ----------
    workers : int >= 1
        Number of processes. With 1, tasks run in the main process, which keeps compiled
        models and caches warm between tasks.

    Notes
    -----
    Workers are started with ``spawn``: forking a process that has already started BLAS,
    numba or PyTensor threads can deadlock. Worker processes live for the whole run, so each
    pays its import costs once, and a model it compiled stays compiled.

    Items with an ``affinity`` attribute (a task's Bayesian model structure, see
    :attr:`workbench.study.task.TaskSpec.affinity`) go preferably to a worker that has run
    an item of the same affinity, then to an affinity no worker has run yet, and only then
    to any worker; otherwise in the order given. So with two model structures and two
    workers each worker compiles one model instead of both (a compile costs 15-120 s, a
    task a few seconds), and a worker that runs out of its own items takes the others'.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = check_int("workers", workers, minimum=1)
        self.chain_cores: int | None = None if workers == 1 else 1
        self.description = (
            "in this process" if workers == 1 else f"on a local pool of {workers} processes"
        )

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Generator[R, None, None]:
        if self.workers == 1:
            for item in items:
                yield fn(item)
            return
        # One single-process pool per worker, so the next item can be chosen per worker.
        context = multiprocessing.get_context("spawn")
        lanes = [
            ProcessPoolExecutor(max_workers=1, mp_context=context) for _ in range(self.workers)
        ]
        affinities: list[set[Any]] = [set() for _ in lanes]
        pending = list(items)
        running: dict[Future[R], int] = {}

        def submit(lane: int) -> None:
            index = _next_item(pending, affinities, lane)
            item = pending.pop(index)
            affinities[lane].add(getattr(item, "affinity", None))
            running[lanes[lane].submit(fn, item)] = lane

        try:
            for lane in range(min(len(lanes), len(pending))):
                submit(lane)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    lane = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        raise ExecutorError(
                            f"a worker process died ({exc}); the tasks it had not finished "
                            "are not stored: run the same command again to resume"
                        ) from None
                    if pending:
                        submit(lane)
                    yield result
        finally:
            # stop fast on early exit: queued tasks are cancelled, running ones are abandoned
            for pool in lanes:
                pool.shutdown(wait=False, cancel_futures=True)


def _next_item(pending: list[Any], affinities: list[set[Any]], lane: int) -> int:
    """Index of the pending item a free worker (``lane``) runs next (see LocalExecutor)."""
    seen_anywhere = set().union(*affinities)
    first_new = None
    for index, item in enumerate(pending):
        affinity = getattr(item, "affinity", None)
        if affinity in affinities[lane]:
            return index
        if first_new is None and affinity not in seen_anywhere:
            first_new = index
    return 0 if first_new is None else first_new


class DaskExecutor:
    """Run tasks on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    local_workers : int, optional
        Start a ``LocalCluster`` with this many single-threaded worker processes instead.
        Exactly one of ``scheduler`` and ``local_workers`` must be given.
    allowed_failures : int >= 0
        For the LocalCluster: how many workers may die while running one task before it is
        given up (Dask's ``allowed-failures``). A running scheduler uses its own setting.

    Notes
    -----
    The workers must be able to import ``workbench`` (the same version as the main
    process). Results travel back to the main process, which alone writes the store.

    A worker that dies (killed, out of memory) takes its running task with it; the
    scheduler runs the task again on another worker. After ``allowed_failures + 1`` deaths
    while running the same task, ``run`` yields a :class:`LostTask` for it (the runner
    stores it as failed) and goes on. A scheduler that goes away stops the run with an
    :class:`ExecutorError`: the tasks already stored stay, and a rerun resumes.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        local_workers: int | None = None,
        *,
        allowed_failures: int = ALLOWED_FAILURES,
    ) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ValueError("give exactly one of scheduler (an address) and local_workers")
        if local_workers is not None:
            check_int("local_workers", local_workers, minimum=1)
        self.scheduler = scheduler
        self.local_workers = local_workers
        self.allowed_failures = check_int("allowed_failures", allowed_failures, minimum=0)
        # one thread per chain inside a daemonic Dask worker: no process forking there
        self.chain_cores: int | None = 1
        self.description = (
            f"on the Dask scheduler at {scheduler}"
            if scheduler is not None
            else f"on a Dask LocalCluster of {local_workers} workers"
        )

    def run(
        self, fn: Callable[[T], R], items: Iterable[T]
    ) -> Generator[R | LostTask[T], None, None]:
        import dask
        from distributed import Client, LocalCluster, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        cluster: Any = None
        if self.local_workers is not None:
            # the scheduler of a LocalCluster lives in this process and reads this setting
            with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures}):
                cluster = LocalCluster(
                    n_workers=self.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # without a dashboard the scheduler still serves /health and /metrics,
                    # on port 8787 by default: a free port avoids "already in use" warnings
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                )
            client = Client(cluster)
        else:
            try:
                client = Client(self.scheduler, timeout="20s")
            except OSError as exc:
                raise SchedulerUnreachableError(
                    f"cannot reach the Dask scheduler at {self.scheduler!r} ({exc}); "
                    "give the address of a running scheduler, e.g. tcp://host:8786"
                ) from None
        address = self.scheduler if cluster is None else cluster.scheduler_address
        futures = []
        try:
            # pure=False: identical specs never occur, and we never want Dask to reuse results
            items = list(items)
            futures = [client.submit(fn, item, pure=False) for item in items]
            item_of = {future.key: item for future, item in zip(futures, items, strict=True)}
            for future in as_completed(futures):
                try:
                    result: R | LostTask[T] = future.result()
                except KilledWorker as exc:
                    reason = " ".join(str(exc).split())
                    result = LostTask(item_of[future.key], f"Dask workers died: {reason}")
                except FutureCancelledError as exc:
                    raise ExecutorError(
                        f"lost the connection to the Dask scheduler at {address}"
                        f" ({exc.reason}); the finished tasks are stored: start the scheduler "
                        "and its workers again and run the same command to resume"
                    ) from None
                future.release()  # free the result on the cluster once we hold it
                yield result
        finally:
            if client.status == "running":
                client.cancel([f for f in futures if not f.done()])
                client.close()
            else:
                # The scheduler is gone. Closing stops the client's reconnection attempts,
                # which Dask logs as an error with a traceback; the cause is reported already.
                client_log = logging.getLogger("distributed.client")
                level = client_log.level
                client_log.setLevel(logging.CRITICAL)
                try:
                    client.close()
                finally:
                    client_log.setLevel(level)
            if cluster is not None:
                cluster.close()
