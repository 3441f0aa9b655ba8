"""Generic row sources: JSON, JSON Lines, CSV/TSV, Parquet and Hugging Face ``datasets``.

Every source becomes a list of plain dicts, one per row, so that typed readers (ActionBench, SRT,
Action100M) and user-supplied annotation files share one place for parsing and error locations.
The format is chosen by the file suffix, or by ``format=``:

- ``x.json``: a JSON list of objects; rows are ``row 12`` (0-based, as the other JSON readers);
- ``x.jsonl`` / ``x.ndjson``: one JSON object per line; rows are ``line 7`` (1-based);
- ``x.csv`` / ``x.tsv``: a header line, then one record per line; rows are ``line 7``, the line
  where the record starts;
- ``x.parquet``, or a directory: that file, or every ``*.parquet`` shard of the directory in
  sorted order; rows are ``row 12`` (0-based) and errors name the shard;
- ``hf:owner/name[:config][@split]``: a Hugging Face dataset (``split`` defaults to ``train``),
  read with ``datasets.load_dataset``; rows are ``row 12``.

For example, a JSONL file::

    {"video": "P01_cam1_0001", "start": 1.5, "end": 4.0, "label": "pick up item"}
    {"video": "P01_cam1_0002", "start": 0.0, "end": 2.5, "label": "spin block"}

Rules, the same for every format, so that nothing is skipped or coerced behind the user's back:

- a required field must be present and non-null in every row (and non-empty in CSV, where an
  empty cell is the only way to write "no value"); the error names the file, the row and the field;
- values keep the types of the source: CSV and TSV cells stay strings, typed readers convert them
  with their own checks;
- blank lines in JSONL and CSV are not rows and are passed over; every other line must parse;
- a source with no rows is an error.

`read_lines` reads a plain-text list (a ``classes.txt``: one class name per line).

Hugging Face datasets need the optional ``datasets`` package (``pip install datasets``). It is
imported only when an ``hf:`` source is read. With ``HF_HUB_OFFLINE=1`` (as in the tests) only
datasets already in the local cache can be loaded.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from ..errors import InputError
from .jsonfile import read_json, read_text, require_list, require_mapping, require_number, require_string

HF_PREFIX = "hf:"
FORMATS = ("json", "jsonl", "csv", "tsv", "parquet")
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
             ".parquet": "parquet", ".pq": "parquet"}


class Record(NamedTuple):
    """One row and where it came from, so that typed readers can name it in their errors."""

    path: str
    where: str
    data: dict[str, Any]
    text_cells: bool = False  # True for CSV/TSV, where every value is a string and "" means no value


def read_rows(source: str | os.PathLike, required_fields: Iterable[str] = (), *,
              format: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``source`` as dicts, each checked to hold every field of ``required_fields``."""
    return [record.data for record in read_records(source, required_fields, format=format)]


def read_records(source: str | os.PathLike, required_fields: Iterable[str] = (), *,
                 format: str | None = None) -> list[Record]:
    """Like `read_rows`, but each row comes with its file and location (``line 7``, ``row 12``)."""
    required = tuple(required_fields)
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        records = _read_hugging_face(source)
    else:
        records = _read_file(Path(source), format)
    if not records:
        raise InputError("has no rows", path=os.fspath(source))
    for record in records:
        check_required(record, required)
    return records


def check_required(record: Record, required: Iterable[str]) -> None:
    """Refuse a row that lacks a required field or holds null (or, from CSV, an empty cell) in it."""
    for name in required:
        if name not in record.data:
            raise InputError(f"missing field '{name}'", path=record.path, field=record.where)
        value = record.data[name]
        if value is None:
            raise InputError("is null, a value is required", path=record.path, field=f"{record.where}.{name}")
        if value == "" and record.text_cells:
            raise InputError("empty cell, a value is required", path=record.path, field=f"{record.where}.{name}")


def record_string(record: Record, key: str) -> str:
    """A required non-empty string field of a row."""
    return require_string(record.data[key], path=record.path, field=f"{record.where}.{key}")


def record_window(record: Record) -> tuple[float | None, float | None]:
    """The optional ``start``/``end`` seconds of a row: both or neither, ``0 <= start <= end``."""
    present = [key for key in ("start", "end") if not _absent(record, key)]
    if not present:
        return None, None
    if len(present) == 1:
        other = "end" if present == ["start"] else "start"
        raise InputError(f"has {present[0]} but no {other}: give both or neither", path=record.path,
                         field=f"{record.where}.{other}")
    start, end = _seconds(record, "start"), _seconds(record, "end")
    if start < 0:
        raise InputError(f"negative start time {start}", path=record.path, field=f"{record.where}.start")
    if end < start:
        raise InputError(f"end {end} is before start {start}", path=record.path, field=f"{record.where}.end")
    return start, end


def _absent(record: Record, key: str) -> bool:
    value = record.data.get(key)
    return value is None or (record.text_cells and value == "")


def _seconds(record: Record, key: str) -> float:
    """A time in seconds: a number, or (as CSV cells are) a string that is exactly a decimal number."""
    value = record.data[key]
    field = f"{record.where}.{key}"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"expected a time in seconds, got the string {value!r}", path=record.path,
                             field=field) from None
    return require_number(value, path=record.path, field=field)


def read_lines(path: str | os.PathLike, what: str = "entry") -> list[str]:
    """A plain-text list, one ``what`` (e.g. a class name) per line, e.g. a ``classes.txt``.

    Surrounding whitespace is trimmed and blank lines are not entries; a repeated entry is an error
    naming both lines, since a class list with a duplicate would make two identical classes.
    """
    path = Path(path)
    entries: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        if entry in entries:
            raise InputError(f"repeats the {what} '{entry}' of line {entries[entry]}", path=path,
                             field=f"line {number}")
        entries[entry] = number
    return list(entries)


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """Split ``hf:owner/name[:config][@split]`` into (repo id, config or None, split)."""
    body, at, split = spec[len(HF_PREFIX):].partition("@")
    repo, colon, config = body.partition(":")
    owner, slash, name = repo.partition("/")
    if not (owner and slash and name) or (colon and not config) or (at and not split):
        raise InputError("expected hf:owner/name[:config][@split], e.g. hf:facebook/Action100M-preview@train",
                         path=spec)
    return repo, config or None, split or "train"


def _read_file(path: Path, format: str | None) -> list[Record]:
    kind = format or _format_of(path)
    if kind not in FORMATS:
        raise InputError(f"unknown format '{kind}', expected one of {', '.join(FORMATS)}", path=path)
    if kind == "json":
        return _read_json_list(path)
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind in ("csv", "tsv"):
        return _read_delimited(path, "\t" if kind == "tsv" else ",")
    return _read_parquet(path)


def _format_of(path: Path) -> str:
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        return "parquet"
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            "cannot tell the format from the file name: use .json, .jsonl, .csv, .tsv or .parquet, "
            "or an hf:owner/name source", path=path)
    return kind


def _read_json_list(path: Path) -> list[Record]:
    rows = require_list(read_json(path), path=path, field="top level")
    return [Record(str(path), f"row {i}", require_mapping(row, path=path, field=f"row {i}"))
            for i, row in enumerate(rows)]


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=path, field=where) from None
        records.append(Record(str(path), where, require_mapping(value, path=path, field=where)))
    return records


def _read_delimited(path: Path, delimiter: str) -> list[Record]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        _check_header(header, path)
        records = []
        last_line = reader.line_num
        for cells in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not cells:
                continue
            where = f"line {first_line}"
            if len(cells) != len(header):
                raise InputError(f"has {len(cells)} cells, the header has {len(header)}", path=path, field=where)
            records.append(Record(str(path), where, dict(zip(header, cells)), text_cells=True))
    except csv.Error as exc:
        raise InputError(f"not valid CSV: {exc}", path=path, field=f"line {reader.line_num}") from None
    return records


def _check_header(header: list[str], path: Path) -> None:
    seen: set[str] = set()
    for index, name in enumerate(header):
        if not name.strip():
            raise InputError(f"column {index + 1} has an empty name", path=path, field="line 1")
        if name in seen:
            raise InputError(f"column '{name}' appears twice", path=path, field="line 1")
        seen.add(name)


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or the sorted ``*.parquet`` shards of a directory."""
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise InputError("holds no *.parquet files", path=path)
        return files
    if not path.exists():
        raise InputError("file not found", path=path)
    return [path]


def import_pyarrow(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, imported only when a Parquet source is read."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InputError("reading Parquet files needs the 'pyarrow' package: pip install pyarrow", path=path) from None
    return pyarrow, pyarrow.parquet


def read_parquet_table(path: Path, columns: list[str] | None = None):
    """A `pyarrow.Table` from one Parquet file, with unreadable files and missing columns as `InputError`."""
    pa, pq = import_pyarrow(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from None
    for name in columns or ():
        if name not in schema.names:
            raise InputError(f"missing column '{name}' (columns: {', '.join(schema.names)})", path=path)
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from None


def _read_parquet(path: Path) -> list[Record]:
    records = []
    for file in parquet_files(path):
        rows = read_parquet_table(file).to_pylist()
        records.extend(Record(str(file), f"row {i}", row) for i, row in enumerate(rows))
    return records


def _read_hugging_face(spec: str) -> list[Record]:
    repo, config, split = parse_hf_spec(spec)
    try:
        import datasets
    except ImportError:
        raise InputError("reading Hugging Face datasets needs the optional 'datasets' package: "
                         "pip install datasets", path=spec) from None
    try:
        dataset = datasets.load_dataset(repo, name=config, split=split)
    except Exception as exc:  # the hub client raises many unrelated types; all mean "cannot load"
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = " (offline mode: only datasets already in the local cache can be read)" if offline else ""
        raise InputError(f"could not load the dataset: {type(exc).__name__}: {exc}{hint}", path=spec) from exc
    rows = dataset.to_list() if hasattr(dataset, "to_list") else [dict(row) for row in dataset]
    return [Record(spec, f"row {i}", require_mapping(row, path=spec, field=f"row {i}")) for i, row in enumerate(rows)]
