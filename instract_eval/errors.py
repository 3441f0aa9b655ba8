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


class WriteError(InputError):
    """A file or directory could not be written (read-only, full, a file in the way): the path the
    user asked for and the operating system's errno, so the CLI prints one line instead of a traceback."""

    @classmethod
    def of(cls, path: str | os.PathLike, error: OSError, *, field: str | None = None) -> "WriteError":
        """The one line for ``error`` raised while writing ``path``; a directory on the way that
        failed (one that could not be created, or a file standing there) is named too."""
        what = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
        failed = error.filename
        if failed is not None and _is_above(os.fspath(failed), os.fspath(path)):
            what += f": {os.fspath(failed)}"
        return cls(f"cannot write: {what}", path=path, field=field)


def _is_above(directory: str, path: str) -> bool:
    """Whether ``directory`` is a proper ancestor of ``path`` (not a temporary file beside it)."""
    directory, path = os.path.abspath(directory), os.path.abspath(path)
    return directory != path and os.path.commonpath([directory, path]) == directory
