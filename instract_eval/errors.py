"""The one error type for bad user input.

Every loader raises `InputError` with the file and the field or row at fault, so that the CLI can
print a single actionable line and exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input that the user must fix: which file, which field or row, and what is wrong."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, field: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.field) if p]
        return ": ".join([*parts, self.message])
