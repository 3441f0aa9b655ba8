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
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .jsonfile import (
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


def read_ground_truth(path: str | os.PathLike, subset: str | None = None) -> LocalizationGroundTruth:
    """Read one subset of an ActivityNet-style ground-truth file.

    ``subset=None`` is allowed only when the file holds a single subset.
    """
    path = Path(path)
    document, database = _read_database(path)
    subsets_in_file: dict[str, str] = {}
    for video, entry in database.items():
        name = _subset_of(entry, path, video)
        subsets_in_file.setdefault(name.lower(), name)
    if subset is None:
        if len(subsets_in_file) != 1:
            names = ", ".join(subsets_in_file.values())
            raise InputError(f"holds several subsets ({names}): choose one with --subset", path=path)
        (wanted,) = subsets_in_file
    else:
        wanted = subset.lower()
        if wanted not in subsets_in_file:
            names = ", ".join(subsets_in_file.values()) or "none"
            raise InputError(f"has no subset '{subset}' (subsets in the file: {names})", path=path)

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
        durations=_durations(database, video_names),
        taxonomy_classes=_taxonomy_leaves(document.get("taxonomy")),
    )


def _durations(database: dict, videos: list[str]) -> dict[str, float]:
    """The ``duration`` of each subset video that gives a number (the official evaluator never reads it)."""
    durations = {}
    for video in videos:
        value = database[video].get("duration")
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            durations[video] = float(value)
    return durations


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
    """Read an ActivityNet-style predictions file and code it against ``ground_truth``."""
    path = Path(path)
    document = require_mapping(read_json(path), path=path, field="top level")
    results = require_mapping(require_key(document, "results", path=path, field="top level"),
                              path=path, field="results")
    video_index = {name: i for i, name in enumerate(ground_truth.video_names)}
    class_index = {name: i for i, name in enumerate(ground_truth.class_names)}
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
