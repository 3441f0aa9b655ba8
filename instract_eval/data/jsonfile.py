"""Reading JSON (and YAML) documents with errors that name the file and the place."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator


from ..errors import InputError


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of a file; a missing, unreadable or empty file raises `InputError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    if not text.strip():
        raise InputError("file is empty", path=path)
    return text


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing, empty or malformed file raises `InputError` naming it."""
    path = Path(path)
    return parse_json(read_text(path), path)


def parse_json(text: str, path: str | os.PathLike) -> Any:
    """Parse JSON text read from ``path``; malformed text raises `InputError` with its line and column."""
    try:
        with collector_paused():
            return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                         path=Path(path)) from None
    except ValueError as exc:  # an integer literal past Python's digit limit (sys.get_int_max_str_digits)
        raise InputError(f"cannot be read: {str(exc).split('; use')[0]}", path=Path(path)) from None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off while a parser builds a document.

    Parsing allocates millions of containers, none of them garbage, and each allocation burst
    triggers a collection that walks all of them: on a 52 MB predictions file the collector took
    half of `json.loads`'s 1.2 s. What the parse creates is still collected later, as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_yaml(text: str, path: Path | str) -> Any:
    """Parse YAML text read from ``path``; a syntax error raises `InputError` with its line and column."""
    import yaml  # here, not at the top: the JSON-only commands (`score tal`) then never load it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}{where}", path=path) from None


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing, empty or malformed file raises `InputError` naming it."""
    return parse_yaml(read_text(path), Path(path))


def require_mapping(value: Any, *, path: Path | str, field: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"expected an object, got {_json_type(value)}", path=path, field=field)
    return value


def require_list(value: Any, *, path: Path | str, field: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"expected a list, got {_json_type(value)}", path=path, field=field)
    return value


def require_key(mapping: dict, key: str, *, path: Path | str, field: str) -> Any:
    if key not in mapping:
        raise InputError(f"missing key '{key}'", path=path, field=field)
    return mapping[key]


def require_string(value: Any, *, path: Path | str, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"expected a non-empty string, got {_json_type(value)}", path=path, field=field)
    return value


def require_number(value: Any, *, path: Path | str, field: str) -> float:
    """A finite JSON number (booleans and numeric strings are refused, never coerced)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {_json_type(value)}", path=path, field=field)
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond the float range: JSON allows any digit count
        raise InputError(f"expected a finite number, got an integer of {len(str(abs(value)))} digits",
                         path=path, field=field) from None
    if not math.isfinite(number):
        raise InputError(f"expected a finite number, got {value}", path=path, field=field)
    return number


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "an empty string" if not value else f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
