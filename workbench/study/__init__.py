"""Simulation studies: config, design, seeds, runner, executors and the SQLite store.

A study is a TOML file (:func:`load_study`), run by :func:`run_study` on an executor
(:class:`LocalExecutor` or :class:`DaskExecutor`) into a :class:`StudyStore`; the store's
module docstring describes every table. Names load on first use: reading a config or a
store never imports the fitting stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr

if TYPE_CHECKING:
    from workbench.study.config import ConfigError, StudyConfig, load_study, parse_study
    from workbench.study.executors import DaskExecutor, LocalExecutor
    from workbench.study.export import status_table, tidy_results, write_results
    from workbench.study.runner import RunSummary, run_study
    from workbench.study.seeds import regenerate_dataset, task_seed, task_streams
    from workbench.study.store import StoreMismatchError, StudyStore

_HOME = {
    "ConfigError": "workbench.study.config",
    "StudyConfig": "workbench.study.config",
    "load_study": "workbench.study.config",
    "parse_study": "workbench.study.config",
    "DaskExecutor": "workbench.study.executors",
    "LocalExecutor": "workbench.study.executors",
    "status_table": "workbench.study.export",
    "tidy_results": "workbench.study.export",
    "write_results": "workbench.study.export",
    "RunSummary": "workbench.study.runner",
    "run_study": "workbench.study.runner",
    "task_seed": "workbench.study.seeds",
    "task_streams": "workbench.study.seeds",
    "StoreMismatchError": "workbench.study.store",
    "StudyStore": "workbench.study.store",
    "regenerate_dataset": "workbench.study.seeds",
}

__all__ = [
    "ConfigError",
    "DaskExecutor",
    "LocalExecutor",
    "RunSummary",
    "StoreMismatchError",
    "StudyConfig",
    "StudyStore",
    "load_study",
    "parse_study",
    "regenerate_dataset",
    "run_study",
    "status_table",
    "task_seed",
    "task_streams",
    "tidy_results",
    "write_results",
]

__getattr__ = lazy_getattr(__name__, _HOME)
