"""Directories a generator writes whole: the world, its training splits.

Each is written into a temporary sibling and swapped in only when complete (`publish`), records
which generator made it in its ``manifest.json`` (`read_generator_manifest`), and is reused when a
complete one of the same version, seed and size is there (`ensure_generated`): two first runs on
one fresh cache wait on a lock instead of both writing, and the one that waited reuses what the
other made. A directory holding anything else is never replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from . import writers

__all__ = ["check_replaceable", "ensure_generated", "exclusive_lock", "publish", "read_generator_manifest"]

T = TypeVar("T")


def read_generator_manifest(out_dir: str | os.PathLike, generator: str) -> dict | None:
    """``out_dir/manifest.json`` when ``generator`` wrote it, else None."""
    try:
        document = json.loads((Path(out_dir) / writers.MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) and document.get("generator") == generator else None


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An advisory lock held across processes (``flock``); where there is none, no lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: generation is still atomic, only not exclusive
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_generated(out_dir: str | os.PathLike, usable: Callable[[], T | None], generate: Callable[[], T]) -> T:
    """What ``usable()`` finds in ``out_dir``, else ``generate()``, under a lock beside it."""
    found = usable()
    if found is not None:
        return found
    with exclusive_lock(Path(out_dir).parent / f".{Path(out_dir).name}.lock"):
        found = usable()  # made by the process we waited for
        return found if found is not None else generate()


def check_replaceable(out: Path, *, generator: str, what: str) -> None:
    """Refuse an ``out`` that is a file, or a directory holding anything but an earlier output of
    ``generator``: checked before generating, and again before the swap."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if any(out.iterdir()) and read_generator_manifest(out, generator) is None:
        raise FileExistsError(f"{out} holds files that are not {what}; choose an empty or new directory")


def publish(partial: Path, out: Path, *, generator: str, what: str) -> None:
    """Swap the complete ``partial`` directory in as ``out`` (see `check_replaceable`)."""
    check_replaceable(out, generator=generator, what=what)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
