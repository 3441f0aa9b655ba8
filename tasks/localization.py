"""The temporal-localization engine: TAL mAP, ambiguity groups, hallucination rates and LAP.

Why one engine: THUMOS14, ActivityNet-1.3 and EPIC-Kitchens-100 style tasks, ActionVLM's language
advantage (LAP, a paired run with mismatched descriptions) and its hallucination rates of
text-answering localizers all ask a `Localizer` for segments per video and score them with the
ActivityNet detection protocol (`instract_eval.metrics.temporal_localization_map`). Only the
inputs differ (which descriptions the model is given) and which diagnostics are added.

Two steps, as the other engines: `localization_task` turns a registered task and its located
files into a `LocalizationTask` (ground truth, thresholds, class list, descriptions, conflicting
descriptions, ambiguity groups); `evaluate_localization` runs a model on it and returns a
JSON-ready result dict. Rules chosen here, each stated where it is applied:

- The classes the model is given are the ground-truth classes of the evaluated subset plus every
  class of the descriptions file (a localizer searches the whole vocabulary). A described class
  must be known to the ground-truth file (labelled in some subset, or a leaf of its ``taxonomy``),
  so a typo in the descriptions is an error rather than a silently unused class.
- Predictions of a class without ground truth in the evaluated videos are scored as the metric
  does (they do not count); per-class AP and mAP cover the classes with ground truth.
- ``transform: conflicting_descriptions`` (LAP) uses the ``conflicting`` data file when the task
  has one, otherwise a derangement drawn from the task seed (`derangement`). When the aligned
  run's average mAP is 0, LAP (a drop relative to it) is reported as None with the reason in
  ``LAP_undefined``, and the conflicting run is skipped: a weak model is a result, not bad input.
- A missing video is an error unless ``allow_missing``; then its ground truth is left out too, so
  its instances are not counted as misses, and ``coverage`` says what was evaluated.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import LOCALIZER, Segment, answers_in_text, localizer_inputs
from instract_eval.data.activitynet import LocalizationGroundTruth, read_ground_truth
from instract_eval.data.jsonfile import read_yaml, require_list, require_mapping, require_string
from instract_eval.errors import InputError
from instract_eval.media import FEATURE_SUFFIXES
from instract_eval.metrics.localization import (
    TIOU_THRESHOLD_PRESETS,
    LocalizationResult,
    temporal_localization_map,
    threshold_key,
)
from instract_eval.metrics.localization_diagnostics import hallucination_rates, language_advantage_on_performance
from instract_eval.encoding import Encoder

from .encoding import engine_capability
from .sliding_window import sliding_window_segments, window_settings
from .registry import DataLocation, TaskSpec

__all__ = [
    "CONFLICTING_DESCRIPTIONS",
    "MEDIA_SUFFIXES",
    "VIDEO_SUFFIXES",
    "LocalizationTask",
    "derangement",
    "evaluate_localization",
    "find_video",
    "localization_task",
]

CONFLICTING_DESCRIPTIONS = "conflicting_descriptions"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
# Feature files are accepted too: feature-based TAL heads read one [T, D] array per video.
MEDIA_SUFFIXES = VIDEO_SUFFIXES + tuple(FEATURE_SUFFIXES)


@dataclass(frozen=True)
class LocalizationTask:
    """A localization task ready to run: everything read and checked, nothing decoded.

    ``class_names`` is the sorted class list given to the model (ground-truth classes plus the
    described ones); ``ground_truth`` keeps the reader's own coding (its ``class_names`` are
    the classes with ground truth in the subset). ``descriptions`` and ``conflicting`` map every
    class of ``class_names`` to a text, or are None. ``durations`` holds the subset videos whose
    ground-truth entry has a numeric ``duration`` (needed for the hallucination rates only).
    ``sliding_window`` holds the protocol's window settings for dual encoders (empty: defaults).
    """

    name: str
    ground_truth: LocalizationGroundTruth
    thresholds: np.ndarray
    class_names: tuple[str, ...]
    descriptions: Mapping[str, str] | None
    conflicting: Mapping[str, str] | None
    ambiguity_groups: Mapping[str, tuple[str, ...]]
    video_dir: Path
    seed: int
    durations: Mapping[str, float]
    sliding_window: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


# ------------------------------------------------------------------------------------------------
# Building a task


def localization_task(spec: TaskSpec, location: DataLocation) -> LocalizationTask:
    """Read and check the files of a localization task (`location` from `require_data`)."""
    where = f"tasks.{spec.name}"
    if spec.kind != "localization":
        raise InputError(f"task {spec.name} is a {spec.kind} task, not a localization task",
                         path=spec.source, field=f"{where}.kind")
    if spec.format != "activitynet":
        raise InputError(f"format '{spec.format}' is not a localization format (activitynet)",
                         path=spec.source, field=f"{where}.format")
    if spec.transform not in (None, CONFLICTING_DESCRIPTIONS):
        raise InputError(f"unknown transform '{spec.transform}' for a localization task "
                         f"(only {CONFLICTING_DESCRIPTIONS})", path=spec.source, field=f"{where}.transform")
    thresholds = _thresholds(spec)
    gt_path = _data_file(spec, location, "ground_truth")
    video_dir = _data_file(spec, location, "videos")
    ground_truth = read_ground_truth(gt_path, spec.protocol.get("subset"))

    descriptions: dict[str, str] | None = None
    groups: dict[str, tuple[str, ...]] = {}
    if "descriptions" in spec.data:
        descriptions, groups = _read_descriptions(_data_file(spec, location, "descriptions"), ground_truth, ground_truth.known_classes)
    class_names = tuple(sorted(set(ground_truth.class_names) | set(descriptions or ())))

    conflicting: dict[str, str] | None = None
    if spec.transform == CONFLICTING_DESCRIPTIONS:
        if descriptions is None:
            raise InputError(f"transform {CONFLICTING_DESCRIPTIONS} needs a descriptions file to swap",
                             path=spec.source, field=f"{where}.data.descriptions")
        if "conflicting" in spec.data:
            conflicting = _read_conflicting(_data_file(spec, location, "conflicting"), class_names)
        else:
            conflicting = _deranged_descriptions(descriptions, class_names, spec.seed, spec)
    return LocalizationTask(
        name=spec.name,
        ground_truth=ground_truth,
        thresholds=thresholds,
        class_names=class_names,
        descriptions=_frozen(descriptions),
        conflicting=_frozen(conflicting),
        ambiguity_groups=MappingProxyType(groups),
        video_dir=video_dir,
        sliding_window=MappingProxyType(dict(spec.protocol.get("sliding_window") or {})),
        seed=spec.seed,
        durations=MappingProxyType(dict(ground_truth.durations)),
    )


def derangement(num_classes: int, seed: int) -> np.ndarray:
    """A permutation without fixed points, deterministic from ``seed``: class ``i`` gets ``order[i]``'s text.

    ``numpy.random.default_rng(seed)`` draws ``rng.permutation(num_classes)`` until one has no
    fixed point (rejection sampling: uniform over derangements, about e draws on average); this
    is the rule the synthetic world uses for its own conflicting descriptions.
    """
    if num_classes < 2:
        raise ValueError(f"a derangement needs at least 2 classes, got {num_classes}")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num_classes)
        if (order != np.arange(num_classes)).all():
            return order


def _frozen(mapping: dict[str, str] | None) -> Mapping[str, str] | None:
    return None if mapping is None else MappingProxyType(mapping)


def _thresholds(spec: TaskSpec) -> np.ndarray:
    """The protocol's tIoU preset; the name is the one `TIOU_THRESHOLD_PRESETS` knows."""
    field = f"tasks.{spec.name}.protocol.tiou_thresholds"
    name = spec.protocol.get("tiou_thresholds")
    if not isinstance(name, str) or name not in TIOU_THRESHOLD_PRESETS:
        raise InputError(f"unknown tIoU threshold preset {name!r} (one of {', '.join(TIOU_THRESHOLD_PRESETS)})",
                         path=spec.source, field=field)
    return TIOU_THRESHOLD_PRESETS[name]


def _data_file(spec: TaskSpec, location: DataLocation, key: str) -> Path:
    if key not in location.files:
        raise InputError(f"a localization task needs data.{key}", path=spec.source,
                         field=f"tasks.{spec.name}.data.{key}")
    return Path(location.files[key])


def _read_descriptions(path: Path, ground_truth: LocalizationGroundTruth, known: frozenset[str]
                       ) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """``classes: [{name, description, ...}]`` and optional ``ambiguity_groups: {group: [names]}``."""
    document = require_mapping(read_yaml(path), path=path, field="top level")
    entries = require_list(document.get("classes"), path=path, field="classes")
    descriptions: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"classes[{index}]"
        entry = require_mapping(entry, path=path, field=where)
        name = require_string(entry.get("name"), path=path, field=f"{where}.name")
        if name in descriptions:
            raise InputError(f"class '{name}' is described twice", path=path, field=f"{where}.name")
        if name not in known:
            raise InputError(f"'{name}' is not a class of the ground truth {ground_truth.path}",
                             path=path, field=f"{where}.name")
        descriptions[name] = require_string(entry.get("description"), path=path, field=f"{where}.description")
    undescribed = [name for name in ground_truth.class_names if name not in descriptions]
    if undescribed:
        raise InputError(f"no description for the ground-truth class '{undescribed[0]}' "
                         f"({len(undescribed)} class(es) lack one)", path=path, field="classes")
    groups: dict[str, tuple[str, ...]] = {}
    raw_groups = require_mapping(document.get("ambiguity_groups") or {}, path=path, field="ambiguity_groups")
    for group, members in raw_groups.items():
        where = f"ambiguity_groups.{group}"
        members = require_list(members, path=path, field=where)
        for index, member in enumerate(members):
            if member not in descriptions:
                raise InputError(f"'{member}' is not a described class", path=path, field=f"{where}[{index}]")
        groups[str(group)] = tuple(members)
    return descriptions, groups


def _read_conflicting(path: Path, class_names: tuple[str, ...]) -> dict[str, str]:
    """``conflicting: {class: text}``, exactly one text per class of the task."""
    document = require_mapping(read_yaml(path), path=path, field="top level")
    texts = require_mapping(document.get("conflicting"), path=path, field="conflicting")
    for name, text in texts.items():
        if name not in class_names:
            raise InputError(f"'{name}' is not a class of the task", path=path, field=f"conflicting.{name}")
        require_string(text, path=path, field=f"conflicting.{name}")
    absent = [name for name in class_names if name not in texts]
    if absent:
        raise InputError(f"no conflicting description for class '{absent[0]}' ({len(absent)} class(es) lack one)",
                         path=path, field="conflicting")
    return {name: texts[name] for name in class_names}


def _deranged_descriptions(descriptions: Mapping[str, str], class_names: tuple[str, ...], seed: int,
                           spec: TaskSpec) -> dict[str, str]:
    """Each class gets the description of ``class_names[derangement(n, seed)[i]]``."""
    if len(class_names) < 2:
        raise InputError(f"transform {CONFLICTING_DESCRIPTIONS} needs at least 2 classes to swap descriptions",
                         path=spec.source, field=f"tasks.{spec.name}.transform")
    order = derangement(len(class_names), seed)
    return {name: descriptions[class_names[j]] for name, j in zip(class_names, order.tolist())}


# ------------------------------------------------------------------------------------------------
# Running a model


def find_video(video_dir: Path, video: str) -> Path | None:
    """``<video_dir>/<video><ext>`` for the first ext of `MEDIA_SUFFIXES` that exists, else None."""
    for suffix in MEDIA_SUFFIXES:
        path = video_dir / f"{video}{suffix}"
        if path.is_file():
            return path
    return None


def evaluate_localization(encoder: Encoder, task: LocalizationTask, *, limit: int | None = None) -> dict:
    """Localize every video of the subset and score it; see the module docstring for the rules.

    Returns ``{"metrics", "per_class_AP", "per_threshold_class_AP", "ambiguity", "coverage",
    "num_predictions", "hallucination", "samples"}`` and, for a LAP task, ``"conflicting"``.
    ``metrics`` holds ``mAP@<t>`` per threshold and ``average_mAP``; for a LAP task also ``LAP``,
    ``aligned.average_mAP`` and ``conflicting.average_mAP``; for a localizer that answers in text
    also ``hallucination.fixed`` and ``hallucination.repeating``, and the result then has
    ``answers`` (questions asked, parsed, unparsable: `_answer_counts`), ``decoding`` (the
    localizer's own line, e.g. greedy with its token limit) and, per sample, the ``answers`` given.

    The hallucination rates (ActionVLM Table 2) describe free-text answers, so they are computed
    only for models with ``answers_in_text = True`` and from the aligned run; for the others
    ``"hallucination"`` is None: a detection head cannot produce those failures and a rate of 0
    would pass for a measurement.
    """
    model = encoder.model
    engine_capability(model, "localization", task.name)
    present, missing = _resolve_videos(task, encoder.allow_missing)
    present = present[:limit]  # a smoke run (--limit): the first videos, scored on their ground truth only
    log_start = len(_text_answer_attribute(model, "answer_log", None) or ())
    aligned = _run(encoder, task, present, task.descriptions)
    scored = _score(task, present, aligned)
    breakdown = _breakdown(task, scored)
    metrics = breakdown.pop("metrics")
    result: dict = {"metrics": metrics, **breakdown}
    total = task.ground_truth.num_videos
    result["coverage"] = {"evaluated": len(present), "total": total, "fraction": len(present) / total,
                          "missing_videos": missing}
    result["num_predictions"] = sum(len(segments) for segments in aligned)
    result["hallucination"] = None
    if answers_in_text(model):
        rates = _hallucination(task, present, aligned)
        metrics["hallucination.fixed"] = rates["fixed"]
        metrics["hallucination.repeating"] = rates["repeating"]
        result["hallucination"] = rates
        result["answers"] = _answer_counts(task, aligned)
        result["decoding"] = _text_answer_attribute(model, "decoding", None)
    samples = [{"id": video, "segments": _rows(segments)} for (_, video, _), segments in zip(present, aligned)]
    if answers_in_text(model):
        for sample, texts in zip(samples, _answer_texts(model, present, log_start)):
            sample["answers"] = texts
    if task.conflicting is not None and metrics["average_mAP"] == 0.0:
        # A model that finds nothing is a result, not bad input: LAP, a drop relative to 0, is
        # reported as undefined (None) and the conflicting run is skipped.
        metrics.update({"LAP": None, "aligned.average_mAP": 0.0, "conflicting.average_mAP": None})
        result["LAP_undefined"] = "the aligned run's average mAP is 0, so a drop relative to it is undefined"
    elif task.conflicting is not None:
        aligned_map = metrics["average_mAP"]
        swapped = _run(encoder, task, present, task.conflicting)
        other = _breakdown(task, _score(task, present, swapped))
        other["num_predictions"] = sum(len(segments) for segments in swapped)
        conflicting_map = other["metrics"]["average_mAP"]
        metrics["LAP"] = language_advantage_on_performance(aligned_map, conflicting_map)
        metrics["aligned.average_mAP"] = aligned_map
        metrics["conflicting.average_mAP"] = conflicting_map
        result["conflicting"] = other
        for sample, segments in zip(samples, swapped):
            sample["conflicting_segments"] = _rows(segments)
    result["samples"] = samples
    return result


def _resolve_videos(task: LocalizationTask, allow_missing: bool) -> tuple[list[tuple[int, str, Path]], list[str]]:
    """(video id, name, file) of the videos found, and the names of those missing."""
    if not task.video_dir.is_dir():
        raise InputError(f"task {task.name}: the video directory does not exist", path=task.video_dir)
    present: list[tuple[int, str, Path]] = []
    missing: list[str] = []
    for index, video in enumerate(task.ground_truth.video_names):
        path = find_video(task.video_dir, video)
        if path is None:
            missing.append(video)
        else:
            present.append((index, video, path))
    if missing and not allow_missing:
        raise InputError(
            f"no file for video '{missing[0]}' (looked for {missing[0]}{{{','.join(MEDIA_SUFFIXES)}}}; "
            f"{len(missing)} of {task.ground_truth.num_videos} videos missing); add the files, or pass "
            "allow_missing=True (--allow-missing) to evaluate the present videos only",
            path=task.video_dir / missing[0],
        )
    if not present:
        raise InputError(f"task {task.name}: none of the {len(missing)} videos has a file here "
                         f"(looked for <video>{{{','.join(MEDIA_SUFFIXES)}}})", path=task.video_dir)
    return present, missing


def _run(encoder: Encoder, task: LocalizationTask, present: list[tuple[int, str, Path]],
         descriptions: Mapping[str, str] | None) -> list[list[Segment]]:
    """One answer per video (through the encoder: cached, sharded), each answer checked.

    A localizer is asked itself; a dual encoder localizes by sliding windows whose clips the
    encoder encodes like any other (`instract_eval.tasks.sliding_window`).
    """
    classes = set(task.class_names)
    videos = [(video, path) for _, video, path in present]
    if engine_capability(encoder.model, "localization", task.name) == LOCALIZER:
        _check_inputs(encoder.model, task, videos)
        answers = encoder.localize(videos, list(task.class_names), descriptions)
    else:
        answers = sliding_window_segments(encoder, videos, task.class_names, descriptions,
                                          window_settings(encoder.model, task.sliding_window))
    return [_check_segments(answer, video, path, classes, encoder.model)
            for (_, video, path), answer in zip(present, answers)]


def _answer_counts(task: LocalizationTask, aligned: list[list[Segment]]) -> dict:
    """How a text-answering localizer's answers parsed: one question per (video, class).

    An answer is ``parsed`` when it gave at least one segment of its class, and ``unparsable``
    otherwise (no timestamps found, or none that form a segment): it stays in the evaluation as
    an empty prediction, never dropped. Counted from the segments, so a cached run counts the same.
    """
    questions = len(aligned) * len(task.class_names)
    parsed = sum(len({segment.label for segment in segments}) for segments in aligned)
    return {"questions": questions, "parsed": parsed, "unparsable": questions - parsed}


def _text_answer_attribute(model: Any, name: str, default: Any) -> Any:
    """An optional attribute of a text-answering localizer (``decoding``: how it decodes, in one
    line; ``answer_log``: its answers, ``{"video", "class", "answer", "parsed"}`` each), not a flag."""
    return getattr(model, name, default)


def _answer_texts(model: Any, present: list[tuple[int, str, Path]], start: int) -> list[list[dict] | None]:
    """Per video, the answers the localizer gave in this run (for ``--log-samples``); None for a
    video whose segments came from the cache, whose answers were not regenerated."""
    log = list(_text_answer_attribute(model, "answer_log", None) or ())[start:]
    by_video: dict[str, list[dict]] = {}
    for entry in log:
        if isinstance(entry, Mapping) and "video" in entry:
            by_video.setdefault(str(entry["video"]), []).append(
                {key: entry[key] for key in ("class", "answer", "parsed") if key in entry})
    return [by_video.get(str(path)) for _, _, path in present]


def _check_inputs(model: Any, task: LocalizationTask, videos: Sequence[tuple[str, Path]]) -> None:
    """A feature-based localizer reads feature files and a frame-based one videos: refuse a task
    that gives the other kind, before anything is localized."""
    accepted = localizer_inputs(model)
    for video, path in videos:
        kind = "features" if path.suffix.lower() in FEATURE_SUFFIXES else "video"
        if kind not in accepted:
            name = getattr(model, "name", type(model).__name__)
            raise InputError(f"task {task.name}: {name} localizes from {' or '.join(accepted)}, but video '{video}' "
                             f"is a {'feature file' if kind == 'features' else 'video file'}", path=path)


def _check_segments(answer: Any, video: str, path: Path, classes: set[str], model: Any) -> list[Segment]:
    """Every returned item must be a `Segment` with a task class, finite times and score, 0 <= start <= end."""
    name = getattr(model, "name", type(model).__name__)
    if isinstance(answer, (str, bytes, Mapping)) or not isinstance(answer, Sequence):
        raise InputError(f"{name} returned {type(answer).__name__} for video '{video}', expected a list of Segment",
                         path=path)
    for index, segment in enumerate(answer):
        where = f"segments[{index}]"
        if not isinstance(segment, Segment):
            raise InputError(f"{name}: video '{video}', segment {index} is a {type(segment).__name__}, not a Segment",
                             path=path, field=where)
        if segment.label not in classes:
            raise InputError(f"{name}: video '{video}', segment {index} has label {segment.label!r}, "
                             "not a class of the task", path=path, field=where)
        for attribute in ("start", "end", "score"):
            value = getattr(segment, attribute)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(float(value))):
                raise InputError(f"{name}: video '{video}', segment {index} has {attribute} {value!r}, "
                                 "not a finite number", path=path, field=where)
        if not 0 <= segment.start <= segment.end:
            raise InputError(f"{name}: video '{video}', segment {index} is [{segment.start}, {segment.end}]; "
                             "need 0 <= start <= end", path=path, field=where)
    return list(answer)


def _rows(segments: list[Segment]) -> list[list]:
    return [[float(s.start), float(s.end), s.label, float(s.score)] for s in segments]


def _score(task: LocalizationTask, present: list[tuple[int, str, Path]],
           outputs: list[list[Segment]]) -> LocalizationResult:
    """ActivityNet mAP on the ground truth of the evaluated videos, integer-coded by task class."""
    gt = task.ground_truth
    index = {name: i for i, name in enumerate(task.class_names)}
    gt_class = np.array([index[name] for name in gt.class_names], dtype=np.int64)
    keep = np.isin(gt.video, np.array([vid for vid, _, _ in present], dtype=np.int64))
    if not keep.any():
        raise InputError(f"task {task.name}: the evaluated videos hold no ground-truth instance, "
                         "so the mAP is undefined", path=gt.path)
    rows = [(vid, index[s.label], float(s.start), float(s.end), float(s.score))
            for (vid, _, _), segments in zip(present, outputs) for s in segments]
    pred = np.array([r[2:] for r in rows], dtype=np.float64).reshape(-1, 3)
    return temporal_localization_map(
        gt.video[keep], gt_class[gt.label[keep]], gt.segments[keep],
        np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64),
        pred[:, :2], pred[:, 2], thresholds=task.thresholds, num_classes=len(task.class_names),
    )


def _breakdown(task: LocalizationTask, scored: LocalizationResult) -> dict:
    """Headline metrics, per-class AP (mean over thresholds and per threshold) and ambiguity groups."""
    keys = [threshold_key(t) for t in scored.thresholds]
    with_gt = [int(c) for c in scored.classes_with_ground_truth]
    metrics = {f"mAP@{k}": float(v) for k, v in zip(keys, scored.mean_average_precision)}
    metrics["average_mAP"] = float(scored.average_map)
    per_class = {task.class_names[c]: float(scored.average_precision[:, c].mean()) for c in with_gt}
    per_threshold = {k: {task.class_names[c]: float(row[c]) for c in with_gt}
                     for k, row in zip(keys, scored.average_precision)}
    ambiguity: dict[str, float | None] = {}
    for group, members in task.ambiguity_groups.items():
        values = [per_class[m] for m in members if m in per_class]
        ambiguity[group] = float(np.mean(values)) if values else None
    return {"metrics": metrics, "per_class_AP": per_class, "per_threshold_class_AP": per_threshold,
            "ambiguity": ambiguity}


def _hallucination(task: LocalizationTask, present: list[tuple[int, str, Path]],
                   outputs: list[list[Segment]]) -> dict:
    """ActionVLM's fixed / repeating rates over one response per (video, class with ground truth there).

    Those are the queries a QA-style evaluation asks ("when does <class> happen?"); the response
    is the segments of that class the model returned for that video, in its order.
    """
    gt = task.ground_truth
    responses, videos, durations = [], [], []
    for (vid, video, _), segments in zip(present, outputs):
        duration = task.durations.get(video)
        if duration is None or duration <= 0:
            raise InputError(f"the hallucination rates need the positive duration of video '{video}'",
                             path=gt.path, field=f"database.{video}.duration")
        for label in sorted({gt.class_names[c] for c in gt.label[gt.video == vid].tolist()}):
            spans = [(float(s.start), float(s.end)) for s in segments if s.label == label]
            responses.append(np.array(spans, dtype=np.float64).reshape(-1, 2))
            videos.append(video)
            durations.append(duration)
    rates = hallucination_rates(responses, np.array(videos), np.array(durations))
    return {key: rates[key] for key in ("fixed", "repeating", "num_responses", "num_empty", "fixed_min_videos")}
