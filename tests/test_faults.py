"""Faults the user's environment causes, reproduced for real wherever this machine allows.

A tmpfs that fills up, a file in place of the output folder, a read-only folder (as a
non-root user, and as a read-only bind mount), bytes overwritten in the database, a
truncated or missing draws file, a Dask worker and a Dask scheduler killed with ``kill -9``.
Where a real fault is impossible here (no permission to mount, no way to drop root), the
test skips and says why, and an injected fault (SQLite's ``max_page_count`` makes it raise
a real ``SQLITE_FULL``) covers the same code.

Every test checks the one-line message and the exit code, that every task committed before
the fault is still stored with identical values, and, where a rerun makes sense, that
resuming gives the results of a clean run (the tidy export, apart from timings).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main
from workbench.study.config import parse_study
from workbench.study.executors import DaskExecutor, LostTask
from workbench.study.export import tidy_results
from workbench.study.runner import run_study
from workbench.study.store import (
    BACKUP_NAME,
    DB_NAME,
    TASK_TABLES,
    StoreDamagedError,
    StoreFullError,
    StudyStore,
)
from workbench.study.task import TaskSpec, run_task

REPLICATIONS = 10
EM_STUDY = """
name = "faults"
seed = 7
replications = {replications}
[scenario]
n_components = 2
n_features = 1
n_train = 40
n_test = 40
[design]
overlap = [0.01, 0.05]
[methods.em]
n_init = 1
[output]
backup_every = {backup_every}
backup_minutes = 0
"""
N_TASKS = 2 * REPLICATIONS

# tasks of about a quarter of a second, so that a kill lands while workers are busy
DASK_STUDY = """
name = "dask-faults"
seed = 5
replications = 4
[scenario]
n_components = 3
n_features = 2
n_train = 1500
n_test = 40
[design]
overlap = [0.01, 0.05]
[methods.em]
n_init = 2
[output]
backup_every = 0
backup_minutes = 0
"""
N_DASK_TASKS = 8

ADVI_STUDY = """
name = "draws"
seed = 3
replications = 1
[scenario]
n_components = 2
n_features = 1
n_train = 60
n_test = 40
[methods.em]
n_init = 1
[methods.advi]
draws = 50
tune = 200
[output]
keep_draws = "all"
levels = [0.9]
"""

# tidy rows and stored columns that measure time or place, not results
VOLATILE_NAMES = {"fit_seconds", "sampling_seconds", "compile_seconds", "model_reused"}

TaskKey = tuple[int, int]
Snapshot = dict[TaskKey, dict[str, list[tuple[object, ...]]]]


# ----------------------------------------------------------------------------- helpers
def _study_file(directory: Path, *, replications: int = REPLICATIONS, backup_every: int = 0):
    path = directory / "faults.toml"
    path.write_text(EM_STUDY.format(replications=replications, backup_every=backup_every))
    return path


def _run(study: Path, out: Path, *extra: str) -> int:
    return main(
        ["run", str(study), "--output", str(out), "--workers", "1", "--no-progress", *extra]
    )


def _snapshot(directory: Path) -> Snapshot:
    """Every stored row of every task, keyed by task, timings included."""
    conn = sqlite3.connect(directory / DB_NAME)
    try:
        out: Snapshot = {}
        for table in TASK_TABLES:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608
                out.setdefault((row[0], row[1]), {t: [] for t in TASK_TABLES})[table].append(row)
        for rows in out.values():
            for table_rows in rows.values():
                table_rows.sort(key=repr)  # a repaired file may hold them in another order
        return out
    finally:
        conn.close()


def _assert_kept(before: Snapshot, directory: Path) -> None:
    """Every task of ``before`` is still stored, row for row."""
    after = _snapshot(directory)
    missing = sorted(set(before) - set(after))
    assert not missing, f"committed tasks lost: {missing}"
    for key, rows in before.items():
        assert after[key] == rows, key


def _tidy(directory: Path) -> pd.DataFrame:
    with StudyStore(directory) as store:
        table = tidy_results(store)
    return table[~table["name"].isin(VOLATILE_NAMES)].reset_index(drop=True)


def _assert_same_results(directory: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(_tidy(directory), _tidy(reference))


def _clean_subset(before: Snapshot, reference: Path) -> None:
    """The tasks stored before a fault hold exactly the clean run's values (but timings)."""
    clean = _snapshot(reference)
    # the columns of these tables that hold results (not timings, not the worker)
    results_columns = {"tasks": [0, 1, 2, 3, 4, 5, 11], "fits": [0, 1, 2, 3, 4, 5]}
    for key, rows in before.items():
        for table, table_rows in rows.items():
            if table in results_columns:
                columns = results_columns[table]
                assert [[r[i] for i in columns] for r in table_rows] == [
                    [r[i] for i in columns] for r in clean[key][table]
                ], (key, table)
            elif table == "metrics":
                drop = {r for r in table_rows if r[3] in VOLATILE_NAMES}
                assert set(table_rows) - drop == {
                    r for r in clean[key][table] if r[3] not in VOLATILE_NAMES
                }
            else:
                assert table_rows == clean[key][table], (key, table)


def _one_line(err: str) -> str:
    """The single line of an error on stderr."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("workbench: error: "), err
    return lines[0]


def _count_tasks(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        # read-only: a plain connect would create an empty file before the run creates it
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The EM study run without faults, in this process."""
    out = tmp_path_factory.mktemp("clean") / "out"
    config = parse_study(EM_STUDY.format(replications=REPLICATIONS, backup_every=0))
    summary = run_study(config, output=out, progress=False)
    assert (summary.n_run, summary.n_failed) == (N_TASKS, 0)
    return out


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def mounts() -> Iterator[Callable[[list[str], Path], None]]:
    """``mount(args, target)``: mount or skip with the reason; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(args: list[str], target: Path) -> None:
        if shutil.which("mount") is None:
            pytest.skip("no mount command here")
        result = _mount([*args, str(target)])
        if result.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {result.stderr.strip()}")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


# ----------------------------------------------------------------------------- disk full
def test_disk_full_on_a_real_tmpfs_then_free_space_and_resume(
    tmp_path: Path, clean: Path, mounts: Callable[[list[str], Path], None], capsys
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounts(["-t", "tmpfs", "-o", "size=384k", "tmpfs"], small)
    study = _study_file(tmp_path)
    out = small / "out"
    assert _run(study, out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"workbench: error: {out / DB_NAME}: the disk is full while storing")
    assert "SQLITE_FULL" in line and "run the same command again to resume" in line
    assert "rollback" not in line
    before = _snapshot(out)
    assert 0 < len(before) < N_TASKS, "the disk must fill up in the middle of the study"
    _clean_subset(before, clean)

    # free space (grow the file system) and run the same command again
    result = _mount(["-o", "remount,size=16m", str(small)])
    assert result.returncode == 0, result.stderr
    assert _run(study, out) == 0
    _assert_kept(before, out)
    _assert_same_results(out, clean)


def test_injected_sqlite_full_reports_the_cause_and_resumes(
    tmp_path: Path, clean: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # SQLite's max_page_count makes every write past it fail with a real SQLITE_FULL: the
    # same error a full disk gives, on any machine
    connect = StudyStore._connect

    def capped(path: Path) -> sqlite3.Connection:
        conn = connect(path)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        return conn

    out = tmp_path / "out"
    first = _partial_store(tmp_path, clean)
    monkeypatch.setattr(StudyStore, "_connect", staticmethod(capped))
    study = _study_file(tmp_path)
    assert _run(study, out) == 2
    line = _one_line(capsys.readouterr().err)
    assert "the disk is full while storing task" in line and "SQLITE_FULL" in line
    assert "cannot rollback" not in line
    before = _snapshot(out)
    assert len(first) < len(before) < N_TASKS, "the cap must be hit in the middle of the run"
    _assert_kept(first, out)
    _clean_subset(before, clean)

    monkeypatch.setattr(StudyStore, "_connect", staticmethod(connect))
    assert _run(study, out) == 0
    _assert_kept(before, out)
    _assert_same_results(out, clean)


def test_a_failed_commit_is_not_masked_by_the_rollback(tmp_path: Path, clean: Path) -> None:
    shutil.copytree(clean, tmp_path / "out")
    config = parse_study(EM_STUDY.format(replications=REPLICATIONS + 1, backup_every=0))
    spec = TaskSpec(
        condition_id=0,
        replication=REPLICATIONS,
        seed=1,
        scenario=config.conditions[0],
        methods=config.methods,
        levels=config.output.levels,
        keep=True,
    )
    record = run_task(spec)
    assert record.dataset is not None
    # kept data of many pages: the task cannot fit in the free space of existing pages
    big = np.random.default_rng(0).normal(size=(20_000, 1))
    record.dataset = replace(record.dataset, X_train=big, y_train=np.zeros(len(big), int))
    before = _snapshot(tmp_path / "out")
    with StudyStore(tmp_path / "out") as store:
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreFullError) as info:
            store.write_task(record)
        cause = info.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError)
        assert cause.sqlite_errorname == "SQLITE_FULL"
        assert not any("rollback" in note for note in getattr(cause, "__notes__", []))
        assert not store._conn.in_transaction
        assert str(info.value).count("\n") == 0 and "database or disk is full" in str(info.value)
        store._conn.execute(f"PRAGMA max_page_count = {10 * pages}")
        store.write_task(record)  # the store is usable again once there is room
    after = _snapshot(tmp_path / "out")
    assert set(after) - set(before) == {(0, REPLICATIONS)}
    _assert_kept(before, tmp_path / "out")


# ----------------------------------------------------------------------------- output folder
@pytest.mark.parametrize("where", ["file_in_place", "file_as_parent"])
def test_a_file_in_place_of_the_output_folder(tmp_path: Path, where: str, capsys) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker if where == "file_in_place" else blocker / "out"
    assert _run(_study_file(tmp_path), out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"workbench: error: {out}: ")
    assert "a file is in the way of the output folder" in line and "--output" in line
    assert blocker.read_text() == "not a folder"


def _partial_store(directory: Path, clean: Path) -> Snapshot:
    """The study's first replications stored in ``directory / "out"``."""
    config = parse_study(EM_STUDY.format(replications=REPLICATIONS // 2, backup_every=0))
    run_study(config, output=directory / "out", progress=False)
    before = _snapshot(directory / "out")
    _clean_subset(before, clean)
    return before


def _without_privileges() -> list[str]:
    """A command prefix under which folder permissions stop writes.

    As root they do not, so the faulty run drops root with ``setpriv``: it becomes user
    ``nobody`` when that user can run this interpreter, else it stays uid 0 without the
    capabilities that override file permissions (e.g. when Python lives under /root).
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop root to test permissions")
    candidates = [
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"],
    ]
    for prefix in candidates:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "pass"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return prefix
    pytest.skip("setpriv can neither switch to nobody nor drop root's capabilities here")


def test_a_folder_the_user_cannot_write(clean: Path, capsys) -> None:
    as_user = _without_privileges()
    # pytest's tmp_path is private to root; this folder is world-readable
    base = Path(tempfile.mkdtemp(prefix="workbench-faults-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        home.chmod(0o777)
        before = _partial_store(base, clean)
        study = _study_file(base)
        study.chmod(0o644)
        (base / "out").chmod(0o555)
        env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home)}
        result = subprocess.run(
            [*as_user, sys.executable, "-m", "workbench.cli", "run", str(study), "--output"]
            + [str(base / "out"), "--workers", "1", "--no-progress"],
            capture_output=True,
            text=True,
            env=env,
            cwd=base,
            timeout=300,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        line = _one_line(result.stderr)
        assert f"{base / 'out'}: cannot write to the output folder: permission denied" in line
        assert "Traceback" not in result.stderr
        _assert_kept(before, base / "out")

        (base / "out").chmod(0o755)
        capsys.readouterr()
        assert _run(study, base / "out") == 0
        _assert_kept(before, base / "out")
        _assert_same_results(base / "out", clean)
    finally:
        shutil.rmtree(base)


def test_a_read_only_file_system(
    tmp_path: Path, clean: Path, mounts: Callable[[list[str], Path], None], capsys
) -> None:
    before = _partial_store(tmp_path, clean)
    out = tmp_path / "out"
    mounts(["--bind", str(out)], out)
    result = _mount(["-o", "remount,bind,ro", str(out)])
    if result.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {result.stderr.strip()}")
    study = _study_file(tmp_path)
    assert _run(study, out) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{out}: cannot write to the output folder: the file system is read-only" in line

    subprocess.run(["umount", str(out)], check=True)
    _assert_kept(before, out)
    assert _run(study, out) == 0
    _assert_kept(before, out)
    _assert_same_results(out, clean)


def test_results_and_report_into_an_unusable_path(tmp_path: Path, clean: Path, capsys) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["results", str(clean), "--output", str(folder)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{folder}: cannot write while writing the results" in line
    assert "a folder is in the way of the file" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["report", str(clean), "--output", str(blocker)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "a file is in the way of the output folder" in line


# ----------------------------------------------------------------------------- damaged store
@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory, clean: Path) -> Path:
    """The EM study with periodic backups every 4 tasks (the last one holds every task)."""
    out = tmp_path_factory.mktemp("backed_up") / "out"
    config = parse_study(EM_STUDY.format(replications=REPLICATIONS, backup_every=4))
    run_study(config, output=out, progress=False)
    assert (out / BACKUP_NAME).is_file()
    backup = sqlite3.connect(out / BACKUP_NAME)
    assert backup.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == N_TASKS
    backup.close()
    _assert_same_results(out, clean)
    return out


def _overwrite_a_page(db: Path, table: str) -> None:
    """Overwrite the header of one of ``table``'s leaf pages with garbage bytes."""
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    try:
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    except sqlite3.OperationalError as exc:  # SQLite built without the dbstat table
        pytest.skip(f"cannot locate {table}'s pages: {exc}")
    finally:
        conn.close()
    assert len(pages) >= 2, f"{table} needs several pages for a partial loss"
    with open(db, "r+b") as handle:
        handle.seek((pages[0] - 1) * page_size)
        handle.write(b"\xff" * 16)


def test_a_damaged_page_is_reported_and_doctor_repairs_what_it_can(
    tmp_path: Path, backed_up: Path, clean: Path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(backed_up, out)
    (out / BACKUP_NAME).unlink()  # no backup: doctor can only salvage
    before = _snapshot(out)
    _overwrite_a_page(out / DB_NAME, "estimates")
    db = out / DB_NAME

    assert main(["status", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"workbench: error: {db} is damaged (integrity_check: ")
    assert f"run `workbench doctor {out} --repair`" in line
    study = _study_file(tmp_path)
    assert _run(study, out) == 2
    assert _one_line(capsys.readouterr().err) == line

    assert main(["doctor", str(out)]) == 2
    assert _one_line(capsys.readouterr().err) == line
    assert main(["doctor", str(out), "--repair"]) == 0
    report = capsys.readouterr().out
    summary = next(s for s in report.splitlines() if s.startswith("repaired"))
    recovered = int(summary.split(": ")[1].split(" tasks recovered")[0])
    lost = int(summary.split(", ")[-1].split(" lost")[0].split()[-1])
    assert recovered + lost == N_TASKS and 0 < lost < N_TASKS, summary
    kept = list(out.glob(f"{DB_NAME}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes()[:16] == b"SQLite format 3\x00"

    # every recovered task is complete and identical; the lost ones are simply absent
    after = _snapshot(out)
    assert len(after) == recovered
    assert all(after[key] == before[key] for key in after)
    assert main(["doctor", str(out)]) == 0
    assert f"{db}: ok, {recovered} tasks" in capsys.readouterr().out

    # a rerun does the lost tasks again
    assert _run(study, out) == 0
    _assert_kept(after, out)
    _assert_same_results(out, clean)


@pytest.mark.parametrize("damage", ["header", "page"])
def test_doctor_restores_from_the_backup(
    tmp_path: Path, backed_up: Path, damage: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("out")  # relative, as a user types it
    shutil.copytree(backed_up, out)
    before = _snapshot(out)
    if damage == "header":
        with open(out / DB_NAME, "r+b") as handle:
            handle.write(b"\x00" * 16)  # no longer "SQLite format 3"
    else:
        _overwrite_a_page(out / DB_NAME, "estimates")
    assert main(["status", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{out / DB_NAME} is damaged (" in line and f"(or from {out / BACKUP_NAME})" in line
    assert main(["doctor", str(out), "--repair"]) == 0
    report = capsys.readouterr().out
    assert ", 0 lost;" in report
    if damage == "header":
        assert f"0 tasks recovered, {N_TASKS} restored from {BACKUP_NAME}" in report
    # the repaired store is the store as it was before the damage, row for row
    assert _snapshot(out) == before
    assert main(["status", str(out)]) == 0


def test_doctor_changes_nothing_when_nothing_can_be_saved(
    tmp_path: Path, backed_up: Path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(backed_up, out)
    (out / BACKUP_NAME).unlink()
    with open(out / DB_NAME, "r+b") as handle:
        handle.write(b"\x00" * 16)
    damaged = (out / DB_NAME).read_bytes()
    names = sorted(p.name for p in out.iterdir())
    assert main(["doctor", str(out), "--repair"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "is damaged beyond repair" in line and "--overwrite" in line
    assert (out / DB_NAME).read_bytes() == damaged
    assert sorted(p.name for p in out.iterdir()) == names


def test_periodic_backups_keep_the_last_one(tmp_path: Path, clean: Path) -> None:
    config = parse_study(EM_STUDY.format(replications=REPLICATIONS, backup_every=3))
    taken: list[int] = []
    backup = StudyStore.backup

    def counting(self: StudyStore) -> Path:
        taken.append(len(self.finished_tasks()))
        return backup(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StudyStore, "backup", counting)
        run_study(config, output=tmp_path / "out", progress=False)
    # every 3 tasks, and once when the run ends
    assert taken == [3, 6, 9, 12, 15, 18, 20]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "bak" in p.name) == [BACKUP_NAME]
    # the backup is a complete store in its own right
    (tmp_path / "restored").mkdir()
    shutil.copy(tmp_path / "out" / BACKUP_NAME, tmp_path / "restored" / DB_NAME)
    _assert_same_results(tmp_path / "restored", clean)


def test_a_damaged_store_never_replaces_the_last_good_backup(
    tmp_path: Path, backed_up: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(backed_up, out)
    good = (out / BACKUP_NAME).read_bytes()
    _overwrite_a_page(out / DB_NAME, "estimates")
    with StudyStore(out) as store, pytest.raises(StoreDamagedError, match="is damaged"):
        store.backup()  # SQLite's backup copies damaged pages as they are
    assert (out / BACKUP_NAME).read_bytes() == good
    assert sorted(p.name for p in out.iterdir() if "bak" in p.name) == [BACKUP_NAME]


def test_backup_options_are_validated() -> None:
    from workbench.study.config import ConfigError

    with pytest.raises(ConfigError, match=r"output.backup_every = -1 is not allowed"):
        parse_study(EM_STUDY.format(replications=1, backup_every=-1))
    text = EM_STUDY.format(replications=1, backup_every=0).replace(
        "backup_minutes = 0", 'backup_minutes = "often"'
    )
    with pytest.raises(ConfigError, match="output.backup_minutes"):
        parse_study(text)
    # backups never change results: the config hash ignores them
    assert (
        parse_study(EM_STUDY.format(replications=1, backup_every=0)).config_hash()
        == parse_study(EM_STUDY.format(replications=1, backup_every=7)).config_hash()
    )


# ----------------------------------------------------------------------------- draws files
@pytest.fixture(scope="module")
def advi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-task study whose ADVI draws are kept as NetCDF."""
    out = tmp_path_factory.mktemp("advi") / "out"
    run_study(parse_study(ADVI_STUDY), output=out, progress=False)
    assert (out / "draws" / "c000-r0000-advi.nc").is_file()
    return out


@pytest.mark.parametrize("fault", ["truncated", "missing"])
def test_report_builds_without_unreadable_draws(
    tmp_path: Path, advi: Path, fault: str, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(advi, out)
    draws = out / "draws" / "c000-r0000-advi.nc"
    if fault == "truncated":
        data = draws.read_bytes()
        draws.write_bytes(data[: len(data) // 2])
    else:
        draws.unlink()
    before = _snapshot(out)
    assert main(["report", str(out)]) == 0
    html = (out / "index.html").read_text()
    markdown = (out / "report.md").read_text()
    reason = "is missing" if fault == "missing" else "is unreadable ("
    for text in (html, markdown):
        assert "The advi posterior plot of this fit is unavailable" in text
        assert f"c000-r0000-advi.nc {reason}" in text
    assert (out / "figures" / "em-c000-r0000.png").is_file()
    assert not (out / "figures" / "posterior-c000-r0000-advi.png").exists()
    _assert_kept(before, out)


@pytest.mark.slow
def test_disk_full_while_writing_a_draws_file_then_resume(
    tmp_path: Path, advi: Path, mounts: Callable[[list[str], Path], None], capsys
) -> None:
    out = tmp_path / "out"
    (out / "draws").mkdir(parents=True)
    # the draws live on a tiny file system, the database does not
    mounts(["-t", "tmpfs", "-o", "size=4k", "tmpfs"], out / "draws")
    (out / "draws" / "filler").write_bytes(b"\0" * 4096)
    study = tmp_path / "draws.toml"
    study.write_text(ADVI_STUDY)
    assert _run(study, out) == 2
    line = _one_line(capsys.readouterr().err)
    target = out / "draws" / "c000-r0000-advi.nc"
    assert line.startswith(f"workbench: error: {target}: the disk is full while writing the draws")
    assert "ENOSPC" in line
    assert _snapshot(out) == {}  # the task was not committed without its draws
    assert list((out / "draws").iterdir()) == [out / "draws" / "filler"]  # no partial file

    (out / "draws" / "filler").unlink()
    result = _mount(["-o", "remount,size=16m", str(out / "draws")])
    assert result.returncode == 0, result.stderr
    assert _run(study, out) == 0
    _assert_same_results(out, advi)


# ----------------------------------------------------------------------------- Dask
class _Cluster:
    """A real Dask scheduler and single-process workers on 127.0.0.1, each its own group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def start(self, n_workers: int) -> str:
        scheduler_file = self.directory / f"scheduler-{time.monotonic_ns()}.json"
        python = [sys.executable, "-m", "dask"]
        self.scheduler = self._spawn(
            [*python, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)]
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [
            self._spawn(
                [*python, "worker", self.address, "--nthreads", "1", "--nworkers", "1"]
                + ["--no-dashboard", "--host", "127.0.0.1"]
            )
            for _ in range(n_workers)
        ]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=120)
        return self.address

    @staticmethod
    def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """``kill -9`` the process group (a worker's nanny and its worker process)."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.kill(process)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[_Cluster]:
    cluster = _Cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def dask_clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dask fault study run without faults, in this process."""
    out = tmp_path_factory.mktemp("dask_clean") / "out"
    summary = run_study(parse_study(DASK_STUDY), output=out, progress=False)
    assert summary.n_run == N_DASK_TASKS
    return out


def _when_stored(db: Path, n: int, action: Callable[[], None]) -> list[int]:
    """Run ``action`` in a thread once ``n`` tasks are stored in ``db``.

    Returns a list that receives the number of stored tasks at the moment of the action.
    """
    stored_then: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 240
        while _count_tasks(db) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        action()
        stored_then.append(_count_tasks(db))

    threading.Thread(target=watch, daemon=True).start()
    return stored_then


@pytest.mark.slow
def test_a_dask_worker_killed_mid_run_is_replaced_and_results_match(
    tmp_path: Path, dask_clean: Path, dask_cluster: _Cluster
) -> None:
    address = dask_cluster.start(n_workers=2)
    victim = dask_cluster.workers[0]
    out = tmp_path / "out"
    stored_then = _when_stored(out / DB_NAME, 2, lambda: _Cluster.kill(victim))
    summary = run_study(
        parse_study(DASK_STUDY),
        output=out,
        executor=DaskExecutor(scheduler=address),
        progress=False,
    )
    # both workers were busy when one died: at least two tasks were still to finish
    assert stored_then and stored_then[0] <= N_DASK_TASKS - 2, stored_then
    assert victim.poll() is not None
    assert (summary.n_run, summary.n_failed) == (N_DASK_TASKS, 0)
    _assert_same_results(out, dask_clean)


@pytest.mark.slow
def test_a_task_whose_workers_keep_dying_is_given_up() -> None:
    # os._exit kills the worker running it: the nanny restarts the worker, the scheduler
    # reruns the task on it, and after allowed_failures + 1 deaths gives it up
    results = list(DaskExecutor(local_workers=1, allowed_failures=1).run(os._exit, [3]))
    assert len(results) == 1 and isinstance(results[0], LostTask)
    assert results[0].item == 3
    assert "Dask workers died" in results[0].reason and "2 different workers" in results[0].reason


def test_a_lost_task_is_stored_as_failed_and_retried(tmp_path: Path, clean: Path, capsys) -> None:
    lost_key = (1, 2)

    class LosingOne:
        """Runs tasks here, but reports one as lost, as DaskExecutor does."""

        description = "in a test"
        chain_cores: int | None = None

        def run(self, fn, items):
            for item in items:
                key = (item.condition_id, item.replication)
                yield LostTask(item, "3 workers died") if key == lost_key else fn(item)

    config = parse_study(EM_STUDY.format(replications=REPLICATIONS, backup_every=0))
    out = tmp_path / "out"
    summary = run_study(config, output=out, executor=LosingOne(), progress=False)
    assert (summary.n_run, summary.n_failed) == (N_TASKS, 1)
    with StudyStore(out) as store:
        failed = store.table("tasks").query("status == 'failed'")
    assert [tuple(k) for k in failed[["condition_id", "replication"]].to_numpy()] == [lost_key]
    assert failed["error"].item() == "worker lost: 3 workers died"
    before = _snapshot(out)
    del before[lost_key]
    assert _run(_study_file(tmp_path), out, "--retry-failed") == 0
    _assert_kept(before, out)
    _assert_same_results(out, clean)


@pytest.mark.slow
def test_a_scheduler_killed_mid_run_stops_it_in_one_line_and_a_rerun_resumes(
    tmp_path: Path, dask_clean: Path, dask_cluster: _Cluster, capsys
) -> None:
    address = dask_cluster.start(n_workers=1)
    scheduler = dask_cluster.scheduler
    assert scheduler is not None
    out = tmp_path / "out"
    study = tmp_path / "dask.toml"
    study.write_text(DASK_STUDY)
    stored_then = _when_stored(out / DB_NAME, 2, lambda: _Cluster.kill(scheduler))
    code = main(["run", str(study), "--output", str(out), "--scheduler", address, "--no-progress"])
    assert stored_then and stored_then[0] < N_DASK_TASKS, stored_then
    assert code == 1
    errors = [s for s in capsys.readouterr().err.splitlines() if s.startswith("workbench: ")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"workbench: error: lost the connection to the Dask scheduler at {address}"
    )
    assert "run the same command to resume" in errors[0]
    before = _snapshot(out)
    assert 2 <= len(before) < N_DASK_TASKS
    _clean_subset(before, dask_clean)

    dask_cluster.stop()
    new_address = dask_cluster.start(n_workers=1)
    assert main(["run", str(study), "--output", str(out), "--scheduler", new_address]) == 0
    _assert_kept(before, out)
    _assert_same_results(out, dask_clean)
