"""Check a study's store for damage and repair it: ``workbench doctor STUDY [--repair]``.

:func:`check_store` runs SQLite's ``PRAGMA integrity_check`` on ``study.db`` (and on the
periodic backup ``study.db.bak``, see :meth:`StudyStore.backup`).

:func:`repair_store` keeps a copy of the damaged database (``study.db.damaged-<UTC time>``,
with its ``-wal`` file if there is one) and builds a fresh store from every task it can
still read: a task is copied with all of its rows in every table, or not at all. A table
is read by a full scan of its own pages (``NOT INDEXED``), because an index may be damaged
while the table is intact; when the scan hits a damaged page, the table's remaining tasks
are read one by one through its primary-key index instead. Tasks that cannot be read in
full are taken from ``study.db.bak`` when the backup holds them, and are otherwise lost:
``workbench run`` runs them again. The study's metadata and conditions come from the
damaged file when readable, else from the backup.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from workbench.study.store import (
    BACKUP_NAME,
    DB_NAME,
    TASK_TABLES,
    StoreDamagedError,
    create_tables,
    run_lock,
)

__all__ = ["RepairResult", "StoreCheck", "check_store", "repair_store"]

TaskKey = tuple[int, int]
Row = tuple[object, ...]
#: A task's rows, per table.
TaskRows = dict[str, list[Row]]

#: Tables that describe the study rather than a task; copied whole.
_STUDY_TABLES = ("study", "conditions")


@dataclass(frozen=True)
class StoreCheck:
    """What SQLite's integrity check says about one database file.

    Attributes
    ----------
    path : Path
    problems : tuple of str
        The lines of ``PRAGMA integrity_check`` (or the error that stopped it); empty when
        the file is intact.
    n_tasks : int or None
        Stored tasks, when the ``tasks`` table could be counted.
    """

    path: Path
    problems: tuple[str, ...]
    n_tasks: int | None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: ``'ok'`` or ``'integrity_check: <first problems>'``."""
        if self.ok:
            return "ok"
        shown = "; ".join(self.problems[:3])
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return f"integrity_check: {shown}{more}"


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair_store` did.

    Attributes
    ----------
    path : Path
        The repaired ``study.db``.
    damaged_copy : Path
        The damaged database as it was found.
    recovered : tuple of (condition_id, replication)
        Tasks copied from the damaged database.
    restored : tuple of (condition_id, replication)
        Tasks taken from the backup ``study.db.bak``.
    lost : tuple of (condition_id, replication)
        Tasks known to have been stored that could be read from neither; a run does them
        again. Tasks whose every row was on damaged pages cannot be known and are not
        listed; ``workbench run`` finds and runs them too.
    """

    path: Path
    damaged_copy: Path
    recovered: tuple[TaskKey, ...]
    restored: tuple[TaskKey, ...]
    lost: tuple[TaskKey, ...]


def check_store(path: str | os.PathLike[str]) -> StoreCheck:
    """Run ``PRAGMA integrity_check`` on a database file.

    Parameters
    ----------
    path : path-like
        A ``study.db`` (or its backup).

    Returns
    -------
    StoreCheck
    """
    path = Path(path)
    try:
        conn = sqlite3.connect(path, timeout=30.0)
        try:
            lines = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
            n_tasks: int | None
            try:
                n_tasks = int(conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])
            except sqlite3.DatabaseError:
                n_tasks = None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return StoreCheck(path, (str(exc),), None)
    return StoreCheck(path, tuple(line for line in lines if line != "ok"), n_tasks)


class _Source:
    """Reads whatever can be read of one (possibly damaged) database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30.0)

    def close(self) -> None:
        self.conn.close()

    def study_rows(self) -> dict[str, list[Row]] | None:
        """Every row of the study tables, or None when any of them is unreadable."""
        try:
            return {
                table: self.conn.execute(f"SELECT * FROM {table} NOT INDEXED").fetchall()  # noqa: S608
                for table in _STUDY_TABLES
            }
        except sqlite3.DatabaseError:
            return None

    def tasks(self) -> tuple[dict[TaskKey, TaskRows], set[TaskKey]]:
        """The tasks readable in full, and every task key seen at all."""
        scans = {table: self._scan(table) for table in TASK_TABLES}
        seen: set[TaskKey] = set(self._task_index())
        for rows, _ in scans.values():
            seen.update(rows)
        readable: dict[TaskKey, TaskRows] = {}
        for key in seen:
            task_rows = self._task_rows(key, scans)
            if task_rows is not None and task_rows["tasks"]:
                readable[key] = task_rows
        return readable, seen

    def _scan(self, table: str) -> tuple[dict[TaskKey, list[Row]], bool]:
        """The table's rows by task, read from its own pages, and whether the scan ended."""
        found: dict[TaskKey, list[Row]] = {}
        try:
            for row in self.conn.execute(f"SELECT * FROM {table} NOT INDEXED"):  # noqa: S608
                found.setdefault((int(row[0]), int(row[1])), []).append(row)
        except sqlite3.DatabaseError:
            return found, False
        return found, True

    def _task_index(self) -> list[TaskKey]:
        """Task keys from the tasks table's primary-key index alone (it may be intact)."""
        try:
            return [
                (int(c), int(r))
                for c, r in self.conn.execute(
                    "SELECT condition_id, replication FROM tasks "
                    "INDEXED BY sqlite_autoindex_tasks_1"
                )
            ]
        except sqlite3.DatabaseError:
            return []

    def _task_rows(
        self, key: TaskKey, scans: dict[str, tuple[dict[TaskKey, list[Row]], bool]]
    ) -> TaskRows | None:
        rows: TaskRows = {}
        for table, (found, complete) in scans.items():
            if complete:
                rows[table] = found.get(key, [])
                continue
            try:
                rows[table] = self.conn.execute(
                    f"SELECT * FROM {table} WHERE condition_id = ? AND replication = ?",  # noqa: S608
                    key,
                ).fetchall()
            except sqlite3.DatabaseError:
                return None
        return rows


def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[Row]) -> None:
    rows = list(rows)
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608


def repair_store(directory: str | os.PathLike[str]) -> RepairResult:
    """Rebuild a damaged ``study.db`` from every task that can still be read.

    Parameters
    ----------
    directory : path-like
        The study's output folder.

    Returns
    -------
    RepairResult

    Raises
    ------
    StoreDamagedError
        If neither the damaged database nor its backup holds readable study metadata and
        conditions; nothing is changed then.
    StoreError
        If a run is writing to the folder.
    """
    directory = Path(directory)
    path = directory / DB_NAME
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    damaged_copy = directory / f"{DB_NAME}.damaged-{stamp}"
    fresh = directory / f"{DB_NAME}.repair-{stamp}"
    with run_lock(directory):
        # keep the damaged files exactly as found, before SQLite touches them
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copy2(f"{path}{suffix}", f"{damaged_copy}{suffix}")
        sources = [_Source(path)]
        backup_path = directory / BACKUP_NAME
        if backup_path.is_file() and check_store(backup_path).ok:
            sources.append(_Source(backup_path))
        try:
            result = _rebuild(sources, fresh)
        except BaseException:
            # nothing changed: the damaged file is still in place, so neither copy is needed
            for leftover in (fresh, Path(f"{fresh}-journal"), damaged_copy):
                leftover.unlink(missing_ok=True)
            Path(f"{damaged_copy}-wal").unlink(missing_ok=True)
            raise
        finally:
            for source in sources:
                source.close()
        # the old WAL would be replayed into the new file: it goes first
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, path)
    recovered, restored, lost = result
    return RepairResult(path, damaged_copy, recovered, restored, lost)


def _rebuild(
    sources: list[_Source], fresh: Path
) -> tuple[tuple[TaskKey, ...], tuple[TaskKey, ...], tuple[TaskKey, ...]]:
    """Write every readable task of ``sources`` (first source first) into ``fresh``."""
    study = next((rows for s in sources if (rows := s.study_rows()) is not None), None)
    if study is None:
        damaged = sources[0].path
        raise StoreDamagedError(
            f"{damaged} is damaged beyond repair: its study metadata and conditions are "
            f"unreadable and there is no intact {BACKUP_NAME}; run the study again with "
            "--overwrite"
        )
    conn = sqlite3.connect(fresh, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        create_tables(conn)
        for table, table_rows in study.items():
            _insert(conn, table, table_rows)
        conn.execute("COMMIT")
        taken: list[list[TaskKey]] = []
        done: set[TaskKey] = set()
        seen_first: set[TaskKey] = set()
        for i, source in enumerate(sources):
            readable, seen = source.tasks()
            if i == 0:
                seen_first = seen
            keys = sorted(set(readable) - done)
            for key in keys:
                conn.execute("BEGIN IMMEDIATE")
                for table in TASK_TABLES:
                    _insert(conn, table, readable[key][table])
                conn.execute("COMMIT")
            taken.append(keys)
            done.update(keys)
    finally:
        conn.close()
    recovered = tuple(taken[0])
    restored = tuple(k for keys in taken[1:] for k in keys)
    lost = tuple(sorted(seen_first - done))
    return recovered, restored, lost
