"""File writes that either finish or leave nothing, with the user's umask, and fail in one line.

A crash or a kill never leaves a half-written result, log, cache shard or site page; a write that
the operating system refuses (read-only, full disk, a file where a directory should be) becomes a
`WriteError` naming the path and the errno, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import WriteError

__all__ = ["fresh_directory", "make_directories", "replace_atomically", "require_writable_directory", "write_atomic",
           "write_together", "writing"]

_ATTEMPTS = 100  # random names tried before giving up (a clash is already one in 4 billion)


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an `OSError` raised in the block into a `WriteError` naming ``path``, the file or
    directory the user asked for (not the temporary name the failure happened under)."""
    try:
        yield
    except OSError as error:
        raise WriteError.of(path, error) from error


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """`replace_atomically`, with a failure reported as a `WriteError` naming ``path``."""
    with writing(path):
        replace_atomically(path, data)


def write_together(files: Sequence[tuple[str | os.PathLike, bytes | str]]) -> None:
    """Write files that belong together (a record and its sample log): each to a temporary file
    beside it first, renamed over the old ones only when every byte of all of them is written.

    A write that fails (a full disk) thus leaves the old files as they were, never a new log beside
    an old record. The renames that follow do not allocate space. A failure is a `WriteError`
    naming the file it happened to.
    """
    staged: list[tuple[Path, str]] = []
    try:
        for path, data in files:
            path = Path(path)
            payload = data.encode("utf-8") if isinstance(data, str) else data
            with writing(path):
                descriptor, temporary = _create_beside(path)
                staged.append((path, temporary))
                try:
                    _write_all(descriptor, payload)
                finally:
                    os.close(descriptor)
        for path, temporary in staged:
            with writing(path):
                os.replace(temporary, path)
    except BaseException:
        for _, temporary in staged:
            with contextlib.suppress(OSError):
                os.unlink(temporary)  # gone already where the rename happened
        raise


def replace_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX and Windows, so readers see the old file or the new one, never
    a part. The temporary file starts with a dot and is removed if the write fails. It is created
    with mode 0666 for the kernel to apply the umask, so the file gets the permissions of any
    other file the user creates (`tempfile` would make it 0600). Raises the `OSError`: a caller
    that names another path in the error (the site, not its page) wraps it in its own `writing`.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    descriptor, temporary = _create_beside(path)
    try:
        try:
            _write_all(descriptor, payload)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def make_directories(directory: str | os.PathLike) -> None:
    """``mkdir -p``; a file standing on the way is reported as "Not a directory" naming that file
    (`Path.mkdir` says "File exists", which reads as if the directory were there)."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), error.filename) from None


def fresh_directory(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, empty directory ``parent/PREFIXrandom``, mode 0777 less the umask (what `mkdir`
    gives; `tempfile.mkdtemp` would make it 0700, unreadable to a web server)."""
    for _ in range(_ATTEMPTS):
        candidate = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(candidate, 0o777)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free name for a directory {prefix}* after {_ATTEMPTS} tries", parent)


def require_writable_directory(directory: str | os.PathLike | None, flag: str) -> None:
    """Fail now, in one line, if ``directory`` could not be created or written later.

    The nearest existing ancestor must be a directory in which a directory can be made: a probe is
    created there and removed at once, which catches read-only file systems and places even root
    may not write (``/sys``, ``/proc``) before any work. Nothing is left behind, so a run that fails
    before its first record leaves nothing on disk. A full disk can still fail later.
    """
    if directory is None:
        return
    path = Path(directory)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise WriteError(f"{candidate} is a file, so the directory cannot be created", path=directory,
                                 field=flag)
            try:
                os.rmdir(fresh_directory(candidate, ".instract-eval-probe-"))
            except OSError as error:
                raise WriteError.of(directory, error, field=flag) from error
            return


def _create_beside(path: Path) -> tuple[int, str]:
    """Open a new hidden file next to ``path`` for writing; returns its descriptor and name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_ATTEMPTS):
        temporary = os.fspath(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name after {_ATTEMPTS} tries", os.fspath(path.parent))


def _write_all(descriptor: int, payload: bytes) -> None:
    """`os.write` until every byte is out (it may write fewer than asked)."""
    view = memoryview(payload)
    while view:
        view = view[os.write(descriptor, view):]
