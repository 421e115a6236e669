"""Exceptions that the command line turns into one-line messages (exit code 2)."""

from __future__ import annotations


class ClusterfwError(Exception):
    """Base class for errors that are the user's input, not a bug.

    The CLI prints ``str(error)`` on one line and exits with status 2.
    """


class InputError(ClusterfwError):
    """A problem with an input file.

    Parameters
    ----------
    path : str
        The offending file.
    problem : str
        What is wrong with it, in a few words.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class PluginError(ClusterfwError):
    """Unknown plugin names, bad plugin options, or a plugin that broke its contract."""


class SchemaError(ClusterfwError):
    """A table does not conform to the candidate schema in ``catalog_schema/``."""


class ForcedScoringUnsupported(ClusterfwError):
    """Raised by :meth:`Finder.score_at` for finders that cannot score arbitrary positions."""
