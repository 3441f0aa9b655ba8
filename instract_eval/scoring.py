"""Scoring of predictions produced elsewhere: files in, plain result dicts out.

This is the Python API behind ``instract-eval score``; each function reads and validates its
inputs (raising `InputError` that names the file and field), calls the pure metric functions and
returns a JSON-ready dict. Rates are fractions in [0, 1]; ranks are 1-based.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .data.activitynet import read_ground_truth, read_predictions
from .data.arrays import read_array
from .data.jsonfile import read_json, require_list, require_mapping
from .errors import InputError
from .metrics.classification import classification_metrics, classification_metrics_over_runs, runs_summary
from .metrics.localization import TIOU_THRESHOLD_PRESETS, temporal_localization_map, threshold_key
from .metrics.ranking import TIE_POLICIES, mcq_metrics
from .metrics.retrieval import pooled_retrieval_metrics, retrieval_metrics

PathLike = str | os.PathLike


@dataclass(frozen=True)
class LocalizationPreset:
    """The protocol of one TAL benchmark as registered in tasks.yaml."""

    name: str
    task: str
    thresholds: np.ndarray
    subset: str
    builtin_ground_truth: str | None


# ActivityNet's Evaluation/eval_detection.py: tiou_thresholds=np.linspace(0.5, 0.95, 10) unless told.
OFFICIAL_DEFAULT_TIOU_THRESHOLDS = TIOU_THRESHOLD_PRESETS["activitynet"]

# Preset name -> the registered task that defines it.
_PRESET_TASKS = {"thumos14": "tal-thumos14", "activitynet": "tal-activitynet13", "epic": "tal-epic100-verb"}
LOCALIZATION_PRESETS = tuple(_PRESET_TASKS)


def localization_preset(name: str) -> LocalizationPreset:
    """Read a TAL preset (thresholds, default subset, shipped ground truth) from tasks.yaml."""
    from .tasks import task  # the registry (YAML) only when a preset is asked for

    if name not in _PRESET_TASKS:
        raise InputError(f"unknown preset '{name}' (choose from {', '.join(LOCALIZATION_PRESETS)})",
                         field="--preset")
    spec = task(_PRESET_TASKS[name])
    ground_truth = spec.data["ground_truth"]
    return LocalizationPreset(
        name=name,
        task=spec.name,
        thresholds=TIOU_THRESHOLD_PRESETS[spec.protocol["tiou_thresholds"]],
        subset=spec.protocol["subset"],
        builtin_ground_truth=ground_truth["builtin"] if isinstance(ground_truth, dict) else None,
    )


def score_localization(
    predictions: PathLike,
    ground_truth: PathLike | None = None,
    *,
    subset: str | None = None,
    thresholds: Sequence[float] | None = None,
    preset: str | None = None,
) -> dict:
    """mAP per tIoU threshold, average mAP and per-class AP of ActivityNet-style files.

    ``preset`` supplies the thresholds and the default subset (and, for THUMOS14, the ground
    truth shipped with the package); explicit ``thresholds`` and ``subset`` override it. With
    neither thresholds nor preset, the thresholds are the official evaluator's own default.
    """
    chosen = localization_preset(preset) if preset else None
    if thresholds is None:
        thresholds = chosen.thresholds if chosen is not None else OFFICIAL_DEFAULT_TIOU_THRESHOLDS
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all((thresholds > 0) & (thresholds <= 1)):
        raise InputError(f"tIoU thresholds must be in (0, 1], got {thresholds.tolist()}", field="--thresholds")

    if ground_truth is None:
        if chosen is None or chosen.builtin_ground_truth is None:
            raise InputError("give --ground-truth (only --preset thumos14 ships its ground truth)",
                             field="--ground-truth")
        from .tasks.registry import builtin_resource

        with builtin_resource(chosen.builtin_ground_truth) as shipped:
            gt = read_ground_truth(shipped, subset or chosen.subset)
    else:
        gt = read_ground_truth(ground_truth, subset, preferred_subset=chosen.subset if chosen else None)
    pred = read_predictions(predictions, gt)

    result = temporal_localization_map(
        gt.video, gt.label, gt.segments,
        pred.video, pred.label, pred.segments, pred.scores,
        thresholds=thresholds, num_classes=gt.num_classes,
    )
    keys = [threshold_key(t) for t in result.thresholds]
    if len(set(keys)) != len(keys):
        raise InputError(f"duplicate tIoU thresholds {keys}", field="--thresholds")
    return {
        "mAP": {k: float(v) for k, v in zip(keys, result.mean_average_precision)},
        "average_mAP": float(result.average_map),
        "per_class_AP": {
            k: {name: float(row[c]) for c, name in enumerate(gt.class_names)}
            for k, row in zip(keys, result.average_precision)
        },
        "thresholds": [float(t) for t in result.thresholds],
        "subset": gt.subset,
        "num_videos": gt.num_videos,
        "num_classes": gt.num_classes,
        "num_ground_truth": int(gt.label.shape[0]),
        "num_predictions": pred.num_predictions,
        "num_predictions_in_other_subset_videos": pred.num_in_other_subset_videos,
        "num_predictions_in_unknown_videos": pred.num_in_unknown_videos,
        "num_predictions_ignored_other_subset_class": pred.num_ignored_other_subset_class,
    }


def score_mcq(
    scores: PathLike,
    answers: PathLike | None = None,
    mask: PathLike | None = None,
    *,
    ties: str = "expected",
) -> dict:
    """Rank of the correct candidate per query: R@1, R@5, median and mean rank, accuracy."""
    _check_ties(ties)
    score_matrix = read_array(scores, ndim=2, kind="float")
    n, c = score_matrix.shape
    answer_vector = None
    if answers is not None:
        answer_vector = read_array(answers, ndim=1, kind="int")
        _check_length(answers, answer_vector.shape[0], n, "answers", "rows of the score matrix")
        bad = (answer_vector < 0) | (answer_vector >= c)
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(f"row {row}: answer {int(answer_vector[row])} is outside 0..{c - 1}", path=answers)
    mask_matrix = None
    if mask is not None:
        mask_matrix = read_array(mask, ndim=2, kind="bool")
        if mask_matrix.shape != score_matrix.shape:
            raise InputError(f"shape {mask_matrix.shape} does not match the scores' {score_matrix.shape}", path=mask)
        gt_column = np.zeros(n, dtype=np.int64) if answer_vector is None else answer_vector
        invalid = ~mask_matrix[np.arange(n), gt_column]
        if invalid.any():
            row = int(np.argmax(invalid))
            raise InputError(f"row {row}: the correct candidate (column {int(gt_column[row])}) is masked out",
                             path=mask)
    return mcq_metrics(score_matrix, answer_vector, mask_matrix, ties=ties, ks=(1, 5))


def score_retrieval(
    similarity: PathLike,
    *,
    pools: PathLike | None = None,
    text_to_video: PathLike | None = None,
    ties: str = "expected",
    v2t: str = "max_caption",
) -> dict:
    """Text-to-video and video-to-text R@1/5/10, median and mean rank; per pool when pools are given."""
    _check_ties(ties)
    # With pools only the within-pool blocks are read, so entries elsewhere may be NaN.
    matrix = read_array(similarity, ndim=2, kind="float", finite=pools is None)
    texts, videos = matrix.shape
    if pools is not None:
        if text_to_video is not None:
            raise InputError("--pools and --text-to-video cannot be combined (pools need one caption per video)",
                             field="--text-to-video")
        if texts != videos:
            raise InputError(f"with --pools the matrix must be square over all items, got {matrix.shape}",
                             path=similarity)
        pool_map = _read_pools(pools, texts)
        _check_pool_blocks_finite(matrix, pool_map, similarity)
        pooled = pooled_retrieval_metrics(matrix, pool_map, ties=ties, ks=(1, 5, 10))
        weighted = pooled["weighted"]
        return {
            "t2v": weighted["t2v"],
            "v2t": weighted["v2t"],
            "per_pool": pooled["per_pool"],
            "weighted": weighted,
        }
    mapping = None
    if text_to_video is not None:
        mapping = read_array(text_to_video, ndim=1, kind="int")
        _check_length(text_to_video, mapping.shape[0], texts, "text-to-video map", "rows (texts)")
        bad = (mapping < 0) | (mapping >= videos)
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(f"row {row}: video index {int(mapping[row])} is outside 0..{videos - 1}",
                             path=text_to_video)
        captionless = np.setdiff1d(np.arange(videos), mapping)
        if captionless.size:
            raise InputError(f"video {int(captionless[0])} has no caption among the rows", path=text_to_video)
    elif texts != videos:
        raise InputError(f"a non-square matrix {matrix.shape} needs --text-to-video", path=similarity)
    return retrieval_metrics(matrix, text_to_video=mapping, ties=ties, ks=(1, 5, 10), v2t=v2t)


def score_classification(logits: PathLike, labels: PathLike, *, ties: str = "expected") -> dict:
    """Top-1 accuracy and macro F1 (over the classes present in the labels); mean and std over runs."""
    _check_ties(ties)
    scores = read_array(logits, ndim=(2, 3), kind="float")
    truth = read_array(labels, ndim=1, kind="int")
    n, c = scores.shape[-2:]
    _check_length(labels, truth.shape[0], n, "labels", "samples in the logits")
    bad = (truth < 0) | (truth >= c)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"row {row}: label {int(truth[row])} is outside 0..{c - 1}", path=labels)
    if scores.ndim == 2:
        return classification_metrics(scores, truth, ties=ties)
    over_runs = classification_metrics_over_runs(scores, truth, ties=ties)
    headline = ("accuracy", "macro_f1")
    summary = runs_summary([{k: run[k] for k in headline} for run in over_runs["per_run"]])
    # "std" is numpy's default (population, ddof=0); the SRT paper does not say which it printed.
    return {
        **summary["mean"],
        "mean": summary["mean"],
        "std": summary["std_population"],
        "std_definition": "population (ddof=0)",
        "std_sample": summary["std_sample"],
        "runs": over_runs["per_run"],
    }


def _check_ties(ties: str) -> None:
    if ties not in TIE_POLICIES:
        raise InputError(f"unknown tie policy '{ties}' (choose from {', '.join(TIE_POLICIES)})", field="--ties")


def _check_length(path: PathLike, got: int, want: int, what: str, of_what: str) -> None:
    if got != want:
        raise InputError(f"{what} has {got} entries but there are {want} {of_what}", path=path)


def _read_pools(path: PathLike, num_items: int) -> dict[str, list[int]]:
    document = require_mapping(read_json(path), path=path, field="top level")
    if not document:
        raise InputError("no pools", path=path, field="top level")
    owner: dict[int, str] = {}
    pools: dict[str, list[int]] = {}
    for name, members in document.items():
        members = require_list(members, path=path, field=name)
        if not members:
            raise InputError("pool is empty", path=path, field=name)
        for position, index in enumerate(members):
            where = f"{name}[{position}]"
            if isinstance(index, bool) or not isinstance(index, int):
                raise InputError(f"expected an item index, got {json.dumps(index)}", path=path, field=where)
            if not 0 <= index < num_items:
                raise InputError(f"item {index} is outside 0..{num_items - 1}", path=path, field=where)
            if index in owner:
                raise InputError(f"item {index} is already in pool '{owner[index]}'", path=path, field=where)
            owner[index] = name
        pools[name] = list(members)
    return pools


def _check_pool_blocks_finite(matrix: np.ndarray, pools: dict[str, list[int]], path: PathLike) -> None:
    for name, members in pools.items():
        block = matrix[np.ix_(members, members)]
        bad = ~np.isfinite(block)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(
                f"non-finite similarity {block[i, j]} at [{members[i]}, {members[j]}] inside pool '{name}'",
                path=path,
            )
