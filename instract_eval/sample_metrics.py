"""The per-sample data behind each metric of a result record, so that two runs can be bootstrapped.

A record (``TASK.json``) holds each metric's value; its sample log (``TASK.samples.jsonl``, written
by ``instract-eval run --log-samples``) holds what every sample contributed. `sample_metrics`
rebuilds, for each metric with a direction, the per-sample values and the statistic that turns
them into the metric, in the form `instract_eval.metrics.statistics.paired_bootstrap` resamples:
rows of ``values`` (one per sample), their cluster keys (the sample's ``video``), and a statistic.

The rule: a metric gets a per-sample statistic only when that statistic on the whole log
reproduces the record's value (to 1e-9, relative or absolute). Anything else is compared as a
point, with the reason; nothing is approximated. What each kind of task logs, and so supports:

``mcq`` (``scores`` of the valid candidates, ``answer``, ``rank``)
    The rank counts are recomputed from the scores (a shorter ``scores`` list is a masked row,
    InstrAct-Logic's variable candidate count), so R@K and accuracy are per-query hits under the
    record's tie policy (exact fractions under ``expected``), and the ranks give ``median_rank``
    (``numpy.median``) and ``mean_rank``.
``retrieval`` (``t2v_rank``, and ``v2t_rank`` for pooled tasks)
    Pooled metrics are clip-count weighted over pools, i.e. statistics of the concatenated
    per-query values: the median and mean of all ranks, R@K = the share of ranks <= K, and
    ``mean.R@K`` the mean of the per-item average of the two hits. A logged rank fixes the hit
    only when no query of that direction tied (``num_tied`` = 0) or the tie policy is optimistic
    or pessimistic; under ``expected`` with ties R@K stays a point. A gallery with several
    captions per video logs only T2V ranks: ``v2t.*`` and ``mean.*`` stay points.
``classification`` (``label``, ``group``, ``prediction``, ``scores``)
    Accuracy (mean of hits) and macro F1 (over the classes present, as scikit-learn with
    ``labels=unique(y_true)``) per group, resampling that group's videos; ``hm.*`` the harmonic
    mean of seen and unseen, resampling both. A row whose top score is shared has a prediction the
    log does not determine (the class order is not logged): such metrics stay points. The means
    over the synonym runs (``srt.<group>.*``) from each sample's ``srt_predictions``.
``alignment`` (``cost``, ``video``)
    ``normalized_dtw_cost`` is the mean cost, ``median_normalized_dtw_cost`` its median, resampled
    by video. Logs written before the engine logged the video are resampled one by one.
``localization``
    The log holds the predicted segments, not the ground truth they are scored against: points.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .metrics.ranking import TIE_POLICIES, rank_counts, ranks_from_counts, recall_at_k_per_query
from .metrics.statistics import CountStatistic
from .results import is_finite_number

__all__ = ["PerSample", "SampleMetrics", "sample_metrics", "VIDEO_KINDS"]

# Task kinds whose engine logs each sample's video, the cluster key; a sample without one is bad input.
VIDEO_KINDS = ("mcq", "retrieval", "classification")
# The record's value is reproduced when the recomputation agrees this closely (relative or absolute).
REPRODUCTION_TOLERANCE = 1e-9

_RECALL = re.compile(r"R@([1-9][0-9]*)")
_NOT_LOGGED = "not in the sample log"


@dataclass(frozen=True)
class PerSample:
    """One metric as ``statistic(values)``: the rows a paired bootstrap resamples.

    ``ids[n]`` is the sample of row ``n`` and ``clusters[n]`` its resampling unit (its video);
    ``clusters`` is None when the log names no video, and each sample is then its own unit.
    ``statistic`` is ``numpy.mean`` wherever the metric is a plain mean, which is the vectorised
    path of `paired_bootstrap`.
    """

    ids: tuple[str, ...]
    clusters: tuple[str, ...] | None
    values: np.ndarray
    statistic: Callable[[np.ndarray], float]

    def value(self) -> float:
        return float(self.statistic(self.values))


@dataclass(frozen=True)
class SampleMetrics:
    """What one record's sample log supports: per-sample statistics, and why the rest are points.

    ``items`` maps every logged sample id to its video (None without one), to tell whether two
    logs cover the same items; ``notes`` says what a reader of a comparison should know (e.g. that
    samples are resampled one by one).
    """

    per_sample: dict[str, PerSample]
    point_only: dict[str, str]
    items: dict[str, str | None]
    notes: tuple[str, ...] = ()


def sample_metrics(record: Mapping[str, Any], samples: Sequence[Mapping[str, Any]], *,
                   log: str | os.PathLike | None = None) -> SampleMetrics:
    """The per-sample statistic of each metric of ``record`` that its log ``samples`` reproduces.

    ``samples`` are the log's lines in order (line ``n`` is ``samples[n - 1]``); ``log`` is the
    file they came from, named in errors. Metrics without a direction are not considered. A sample
    that lacks a field its kind needs, has one of the wrong type, repeats an id or belongs to
    another task is an `InputError` naming the file, the line and the field.
    """
    rows = _Log(samples, log, record["task"]["name"])
    kind = record["task"].get("kind")
    gated = [name for name, metric in record["metrics"].items() if metric.get("direction") in ("higher", "lower")]
    clusters = rows.videos(required=kind in VIDEO_KINDS)
    built = _build(kind, rows, record, gated, clusters)
    per_sample, point_only = {}, {}
    for name in gated:
        entry = built.get(name, _NOT_LOGGED)
        if isinstance(entry, PerSample):
            entry = _reproduced(entry, record["metrics"][name]["value"])
        if isinstance(entry, PerSample):
            per_sample[name] = entry
        else:
            point_only[name] = entry
    notes = ("the sample log names no video: samples are resampled one by one",) if (
        clusters is None and per_sample) else ()
    return SampleMetrics(per_sample, point_only, dict(zip(rows.ids, clusters or [None] * len(rows.ids))), notes)


def _build(kind: Any, rows: _Log, record: Mapping[str, Any], gated: list[str],
           clusters: tuple[str, ...] | None) -> dict[str, PerSample | str]:
    """Each gated metric's candidate statistic, or the reason it has none, from the kind's builder."""
    if kind == "localization":
        return dict.fromkeys(gated, f"{_NOT_LOGGED}: the log holds the predicted segments, not the ground truth")
    if not rows.ids:
        return dict.fromkeys(gated, "the sample log is empty")
    if kind not in _BUILDERS:
        return dict.fromkeys(gated, f"no per-sample statistic for task kind {kind!r}")
    if kind != "alignment" and _ties(record) not in TIE_POLICIES:
        return dict.fromkeys(gated, f"the record's tie policy {_ties(record)!r} is not one of "
                                    f"{', '.join(TIE_POLICIES)}")
    return _BUILDERS[kind](rows, record, gated, clusters)


def _ties(record: Mapping[str, Any]) -> Any:
    """The tie policy the record's ranks and hits were computed under."""
    return (record.get("ties") or {}).get("policy")


def _reproduced(entry: PerSample, recorded: Any) -> PerSample | str:
    """``entry`` when its statistic on the whole log equals the record's value, else the reason."""
    if not is_finite_number(recorded):
        return f"the record's value {recorded!r} is not a finite number"
    if len(entry.ids) == 0:
        return "no sample of the log counts toward it"
    recomputed = entry.value()
    if not math.isclose(recomputed, recorded, rel_tol=REPRODUCTION_TOLERANCE, abs_tol=REPRODUCTION_TOLERANCE):
        return f"the sample log gives {recomputed:.10g}, not the record's {recorded:.10g}"
    return entry


# ------------------------------------------------------------------------------------------------
# Reading the log's fields


class _Log:
    """The samples of one log with typed column access; errors name the file, the line and the field."""

    def __init__(self, samples: Sequence[Mapping[str, Any]], path: str | os.PathLike | None, task: str):
        self.samples = samples
        self.path = path
        seen: dict[str, int] = {}
        for index, sample in enumerate(samples):
            identifier = self._check(index, "id", sample.get("id"), _is_text, "a string")
            if identifier in seen:
                self.fail(index, "id", f"repeats the id {identifier!r} of line {seen[identifier] + 1}")
            seen[identifier] = index
            if "task" in sample and sample["task"] != task:
                self.fail(index, "task", f"is {sample['task']!r} but the record is for task {task!r}")
        self.ids = tuple(seen)

    def fail(self, index: int, field: str, message: str) -> None:
        raise InputError(message, path=self.path, field=f"line {index + 1}: {field}")

    def _check(self, index: int, field: str, value: Any, valid: Callable[[Any], bool], expected: str) -> Any:
        if value is None and field not in self.samples[index]:
            self.fail(index, field, f"missing (this kind of task logs it for every sample; expected {expected})")
        if not valid(value):
            self.fail(index, field, f"expected {expected}, got {value!r}")
        return value

    def column(self, field: str, valid: Callable[[Any], bool], expected: str) -> list[Any]:
        return [self._check(index, field, sample.get(field), valid, expected)
                for index, sample in enumerate(self.samples)]

    def has(self, field: str) -> bool:
        return any(field in sample for sample in self.samples)

    def videos(self, *, required: bool) -> tuple[str, ...] | None:
        """Each sample's video (the cluster key), or None when the log has none and may lack it."""
        if not required and not self.has("video"):
            return None
        return tuple(self.column("video", _is_text, "a video name"))

    def select(self, rows: Sequence[int] | np.ndarray, clusters: tuple[str, ...] | None) -> tuple[
            tuple[str, ...], tuple[str, ...] | None]:
        """The ids and clusters of ``rows``."""
        return tuple(self.ids[i] for i in rows), None if clusters is None else tuple(clusters[i] for i in rows)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_rank(value: Any) -> bool:
    return is_finite_number(value) and value >= 1


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(is_finite_number(v) for v in value)


# ------------------------------------------------------------------------------------------------
# Multiple choice


def _mcq(log: _Log, record: Mapping[str, Any], gated: list[str],
         clusters: tuple[str, ...] | None) -> dict[str, PerSample | str]:
    """Hits and ranks recomputed from the logged candidate scores, as `mcq_metrics` computes them."""
    ties = _ties(record)
    scores = log.column("scores", _is_numbers, "a non-empty list of finite scores")
    answers = log.column("answer", _is_index, "the index of the correct candidate")
    lengths = np.array([len(row) for row in scores])
    for index, (answer, length) in enumerate(zip(answers, lengths)):
        if answer >= length:
            log.fail(index, "answer", f"is {answer} but the sample has {length} scores")
    mask = np.arange(lengths.max()) < lengths[:, None]
    matrix = np.zeros(mask.shape)
    matrix[mask] = np.concatenate(scores)
    counts = rank_counts(matrix, np.array(answers), mask)
    ranks = ranks_from_counts(counts, ties=ties)

    def of(values: np.ndarray, statistic: Callable[[np.ndarray], float]) -> PerSample:
        return PerSample(log.ids, clusters, values, statistic)

    built: dict[str, PerSample | str] = {}
    for name in gated:
        recall = _RECALL.fullmatch(name)
        if recall or name == "accuracy":
            k = int(recall.group(1)) if recall else 1
            built[name] = of(recall_at_k_per_query(counts, k, ties=ties), np.mean)
        elif name == "median_rank":
            built[name] = of(ranks, np.median)
        elif name == "mean_rank":
            built[name] = of(ranks, np.mean)
    return built


# ------------------------------------------------------------------------------------------------
# Retrieval


def _retrieval(log: _Log, record: Mapping[str, Any], gated: list[str],
               clusters: tuple[str, ...] | None) -> dict[str, PerSample | str]:
    """Pooled (or gallery) metrics as statistics of the concatenated per-query ranks."""
    ties = _ties(record)
    num_tied = {d: record["metrics"].get(f"{d}.num_tied", {}).get("value") for d in ("t2v", "v2t")}
    directions = {"t2v": np.array(log.column("t2v_rank", _is_rank, "a 1-based rank"), dtype=np.float64)}
    if log.has("v2t_rank"):
        directions["v2t"] = np.array(log.column("v2t_rank", _is_rank, "a 1-based rank"), dtype=np.float64)
    built: dict[str, PerSample | str] = {}
    for name in gated:
        direction, _, metric = name.partition(".")
        recall = _RECALL.fullmatch(metric)
        needed = ("t2v", "v2t") if direction == "mean" else (direction,)
        if direction not in ("t2v", "v2t", "mean") or (direction == "mean" and not recall):
            continue
        if any(d not in directions for d in needed):
            built[name] = (f"{_NOT_LOGGED}: only text-to-video ranks are logged for a gallery with several "
                           "captions per video")
            continue
        if metric in ("median_rank", "mean_rank"):
            built[name] = PerSample(log.ids, clusters, directions[direction],
                                    np.median if metric == "median_rank" else np.mean)
            continue
        if not recall:
            continue
        undetermined = [_tied_queries(d, num_tied[d]) for d in needed if not _hits_determined(ties, num_tied[d])]
        if undetermined:
            built[name] = (f"ties: R@K is not determined by the logged rank under the {ties!r} policy "
                           f"({'; '.join(undetermined)})")
            continue
        k = int(recall.group(1))
        hits = np.mean([directions[d] <= k for d in needed], axis=0)
        built[name] = PerSample(log.ids, clusters, hits, np.mean)
    return built


def _tied_queries(direction: str, num_tied: Any) -> str:
    if _is_index(num_tied):
        return f"{direction}: {num_tied} tied queries"
    return f"the record does not count {direction}'s tied queries"


def _hits_determined(ties: str, num_tied: Any) -> bool:
    """Whether ``rank <= K`` is the per-query R@K: always for optimistic/pessimistic ranks
    (``1 + b`` and ``1 + b + n``), and under ``expected`` only when no query tied
    (``1 + b + t/2`` does not say how much of it is ``t``)."""
    return ties != "expected" or (_is_index(num_tied) and num_tied == 0)


# ------------------------------------------------------------------------------------------------
# Classification


def _classification(log: _Log, record: Mapping[str, Any], gated: list[str],
                    clusters: tuple[str, ...] | None) -> dict[str, PerSample | str]:
    """Accuracy and macro F1 per group and their seen/unseen harmonic means, from label and prediction."""
    labels = log.column("label", _is_text, "a class name")
    predictions = log.column("prediction", _is_text, "a class name")
    groups = np.array(log.column("group", _is_text, "a group name"))
    scores = log.column("scores", _is_numbers, "a non-empty list of finite scores")
    classes = {name: code for code, name in enumerate(sorted(set(labels) | set(predictions)))}
    truth = np.array([classes[label] for label in labels], dtype=np.float64)
    predicted = np.array([classes[p] for p in predictions], dtype=np.float64)
    tied = np.array([row.count(max(row)) > 1 for row in scores])
    hit = (truth == predicted).astype(np.float64)
    built: dict[str, PerSample | str] = {}
    for name in gated:
        group, _, metric = name.rpartition(".")
        if metric not in ("accuracy", "macro_f1"):
            continue
        harmonic = group == "hm" and {"seen", "unseen"} <= set(groups.tolist())
        if harmonic:
            rows = np.flatnonzero((groups == "seen") | (groups == "unseen"))
        elif (group or "all") in set(groups.tolist()):
            rows = np.flatnonzero(groups == (group or "all"))
        else:
            if group.startswith("srt."):
                built[name] = _synonym_runs(log, record, group.removeprefix("srt."), metric, groups, truth,
                                            classes, clusters)
            continue
        if tied[rows].any():
            built[name] = (f"ties: {int(tied[rows].sum())} rows have a shared top score, whose prediction the log "
                           "does not determine (the class order is not logged)")
            continue
        ids, keys = log.select(rows, clusters)
        unseen = (groups[rows] == "unseen").astype(np.float64)
        if metric == "accuracy":
            values, statistic = ((np.column_stack((unseen, hit[rows])), HARMONIC_ACCURACY) if harmonic
                                 else (hit[rows], np.mean))
        else:
            pair = np.column_stack((truth[rows], predicted[rows]))
            values, statistic = ((np.column_stack((unseen, pair)), HARMONIC_MACRO_F1) if harmonic
                                 else (pair, MACRO_F1))
        built[name] = PerSample(ids, keys, values, statistic)
    return built


def _synonym_runs(log: _Log, record: Mapping[str, Any], group: str, metric: str, groups: np.ndarray,
                  truth: np.ndarray, classes: dict[str, int], clusters: tuple[str, ...] | None) -> PerSample | str:
    """``srt.<group>.<metric>``, the mean over the synonym runs, from each sample's ``srt_predictions``.

    Accuracy: each sample's share of runs that name its class, averaged (the mean over runs of
    the per-run accuracy, as every run scores the same samples). Macro F1: the mean over runs of
    each run's macro F1 on the resampled rows. A run with a tied top score in the group (its
    ``num_tied`` in the record) does not determine its predictions: a point comparison.
    """
    runs = ((record.get("details") or {}).get("runs") or {}).get("per_run")
    rows = np.flatnonzero(groups == group)
    if not isinstance(runs, list) or not runs or not rows.size:
        return f"{_NOT_LOGGED}: the record lists no synonym runs for group {group!r}"
    tied = [run.get(group, {}).get("num_tied") for run in runs if isinstance(run, Mapping)]
    if len(tied) != len(runs) or any(count != 0 for count in tied):
        return "ties: a synonym run has tied top scores in this group, whose predictions the log does not determine"
    predicted = []
    for row in rows:
        names = log.samples[row].get("srt_predictions")
        if not (isinstance(names, list) and len(names) == len(runs) and all(_is_text(n) for n in names)):
            return f"{_NOT_LOGGED}: the samples carry no srt_predictions for the {len(runs)} runs (an older log)"
        predicted.append([classes.setdefault(n, len(classes)) for n in names])
    codes = np.array(predicted, dtype=np.float64)
    ids, keys = log.select(rows, clusters)
    if metric == "accuracy":
        return PerSample(ids, keys, (codes == truth[rows, None]).mean(axis=1), np.mean)
    return PerSample(ids, keys, np.column_stack((truth[rows], codes)), MEAN_MACRO_F1_OVER_RUNS)


def _mean_macro_f1_over_runs(values: np.ndarray) -> float:
    """Rows ``[true class, run 1 prediction, ..., run R prediction]``: the mean of the runs' macro F1
    (each as `_macro_f1`), all runs counted in one ``bincount`` since this runs once per resample."""
    truth = values[:, 0].astype(np.intp)
    predicted = values[:, 1:].astype(np.intp)
    runs, width = predicted.shape[1], int(max(truth.max(), predicted.max())) + 1
    offsets = np.arange(runs) * width
    actual = np.bincount(truth, minlength=width)
    guessed = np.bincount((predicted + offsets).ravel(), minlength=runs * width).reshape(runs, width)
    correct = predicted == truth[:, None]
    hits = np.bincount((truth[:, None] + offsets)[correct], minlength=runs * width).reshape(runs, width)
    present = actual > 0
    per_run = (2.0 * hits[:, present] / (guessed[:, present] + actual[present])).sum(axis=1) / np.count_nonzero(present)
    return float(per_run.mean())


def _macro_f1(values: np.ndarray) -> float:
    """Macro F1 of rows ``[true class, predicted class]`` (codes), over the classes present in the
    truth: ``2 TP / (predicted + actual)`` per class, as `classification_metrics` without ties."""
    truth = values[:, 0].astype(np.intp)
    predicted = values[:, 1].astype(np.intp)
    actual = np.bincount(truth)
    size = actual.shape[0]  # classes above the largest true one are never present: their F1 is not averaged
    guessed = np.bincount(predicted, minlength=size)[:size]
    hits = np.bincount(truth[truth == predicted], minlength=size)
    present = actual > 0
    return float((2.0 * hits[present] / (guessed[present] + actual[present])).sum() / np.count_nonzero(present))


def _harmonic_accuracy(values: np.ndarray) -> float:
    """Harmonic mean of seen and unseen accuracy; rows ``[is unseen, hit]``. NaN when a resample
    lacks a group, which `paired_bootstrap` refuses: the metric then falls back to a point."""
    unseen = values[:, 0] == 1
    return _harmonic(_mean_or_nan(values[~unseen, 1]), _mean_or_nan(values[unseen, 1]))


def _harmonic_macro_f1(values: np.ndarray) -> float:
    """Harmonic mean of seen and unseen macro F1; rows ``[is unseen, true class, predicted class]``."""
    unseen = values[:, 0] == 1
    if unseen.all() or not unseen.any():
        return math.nan
    return _harmonic(_macro_f1(values[~unseen, 1:]), _macro_f1(values[unseen, 1:]))


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.sum()) / values.shape[0] if values.shape[0] else math.nan


def _harmonic(seen: float, unseen: float) -> float:
    """``2 a b / (a + b)``, 0 when both are 0: `instract_eval.metrics.harmonic_mean` for rates."""
    if math.isnan(seen) or math.isnan(unseen):
        return math.nan
    return 0.0 if seen + unseen == 0.0 else 2.0 * seen * unseen / (seen + unseen)


# The classification statistics as counts that add over rows (`CountStatistic`): the gate
# evaluates them for a whole batch of resamples from one matrix product, where it called them once
# per resample. Each ``from_totals`` repeats its function's arithmetic on the totals, operation
# for operation, so that both give the same numbers to the bit (tests/regress compares them).


def _class_counts(truth: np.ndarray, predicted: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Count entries ``(rows, columns)`` over ``[actual (width), guessed (width), hits (width)]``:
    what `_macro_f1` counts."""
    everyone = np.arange(truth.shape[0])
    correct = np.flatnonzero(truth == predicted)
    return (np.concatenate((everyone, everyone, correct)),
            np.concatenate((truth, width + predicted, 2 * width + truth[correct])))


def _f1_over_present(actual: np.ndarray, guessed: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """`_macro_f1` for each resample from its class totals (``[b, K]``, or ``[b, R, K]`` per run).

    Resamples are grouped by which classes are present, and each group's F1 values are summed
    over exactly those classes in class order, as `_macro_f1` sums ``f1[present]``.
    """
    present = actual > 0
    result = np.full(actual.shape[0] if hits.ndim == 2 else hits.shape[:2], math.nan)
    patterns, inverse = np.unique(present, axis=0, return_inverse=True)
    for number, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.ravel() == number)
        columns = np.flatnonzero(pattern)
        if not columns.size:
            continue
        if hits.ndim == 2:
            chosen = np.ix_(rows, columns)
            f1 = 2.0 * hits[chosen] / (guessed[chosen] + actual[chosen])
        else:
            chosen = np.ix_(rows, np.arange(hits.shape[1]), columns)
            f1 = 2.0 * hits[chosen] / (guessed[chosen] + actual[np.ix_(rows, columns)][:, None, :])
        result[rows] = _sum_over_classes(f1) / columns.size
    return result


def _sum_over_classes(f1: np.ndarray) -> np.ndarray:
    """The per-class F1 values summed over the last axis in the order the per-resample functions sum them.

    `_macro_f1` sums a 1-D array: numpy's pairwise summation, which a C-ordered row reproduces.
    `_mean_macro_f1_over_runs` sums ``[runs, classes]`` along the classes; with several runs that
    array comes out of ``hits[:, present]`` in Fortran order, and numpy then adds each row's
    entries one after another, class by class (with one run it is a 1-D row again, pairwise).
    """
    if f1.ndim == 3 and f1.shape[1] > 1:
        total = f1[..., 0].copy()
        for column in range(1, f1.shape[-1]):
            total += f1[..., column]
        return total
    return np.ascontiguousarray(f1).sum(axis=-1)


def _width(values: np.ndarray) -> int:
    return int(values.max()) + 1


def _harmonic_of(seen: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """`_harmonic` elementwise: NaN where either is NaN, 0 where both are 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = 2.0 * seen * unseen / (seen + unseen)
    return np.where(np.isnan(seen) | np.isnan(unseen), math.nan, np.where(seen + unseen == 0.0, 0.0, mean))


class _MacroF1(CountStatistic):
    """`_macro_f1` (rows ``[true class, predicted class]``)."""

    def __call__(self, values: np.ndarray) -> float:
        return _macro_f1(values)

    def row_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        codes = values.astype(np.intp)
        width = _width(codes)
        return (*_class_counts(codes[:, 0], codes[:, 1], width), 3 * width, width)

    def from_totals(self, totals: np.ndarray, width: int) -> np.ndarray:
        actual, guessed, hits = np.split(totals, 3, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _f1_over_present(actual, guessed, hits)


class _MeanMacroF1OverRuns(CountStatistic):
    """`_mean_macro_f1_over_runs` (rows ``[true class, run 1 prediction, ..., run R prediction]``)."""

    def __call__(self, values: np.ndarray) -> float:
        return _mean_macro_f1_over_runs(values)

    def row_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int]]:
        codes = values.astype(np.intp)
        width, truth, runs = _width(codes), codes[:, 0], codes.shape[1] - 1
        everyone = np.arange(codes.shape[0])
        rows, columns = [everyone], [truth]  # actual, then each run's guessed, then each run's hits
        for run in range(runs):
            rows.append(everyone)
            columns.append(width * (1 + run) + codes[:, 1 + run])
        for run in range(runs):
            correct = np.flatnonzero(codes[:, 1 + run] == truth)
            rows.append(correct)
            columns.append(width * (1 + runs + run) + truth[correct])
        return np.concatenate(rows), np.concatenate(columns), width * (1 + 2 * runs), (width, runs)

    def from_totals(self, totals: np.ndarray, context: tuple[int, int]) -> np.ndarray:
        width, runs = context
        actual = totals[:, :width]
        guessed = totals[:, width:width * (1 + runs)].reshape(-1, runs, width)
        hits = totals[:, width * (1 + runs):].reshape(-1, runs, width)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.ascontiguousarray(_f1_over_present(actual, guessed, hits)).mean(axis=1)


class _HarmonicAccuracy(CountStatistic):
    """`_harmonic_accuracy` (rows ``[is unseen, hit]``)."""

    def __call__(self, values: np.ndarray) -> float:
        return _harmonic_accuracy(values)

    def row_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, None]:
        """Columns ``[seen rows, seen hits, unseen rows, unseen hits]`` (hits are 0 or 1)."""
        if not np.isin(values[:, 1], (0.0, 1.0)).all():
            raise ValueError("the harmonic accuracy counts hits: each row's hit must be 0 or 1")
        everyone = np.arange(values.shape[0])
        group = 2 * (values[:, 0] == 1).astype(np.intp)
        hit = np.flatnonzero(values[:, 1] == 1)
        return np.concatenate((everyone, hit)), np.concatenate((group, group[hit] + 1)), 4, None

    def from_totals(self, totals: np.ndarray, context: None) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            seen = np.where(totals[:, 0] > 0, totals[:, 1] / totals[:, 0], math.nan)
            unseen = np.where(totals[:, 2] > 0, totals[:, 3] / totals[:, 2], math.nan)
        return _harmonic_of(seen, unseen)


class _HarmonicMacroF1(CountStatistic):
    """`_harmonic_macro_f1` (rows ``[is unseen, true class, predicted class]``)."""

    def __call__(self, values: np.ndarray) -> float:
        return _harmonic_macro_f1(values)

    def row_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        codes = values[:, 1:].astype(np.intp)
        width = _width(codes)
        rows, columns = _class_counts(codes[:, 0], codes[:, 1], width)
        unseen = (values[rows, 0] == 1).astype(np.intp)  # the unseen group's counts follow the seen group's
        return rows, columns + 3 * width * unseen, 6 * width, width

    def from_totals(self, totals: np.ndarray, width: int) -> np.ndarray:
        seen, unseen = np.split(totals, 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = [_f1_over_present(*np.split(group, 3, axis=1)) for group in (seen, unseen)]
        both = (seen[:, :width].sum(axis=1) > 0) & (unseen[:, :width].sum(axis=1) > 0)
        return np.where(both, _harmonic_of(*f1), math.nan)


MACRO_F1, MEAN_MACRO_F1_OVER_RUNS = _MacroF1(), _MeanMacroF1OverRuns()
HARMONIC_ACCURACY, HARMONIC_MACRO_F1 = _HarmonicAccuracy(), _HarmonicMacroF1()


# ------------------------------------------------------------------------------------------------
# Alignment


def _alignment(log: _Log, record: Mapping[str, Any], gated: list[str],
               clusters: tuple[str, ...] | None) -> dict[str, PerSample | str]:
    """The normalized DTW cost: mean and median of the per-item costs."""
    costs = np.array(log.column("cost", is_finite_number, "a finite cost"), dtype=np.float64)
    statistics = {"normalized_dtw_cost": np.mean, "median_normalized_dtw_cost": np.median}
    return {name: PerSample(log.ids, clusters, costs, statistics[name]) for name in gated if name in statistics}


# Each kind's builder: (log, record, gated metric names, cluster keys) -> {metric: PerSample or reason}.
_BUILDERS: dict[str, Callable[[_Log, Mapping[str, Any], list[str], tuple[str, ...] | None],
                              dict[str, PerSample | str]]] = {
    "mcq": _mcq, "retrieval": _retrieval, "classification": _classification, "alignment": _alignment}
