"""PAXION ActionBench annotation files (Ego4D and SSv2 splits), read into typed probe rows.

Formats, as released with PAXION (github.com/MikeWangWZHL/Paxion, ``dataset_cards/``):

- Ego4D, ``egoclip_subset_action_antonyms_train_val_test_split/{train,val,test}.jsonl``, one
  object per line (evaluated on ``test``)::

      {"video_uid": "002d2729-...", "video_dur": 3571.43, "narration_source": "narration_pass_1",
       "narration_ind": 229, "narration_time": 592.69, "clip_start": 592.35, "clip_end": 593.03,
       "clip_text": "#C C picks up the knife from the chopping board with her right hand.",
       "action_antonym_clip_text": "#C C drops down the knife from the chopping board with her right hand.",
       "tag_verb": "[17, 93]", "tag_noun": "[321, 268, 573, 105]", "Unnamed: 10": NaN,
       "clip_uid": "116ec16b-...", "narration_relative_time": 0.69, "clip_relative_start": 0.35,
       "clip_relative_end": 1.03, "clip_fps": 30.0}

  The Object Replacement split (``egoclip_subset_action_antonyms_object_shuffled_train_val_test_split``)
  has the same rows, filtered to those with an object, plus ``object_shuffled_clip_text``. The files
  were written from pandas, so lines may hold a bare ``NaN`` (Python's JSON parser accepts it).
- SSv2, ``shuffled_object_and_action_antonyms/{train,validation}.json``, a JSON list (evaluated on
  ``validation``)::

      [{"id": 74225, "label": "Spinning cube that quickly stops spinning",
        "template": "Spinning [something] that quickly stops spinning", "placeholders": ["cube"],
        "label_action_antonym_clip_text": "Spinning cube that quickly starts spinning",
        "template_action_antonym_clip_text": "Spinning something that quickly starts spinning",
        "label_object_shuffled_clip_text": "spinning feeding lid that quickly stops spinning"}]

What the official evaluator (``src/data.py``, ``src/tasks.py``, the ``acdybench_*`` configs) reads,
which is exactly what an `ActionBenchRow` carries (SSv2 with ``use_templates_as_labels: false``):

- AA: one video, ``clip_text`` vs ``action_antonym_clip_text`` (Ego4D); ``label`` vs
  ``label_action_antonym_clip_text`` (SSv2).
- OR: one video, ``clip_text`` vs ``object_shuffled_clip_text`` (Ego4D, the object-shuffled
  files); ``label`` vs ``label_object_shuffled_clip_text`` (SSv2, the same file as AA).
- VR: one text, ``clip_text`` (Ego4D) or ``label`` (SSv2), against the frames and the frames
  reversed in time.
- Video: Ego4D ``<root>/<clip_uid>.mp4`` (the Ego4D moment clips), frames between
  ``clip_relative_start`` and ``clip_relative_end`` seconds of that clip file; SSv2
  ``<root>/<id>.mp4`` (PAXION's preprocessing re-encodes the ``<id>.webm`` files to mp4), the
  whole video. The SSv2 ``template*`` fields are used only by the unlabelled SSv2 test split,
  which ActionBench does not evaluate.

Videos are the preprocessed 5 fps, 224x224 files; 8 frames are sampled uniformly. The absolute
times (``clip_start``, ``clip_end``, relative to ``video_uid``), ``clip_fps`` (the fps of the
original clip; the configs override it with 5) and the tags are not used by any probe and are not
read. `probe_texts` gives the texts in the form the official code feeds the model: the Ego4D text
processor (`official_ego4d_text`) on both Ego4D texts; for SSv2 ``label.capitalize()`` but the
altered texts as stored.

Where the official reader is silent, this one refuses: a row missing a field, a text that is not a
non-empty string, a time that is not a finite number, ``end < start`` and a repeated SSv2 ``id``
are errors naming the file and the line or row. (The official reader drops Ego4D rows whose clip
file is missing; that is the task's coverage decision, not the reader's.) A negative
``clip_relative_start`` is kept as it is: the official sampler clamps frame indices at 0.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .generic import Record, read_records
from .jsonfile import require_number, require_string

PROBES = ("aa", "or", "vr")
VIDEO_SUFFIX = ".mp4"

_EGO4D_TEXT_FIELDS = {"aa": "action_antonym_clip_text", "or": "object_shuffled_clip_text"}
_SSV2_TEXT_FIELDS = {"aa": "label_action_antonym_clip_text", "or": "label_object_shuffled_clip_text"}


@dataclass(frozen=True)
class ActionBenchRow:
    """One ActionBench item: the video window and the texts the AA, OR and VR probes score.

    ``start``/``end`` are seconds into the video file (``None`` for SSv2: the whole video).
    ``antonym_text`` and ``object_shuffled_text`` are ``None`` when the file does not hold them.
    """

    source: str
    where: str
    video: str
    start: float | None
    end: float | None
    text: str
    antonym_text: str | None
    object_shuffled_text: str | None


def read_ego4d(path: str | os.PathLike, probes: Iterable[str] = ("aa", "vr")) -> list[ActionBenchRow]:
    """An Ego4D ActionBench ``.jsonl`` split; ``probes`` names the probes whose texts every row must hold.

    Use ``probes=("or",)`` (or ``("aa", "or", "vr")``) with the object-shuffled split files.
    """
    wanted = _check_probes(probes)
    required = ["clip_uid", "clip_relative_start", "clip_relative_end", "clip_text"]
    required += [_EGO4D_TEXT_FIELDS[p] for p in wanted if p in _EGO4D_TEXT_FIELDS]
    return [_ego4d_row(record) for record in read_records(path, required, format="jsonl")]


def read_ssv2(path: str | os.PathLike, probes: Iterable[str] = PROBES) -> list[ActionBenchRow]:
    """An SSv2 ActionBench ``.json`` split (a list of objects); ids must be unique."""
    wanted = _check_probes(probes)
    required = ["id", "label"] + [_SSV2_TEXT_FIELDS[p] for p in wanted if p in _SSV2_TEXT_FIELDS]
    rows: list[ActionBenchRow] = []
    first_seen: dict[str, str] = {}
    for record in read_records(path, required, format="json"):
        row = _ssv2_row(record)
        if row.video in first_seen:
            raise InputError(f"repeats id {row.video} of {first_seen[row.video]}", path=record.path,
                             field=f"{record.where}.id")
        first_seen[row.video] = record.where
        rows.append(row)
    return rows


def video_path(row: ActionBenchRow, video_root: str | os.PathLike) -> Path:
    """The preprocessed video file of a row: ``<video_root>/<clip_uid or id>.mp4``."""
    return Path(video_root) / f"{row.video}{VIDEO_SUFFIX}"


def probe_texts(row: ActionBenchRow, probe: str) -> tuple[str, ...]:
    """The candidate texts of a probe, original first, as the official evaluator feeds them.

    AA and OR: (original, altered), one video. VR: (original,), scored against the video and the
    video reversed in time. A row read without the probe's text raises `ValueError`.
    """
    (probe,) = _check_probes([probe])
    original = official_ego4d_text(row.text) if row.source == "ego4d" else row.text.capitalize()
    if probe == "vr":
        return (original,)
    altered = row.antonym_text if probe == "aa" else row.object_shuffled_text
    if altered is None:
        raise ValueError(f"{row.source} row {row.where} has no text for probe '{probe}': read it with that probe")
    return original, official_ego4d_text(altered) if row.source == "ego4d" else altered


def official_ego4d_text(caption: str, max_words: int = 50) -> str:
    """PAXION's Ego4D text processor (``vl_dynamic_ego4d_text``): why texts match its model inputs.

    Lower-cases; turns ``#unsure`` markers into "something" (or drops ``. #unsure``); removes the
    one-letter actor tags (``#C``, ``# c``); replaces ``.!"()*#:;~`` by spaces; collapses runs of
    two or more whitespace characters; trims; keeps the first ``max_words`` space-separated words.
    "#C C picks up the knife." becomes "c picks up the knife".
    """
    text = caption.lower().replace(". #unsure", "")
    for before, after in (("the #unsure", "something"), ("a #unsure", "something"), (" #unsure", " something")):
        text = text.replace(before, after)
    text = re.sub(r"#[a-z] ", "", text)
    text = re.sub(r"# [a-z] ", "", text)
    text = re.sub(r"[.!\"()*#:;~]", " ", text)
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    return " ".join(text.split(" ")[:max_words])


def _check_probes(probes: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(probes)
    unknown = [p for p in wanted if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown ActionBench probe(s) {unknown}; expected some of {PROBES}")
    return wanted


def _ego4d_row(record: Record) -> ActionBenchRow:
    start = _number(record, "clip_relative_start")
    end = _number(record, "clip_relative_end")
    if end < start:
        raise InputError(f"clip_relative_end {end} is before clip_relative_start {start}",
                         path=record.path, field=f"{record.where}.clip_relative_end")
    return ActionBenchRow(
        source="ego4d", where=record.where, video=_text(record, "clip_uid"), start=start, end=end,
        text=_text(record, "clip_text"),
        antonym_text=_optional_text(record, "action_antonym_clip_text"),
        object_shuffled_text=_optional_text(record, "object_shuffled_clip_text"),
    )


def _ssv2_row(record: Record) -> ActionBenchRow:
    return ActionBenchRow(
        source="ssv2", where=record.where, video=_ssv2_id(record), start=None, end=None,
        text=_text(record, "label"),
        antonym_text=_optional_text(record, "label_action_antonym_clip_text"),
        object_shuffled_text=_optional_text(record, "label_object_shuffled_clip_text"),
    )


def _ssv2_id(record: Record) -> str:
    """The video id as the file stem: a non-negative integer, or a string of digits (official: ``int(id)``)."""
    value = record.data["id"]
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    raise InputError(f"expected a video id (an integer or a string of digits), got {value!r}",
                     path=record.path, field=f"{record.where}.id")


def _number(record: Record, key: str) -> float:
    return require_number(record.data[key], path=record.path, field=f"{record.where}.{key}")


def _text(record: Record, key: str) -> str:
    return require_string(record.data[key], path=record.path, field=f"{record.where}.{key}")


def _optional_text(record: Record, key: str) -> str | None:
    if record.data.get(key) is None:
        return None
    return _text(record, key)
