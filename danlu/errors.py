"""Errors written for the user: what was wrong, where, and how to fix it.

The CLI prints a DanluError as one message and exits non-zero, without a traceback;
anything else is a bug in danlu and keeps its traceback.
"""


class DanluError(Exception):
    """A problem the user can fix (bad recipe, bad data, missing file)."""


class RecipeError(DanluError):
    """The recipe is invalid: names the file, the key path, what was expected."""


class DataError(DanluError):
    """The data cannot be read or failed the quality gate."""


class RunError(DanluError):
    """A run directory is missing, incomplete or not what the command expects."""
