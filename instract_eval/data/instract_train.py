"""InstrAct training annotations (the official pretraining format), read and validated.

The format is the one the official loader reads (zyyangzy/InstrAct ``model/data/train_loader.py``
and ``model/README.md``): one JSON object keyed by the positive caption,

    {caption: {video_id, start, end, verb_phrases: [...], hard_negatives: [...],
               order_swapped_hn: [...], mam_mask_candidates: [{word, char_start, char_end,
               phrase, method}, ...]}}

with the video at ``<video_root>/<video_id>.mp4`` and ``char_end`` exclusive, so that
``caption[char_start:char_end] == word``.

What the official loader does with a bad entry, and what happens here instead. It never fails: a
record whose ``video_id`` is missing or not a string, or whose times do not convert with
``float()``, is dropped; a list field that is not a list becomes empty, and inside lists
non-strings, blank strings and candidates with a bad span are dropped one by one. Training then
silently runs on less data than the file describes, so here each of these is an `InputError` line
naming the file, the caption (``'<caption>'``) and the field, and the caller decides what to fix.
What the official loader *accepts* is accepted here the same way:

- optional fields, with the official defaults: ``verb_phrases``, ``hard_negatives``,
  ``order_swapped_hn`` and ``mam_mask_candidates`` may be missing or ``null`` (no entries), a
  candidate's ``phrase`` and ``method`` may be missing (empty). ``start`` may be missing (0.0,
  the official default). ``end`` is required: its official default 0.0 makes an empty segment,
  which is refused below;
- times are JSON numbers or numeric strings (the official reader calls ``float()``);
- list entries are stripped of surrounding whitespace, as the official ``_clean_strings`` does
  (CLIP's tokenizer would strip them anyway).

Refused beyond the official checks: ``end <= start`` (an annotation error; the loader would widen
it to the 5 s minimum around ``start``), a negative start, a blank caption, and a key that occurs
twice in one JSON object: Python's ``json`` module keeps the last one silently, which for the
top-level object means a whole training item lost without a word.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .instract import _seconds
from .jsonfile import collector_paused, read_text, require_list, require_mapping, require_string

__all__ = ["MaskCandidate", "TrainingItem", "OPTIONAL_LISTS", "read_training_annotations"]

# The list fields the official loader reads with ``info.get(name) or []``: missing means empty.
OPTIONAL_LISTS = ("verb_phrases", "hard_negatives", "order_swapped_hn", "mam_mask_candidates")


@dataclass(frozen=True)
class MaskCandidate:
    """A word of the caption that masked action modelling may hide: ``caption[char_start:char_end]``."""

    word: str
    char_start: int
    char_end: int
    phrase: str = ""
    method: str = ""


@dataclass(frozen=True)
class TrainingItem:
    """One training pair: a caption, its video segment and its action-centric text annotations.

    ``group`` is the official loader's ``group_id``: the rank of the item's ``video_id`` in the
    order video ids first appear in the file. The batch's ``idx`` is this number, and captions
    with equal ``idx`` are positives of each other in the contrastive loss. ``source`` is the file
    the item was read from (for error messages; not part of equality).
    """

    caption: str
    video_id: str
    start: float
    end: float
    group: int
    verb_phrases: tuple[str, ...] = ()
    hard_negatives: tuple[str, ...] = ()
    order_swapped_hn: tuple[str, ...] = ()
    mam_mask_candidates: tuple[MaskCandidate, ...] = ()
    source: str = field(default="", compare=False)


class _Object(dict):
    """A parsed JSON object that remembers which of its keys occurred more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    document = _Object(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        document.duplicates = tuple(dict.fromkeys(key for key, _ in pairs if key in seen or seen.add(key)))
    return document


def _parse(path: Path) -> Any:
    text = read_text(path)
    try:
        with collector_paused():
            return json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path=path) from None
    except ValueError as exc:  # an integer literal past Python's digit limit
        raise InputError(f"cannot be read: {str(exc).split('; use')[0]}", path=path) from None


def _no_duplicates(document: dict, path: Path, field: str, what: str) -> None:
    duplicates = getattr(document, "duplicates", ())
    if duplicates:
        raise InputError(f"{what} {duplicates[0]!r} occurs more than once (JSON keeps only the last)",
                         path=path, field=field)


def read_training_annotations(path: str | os.PathLike) -> list[TrainingItem]:
    """Every training item of an official-format annotation file, in file order (validated; see module doc)."""
    path = Path(path)
    document = require_mapping(_parse(path), path=path, field="top level")
    _no_duplicates(document, path, "top level", "caption")
    if not document:
        raise InputError("has no training items", path=path, field="top level")
    groups: dict[str, int] = {}
    items = []
    for caption, entry in document.items():
        item = _item(caption, entry, path, groups)
        items.append(item)
    return items


def _item(caption: str, entry: Any, path: Path, groups: dict[str, int]) -> TrainingItem:
    row = repr(caption)
    if not caption.strip():
        raise InputError("blank caption key", path=path, field=row)
    entry = require_mapping(entry, path=path, field=row)
    _no_duplicates(entry, path, row, "key")
    if "video_id" not in entry:
        raise InputError("missing key 'video_id'", path=path, field=row)
    video_id = require_string(entry["video_id"], path=path, field=f"{row}.video_id")
    start = _seconds(entry["start"], path, f"{row}.start") if "start" in entry else 0.0
    if "end" not in entry:
        raise InputError("missing key 'end' (the official default 0.0 would make an empty segment)",
                         path=path, field=row)
    end = _seconds(entry["end"], path, f"{row}.end")
    if start < 0:
        raise InputError(f"negative start time {start:g}", path=path, field=f"{row}.start")
    if end <= start:
        raise InputError(f"end {end:g} is not after start {start:g}", path=path, field=f"{row}.end")
    lists = {name: _strings(entry.get(name), path, f"{row}.{name}") for name in OPTIONAL_LISTS[:3]}
    candidates = _candidates(caption, entry.get("mam_mask_candidates"), path, f"{row}.mam_mask_candidates")
    group = groups.setdefault(video_id, len(groups))
    return TrainingItem(caption=caption, video_id=video_id, start=start, end=end, group=group,
                        mam_mask_candidates=candidates, source=os.fspath(path), **lists)


def _strings(value: Any, path: Path, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = require_list(value, path=path, field=field)
    out = []
    for index, text in enumerate(values):
        text = require_string(text, path=path, field=f"{field}[{index}]")
        if not text.strip():
            raise InputError("blank string (the official loader drops it)", path=path, field=f"{field}[{index}]")
        out.append(text.strip())
    return tuple(out)


def _candidates(caption: str, value: Any, path: Path, field: str) -> tuple[MaskCandidate, ...]:
    if value is None:
        return ()
    out = []
    for index, candidate in enumerate(require_list(value, path=path, field=field)):
        where = f"{field}[{index}]"
        candidate = require_mapping(candidate, path=path, field=where)
        _no_duplicates(candidate, path, where, "key")
        missing = [key for key in ("word", "char_start", "char_end") if key not in candidate]
        if missing:
            raise InputError(f"missing key '{missing[0]}'", path=path, field=where)
        word = require_string(candidate["word"], path=path, field=f"{where}.word")
        start = _offset(candidate["char_start"], path, f"{where}.char_start")
        end = _offset(candidate["char_end"], path, f"{where}.char_end")
        if end <= start:
            raise InputError(f"char_end {end} is not after char_start {start}", path=path, field=f"{where}.char_end")
        if end > len(caption):
            raise InputError(f"char_end {end} is past the caption's {len(caption)} characters",
                             path=path, field=f"{where}.char_end")
        if caption[start:end] != word:
            raise InputError(f"caption[{start}:{end}] is {caption[start:end]!r}, not the word {word!r}",
                             path=path, field=where)
        extras = {}
        for key in ("phrase", "method"):
            if candidate.get(key) is not None:
                if not isinstance(candidate[key], str):
                    raise InputError(f"expected a string, got {type(candidate[key]).__name__}",
                                     path=path, field=f"{where}.{key}")
                extras[key] = candidate[key]
        out.append(MaskCandidate(word=word, char_start=start, char_end=end, **extras))
    return tuple(out)


def _offset(value: Any, path: Path, field: str) -> int:
    """A character offset: a non-negative JSON integer (the official ``int()`` would also truncate
    3.7 to 3 and read "3"; an offset that is not an exact integer is an annotation error)."""
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if isinstance(value, (str, float)) else type(value).__name__
        raise InputError(f"expected an integer character offset, got {shown}", path=path, field=field)
    if value < 0:
        raise InputError(f"negative character offset {value}", path=path, field=field)
    return value
