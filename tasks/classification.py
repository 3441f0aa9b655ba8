"""The zero-shot classification engine: clips against named label sets.

Serves ACE's Synonym Robustness Test (seen and unseen groups; the default labels; 10 synonym runs)
and the Action100M zero-shot recognition protocols (one group, one label set).

Scoring. A class ``c`` named by the texts ``t_1 .. t_m`` of a label set scores a clip ``v``::

    S(v, c) = (1 / m) * sum_j cos(v, t_j) / tau

With ``m = 1`` this is the plain zero-shot logit; with the class's synonym children it is ACE's
leaf augmentation. A model with a similarity of its own is scored with it in place of the cosine;
a pair scorer (a cross-encoder, a video-conditioned text tower) scores each (clip, text) pair
itself: every clip against every text its group's classes are named by in any label set, which
costs clips x texts pairs (stated in the result's ``scoring``). A classifier over a fixed label
set (a published probe) scores a class by its logit for the label that names it: every text
naming a task class must be one of its labels, else the task is refused before decoding. ``tau`` is the protocol's ``tau`` (ACE: 0.02; 1 when absent); it scales every
logit alike, so predictions do not depend on it, but the logged scores are ACE's. A request with
several temporal clips (ACE: 3) is scored per clip and the scores averaged (multi-view testing).

Groups. Each clip is classified only among the classes of its group: ACE classifies seen clips
among the seen classes and unseen clips among the unseen classes (not generalised zero-shot).
Accuracy and macro F1 per group come from `instract_eval.metrics.classification_metrics` under the
task's tie policy; with groups ``seen`` and ``unseen`` the harmonic mean ``hm`` is added.

Runs. SRT repeats the classification with every unseen class renamed by its run-``r`` synonym;
each run is a label set, and the groups whose names change across runs get the mean and the
standard deviation over the runs (population, numpy's default; the sample std is in
``runs.summary``: ACE does not say which it prints).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import FIXED_LABEL_CLASSIFIER, PAIR_SCORER, task_frame_spec
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest
from instract_eval.metrics import classification_metrics, harmonic_mean, runs_summary
from instract_eval.encoding import Encoder

from .encoding import engine_capability, pair_scoring

__all__ = ["ClassificationItem", "LabelSet", "ClassificationTask", "evaluate_classification"]

ALL = "all"
REPORTED = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class ClassificationItem:
    """A clip, its true class (by default label) and the group of classes it is classified among."""

    video: ClipRequest
    label: str
    group: str = ALL
    sample_id: str = ""


@dataclass(frozen=True)
class LabelSet:
    """One naming of the classes: per group the classes in column order, per class its texts."""

    name: str
    classes: Mapping[str, tuple[str, ...]]
    texts: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        for group, labels in self.classes.items():
            if not labels:
                raise ValueError(f"label set {self.name!r}: group {group!r} has no classes")
            for label in labels:
                if not self.texts.get(label):
                    raise ValueError(f"label set {self.name!r}: class {label!r} has no texts")


@dataclass(frozen=True)
class ClassificationTask:
    """Items, the label set that names the classes by default, and the SRT runs (may be empty)."""

    items: tuple[ClassificationItem, ...]
    default: LabelSet
    runs: tuple[LabelSet, ...] = ()
    leaf_augmentation: bool = False
    notes: Mapping[str, Any] = field(default_factory=dict)


def evaluate_classification(encoder: Encoder, task: ClassificationTask, *, name: str,
                            protocol: Mapping[str, Any], ties: str = "expected") -> dict:
    """Classify every item under the default label set and each run.

    Returns ``{"metrics", "label_sets", "runs", "coverage", "samples"}``: ``metrics`` holds the
    headline values (``accuracy``/``macro_f1`` for one group; ``<group>.accuracy`` ... and
    ``hm.*`` for seen/unseen; ``srt.<group>.<metric>`` and ``srt.<group>.<metric>.std`` over the
    runs), ``label_sets`` every group's full metrics per label set.
    """
    model = encoder.model
    capability = engine_capability(model, "classification", name)
    for label_set in (task.default, *task.runs):
        _check_items(task.items, label_set)
    spec = task_frame_spec(model.frame_spec(), protocol, name)
    label_sets = (task.default, *task.runs)
    if capability == PAIR_SCORER:
        group_scores, kept, failed, scoring = _pair_scorer(encoder, task.items, label_sets, spec)
    elif capability == FIXED_LABEL_CLASSIFIER:
        group_scores, kept, failed, scoring = _fixed_labels(encoder, task.items, label_sets, spec, name)
    else:
        group_scores, kept, failed, scoring = _dual_encoder(encoder, task.items, label_sets, spec)
    if not kept:
        raise ValueError(f"task {name}: no item could be evaluated (all videos failed to decode)")
    tau = float(protocol.get("tau", 1.0))

    def run(label_set: LabelSet) -> tuple[dict, dict]:
        metrics, logits = {}, {}
        for group, labels in label_set.classes.items():
            members = [item for item in kept if item.group == group]
            if not members:
                continue
            scores = group_scores(members, [label_set.texts[label] for label in labels]) / tau
            truth = np.array([labels.index(item.label) for item in members])
            metrics[group] = classification_metrics(scores, truth, ties=ties)
            logits.update({item.sample_id: row for item, row in zip(members, scores)})
        return metrics, logits

    default_metrics, default_logits = run(task.default)
    run_results = [run(label_set) for label_set in task.runs]
    per_run = [metrics for metrics, _ in run_results]
    headline = _headline(default_metrics)
    runs = _runs_section(task.runs, per_run)
    for group, summary in runs.get("summary", {}).items():
        for metric in REPORTED:
            headline[f"srt.{group}.{metric}"] = summary["mean"][metric]
            headline[f"srt.{group}.{metric}.std"] = summary["std_population"][metric]
    return {
        "metrics": headline,
        "label_sets": {task.default.name: default_metrics,
                       **{s.name: m for s, m in zip(task.runs, per_run)}},
        "runs": runs,
        "leaf_augmentation": task.leaf_augmentation,
        "tau": tau,
        "scoring": scoring,
        "coverage": {"evaluated": len(kept), "total": len(task.items), "fraction": len(kept) / len(task.items),
                     "failed_videos": failed},
        "samples": [_sample(item, task.default, default_logits[item.sample_id],
                            [(label_set, logits[item.sample_id])
                             for label_set, (_, logits) in zip(task.runs, run_results)]
                            if item.group in runs.get("summary", {}) else ())
                    for item in kept],
    }


GroupScores = Callable[[Sequence[ClassificationItem], Sequence[Sequence[str]]], np.ndarray]


def _dual_encoder(encoder: Encoder, items: Sequence[ClassificationItem], label_sets: Sequence[LabelSet],
                  spec: Any) -> tuple[GroupScores, list[ClassificationItem], dict, dict]:
    """Scores from embeddings: the mean cosine (or the model's own similarity) over a class's texts."""
    videos = encoder.videos([item.video for item in items], spec, keep_clips=True)
    texts = encoder.texts([t for s in label_sets for ts in s.texts.values() for t in ts])
    own = encoder.own_similarity
    clips = {key: value if own else _unit(value) for key, value in videos.embeddings.items()}
    units = {text: value if own else _unit(value) for text, value in texts.items()}

    def group_scores(members: Sequence[ClassificationItem], class_texts: Sequence[Sequence[str]]) -> np.ndarray:
        stacked = np.stack([clips[item.video.key()] for item in members])
        per_class = [np.stack([units[t] for t in class_text]) for class_text in class_texts]
        return _own_class_scores(encoder, stacked, per_class) if own else _class_scores(stacked, per_class)

    kept = [item for item in items if item.video.key() in videos.embeddings]
    return group_scores, kept, videos.failed, {"method": "model similarity" if own else "cosine"}


def _pair_scorer(encoder: Encoder, items: Sequence[ClassificationItem], label_sets: Sequence[LabelSet],
                 spec: Any) -> tuple[GroupScores, list[ClassificationItem], dict, dict]:
    """Scores from a pair scorer: each clip against every text of its group, in one call per clip."""
    group_texts: dict[str, tuple[str, ...]] = {}
    for label_set in label_sets:
        for group, labels in label_set.classes.items():
            known = dict.fromkeys(group_texts.get(group, ()))
            known.update(dict.fromkeys(t for label in labels for t in label_set.texts[label]))
            group_texts[group] = tuple(known)
    scored = encoder.pair_scores([(item.video, group_texts[item.group]) for item in items], spec)
    column = {group: {text: index for index, text in enumerate(texts)} for group, texts in group_texts.items()}

    def group_scores(members: Sequence[ClassificationItem], class_texts: Sequence[Sequence[str]]) -> np.ndarray:
        group = members[0].group
        rows = np.stack([scored.scores[(item.video.key(), group_texts[group])] for item in members])
        return np.stack([rows[:, [column[group][t] for t in texts]].mean(axis=1) for texts in class_texts], axis=1)

    kept = [item for item in items if (item.video.key(), group_texts[item.group]) in scored.scores]
    pairs = sum(len(group_texts[item.group]) for item in kept)
    return group_scores, kept, scored.failed, pair_scoring(encoder.model, pairs)


def _fixed_labels(encoder: Encoder, items: Sequence[ClassificationItem], label_sets: Sequence[LabelSet],
                  spec: Any, task: str) -> tuple[GroupScores, list[ClassificationItem], dict, dict]:
    """Scores from a fixed-label classifier: a class scores the mean logit of the labels naming it."""
    labels = list(encoder.model.labels)
    column = {label: index for index, label in enumerate(labels)}
    unknown = sorted({t for s in label_sets for ts in s.texts.values() for t in ts if t not in column})
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise InputError(f"task {task}: the classifier's {len(labels)} labels do not include {shown}; a "
                         "fixed-label classifier can only score classes named by its own labels", field="--model")
    logits = encoder.videos([item.video for item in items], spec, method="classify", keep_clips=True)

    def group_scores(members: Sequence[ClassificationItem], class_texts: Sequence[Sequence[str]]) -> np.ndarray:
        rows = np.stack([logits.embeddings[item.video.key()].mean(axis=0) for item in members])  # [n, labels]
        return np.stack([rows[:, [column[t] for t in texts]].mean(axis=1) for texts in class_texts], axis=1)

    kept = [item for item in items if item.video.key() in logits.embeddings]
    return group_scores, kept, logits.failed, {"method": "fixed-label classifier", "labels": len(labels)}


def _class_scores(clips: np.ndarray, class_texts: Sequence[np.ndarray]) -> np.ndarray:
    """Mean cosine over each class's texts, averaged over a clip's temporal clips: ``[N, C]``.

    ``clips`` is ``[N, K, D]`` unit vectors, ``class_texts[c]`` is ``[m_c, D]`` unit vectors.
    """
    return np.stack([np.einsum("nkd,md->nkm", clips, texts).mean(axis=(1, 2)) for texts in class_texts], axis=1)


def _own_class_scores(encoder: Encoder, clips: np.ndarray, class_texts: Sequence[np.ndarray]) -> np.ndarray:
    """`_class_scores` with the model's own similarity in place of the cosine (raw embeddings in)."""
    count, num_clips = clips.shape[:2]
    texts = np.concatenate(class_texts)
    scores = encoder.similarity(clips.reshape(count * num_clips, -1), texts).reshape(count, num_clips, len(texts))
    bounds = np.cumsum([0, *(len(t) for t in class_texts)])
    return np.stack([scores[:, :, a:b].mean(axis=(1, 2)) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


def _headline(per_group: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    if set(per_group) == {ALL}:
        return {metric: per_group[ALL][metric] for metric in REPORTED}
    headline = {f"{group}.{metric}": values[metric] for group, values in per_group.items() for metric in REPORTED}
    if {"seen", "unseen"} <= set(per_group):
        for metric in REPORTED:
            headline[f"hm.{metric}"] = harmonic_mean(per_group["seen"][metric], per_group["unseen"][metric])
    return headline


def _runs_section(runs: Sequence[LabelSet], per_run: Sequence[Mapping[str, Mapping]]) -> dict:
    """Per-run metrics and, for each group renamed across runs, the summary over the runs."""
    if not runs:
        return {}
    renamed = [group for group in runs[0].classes
               if len({tuple(tuple(s.texts[c]) for c in s.classes[group]) for s in runs}) > 1
               and all(group in metrics for metrics in per_run)]
    return {
        "names": [s.name for s in runs],
        "per_run": list(per_run),
        "summary": {group: runs_summary([{m: metrics[group][m] for m in REPORTED} for metrics in per_run])
                    for group in renamed},
    }


def _check_items(items: Sequence[ClassificationItem], label_set: LabelSet) -> None:
    for item in items:
        if item.label not in label_set.classes.get(item.group, ()):
            raise ValueError(f"item {item.sample_id!r}: class {item.label!r} is not a class of group "
                             f"{item.group!r} in label set {label_set.name!r}")


def _sample(item: ClassificationItem, label_set: LabelSet, logits: np.ndarray,
            runs: Sequence[tuple[LabelSet, np.ndarray]] = ()) -> dict:
    """One log line; items of a group the synonym runs rename also get ``srt_predictions``, the
    class each run predicts, so that the ``srt.*`` means over runs have per-sample values too."""
    labels = label_set.classes[item.group]
    video = item.video.video_id if item.video.video_id is not None else Path(item.video.path).stem
    sample = {"id": item.sample_id, "video": video, "label": item.label, "group": item.group,
              "prediction": labels[int(np.argmax(logits))], "scores": logits.tolist()}
    if runs:
        sample["srt_predictions"] = [run.classes[item.group][int(np.argmax(scores))] for run, scores in runs]
    return sample


def _unit(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
