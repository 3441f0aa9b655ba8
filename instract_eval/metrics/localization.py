"""Temporal action localization: tIoU, per-class average precision and mAP (ActivityNet protocol).

The numbers equal those of the official ActivityNet detection evaluator
(github.com/activitynet/ActivityNet, ``Evaluation/eval_detection.py`` and ``Evaluation/utils.py``),
which THUMOS14, ActivityNet-1.3 and EPIC-Kitchens-100 results are reported with, on the same inputs:
the same greedy matching, the same float64 arithmetic for tIoU, precision and recall, and the same
VOC-style interpolated AP. Where the official code behaves accidentally (unstable sorts on ties,
NaN tIoU for zero-length segments) this module states a deterministic rule instead.

Inputs are integer-coded arrays (videos and classes are ids; reading files and mapping names to ids
is done by `instract_eval.data.activitynet`). The whole evaluation is vectorised: greedy matching is
independent per (class, video) group, so all groups are stepped through together, and the AP of all
classes and thresholds is assembled from flat arrays. ActivityNet-1.3 validation scale (about
490,000 predictions, 200 classes, 10 thresholds) takes a fraction of a second
(``python benchmarks/bench_tal_map.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ._checks import finite_vector, segment_array

__all__ = [
    "THUMOS14_TIOU_THRESHOLDS",
    "ACTIVITYNET_TIOU_THRESHOLDS",
    "EPIC_KITCHENS_TIOU_THRESHOLDS",
    "TIOU_THRESHOLD_PRESETS",
    "temporal_iou",
    "interpolated_average_precision",
    "LocalizationResult",
    "temporal_localization_map",
    "threshold_key",
]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# Built exactly as the official code builds them (numpy.linspace), so that e.g. the THUMOS14 0.4
# is 0.39999999999999997 and a tIoU of exactly 0.4 counts as a match there, as it does officially.
THUMOS14_TIOU_THRESHOLDS = _frozen(np.linspace(0.3, 0.7, 5))
ACTIVITYNET_TIOU_THRESHOLDS = _frozen(np.linspace(0.5, 0.95, 10))
EPIC_KITCHENS_TIOU_THRESHOLDS = _frozen(np.linspace(0.1, 0.5, 5))

TIOU_THRESHOLD_PRESETS: Mapping[str, np.ndarray] = MappingProxyType(
    {
        "thumos14": THUMOS14_TIOU_THRESHOLDS,
        "activitynet": ACTIVITYNET_TIOU_THRESHOLDS,
        "epic": EPIC_KITCHENS_TIOU_THRESHOLDS,
    }
)

# Sentinels in the matching arrays: a ground-truth instance already matched at a threshold, and a
# padding slot that holds no instance. Both lie below every tIoU (>= 0), so neither is ever a match.
_LOCKED = -1.0
_PADDING = -2.0


# ------------------------------------------------------------------------------------------------
# tIoU and interpolated AP


def _pairwise_tiou(pred_start, pred_end, gt_start, gt_end) -> np.ndarray:
    """Element-wise tIoU in the official float64 operation order (``utils.segment_iou``)."""
    intersection = np.clip(np.minimum(pred_end, gt_end) - np.maximum(pred_start, gt_start), 0, None)
    union = (gt_end - gt_start) + (pred_end - pred_start) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        tiou = intersection / union
    return tiou


def threshold_key(threshold: float) -> str:
    """The name of a tIoU threshold in results: its shortest decimal once linspace noise is rounded off.

    ``threshold_key(0.39999999999999997) == "0.4"``, so a preset's thresholds print as the paper does.
    """
    return f"{round(float(threshold), 10):g}"


def temporal_iou(segments_a: object, segments_b: object) -> np.ndarray:
    """Temporal intersection over union of every segment in ``segments_a`` with every one in ``segments_b``.

    ``tIoU(a, b) = I / U`` with ``I = max(0, min(a_end, b_end) - max(a_start, b_start))`` and
    ``U = (b_end - b_start) + (a_end - a_start) - I``, evaluated in float64 in exactly this order,
    as the official ActivityNet ``segment_iou`` does. The order matters at the last bit: for
    example a segment of length 81.29 inside one of length 162.58 gives 0.4999999999999999, which is
    *below* a threshold of 0.5 (float32 implementations round it the other way).

    Two zero-length segments have ``U = 0``; the official code returns NaN there, this function
    returns 0 (no overlap of positive length). A zero-length segment against a positive-length one
    is well defined and gives 0.

    Parameters
    ----------
    segments_a : array-like, shape [N, 2]
        ``(start, end)`` pairs with ``start <= end``, finite.
    segments_b : array-like, shape [M, 2]

    Returns
    -------
    np.ndarray, shape [N, M], float64
    """
    a = segment_array(segments_a, "segments_a")
    b = segment_array(segments_b, "segments_b")
    tiou = _pairwise_tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])
    return np.nan_to_num(tiou, nan=0.0)


def interpolated_average_precision(precision: object, recall: object) -> float:
    """VOC-style interpolated average precision of one ranked list (official ``interpolated_prec_rec``).

    With ``p`` and ``r`` the precision and recall after each item of the ranked list:
    ``mp = [0, p, 0]``, ``mr = [0, r, 1]``; ``mp`` is made non-increasing from the right
    (``mp[i] = max(mp[i], mp[i + 1])``); then ``AP = sum_i (mr[i] - mr[i-1]) * mp[i]`` over the
    indices ``i`` where ``mr`` changes. This is the VOC 2011 (all-points) rule, not the 11-point one.

    Parameters
    ----------
    precision, recall : array-like, shape [N]
        Cumulative precision and recall, finite, in [0, 1], recall non-decreasing.

    Returns
    -------
    float
    """
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    if p.ndim != 1 or r.ndim != 1 or p.shape != r.shape:
        raise ValueError(f"precision and recall must be 1-D of equal length, got shapes {p.shape} and {r.shape}")
    for name, values in (("precision", p), ("recall", r)):
        bad = ~(np.isfinite(values) & (values >= 0) & (values <= 1))
        if bad.any():
            index = int(np.argmax(bad))
            raise ValueError(f"{name}[{index}] = {values[index]!r} is not a fraction in [0, 1]")
    decreasing = np.diff(r) < 0
    if decreasing.any():
        index = int(np.argmax(decreasing)) + 1
        raise ValueError(f"recall[{index}] = {r[index]!r} is below recall[{index - 1}]: recall must be non-decreasing")
    mp = np.concatenate(([0.0], p, [0.0]))
    mr = np.concatenate(([0.0], r, [1.0]))
    mp = np.maximum.accumulate(mp[::-1])[::-1]
    idx = np.flatnonzero(mr[1:] != mr[:-1]) + 1
    return float(np.sum((mr[idx] - mr[idx - 1]) * mp[idx]))


# ------------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class LocalizationResult:
    """ActivityNet-style detection scores; every array is read-only.

    Attributes
    ----------
    thresholds : float64 [T]
        The tIoU thresholds, in the order given.
    average_precision : float64 [T, C]
        Interpolated AP per threshold and class; NaN for a class without ground truth.
    mean_average_precision : float64 [T]
        mAP per threshold: the mean of ``average_precision`` over the classes with ground truth.
    average_map : float
        The mean of ``mean_average_precision`` over the thresholds ("average mAP").
    num_gt_per_class : int64 [C]
        Ground-truth instances per class (the recall denominators; duplicates count twice).
    num_predictions_per_class : int64 [C]
    true_positive : bool [T, P]
        Whether each prediction (in input order) was matched at each threshold.
    """

    thresholds: np.ndarray
    average_precision: np.ndarray
    mean_average_precision: np.ndarray
    average_map: float
    num_gt_per_class: np.ndarray
    num_predictions_per_class: np.ndarray
    true_positive: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.num_gt_per_class.shape[0])

    @property
    def classes_with_ground_truth(self) -> np.ndarray:
        """Class ids whose AP counts in the mAP."""
        return np.flatnonzero(self.num_gt_per_class > 0)

    def subset_mean_average_precision(self, class_ids: object) -> np.ndarray:
        """mAP per threshold over a subset of classes (e.g. an ambiguity group), float64 [T].

        The AP of a class depends only on that class's ground truth and predictions, so the mAP of
        a subset is the plain mean of those classes' AP. Every class in the subset must have ground
        truth (its AP is otherwise undefined); ids must be distinct.
        """
        ids = self._check_class_subset(class_ids)
        return self.average_precision[:, ids].mean(axis=1)

    def subset_average_map(self, class_ids: object) -> float:
        """Average over thresholds of `subset_mean_average_precision`."""
        return float(self.subset_mean_average_precision(class_ids).mean())

    def _check_class_subset(self, class_ids: object) -> np.ndarray:
        ids = np.asarray(class_ids)
        if ids.ndim != 1 or ids.shape[0] == 0:
            raise ValueError(f"class_ids must be a non-empty 1-D sequence of class ids, got shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"class_ids must hold integer class ids, got dtype {ids.dtype}")
        for i, c in enumerate(ids.tolist()):
            if not 0 <= c < self.num_classes:
                raise ValueError(f"class_ids[{i}] = {c} is outside 0..{self.num_classes - 1}")
            if self.num_gt_per_class[c] == 0:
                raise ValueError(f"class_ids[{i}] = {c} has no ground truth: its AP is undefined")
        _, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"class_ids[{int(first[np.argmax(counts > 1)])}] is repeated: class ids must be distinct")
        return ids.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# Input validation


def _as_ids(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer ids, got shape {array.shape}")
    if array.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    negative = array < 0
    if negative.any():
        index = int(np.argmax(negative))
        raise ValueError(f"{name}[{index}] = {array[index]} is negative: ids must be >= 0")
    return array


def _as_labels(values: object, name: str, num_classes: int) -> np.ndarray:
    array = _as_ids(values, name)
    outside = array >= num_classes
    if outside.any():
        index = int(np.argmax(outside))
        raise ValueError(f"{name}[{index}] = {array[index]} is outside 0..{num_classes - 1} (num_classes = {num_classes})")
    return array


def _as_thresholds(values: object) -> np.ndarray:
    array = np.array(values, dtype=np.float64, ndmin=1)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {array.shape}")
    bad = ~(np.isfinite(array) & (array > 0) & (array <= 1))
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"thresholds[{index}] = {array[index]!r} is not in (0, 1]")
    return array


def _check_length(array: np.ndarray, expected: int, name: str, reference: str) -> None:
    if array.shape[0] != expected:
        raise ValueError(f"{name} has {array.shape[0]} rows but {reference} has {expected}: need one per instance")


# ------------------------------------------------------------------------------------------------
# The evaluation


def _class_score_order(labels: np.ndarray, scores: np.ndarray, num_classes: int) -> np.ndarray:
    """Prediction indices grouped by class; inside a class by score descending, equal scores later-listed first."""
    by_score = np.argsort(scores, kind="stable")[::-1]
    small = labels.astype(np.int16) if num_classes <= np.iinfo(np.int16).max else labels
    return by_score[np.argsort(small[by_score], kind="stable")]


def _greedy_match(
    tiou_rows: np.ndarray, step_starts: np.ndarray, step_sizes: np.ndarray, num_groups: int, thresholds: np.ndarray
) -> np.ndarray:
    """Greedy matching of all groups of one width at once; returns TP flags [rows, T].

    ``tiou_rows[r, k]`` is the tIoU of the prediction in row ``r`` with slot ``k`` of its group
    (``_PADDING`` where the group has fewer instances). Rows are ordered by step ``j`` (the j-th
    prediction of each group, in score order) and, within a step, by group rank; groups are ranked
    by their number of predictions, descending, so the groups active at step ``j`` are a prefix.
    """
    rows, width = tiou_rows.shape
    num_thresholds = thresholds.shape[0]
    locked = np.zeros((num_groups, width, num_thresholds), dtype=bool)
    tp = np.zeros((rows, num_thresholds), dtype=bool)
    threshold_index = np.arange(num_thresholds)[None, :]
    for start, active in zip(step_starts.tolist(), step_sizes.tolist()):
        tiou = tiou_rows[start : start + active]
        candidates = np.where(locked[:active], _LOCKED, tiou[:, :, None])  # [A, width, T]
        # Highest tIoU among unmatched instances; equal tIoU: the later-listed instance wins.
        slot = width - 1 - np.argmax(candidates[:, ::-1, :], axis=1)  # [A, T]
        best = np.take_along_axis(candidates, slot[:, None, :], axis=1)[:, 0, :]
        hit = best >= thresholds[None, :]
        group_index = np.arange(active)[:, None]
        locked[group_index, slot, threshold_index] |= hit
        tp[start : start + active] = hit
    return tp


def temporal_localization_map(
    gt_video: object,
    gt_label: object,
    gt_segments: object,
    pred_video: object,
    pred_label: object,
    pred_segments: object,
    pred_scores: object,
    thresholds: Sequence[float],
    num_classes: int,
) -> LocalizationResult:
    """Per-class interpolated AP and mAP at each tIoU threshold, as the official ActivityNet evaluator.

    Reference: ActivityNet ``Evaluation/eval_detection.py`` (``compute_average_precision_detection``)
    and ``Evaluation/utils.py`` (``segment_iou``, ``interpolated_prec_rec``); per-class AP is equal to
    it bit for bit on the same inputs, and so is the mAP (classes are averaged in order of first
    appearance in the ground truth, as the official code averages them).

    For each class ``c`` and threshold ``θ``:

    1. the predictions of class ``c`` are sorted by score, descending;
    2. walking that list, each prediction takes the not-yet-matched ground-truth instance of class
       ``c`` in the same video with the highest tIoU (`temporal_iou`); it is a true positive if that
       tIoU ``>= θ`` (inclusive) and the instance becomes matched, otherwise a false positive. A
       prediction in a video without ground truth of class ``c`` is a false positive at every
       threshold (the official code's ``except`` branch: the group lookup fails and it sets
       ``fp[:, idx] = 1``);
    3. ``precision_i = TP_i / i``, ``recall_i = TP_i / n_c`` after the i-th prediction, with ``n_c``
       the number of ground-truth instances of ``c`` (identical instances count separately);
    4. ``AP = interpolated_average_precision(precision, recall)`` (VOC 2011 all-points rule).

    A class with ground truth but no predictions has AP 0 and counts in the mAP; a class without
    ground truth has AP NaN and does not. ``mAP(θ)`` is the mean over the classes with ground truth,
    ``average_map`` the mean of ``mAP`` over the thresholds.

    Ties (the official code leaves them to an unstable sort, so its result depends on the machine):

    - equal scores within a class: the prediction listed *later* in the input is ranked first
      (``np.argsort(scores, kind="stable")[::-1]``; this is what the official reversed ``argsort``
      gives whenever numpy's default sort happens to be stable);
    - equal tIoU of one prediction with several unmatched instances: the instance listed *later* in
      the input is taken (the same reversed-stable rule applied to the official ``tiou_arr.argsort()``).

    Rejected as ``ValueError`` (naming the argument and index): ground-truth segments of zero or
    negative length (the official tIoU is then 0/0 = NaN), predicted segments with ``start > end``,
    negative or non-finite times, non-finite scores, labels outside ``[0, num_classes)``, negative
    video ids, thresholds outside ``(0, 1]``, and an empty ground truth. Zero-length predictions are
    allowed (tIoU 0 with every instance).

    Parameters
    ----------
    gt_video, gt_label : int arrays [M]
        Video id and class id of each ground-truth instance.
    gt_segments : float array [M, 2]
        ``(start, end)`` in seconds.
    pred_video, pred_label : int arrays [P]
        A prediction in a video without ground truth simply carries an id no ground-truth row uses.
    pred_segments : float array [P, 2]
    pred_scores : float array [P]
    thresholds : sequence of float [T]
        tIoU thresholds in (0, 1]; see `TIOU_THRESHOLD_PRESETS`.
    num_classes : int
        ``C``; class ids are ``0..C-1``.

    Returns
    -------
    LocalizationResult
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    thr = _as_thresholds(thresholds)
    gv = _as_ids(gt_video, "gt_video")
    gl = _as_labels(gt_label, "gt_label", num_classes)
    gs = segment_array(gt_segments, "gt_segments", positive_length=True)
    _check_length(gl, gv.shape[0], "gt_label", "gt_video")
    _check_length(gs, gv.shape[0], "gt_segments", "gt_video")
    pv = _as_ids(pred_video, "pred_video")
    pl = _as_labels(pred_label, "pred_label", num_classes)
    ps = segment_array(pred_segments, "pred_segments")
    sc = finite_vector(pred_scores, "pred_scores")
    _check_length(pl, pv.shape[0], "pred_label", "pred_video")
    _check_length(ps, pv.shape[0], "pred_segments", "pred_video")
    _check_length(sc, pv.shape[0], "pred_scores", "pred_video")
    num_gt, num_pred, num_thr = gv.shape[0], pv.shape[0], thr.shape[0]
    if num_gt == 0:
        raise ValueError("gt_video is empty: without ground truth the mAP is undefined")

    npos = np.bincount(gl, minlength=num_classes)
    pred_per_class = np.bincount(pl, minlength=num_classes)
    tp = np.zeros((num_thr, num_pred), dtype=bool)
    # Predictions grouped by class, by score inside a class: the walk order and the AP order.
    order = _class_score_order(pl, sc, num_classes)

    # --- (class, video) groups of the ground truth -----------------------------------------------
    num_videos = int(max(gv.max(), pv.max() if num_pred else 0)) + 1
    gt_key = gl * num_videos + gv
    gt_order = np.argsort(gt_key, kind="stable")  # grouped; input order inside a group
    sorted_key = gt_key[gt_order]
    group_start = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
    group_key = sorted_key[group_start]
    group_size = np.diff(np.append(group_start, num_gt))

    if num_pred:
        # --- predictions in a group with ground truth; all others are false positives --------------
        pred_key = pl * num_videos + pv
        group = np.minimum(np.searchsorted(group_key, pred_key), group_key.shape[0] - 1)
        in_group = np.flatnonzero(group_key[group] == pred_key)
        group = group[in_group]
        size = group_size[group]

        # tIoU of each such prediction with every instance of its group (flat pairs).
        pair_offset = np.cumsum(size) - size
        num_pairs = int(size.sum())
        slot = np.arange(num_pairs) - np.repeat(pair_offset, size)
        pair_pred = np.repeat(in_group, size)
        pair_gt = gt_order[np.repeat(group_start[group], size) + slot]
        pair_tiou = _pairwise_tiou(ps[pair_pred, 0], ps[pair_pred, 1], gs[pair_gt, 0], gs[pair_gt, 1])

        # A prediction whose best tIoU is below every threshold is a false positive everywhere and
        # never matches an instance, so it can leave the walk without changing anyone's outcome.
        if num_pairs:
            live = np.maximum.reduceat(pair_tiou, pair_offset) >= thr.min()
        else:
            live = np.zeros(0, dtype=bool)

        rank = np.empty(num_pred, dtype=np.int64)
        rank[order] = np.arange(num_pred)

        live_idx = np.flatnonzero(live)
        live_size = size[live_idx]
        width = np.left_shift(1, np.ceil(np.log2(live_size)).astype(np.int64))  # bucket: next power of two
        for w in np.unique(width).tolist():
            members = live_idx[width == w]  # indices into in_group
            pred = in_group[members]
            grp = group[members]
            # j = position of each prediction inside its group, in score order.
            by_group = np.lexsort((rank[pred], grp))
            members, pred, grp = members[by_group], pred[by_group], grp[by_group]
            first = np.flatnonzero(np.concatenate(([True], grp[1:] != grp[:-1])))
            count = np.diff(np.append(first, grp.shape[0]))
            step = np.arange(grp.shape[0]) - np.repeat(first, count)
            # Groups ranked by their number of live predictions, descending.
            group_rank_of = np.empty(count.shape[0], dtype=np.int64)
            group_rank_of[np.argsort(-count, kind="stable")] = np.arange(count.shape[0])
            group_rank = np.repeat(group_rank_of, count)
            by_step = np.lexsort((group_rank, step))
            members, pred, step = members[by_step], pred[by_step], step[by_step]
            step_sizes = np.bincount(step)
            step_starts = np.cumsum(step_sizes) - step_sizes
            rows = np.full((members.shape[0], w), _PADDING)
            member_size = size[members]
            row_of_pair = np.repeat(np.arange(members.shape[0]), member_size)
            pair_index = np.repeat(pair_offset[members], member_size) + (
                np.arange(row_of_pair.shape[0]) - np.repeat(np.cumsum(member_size) - member_size, member_size)
            )
            rows[row_of_pair, slot[pair_index]] = pair_tiou[pair_index]
            hit = _greedy_match(rows, step_starts, step_sizes, count.shape[0], thr)
            tp[:, pred] = hit.T

    # --- AP of every (threshold, class) from the true positives, in class score order ------------
    average_precision = np.zeros((num_thr, num_classes), dtype=np.float64)
    if num_pred:
        sorted_label = pl[order]
        class_first = np.cumsum(pred_per_class) - pred_per_class
        position = np.arange(num_pred) - class_first[sorted_label]  # 0-based rank inside the class
        t_index, p_index = np.nonzero(tp[:, order])
        cls = sorted_label[p_index]
        segment = t_index * num_classes + cls  # non-decreasing
        if segment.shape[0]:
            seg_first = np.flatnonzero(np.concatenate(([True], segment[1:] != segment[:-1])))
            seg_count = np.diff(np.append(seg_first, segment.shape[0]))
            k = (np.arange(segment.shape[0]) - np.repeat(seg_first, seg_count) + 1).astype(np.float64)
            n_c = npos[cls].astype(np.float64)
            precision = k / (position[p_index] + 1).astype(np.float64)
            delta_recall = k / n_c - (k - 1.0) / n_c
            # Precision made non-increasing from the right inside each (threshold, class): exact
            # segmented suffix maximum through integer ranks of the precision values.
            values, value_rank = np.unique(precision, return_inverse=True)
            base = (segment[-1] - segment).astype(np.int64) * values.shape[0]
            suffix = np.maximum.accumulate((base + value_rank)[::-1])[::-1] - base
            terms = delta_recall * values[suffix]
            seg_ids = segment[seg_first]
            for s, a, n in zip(seg_ids.tolist(), seg_first.tolist(), seg_count.tolist()):
                t, c = divmod(s, num_classes)
                part = terms[a : a + n]
                # The official sum includes the appended recall-1 point (precision 0) unless
                # recall already reached 1; np.sum's pairwise order depends on that length.
                if n < npos[c]:
                    part = np.append(part, 0.0)
                average_precision[t, c] = np.sum(part)
    average_precision[:, npos == 0] = np.nan
    # Classes in order of first appearance in the ground truth, as the official code averages them,
    # so that the float64 mean is equal to the last bit (a C-ordered copy: numpy sums the rows of
    # a column-ordered array in another order).
    _, first_row = np.unique(gl, return_index=True)
    mean_ap = np.ascontiguousarray(average_precision[:, gl[np.sort(first_row)]]).mean(axis=1)
    return LocalizationResult(
        thresholds=_frozen(thr),
        average_precision=_frozen(average_precision),
        mean_average_precision=_frozen(mean_ap),
        average_map=float(mean_ap.mean()),
        num_gt_per_class=_frozen(npos.astype(np.int64)),
        num_predictions_per_class=_frozen(pred_per_class.astype(np.int64)),
        true_positive=_frozen(tp),
    )
