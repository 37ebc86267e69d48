"""Where tasks run: in this process, in a local process pool, or on a Dask cluster.

Every executor runs a pure function over task specs and yields the results in the order they
finish. Only the main process writes to the store, so workers need no access to the output
folder, and a Dask cluster may live on other machines. Because each task carries its own
seed, the stored results do not depend on the executor, the number of workers or the order
of completion.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

__all__ = ["DaskExecutor", "Executor", "ExecutorError", "LocalExecutor", "default_workers"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results as they finish.

    Closing the returned iterator early (``break`` or an exception in the consumer) cancels
    the tasks that have not started.
    """

    description: str
    #: Chains each task may sample in parallel: None (all CPUs) when tasks run one at a
    #: time in this process, 1 when several tasks share the machine or run on a cluster.
    chain_cores: int | None

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...


class ExecutorError(RuntimeError):
    """Workers died (killed, out of memory, crashed): the run cannot go on as it is."""


def default_workers() -> int:
    """``min(2, number of CPUs)``: the default size of the local pool."""
    return max(1, min(2, os.cpu_count() or 1))


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
    pays its import and model-compilation costs once.
    """

    def __init__(self, workers: int = 1) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers={workers!r} is not allowed; use an integer >= 1")
        self.workers = workers
        self.chain_cores = None if workers == 1 else 1
        self.description = (
            "in this process" if workers == 1 else f"on a local pool of {workers} processes"
        )

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self.workers == 1:
            for item in items:
                yield fn(item)
            return
        pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )
        try:
            pending: set[Future[R]] = {pool.submit(fn, item) for item in items}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        raise ExecutorError(
                            f"a worker process died ({exc}); the tasks it had not finished "
                            "are not stored: run the same command again to resume"
                        ) from None
                    yield result
        finally:
            # stop fast on early exit: queued tasks are cancelled, running ones are abandoned
            pool.shutdown(wait=False, cancel_futures=True)


class DaskExecutor:
    """Run tasks on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    local_workers : int, optional
        Start a ``LocalCluster`` with this many single-threaded worker processes instead.
        Exactly one of ``scheduler`` and ``local_workers`` must be given.

    Notes
    -----
    The workers must be able to import ``workbench`` (the same version as the main
    process). Results travel back to the main process, which alone writes the store.
    """

    def __init__(self, scheduler: str | None = None, local_workers: int | None = None) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ValueError("give exactly one of scheduler (an address) and local_workers")
        if local_workers is not None and (
            not isinstance(local_workers, int)
            or isinstance(local_workers, bool)
            or local_workers < 1
        ):
            raise ValueError(f"local_workers={local_workers!r} is not allowed; use an integer >= 1")
        self.scheduler = scheduler
        self.local_workers = local_workers
        # one thread per chain inside a daemonic Dask worker: no process forking there
        self.chain_cores = 1
        self.description = (
            f"on the Dask scheduler at {scheduler}"
            if scheduler is not None
            else f"on a Dask LocalCluster of {local_workers} workers"
        )

    def run(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        from distributed import Client, LocalCluster, as_completed
        from distributed.scheduler import KilledWorker

        cluster: Any = None
        if self.local_workers is not None:
            cluster = LocalCluster(
                n_workers=self.local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            client = Client(cluster)
        else:
            try:
                client = Client(self.scheduler, timeout="20s")
            except OSError as exc:
                raise ValueError(
                    f"cannot reach the Dask scheduler at {self.scheduler!r} ({exc}); "
                    "give the address of a running scheduler, e.g. tcp://host:8786"
                ) from None
        futures = []
        try:
            # pure=False: identical specs never occur, and we never want Dask to reuse results
            futures = [client.submit(fn, item, pure=False) for item in items]
            for future in as_completed(futures):
                try:
                    result = future.result()
                except KilledWorker as exc:
                    raise ExecutorError(
                        f"Dask workers died while running a task ({exc}); the unfinished "
                        "tasks are not stored: run the same command again to resume"
                    ) from None
                future.release()  # free the result on the cluster once we hold it
                yield result
        finally:
            client.cancel([f for f in futures if not f.done()])
            client.close()
            if cluster is not None:
                cluster.close()
