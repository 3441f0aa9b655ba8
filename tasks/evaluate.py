"""From a registered task to its result: find the data, build the items, run the task's engine.

One function, `evaluate_task`, is the seam between the registry and the engines. The task's
``kind`` picks the engine and its ``format`` the reader; the model only has to provide the
capability that engine asks for. Missing videos are an error unless ``allow_missing`` is given,
and then every result's ``coverage`` says what was evaluated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instract_eval.adapters.protocols import wants_leaf_augmentation
from instract_eval.errors import InputError
from instract_eval.media import FEATURE_SUFFIXES, ClipRequest, read_features, read_last_frame
from instract_eval.results import describe_metrics
from instract_eval.encoding import Encoder

from .alignment import ALIGNMENT_FORMATS, alignment_items, evaluate_alignment
from .build import CLASSIFICATION_FORMATS, MCQ_FORMATS, RETRIEVAL_FORMATS, classification_task, mcq_items, retrieval_items
from .classification import evaluate_classification
from .encoding import CAPABILITY_OF_KIND
from .localization import MEDIA_SUFFIXES, evaluate_localization, find_video, localization_task
from .mcq import evaluate_mcq
from .registry import TaskSpec, require_data
from .retrieval import evaluate_retrieval

__all__ = ["CAPABILITY_OF_KIND", "DECODE_MAX_VIDEOS", "FORMATS_OF_KIND", "evaluate_task", "check_task_data"]

# The annotation formats each engine reads.
FORMATS_OF_KIND: Mapping[str, tuple[str, ...]] = {
    "mcq": MCQ_FORMATS,
    "retrieval": RETRIEVAL_FORMATS,
    "classification": CLASSIFICATION_FORMATS,
    "localization": ("activitynet",),
    "alignment": ALIGNMENT_FORMATS,
}


# `check` decodes every video of a task with at most this many (a few seconds for clips; a
# long-video benchmark would take minutes), unless --decode or --no-decode says otherwise.
DECODE_MAX_VIDEOS = 200


def check_task_data(spec: TaskSpec, *, data_root: str | os.PathLike | None = None,
                    environ: Mapping[str, str] = os.environ, allow_missing: bool = False,
                    decode: bool | None = None) -> dict:
    """Read a task's annotations and check that every video it needs is there, without a model.

    Returns ``{"task", "items", "videos", "present", "missing": [paths], "decoded", "unreadable"}``.
    Missing videos raise an `InputError` naming the first of them, unless ``allow_missing`` (what
    ``run`` would then evaluate is the present part, and its result records the coverage).

    A file that is there may still be a truncated download, which only decoding shows. With
    ``decode`` (default: when the task has at most `DECODE_MAX_VIDEOS` videos) each present video
    is read to its last frame (`read_last_frame`; a feature file is read whole): ``decoded``
    counts those that read, ``unreadable`` lists ``(path, why)`` for the others. Without decoding
    ``decoded`` is None. Unreadable files are reported, not raised: the caller decides.
    """
    _check_format(spec)
    location = require_data(spec, data_root, environ)
    if spec.kind == "localization":
        task = localization_task(spec, location)
        names = list(task.ground_truth.video_names)
        found = {video: find_video(task.video_dir, video) for video in names}
        videos = [path for path in found.values() if path is not None]
        missing = [str(task.video_dir / f"{video}{{{','.join(MEDIA_SUFFIXES)}}}")
                   for video, path in found.items() if path is None]
        items = len(names)
    else:
        requests = _requests(spec, location)
        items = len(requests)
        wanted = list(dict.fromkeys(Path(r.path) for group in requests for r in group))
        videos = [path for path in wanted if path.is_file()]
        missing = [str(path) for path in wanted if not path.is_file()]
    total = len(videos) + len(missing)
    if missing and not allow_missing:
        raise InputError(f"task {spec.name}: {len(missing)} of {total} videos are missing, e.g. {missing[0]}; "
                         "fetch them or pass --allow-missing to evaluate the rest", field="data.videos")
    if decode is None:
        decode = total <= DECODE_MAX_VIDEOS
    unreadable = _unreadable(videos) if decode else []
    return {"task": spec.name, "items": items, "videos": total, "present": len(videos), "missing": missing,
            "decoded": len(videos) - len(unreadable) if decode else None, "unreadable": unreadable}


def _unreadable(paths: list[Path]) -> list[tuple[str, str]]:
    """``(path, why)`` for each video (or feature file) that cannot be read to its end."""
    failures = []
    for path in paths:
        try:
            if path.suffix.lower() in FEATURE_SUFFIXES:
                read_features(path)
            else:
                read_last_frame(path)
        except InputError as error:
            failures.append((str(path), error.message))
    return failures


def _requests(spec: TaskSpec, location) -> list[tuple[ClipRequest, ...]]:
    """The clip requests of each item of a non-localization task."""
    if spec.kind == "mcq":
        return [tuple(v for v in (item.query, *item.candidates) if isinstance(v, ClipRequest))
                for item in mcq_items(spec, location)]
    if spec.kind == "retrieval":
        return [(item.video,) for item in retrieval_items(spec, location)]
    if spec.kind == "classification":
        return [(item.video,) for item in classification_task(spec, location).items]
    return [(item.request,) for item in alignment_items(spec, location)]


def _check_format(spec: TaskSpec) -> None:
    formats = FORMATS_OF_KIND[spec.kind]
    if spec.format not in formats:
        raise InputError(f"task {spec.name}: a {spec.kind} task reads one of {', '.join(formats)}, not "
                         f"'{spec.format}'", path=spec.source, field=f"tasks.{spec.name}.format")


def evaluate_task(model: Any, spec: TaskSpec, *, data_root: str | os.PathLike | None = None,
                  environ: Mapping[str, str] = os.environ, allow_missing: bool = False, batch_size: int = 8,
                  num_workers: int = 0, encoder: Encoder | None = None, limit: int | None = None) -> dict:
    """Evaluate ``model`` on one task: ``{"task", "kind", "metrics", "coverage", ...engine extras}``.

    ``data_root`` and ``environ`` locate the files as `require_data` does (a missing file is an
    `InputError` saying what to download and how to point the tool at it). ``encoder`` is the
    run's shared encoder of ``model`` (outputs reused across tasks, cached, sharded); without one
    a private one is made from ``batch_size``/``num_workers``/``allow_missing``. ``limit`` keeps
    the first N items (videos, for localization) for smoke runs.
    """
    _check_format(spec)
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}", field="--limit")
    location = require_data(spec, data_root, environ)
    if encoder is None:
        encoder = Encoder(model, batch_size=batch_size, num_workers=num_workers, allow_missing=allow_missing)
    elif encoder.model is not model:
        raise ValueError("the encoder wraps another model than the one being evaluated")
    if spec.kind == "mcq":
        result = evaluate_mcq(encoder, mcq_items(spec, location)[:limit], task=spec.name, protocol=spec.protocol,
                              ties=spec.ties)
    elif spec.kind == "retrieval":
        result = evaluate_retrieval(encoder, retrieval_items(spec, location)[:limit], task=spec.name,
                                    protocol=spec.protocol, ties=spec.ties)
    elif spec.kind == "classification":
        leaf = True if wants_leaf_augmentation(model) else None  # an adapter may ask for it
        task = classification_task(spec, location, leaf_augmentation=leaf)
        task = dataclasses.replace(task, items=task.items[:limit])
        result = evaluate_classification(encoder, task, name=spec.name, protocol=spec.protocol, ties=spec.ties)
    elif spec.kind == "localization":
        result = evaluate_localization(encoder, localization_task(spec, location), limit=limit)
    else:
        result = evaluate_alignment(encoder, alignment_items(spec, location)[:limit], task=spec.name,
                                    protocol=spec.protocol)
    _require_declared_metrics(spec, result["metrics"])
    return {"task": spec.name, "kind": spec.kind, **result}


def _require_declared_metrics(spec: TaskSpec, metrics: Mapping[str, Any]) -> None:
    """Refuse a run that lacks a declared metric, rather than leave it out of the headline.

    The registry already refuses names the engine never reports; this catches what only the
    run can tell: the hallucination rates of a localizer that does not answer in text, ``srt.*``
    from a synonym table with a single run, a group without clips.
    """
    reported = describe_metrics(metrics)
    for index, metric in enumerate(spec.metrics):
        if metric.name not in reported:
            raise InputError(f"task {spec.name} declares the metric '{metric.name}', which this run did not report "
                             f"(it reported {', '.join(reported)})", path=spec.source,
                             field=f"tasks.{spec.name}.metrics[{index}].name")
