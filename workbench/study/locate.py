"""Resolve a STUDY argument, a study TOML file or its output folder, to its folder.

The CLI and the report both accept either form; this is the one rule for both.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.study.config import StudyConfig, load_study
from workbench.study.store import DB_NAME, StoreError

__all__ = ["resolve_study", "stored_study_directory"]


def resolve_study(
    study: str | os.PathLike[str], output: str | os.PathLike[str] | None = None
) -> tuple[StudyConfig | None, Path]:
    """Return the study's config (``None`` when given a folder) and its output folder.

    Parameters
    ----------
    study : path
        A study TOML file, or the output folder of a study that has been run.
    output : path, optional
        Overrides the TOML file's output folder; not allowed with a folder.

    Raises
    ------
    StoreError
        If ``study`` is neither form, or a folder holds no stored study.
    """
    path = Path(study)
    if path.is_dir():
        if output is not None:
            raise StoreError(f"--output {str(output)!r} only applies when STUDY is a TOML file")
        if not (path / DB_NAME).is_file():
            raise StoreError(
                f"{path} holds no study results ({DB_NAME} is missing); give a study TOML file "
                "or the output folder of a study that has been run"
            )
        return None, path
    if path.suffix != ".toml" and not path.is_file():
        raise StoreError(
            f"STUDY {str(study)!r} is neither a study TOML file nor an output folder of a study"
        )
    config = load_study(path)
    return config, Path(output) if output is not None else config.output_dir


def stored_study_directory(study: str | os.PathLike[str]) -> Path:
    """The output folder of a study that has stored results.

    Raises
    ------
    StoreError
        If the study has not been run yet (naming the command that runs it).
    """
    config, directory = resolve_study(study)
    if not (directory / DB_NAME).is_file():
        name = config.name if config is not None else str(study)
        raise StoreError(
            f"study {name!r} has no results in {directory} yet; run it first: workbench run {study}"
        )
    return directory
