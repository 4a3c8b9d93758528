"""Errors a user can meet. Each message says what was wrong and what to do about it.

The CLI prints ``RerecError`` as one paragraph and exits non-zero, never with a traceback.
"""

from __future__ import annotations


class RerecError(Exception):
    """An error caused by input, configuration or environment that the user can fix."""

    exit_code = 2


class InputError(RerecError):
    """Bad input data: names the file, the column, an offending row and the fix."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: object | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem, self.file, self.column, self.row, self.fix = problem, file, column, row, fix
        where = []
        if file:
            where.append(str(file))
        if column:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        message = (": ".join([", ".join(where), problem]) if where else problem).rstrip(".") + "."
        if fix:
            message += f" Fix: {fix.rstrip('.')}."
        super().__init__(message)


class ConfigError(RerecError):
    """A bad option, flag or configuration value."""
