"""Simulation studies: config, design, seeds, runner, executors and the SQLite store.

A study is a TOML file (:func:`load_study`), run by :func:`run_study` on an executor
(:class:`LocalExecutor` or :class:`DaskExecutor`) into a :class:`StudyStore`; the store's
module docstring describes every table.
"""

from workbench.study.config import ConfigError, StudyConfig, load_study, parse_study
from workbench.study.executors import DaskExecutor, LocalExecutor
from workbench.study.export import status_table, tidy_results, write_results
from workbench.study.runner import RunSummary, run_study
from workbench.study.seeds import task_seed, task_streams
from workbench.study.store import StoreMismatchError, StudyStore
from workbench.study.task import regenerate_dataset

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
