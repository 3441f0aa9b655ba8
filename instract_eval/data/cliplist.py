"""Clip lists of the zero-shot protocols (Action100M and user tasks: ``format: rows``).

Action100M releases no evaluation code, so its downstream benchmarks (SSv2, EPIC-KITCHENS-100,
Kinetics-400, COIN, CrossTask ... for recognition; MSR-VTT, DiDeMo, YouCook2 ... for retrieval)
are given to the tool as plain row files, in any format of `instract_eval.data.generic`:

- recognition: one row per clip, ``{video, label[, start, end]}``, plus a class list (a
  ``classes.txt`` with one class name per line, the order of the classifier's columns); every
  label must be in the class list::

      {"video": "74225", "label": "Putting something on a surface"}

- retrieval: one row per caption, ``{video, caption[, start, end]}``; several rows may share a
  video (MSVD has about 40 captions per video)::

      {"video": "video7020", "caption": "a woman is slicing an onion"}

``start``/``end`` are seconds (both or neither; neither = the whole video). ``video`` names the
file under the task's video directory: ``<videos>/<video>`` when it has a suffix, else
``<videos>/<video>.mp4``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .generic import read_lines, read_records, record_string, record_window
from .labels import check_label

__all__ = ["LabelledClip", "CaptionedClip", "read_labelled_clips", "read_captioned_clips", "read_class_names",
           "clip_video_path"]

DEFAULT_VIDEO_SUFFIX = ".mp4"


@dataclass(frozen=True)
class LabelledClip:
    """A clip to classify; ``where`` is its row (``line 7``) for error messages and sample ids."""

    where: str
    video: str
    start: float | None
    end: float | None
    label: str


@dataclass(frozen=True)
class CaptionedClip:
    """A caption and the clip it describes."""

    where: str
    video: str
    start: float | None
    end: float | None
    caption: str


def read_class_names(path: str | os.PathLike) -> list[str]:
    """A class list: one name per line (a repeated name is an error naming both lines)."""
    names = read_lines(path, what="class")
    if not names:
        raise InputError("has no classes", path=path)
    return names


def read_labelled_clips(path: str | os.PathLike, classes: list[str] | tuple[str, ...],
                        class_list: str | None = None) -> list[LabelledClip]:
    """Recognition rows ``{video, label[, start, end]}``; a label outside ``classes`` is an error.

    ``class_list`` names the file the classes came from, for that error.
    """
    known = dict.fromkeys(classes)
    declared_by = f"the class list {class_list}" if class_list else "the class list"
    clips = []
    for record in read_records(path, ["video", "label"]):
        label = check_label(record_string(record, "label"), known, declared_by=declared_by, path=record.path,
                            field=f"{record.where}.label")
        start, end = record_window(record)
        clips.append(LabelledClip(record.where, record_string(record, "video"), start, end, label))
    return clips


def read_captioned_clips(path: str | os.PathLike) -> list[CaptionedClip]:
    """Retrieval rows ``{video, caption[, start, end]}``."""
    clips = []
    for record in read_records(path, ["video", "caption"]):
        start, end = record_window(record)
        clips.append(CaptionedClip(record.where, record_string(record, "video"), start, end,
                                   record_string(record, "caption")))
    return clips


def clip_video_path(videos: str | os.PathLike, video: str) -> Path:
    """``<videos>/<video>`` if the name has a suffix, else ``<videos>/<video>.mp4``."""
    name = Path(video)
    return Path(videos) / (video if name.suffix else f"{video}{DEFAULT_VIDEO_SUFFIX}")
