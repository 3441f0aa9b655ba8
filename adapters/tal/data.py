"""Training data of feature-based TAL heads: ActivityNet-format ground truth + a feature directory.

Layout (the release's, with the file names as settings)::

    DIR/annotations.json     {"database": {VIDEO: {"subset": "Validation", "duration": 171.6, "fps": 30.0,
                               "annotations": [{"segment": [start_s, end_s], "label": "CliffDiving",
                                                "label_id": 4}, ...]}}}
    DIR/features/VIDEO.npy   [T, C] float32, and optionally features.json (instract-eval/features/v1)

Rules, each the release's (``libs/datasets/thumos14.py``) unless said otherwise:

- The split is every video whose ``subset`` is one of the chosen ones (case-insensitive).
  Videos without a feature file are skipped, as in the release; none at all is an error.
- Class ids are the files' ``label_id`` when every annotation has one (THUMOS14's JSON),
  otherwise the class names sorted (the release then numbers classes in file order, which
  depends on dict order; sorting is stable across files).
- Seconds to the feature grid: ``x * fps / stride - 0.5 * window / stride`` (minus
  ``offset / stride`` when ``features.json`` says the first window starts later), with the
  timing from ``features.json`` (per-video ``fps``) when the directory has it, else from the
  recipe's ``fps`` / ``feat_stride`` / ``num_frames`` (or the video's ``fps`` in the JSON).
- A video with no annotations is kept as a background-only example (the release's model would
  fail on it; its targets are simply all negative).
- Random truncation (`crop_example`): a video longer than ``max_seq_len`` -- or, with
  ``crop_ratio``, a random length in ``[round(lo * T), min(round(hi * T), T)]`` -- is cut to a
  random window that keeps at least one action covering ``trunc_thresh`` of its length (up to
  200 draws; the last draw otherwise); segments are clipped to the window widened by the
  half-window offset and shifted.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.errors import InputError

from .adapter import FEATURES_FORMAT

__all__ = ["TALItem", "TALSplit", "read_split", "crop_example"]


@dataclass(frozen=True)
class FeatureDataConfig:
    """The data settings every feature-based head's recipe reads (`read_split`, `crop_example`),
    defaulted as the THUMOS14 configs of the releases: ``DIR/annotations.json`` (ActivityNet format)
    and ``DIR/features/``, trained on the ``validation`` subset, I3D timing (30 fps, stride 4,
    16-frame windows) when the features have no ``features.json``, and the release's truncation."""

    annotations: str = "annotations.json"
    features: str = "features"
    feature_suffix: str = ".npy"
    train_split: tuple[str, ...] = ("validation",)
    fps: float = 30.0                 # timing when the feature directory has no features.json
    feat_stride: float = 4.0
    num_frames: float = 16.0
    max_seq_len: int = 2304
    trunc_thresh: float = 0.5
    crop_ratio: tuple[float, float] | None = (0.9, 1.0)

    def check_data(self) -> None:
        if self.crop_ratio is not None and not 0 < self.crop_ratio[0] <= self.crop_ratio[1] <= 1:
            raise ValueError(f"crop_ratio must be 0 < low <= high <= 1, got {self.crop_ratio}")
        if not self.train_split:
            raise ValueError("train_split names at least one subset")


@dataclass(frozen=True)
class TALItem:
    """One training video: its feature file, ground truth on the feature grid and timing."""

    video_id: str
    path: Path
    segments: np.ndarray        # [N, 2] float32, feature grid
    labels: np.ndarray          # [N] int64
    fps: float
    stride: float
    window: float
    duration: float | None


@dataclass(frozen=True)
class TALSplit:
    items: tuple[TALItem, ...]
    class_names: tuple[str, ...]
    skipped_without_features: int


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"must be a number, got {value!r}", path=path, field=where)
    return float(value)


def _class_ids(database: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    ids: dict[int, str] = {}
    names: set[str] = set()
    all_have_ids = True
    for video, entry in database.items():
        for row, annotation in enumerate(entry.get("annotations") or []):
            where = f"database.{video}.annotations[{row}]"
            if not isinstance(annotation, Mapping) or not isinstance(annotation.get("label"), str):
                raise InputError("needs a string 'label'", path=path, field=where)
            label = annotation["label"]
            names.add(label)
            label_id = annotation.get("label_id")
            if label_id is None:
                all_have_ids = False
                continue
            if isinstance(label_id, bool) or not isinstance(label_id, int) or label_id < 0:
                raise InputError(f"label_id must be a non-negative integer, got {label_id!r}", path=path,
                                 field=f"{where}.label_id")
            if ids.setdefault(label_id, label) != label:
                raise InputError(f"label_id {label_id} is both {ids[label_id]!r} and {label!r}", path=path,
                                 field=f"{where}.label_id")
    if not names:
        raise InputError("has no annotations: nothing to train on", path=path, field="database")
    if all_have_ids:
        missing = [i for i in range(max(ids) + 1) if i not in ids]
        if missing or len(set(ids.values())) != len(ids):
            raise InputError(f"label ids must number the classes 0..{max(ids)} once each (id {missing[0]} is unused)"
                             if missing else "one class has two label ids", path=path, field="label_id")
        return tuple(ids[i] for i in range(len(ids)))
    return tuple(sorted(names))


def _feature_meta(directory: Path) -> Mapping[str, Any] | None:
    path = directory / "features.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the feature metadata: {error}", path=path) from None
    if not isinstance(meta, Mapping) or meta.get("format") != FEATURES_FORMAT or not isinstance(meta.get("videos"),
                                                                                                 Mapping):
        raise InputError(f"expected format {FEATURES_FORMAT!r} with a 'videos' mapping", path=path, field="format")
    return meta


def read_split(annotations: Path, features: Path, subsets: Sequence[str], *, fps: float, feat_stride: float,
               num_frames: float, suffix: str = ".npy") -> TALSplit:
    """The training videos of ``subsets`` with ground truth on the feature grid (see the module docstring)."""
    try:
        document = json.loads(annotations.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("ground-truth file not found", path=annotations) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the ground truth: {error}", path=annotations) from None
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON (line {error.lineno})", path=annotations) from None
    database = document.get("database") if isinstance(document, Mapping) else None
    if not isinstance(database, Mapping):
        raise InputError("expected an ActivityNet-style {'database': {video: ...}} file", path=annotations,
                         field="database")
    if not features.is_dir():
        raise InputError("feature directory not found", path=features)
    for video, entry in database.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("subset"), str):
            raise InputError("needs a string 'subset'", path=annotations, field=f"database.{video}")
    classes = _class_ids(database, annotations)
    index = {name: i for i, name in enumerate(classes)}
    meta = _feature_meta(features)
    wanted = {s.lower() for s in subsets}
    items, skipped = [], 0
    for video, entry in database.items():
        if entry["subset"].lower() not in wanted:
            continue
        path = features / f"{video}{suffix}"
        if not path.is_file():
            skipped += 1
            continue
        where = f"database.{video}"
        if meta is not None:
            listed = meta["videos"].get(video)
            if not isinstance(listed, Mapping):
                raise InputError(f"has no entry for video {video!r}", path=features / "features.json", field="videos")
            rate = _number(listed.get("fps", meta.get("fps")), features / "features.json", f"videos.{video}.fps")
            stride = _number(meta.get("stride"), features / "features.json", "stride")
            window = _number(meta.get("window"), features / "features.json", "window")
            offset = _number(meta.get("offset", 0), features / "features.json", "offset")
        else:
            rate = _number(entry["fps"], annotations, f"{where}.fps") if "fps" in entry else fps
            stride, window, offset = float(feat_stride), float(num_frames), 0.0
        duration = _number(entry["duration"], annotations, f"{where}.duration") if "duration" in entry else None
        rows, labels = [], []
        for row, annotation in enumerate(entry.get("annotations") or []):
            segment = annotation.get("segment")
            if not (isinstance(segment, Sequence) and len(segment) == 2):
                raise InputError("segment must be [start, end] in seconds", path=annotations,
                                 field=f"{where}.annotations[{row}].segment")
            start = _number(segment[0], annotations, f"{where}.annotations[{row}].segment")
            end = _number(segment[1], annotations, f"{where}.annotations[{row}].segment")
            if not start < end:
                raise InputError(f"segment must have start < end, got [{start}, {end}]", path=annotations,
                                 field=f"{where}.annotations[{row}].segment")
            rows.append([start, end])
            labels.append(index[annotation["label"]])
        seconds = np.asarray(rows, dtype=np.float32).reshape(-1, 2)
        grid = (seconds * np.float32(rate) - np.float32(offset)) / np.float32(stride) \
            - np.float32(0.5 * window / stride)
        items.append(TALItem(video, path, grid.astype(np.float32), np.asarray(labels, dtype=np.int64), rate, stride,
                             window, duration))
    if not items:
        raise InputError(f"no video of subset {'/'.join(subsets)} has a feature file <video>{suffix} here "
                         f"({skipped} without one)", path=features)
    return TALSplit(tuple(items), classes, skipped)


def crop_example(feats: np.ndarray, segments: np.ndarray, labels: np.ndarray, rng: random.Random, *,
                 max_seq_len: int, trunc_thresh: float, offset: float,
                 crop_ratio: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The release's ``truncate_feats`` on ``[T, C]`` features (see the module docstring), every draw from ``rng``."""
    length = feats.shape[0]
    keep = max_seq_len
    if length <= max_seq_len:
        if crop_ratio is None:
            return feats, segments, labels
        keep = rng.randint(max(round(crop_ratio[0] * length), 1), min(round(crop_ratio[1] * length), length))
        if keep == length:
            return feats, segments, labels
    start = 0
    chosen = np.zeros(len(segments), dtype=bool)
    left = right = segments[:, 0]
    for _ in range(200):
        start = rng.randint(0, length - keep)
        end = start + keep
        left = np.maximum(np.float32(start - offset), segments[:, 0])
        right = np.minimum(np.float32(end + offset), segments[:, 1])
        inter = np.clip(right - left, 0.0, None)
        chosen = inter / np.abs(segments[:, 1] - segments[:, 0]) >= trunc_thresh
        if chosen.any() or len(segments) == 0:
            break
    cut = np.stack((left[chosen], right[chosen]), axis=1).astype(np.float32).reshape(-1, 2) - np.float32(start)
    return feats[start:start + keep], cut, labels[chosen]
