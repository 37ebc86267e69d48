"""The one base class of errors a user can cause and fix.

A bad study file, a bad data file, a wrong folder or a store that belongs to another study
is not a bug: the command line prints such an error on one line, without a traceback, and
exits with code 2. Every other exception is ours and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["WorkbenchError"]


class WorkbenchError(Exception):
    """A problem in the user's input or environment; the message says what and how to fix it."""
