"""InstrAct Bench annotation files (Semantic, Logic, Dynamics), read and validated.

Formats, as released with the benchmark (PROTOCOLS.md):

- Semantic: ``InstrAct-Semantic/annotations.json``, a list of
  ``{caption, video_id, start, end, hard_negatives: [9 strings]}``; the positive caption is
  candidate 0.
- Logic: ``InstrAct-Logic/annotations.json``, the same rows with ``order_swapped_hn: [...]``
  instead of ``hard_negatives``.
- Dynamics: one JSON per object pool, ``InstrAct-Dynamics/<object>.json``, an object keyed by
  the positive caption: ``{caption: {object, video_id, start, end, operation: [...]}}``. Keying by
  caption is what makes duplicate captions inside a pool collapse.

The official evaluator silently skips malformed rows; here a malformed row is an error naming
the file and the row, so a partial evaluation is always a decision the user made. Times may be
JSON numbers or numeric strings, because the official reader converts them with ``float()``;
``end == start`` is allowed (the sampler widens short clips to the protocol's minimum length).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .jsonfile import read_json, require_key, require_list, require_mapping, require_number, require_string


@dataclass(frozen=True)
class InstractClip:
    """One annotated clip: a caption, the video it comes from and the segment in seconds."""

    caption: str
    video_id: str
    start: float
    end: float


@dataclass(frozen=True)
class CandidateRow:
    """A multiple-choice row: the clip and its negative captions (positive = candidate 0)."""

    clip: InstractClip
    negatives: tuple[str, ...]

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.clip.caption, *self.negatives)


@dataclass(frozen=True)
class DynamicsClip:
    """A clip of an object pool with the operations (verbs) it shows."""

    clip: InstractClip
    object: str
    operations: tuple[str, ...]


def read_semantic(path: str | os.PathLike) -> list[CandidateRow]:
    """InstrAct-Semantic rows: 10 candidates each (the caption and 9 verb-altered negatives)."""
    return _read_candidate_rows(Path(path), "hard_negatives")


def read_logic(path: str | os.PathLike) -> list[CandidateRow]:
    """InstrAct-Logic rows with all their order-swapped negatives (the task keeps at most 2)."""
    return _read_candidate_rows(Path(path), "order_swapped_hn")


def read_dynamics_pool(path: str | os.PathLike) -> list[DynamicsClip]:
    """One Dynamics pool file, in file order."""
    path = Path(path)
    document = require_mapping(read_json(path), path=path, field="top level")
    if not document:
        raise InputError("pool has no clips", path=path, field="top level")
    clips = []
    for caption, entry in document.items():
        field = repr(caption)
        if not caption.strip():
            raise InputError("empty caption key", path=path, field=field)
        entry = require_mapping(entry, path=path, field=field)
        clip = _clip(entry, path, field, caption=caption)
        obj = require_string(require_key(entry, "object", path=path, field=field), path=path, field=f"{field}.object")
        operations = require_list(require_key(entry, "operation", path=path, field=field),
                                  path=path, field=f"{field}.operation")
        ops = tuple(require_string(op, path=path, field=f"{field}.operation[{i}]") for i, op in enumerate(operations))
        clips.append(DynamicsClip(clip=clip, object=obj, operations=ops))
    return clips


def read_dynamics(directory: str | os.PathLike) -> dict[str, list[DynamicsClip]]:
    """Every ``*.json`` pool of a Dynamics directory, keyed by file stem, in sorted order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a directory of pool files", path=directory)
    files = sorted(directory.glob("*.json"))
    if not files:
        raise InputError("holds no *.json pool files", path=directory)
    return {file.stem: read_dynamics_pool(file) for file in files}


def _read_candidate_rows(path: Path, negatives_key: str) -> list[CandidateRow]:
    rows = require_list(read_json(path), path=path, field="top level")
    if not rows:
        raise InputError("has no rows", path=path, field="top level")
    out = []
    for index, row in enumerate(rows):
        field = f"row {index}"
        row = require_mapping(row, path=path, field=field)
        clip = _clip(row, path, field)
        negatives = require_list(require_key(row, negatives_key, path=path, field=field),
                                 path=path, field=f"{field}.{negatives_key}")
        if not negatives:
            raise InputError("no negative captions", path=path, field=f"{field}.{negatives_key}")
        texts = tuple(require_string(text, path=path, field=f"{field}.{negatives_key}[{i}]")
                      for i, text in enumerate(negatives))
        out.append(CandidateRow(clip=clip, negatives=texts))
    return out


def _clip(entry: dict, path: Path, field: str, caption: str | None = None) -> InstractClip:
    if caption is None:
        caption = require_string(require_key(entry, "caption", path=path, field=field),
                                 path=path, field=f"{field}.caption")
    video_id = require_string(require_key(entry, "video_id", path=path, field=field),
                              path=path, field=f"{field}.video_id")
    start = _seconds(require_key(entry, "start", path=path, field=field), path, f"{field}.start")
    end = _seconds(require_key(entry, "end", path=path, field=field), path, f"{field}.end")
    if start < 0:
        raise InputError(f"negative start time {start}", path=path, field=f"{field}.start")
    if end < start:
        raise InputError(f"end {end} is before start {start}", path=path, field=f"{field}.end")
    return InstractClip(caption=caption, video_id=video_id, start=start, end=end)


def _seconds(value: object, path: Path, field: str) -> float:
    """A time in seconds: a JSON number, or a string that is exactly a decimal number."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"expected a time in seconds, got the string {value!r}", path=path, field=field) from None
    return require_number(value, path=path, field=field)
