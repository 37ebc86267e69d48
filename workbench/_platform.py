"""Everything that depends on the operating system, with portable fallbacks.

``fcntl`` and ``os.sched_getaffinity`` exist on Linux only (``fcntl`` on every POSIX system);
the package must still import and run on macOS and Windows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

__all__ = ["available_cpus", "exclusive_lock"]


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else the count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def exclusive_lock(handle: IO[str]) -> Iterator[bool]:
    """Hold a non-blocking exclusive lock on an open file while the block runs.

    Yields
    ------
    bool
        False if another process holds the lock (then nothing is held). On systems without
        ``fcntl`` (Windows) it yields True without locking: two runs on one folder are then
        not prevented.
    """
    try:
        import fcntl
    except ImportError:
        yield True
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
