"""ActivityNet-style temporal localization files (THUMOS14, ActivityNet-1.3, EPIC-Kitchens-100).

Ground truth::

    {"version": ..., "taxonomy": ...,            # optional: only "database" is read
     "database": {VIDEO: {"subset": "Test", "duration": 33.8,
                          "annotations": [{"segment": [start_s, end_s], "label": "CricketBowling"}]}}}

Predictions::

    {"results": {VIDEO: [{"label": "CricketBowling", "score": 0.91, "segment": [start_s, end_s]}]},
     "version": ..., "external_data": ...}         # optional

The readers turn both into integer-coded arrays for `instract_eval.metrics.localization` and decide
the cases where the official evaluator (ActivityNet `Evaluation/eval_detection.py`) crashes or is
silent, each by a rule stated here:

- Subset names match case-insensitively (the real THUMOS14 file says ``Test``).
- Ground-truth segments must have ``0 <= start < end``: a zero-length instance makes the official
  tIoU 0/0 = NaN, so it is refused as bad input. Predicted segments need ``0 <= start <= end``.
- A prediction in a video that is not in the evaluated subset (another subset, or absent from the
  ground truth) is kept and counts as a false positive, as in the official code; both are counted
  in the result.
- A prediction whose label has ground truth only in another subset is ignored and counted (the
  official code raises ``KeyError``); a label absent from the whole ground truth is bad input.

Each reader has two paths. A valid file is decoded by msgspec into typed structs and checked on
whole arrays (an ActivityNet-val predictions file, 52 MB, in under half a second instead of about
two); a file that path does not accept is read again entry by entry, and that reader's verdict,
value or error, is the answer: the error names the first problem in file order, as it always did.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..errors import InputError
from .jsonfile import (
    collector_paused,
    read_json,
    require_key,
    require_list,
    require_mapping,
    require_number,
    require_string,
)


@dataclass(frozen=True)
class LocalizationGroundTruth:
    """The ground truth of one subset, integer-coded: videos and classes index into the name tuples."""

    path: str
    subset: str
    video_names: tuple[str, ...]
    class_names: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    segments: np.ndarray
    classes_of_other_subsets: frozenset[str]
    all_video_names: frozenset[str]
    durations: Mapping[str, float] = field(default_factory=dict)
    taxonomy_classes: frozenset[str] = frozenset()

    @property
    def known_classes(self) -> frozenset[str]:
        """Every class the file knows of: labelled in any subset, or a leaf of its ``taxonomy``."""
        return frozenset(self.class_names) | self.classes_of_other_subsets | self.taxonomy_classes

    @property
    def num_videos(self) -> int:
        return len(self.video_names)

    @functools.cached_property
    def video_index(self) -> dict[str, int]:
        """Video name -> its index in ``video_names``."""
        return {name: i for i, name in enumerate(self.video_names)}

    @functools.cached_property
    def class_index(self) -> dict[str, int]:
        """Class name -> its index in ``class_names``."""
        return {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class LocalizationPredictions:
    """Predictions coded against a `LocalizationGroundTruth`, in file order.

    Videos outside the evaluated subset get ids at or above ``ground_truth.num_videos``: no
    ground-truth row uses them, so their predictions are false positives.
    """

    path: str
    video: np.ndarray
    label: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    num_in_other_subset_videos: int
    num_in_unknown_videos: int
    num_ignored_other_subset_class: int

    @property
    def num_predictions(self) -> int:
        return int(self.scores.shape[0])


def available_subsets(path: str | os.PathLike) -> list[str]:
    """The distinct subset names of a ground-truth file, in order of first appearance."""
    _, database = _read_database(Path(path))
    seen: dict[str, None] = {}
    for video, entry in database.items():
        seen.setdefault(_subset_of(entry, Path(path), video), None)
    return list(seen)


def read_ground_truth(path: str | os.PathLike, subset: str | None = None, *,
                      preferred_subset: str | None = None) -> LocalizationGroundTruth:
    """Read one subset of an ActivityNet-style ground-truth file.

    ``subset=None`` reads ``preferred_subset`` (a preset's) when the file has it, and otherwise is
    allowed only when the file holds a single subset. The file is parsed once either way. As for
    predictions, a valid file takes a fast path and any other is read by the checked reader.
    """
    path = Path(path)
    fast = _read_ground_truth_fast(path, subset, preferred_subset)
    if fast is not None:
        return fast
    return _read_ground_truth_checked(path, subset, preferred_subset)


def _choose_subset(subsets_in_file: dict[str, str], subset: str | None, preferred_subset: str | None,
                   path: Path) -> str:
    """The lower-cased subset to read, from the file's subsets (lower-cased name -> name as written)."""
    if subset is None and preferred_subset is not None and preferred_subset.lower() in subsets_in_file:
        subset = preferred_subset
    if subset is None:
        if len(subsets_in_file) != 1:
            names = ", ".join(subsets_in_file.values())
            raise InputError(f"holds several subsets ({names}): choose one with --subset", path=path)
        (wanted,) = subsets_in_file
        return wanted
    if subset.lower() not in subsets_in_file:
        names = ", ".join(subsets_in_file.values()) or "none"
        raise InputError(f"has no subset '{subset}' (subsets in the file: {names})", path=path)
    return subset.lower()


class _Segment(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    """``[start, end]``: exactly two numbers. A struct rather than a tuple because tuples are
    tracked by the garbage collector, and its first pass after the parse would walk all 490k."""

    start: float
    end: float


def _segments(items: list) -> np.ndarray:
    """The ``[N, 2]`` float64 array of the items' segments."""
    segments = np.empty((len(items), 2), dtype=np.float64)
    segments[:, 0] = np.fromiter(map(attrgetter("segment.start"), items), np.float64, len(items))
    segments[:, 1] = np.fromiter(map(attrgetter("segment.end"), items), np.float64, len(items))
    return segments


class _Annotation(msgspec.Struct, gc=False):
    label: str
    segment: _Segment


class _Video(msgspec.Struct, gc=False):
    """A ground-truth video as the fast path decodes it; ``duration`` is kept only when it is a
    number (see `_durations`), so any value is accepted there."""

    subset: str
    annotations: list[_Annotation]
    duration: Any = None


class _GroundTruthFile(msgspec.Struct, gc=False):
    database: dict[str, _Video]
    taxonomy: Any = None


_GROUND_TRUTH_DECODER = msgspec.json.Decoder(_GroundTruthFile)


def _read_ground_truth_fast(path: Path, subset: str | None,
                            preferred_subset: str | None) -> LocalizationGroundTruth | None:
    """The ground truth of a file that passes every check, or None: then the checked reader decides.

    What the typed decode lets through (empty strings, segment values) is checked on arrays here;
    a file that passes has no error left but the choice of subset, made by the same rule.
    """
    try:
        data = path.read_bytes()
        with collector_paused():
            document = _GROUND_TRUTH_DECODER.decode(data)
    except (OSError, msgspec.DecodeError):
        return None
    database = document.database
    entries = list(database.values())
    annotations = list(chain.from_iterable(entry.annotations for entry in entries))
    segments = _segments(annotations)
    labels = list(map(attrgetter("label"), annotations))
    if not (entries and all(entry.subset for entry in entries) and all(labels)
            and np.isfinite(segments).all() and (segments[:, 0] >= 0).all()
            and (segments[:, 1] > segments[:, 0]).all()):
        return None

    subsets_in_file: dict[str, str] = {}
    for entry in entries:
        subsets_in_file.setdefault(entry.subset.lower(), entry.subset)
    wanted = _choose_subset(subsets_in_file, subset, preferred_subset, path)
    in_subset = np.array([entry.subset.lower() == wanted for entry in entries], dtype=bool)
    annotation_video = np.repeat(np.arange(len(entries)), [len(entry.annotations) for entry in entries])
    inside = in_subset[annotation_video]
    class_names = tuple(sorted({label for label, keep in zip(labels, inside) if keep}))
    class_index = {name: i for i, name in enumerate(class_names)}
    video_names = [video for video, keep in zip(database, in_subset) if keep]
    return LocalizationGroundTruth(
        path=str(path),
        subset=subsets_in_file[wanted],
        video_names=tuple(video_names),
        class_names=class_names,
        video=(np.cumsum(in_subset) - 1)[annotation_video[inside]].astype(np.int64),
        label=np.array([class_index[label] for label, keep in zip(labels, inside) if keep], dtype=np.int64),
        segments=segments[inside],
        classes_of_other_subsets=frozenset({label for label, keep in zip(labels, inside) if not keep})
        - set(class_names),
        all_video_names=frozenset(database),
        durations=_durations((video, database[video].duration) for video in video_names),
        taxonomy_classes=_taxonomy_leaves(document.taxonomy),
    )


def _read_ground_truth_checked(path: Path, subset: str | None, preferred_subset: str | None) -> LocalizationGroundTruth:
    """The entry-by-entry reader: every check in file order, the first failure named with its place."""
    document, database = _read_database(path)
    subsets_in_file: dict[str, str] = {}
    for video, entry in database.items():
        name = _subset_of(entry, path, video)
        subsets_in_file.setdefault(name.lower(), name)
    wanted = _choose_subset(subsets_in_file, subset, preferred_subset, path)

    video_names: list[str] = []
    rows: list[tuple[int, str, float, float]] = []
    other_labels: set[str] = set()
    for video, entry in database.items():
        in_subset = _subset_of(entry, path, video).lower() == wanted
        field = f"database.{video}.annotations"
        annotations = require_list(require_key(entry, "annotations", path=path, field=f"database.{video}"),
                                   path=path, field=field)
        if in_subset:
            video_names.append(video)
        for index, annotation in enumerate(annotations):
            where = f"{field}[{index}]"
            annotation = require_mapping(annotation, path=path, field=where)
            label = require_string(require_key(annotation, "label", path=path, field=where),
                                   path=path, field=f"{where}.label")
            start, end = _segment(annotation, path, where, allow_zero_length=False)
            if in_subset:
                rows.append((len(video_names) - 1, label, start, end))
            else:
                other_labels.add(label)

    class_names = tuple(sorted({label for _, label, _, _ in rows}))
    class_index = {name: i for i, name in enumerate(class_names)}
    return LocalizationGroundTruth(
        path=str(path),
        subset=subsets_in_file[wanted],
        video_names=tuple(video_names),
        class_names=class_names,
        video=np.array([r[0] for r in rows], dtype=np.int64),
        label=np.array([class_index[r[1]] for r in rows], dtype=np.int64),
        segments=np.array([(r[2], r[3]) for r in rows], dtype=np.float64).reshape(-1, 2),
        classes_of_other_subsets=frozenset(other_labels - set(class_names)),
        all_video_names=frozenset(database),
        durations=_durations((video, database[video].get("duration")) for video in video_names),
        taxonomy_classes=_taxonomy_leaves(document.get("taxonomy")),
    )


def _durations(durations: Iterable[tuple[str, object]]) -> dict[str, float]:
    """The ``duration`` of each subset video that gives a number (the official evaluator never reads it)."""
    return {video: float(value) for video, value in durations
            if isinstance(value, numbers.Real) and not isinstance(value, bool)}


def _taxonomy_leaves(taxonomy: object) -> frozenset[str]:
    """Leaf node names of an ActivityNet ``taxonomy`` (nodes nobody names as parent).

    The taxonomy is optional and unchecked, as in the official evaluator, which never reads it;
    malformed nodes are passed over.
    """
    if not isinstance(taxonomy, list):
        return frozenset()
    nodes = [n for n in taxonomy if isinstance(n, dict) and isinstance(n.get("nodeName"), str)]
    parents = {n.get("parentId") for n in nodes if n.get("parentId") is not None}
    return frozenset(n["nodeName"] for n in nodes if n.get("nodeId") not in parents)


def read_predictions(path: str | os.PathLike, ground_truth: LocalizationGroundTruth) -> LocalizationPredictions:
    """Read an ActivityNet-style predictions file and code it against ``ground_truth``.

    A valid file takes the fast path: a typed decode and checks done once on whole arrays (an
    ActivityNet-val file of 490k predictions in a fraction of a second). A file the fast path does
    not accept, for whatever reason, is read again by the entry-by-entry reader, which accepts
    what it accepts and reports the first problem in file order: the fast path changes the time,
    never the values or the error messages.
    """
    path = Path(path)
    fast = _read_predictions_fast(path, ground_truth)
    if fast is not None:
        return fast
    return _read_predictions_checked(path, ground_truth)


class _Prediction(msgspec.Struct, gc=False):
    """One prediction as the fast path decodes it; other keys are ignored, as the checked reader
    ignores them. Untracked by the garbage collector (``gc=False``): it holds no containers."""

    label: str
    score: float
    segment: _Segment


class _PredictionsFile(msgspec.Struct, gc=False):
    results: dict[str, list[_Prediction]]


_PREDICTIONS_DECODER = msgspec.json.Decoder(_PredictionsFile)


def _read_predictions_fast(path: Path, ground_truth: LocalizationGroundTruth) -> LocalizationPredictions | None:
    """The predictions of a file that passes every check, or None: then the checked reader decides.

    The typed decode refuses what the checked reader refuses entry by entry (a missing key, a
    boolean, string or null score, a segment that is not two numbers, NaN and infinite literals,
    malformed JSON or UTF-8); what is left is checked here on whole arrays.
    """
    try:
        data = path.read_bytes()
        with collector_paused():
            results = _PREDICTIONS_DECODER.decode(data).results
    except (OSError, msgspec.DecodeError):
        return None
    entries = list(chain.from_iterable(results.values()))
    count = len(entries)
    scores = np.fromiter(map(attrgetter("score"), entries), np.float64, count)
    segments = _segments(entries)
    if not (np.isfinite(scores).all() and np.isfinite(segments).all()
            and (segments[:, 0] >= 0).all() and (segments[:, 1] >= segments[:, 0]).all()):
        return None
    labels = _label_ids(entries, ground_truth.class_index)
    unknown = labels < 0
    if unknown.any() and not all(entries[row].label in ground_truth.classes_of_other_subsets
                                 for row in np.flatnonzero(unknown)):
        return None  # a label no subset has: the checked reader names the first problem

    video_ids, other_subset, known_nowhere = _code_videos(list(results), ground_truth)
    per_video = np.fromiter(map(len, results.values()), np.int64, len(results))
    video = np.repeat(video_ids, per_video)
    kept = ~unknown
    return LocalizationPredictions(
        path=str(path),
        video=video[kept],
        label=labels[kept],
        segments=segments[kept],
        scores=scores[kept],
        num_in_other_subset_videos=int(np.repeat(other_subset, per_video)[kept].sum()),
        num_in_unknown_videos=int(np.repeat(known_nowhere, per_video)[kept].sum()),
        num_ignored_other_subset_class=int(unknown.sum()),
    )


def _label_ids(entries: list[_Prediction], class_index: dict[str, int]) -> np.ndarray:
    """Each prediction's class id, -1 for a label that is not a class of the subset."""
    names = map(attrgetter("label"), entries)
    try:
        return np.fromiter(map(class_index.__getitem__, names), np.int64, len(entries))
    except KeyError:  # some label is not a class of the subset: the slower lookup with a default
        return np.fromiter((class_index.get(entry.label, -1) for entry in entries), np.int64, len(entries))


def _code_videos(videos: list[str], ground_truth: LocalizationGroundTruth) -> tuple[np.ndarray, ...]:
    """Per predicted video: its id (a subset video's index; videos outside the subset numbered on
    from ``num_videos`` in order of appearance, as the checked reader numbers them), whether it is
    a video of another subset, and whether the ground truth has it nowhere."""
    ids, other_subset, known_nowhere = [], [], []
    next_outside_id = ground_truth.num_videos
    for video in videos:
        index = ground_truth.video_index.get(video)
        outside = index is None
        if outside:
            index, next_outside_id = next_outside_id, next_outside_id + 1
        ids.append(index)
        other_subset.append(outside and video in ground_truth.all_video_names)
        known_nowhere.append(outside and video not in ground_truth.all_video_names)
    return (np.array(ids, dtype=np.int64), np.array(other_subset, dtype=bool),
            np.array(known_nowhere, dtype=bool))


def _read_predictions_checked(path: Path, ground_truth: LocalizationGroundTruth) -> LocalizationPredictions:
    """The entry-by-entry reader: every check in file order, the first failure named with its place."""
    document = require_mapping(read_json(path), path=path, field="top level")
    results = require_mapping(require_key(document, "results", path=path, field="top level"),
                              path=path, field="results")
    video_index = ground_truth.video_index
    class_index = ground_truth.class_index
    outside_ids: dict[str, int] = {}
    videos: list[int] = []
    labels: list[int] = []
    segments: list[tuple[float, float]] = []
    scores: list[float] = []
    in_other_subset = in_unknown = ignored = 0
    for video, entries in results.items():
        field = f"results.{video}"
        entries = require_list(entries, path=path, field=field)
        if video in video_index:
            video_id = video_index[video]
        else:
            video_id = outside_ids.setdefault(video, ground_truth.num_videos + len(outside_ids))
        for index, entry in enumerate(entries):
            where = f"{field}[{index}]"
            entry = require_mapping(entry, path=path, field=where)
            label = require_string(require_key(entry, "label", path=path, field=where),
                                   path=path, field=f"{where}.label")
            score = require_number(require_key(entry, "score", path=path, field=where),
                                   path=path, field=f"{where}.score")
            start, end = _segment(entry, path, where, allow_zero_length=True)
            if label not in class_index:
                if label in ground_truth.classes_of_other_subsets:
                    ignored += 1
                    continue
                raise InputError(
                    f"'{label}' is not a class of the ground truth {ground_truth.path}",
                    path=path, field=f"{where}.label",
                )
            if video not in video_index:
                if video in ground_truth.all_video_names:
                    in_other_subset += 1
                else:
                    in_unknown += 1
            videos.append(video_id)
            labels.append(class_index[label])
            segments.append((start, end))
            scores.append(score)
    return LocalizationPredictions(
        path=str(path),
        video=np.array(videos, dtype=np.int64),
        label=np.array(labels, dtype=np.int64),
        segments=np.array(segments, dtype=np.float64).reshape(-1, 2),
        scores=np.array(scores, dtype=np.float64),
        num_in_other_subset_videos=in_other_subset,
        num_in_unknown_videos=in_unknown,
        num_ignored_other_subset_class=ignored,
    )


def _read_database(path: Path) -> tuple[dict, dict]:
    document = require_mapping(read_json(path), path=path, field="top level")
    database = require_mapping(require_key(document, "database", path=path, field="top level"),
                               path=path, field="database")
    if not database:
        raise InputError("has no videos", path=path, field="database")
    for video, entry in database.items():
        require_mapping(entry, path=path, field=f"database.{video}")
    return document, database


def _subset_of(entry: dict, path: Path, video: str) -> str:
    field = f"database.{video}"
    return require_string(require_key(entry, "subset", path=path, field=field), path=path, field=f"{field}.subset")


def _segment(entry: dict, path: Path, where: str, *, allow_zero_length: bool) -> tuple[float, float]:
    field = f"{where}.segment"
    segment = require_list(require_key(entry, "segment", path=path, field=where), path=path, field=field)
    if len(segment) != 2:
        raise InputError(f"expected [start, end], got {len(segment)} values", path=path, field=field)
    start = require_number(segment[0], path=path, field=f"{field}[0]")
    end = require_number(segment[1], path=path, field=f"{field}[1]")
    if start < 0:
        raise InputError(f"negative start time {start}", path=path, field=field)
    if end < start:
        raise InputError(f"start {start} is after end {end}", path=path, field=field)
    if end == start and not allow_zero_length:
        raise InputError(f"zero-length segment [{start}, {end}]", path=path, field=field)
    return start, end
