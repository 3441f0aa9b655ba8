"""Temporal localization AP/mAP against a brute-force reference written from PROTOCOLS.md.

`reference_localization` below is a plain-Python transcription of the protocol (per class: sort by
score, greedy matching to the best unmatched instance of the same video, VOC interpolated AP),
with the documented tie rules. It shares no code with the vectorised implementation. The official
ActivityNet evaluator itself was compared out of tree (see the module docstring); the hand-worked
cases here pin the protocol's edge cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instract_eval.data.activitynet import read_ground_truth
from instract_eval.metrics.localization import (
    TIOU_THRESHOLD_PRESETS,
    interpolated_average_precision,
    temporal_iou,
    temporal_localization_map,
)
from instract_eval.tasks.registry import builtin_resource


# ------------------------------------------------------------------------------------------------
# The reference


def python_tiou(a, b):
    """tIoU in the official operation order, on Python floats."""
    intersection = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (b[1] - b[0]) + (a[1] - a[0]) - intersection
    return intersection / union


def voc_average_precision(precision, recall):
    mp = [0.0, *precision, 0.0]
    mr = [0.0, *recall, 1.0]
    for i in range(len(mp) - 2, -1, -1):
        mp[i] = max(mp[i], mp[i + 1])
    return sum((mr[i] - mr[i - 1]) * mp[i] for i in range(1, len(mr)) if mr[i] != mr[i - 1])


def reference_localization(gt, preds, thresholds, num_classes):
    """gt: [(video, label, start, end)], preds: [(video, label, start, end, score)].

    Returns (AP as [T][C] with NaN for classes without ground truth, TP flags [T][P], mAP [T]).
    """
    tp = [[False] * len(preds) for _ in thresholds]
    ap = [[math.nan] * num_classes for _ in thresholds]
    for c in range(num_classes):
        instances = [j for j, g in enumerate(gt) if g[1] == c]
        if not instances:
            continue
        # Score descending; equal scores: the later-listed prediction first.
        ranked = sorted((i for i, p in enumerate(preds) if p[1] == c), key=lambda i: (-preds[i][4], -i))
        for t, threshold in enumerate(thresholds):
            matched, hits = set(), []
            for i in ranked:
                best, best_j = -1.0, None
                for j in instances:  # equal tIoU: the later-listed instance (>=)
                    if gt[j][0] == preds[i][0] and j not in matched:
                        overlap = python_tiou(preds[i][2:4], gt[j][2:4])
                        if overlap >= best:
                            best, best_j = overlap, j
                hit = best_j is not None and best >= threshold
                if hit:
                    matched.add(best_j)
                    tp[t][i] = True
                hits.append(hit)
            precision, recall, found = [], [], 0
            for position, hit in enumerate(hits, start=1):
                found += hit
                precision.append(found / position)
                recall.append(found / len(instances))
            ap[t][c] = voc_average_precision(precision, recall)
    with_gt = sorted({g[1] for g in gt})
    mean_ap = [sum(row[c] for c in with_gt) / len(with_gt) for row in ap]
    return ap, tp, mean_ap


def evaluate(gt, preds, thresholds, num_classes):
    """Our implementation on the same list-of-tuples input."""
    gt_arr = np.array(gt, dtype=float).reshape(-1, 4)
    pred_arr = np.array(preds, dtype=float).reshape(-1, 5)
    return temporal_localization_map(
        gt_arr[:, 0].astype(int), gt_arr[:, 1].astype(int), gt_arr[:, 2:4],
        pred_arr[:, 0].astype(int), pred_arr[:, 1].astype(int), pred_arr[:, 2:4], pred_arr[:, 4],
        thresholds=thresholds, num_classes=num_classes,
    )


def assert_matches_reference(gt, preds, thresholds, num_classes):
    result = evaluate(gt, preds, thresholds, num_classes)
    ap, tp, mean_ap = reference_localization(gt, preds, thresholds, num_classes)
    np.testing.assert_array_equal(result.true_positive, np.array(tp, dtype=bool).reshape(len(thresholds), -1))
    np.testing.assert_allclose(result.average_precision, np.array(ap), rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.mean_average_precision, mean_ap, rtol=0, atol=1e-12)
    assert result.average_map == pytest.approx(sum(mean_ap) / len(mean_ap), abs=1e-12)
    return result


# ------------------------------------------------------------------------------------------------
# Random comparisons: ties in scores and tIoU, duplicates, unknown videos, empty classes


@st.composite
def localization_cases(draw):
    num_classes = draw(st.integers(1, 4))
    gt_row = st.tuples(st.integers(0, 2), st.integers(0, num_classes - 1), st.integers(0, 12), st.integers(1, 6))
    gt = [(v, c, float(s), float(s + n)) for v, c, s, n in draw(st.lists(gt_row, min_size=1, max_size=12))]
    if draw(st.booleans()):  # an exact duplicate instance
        gt.append(gt[0])
    pred_row = st.tuples(
        st.integers(0, 4),  # videos 3 and 4 have no ground truth
        st.integers(0, num_classes - 1),
        st.integers(0, 14),
        st.integers(0, 7),  # zero-length predictions included
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),  # many equal scores
    )
    preds = [(v, c, float(s), float(s + n), score) for v, c, s, n, score in draw(st.lists(pred_row, max_size=30))]
    thresholds = draw(st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]), min_size=1, max_size=4,
                               unique=True))
    return gt, preds, thresholds, num_classes


@settings(max_examples=300, deadline=None)
@given(localization_cases())
def test_equals_brute_force_reference_on_grid_data_full_of_ties(case):
    assert_matches_reference(*case)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_equals_brute_force_reference_on_larger_continuous_data(seed):
    rng = np.random.default_rng(seed)
    num_classes = 5
    gt = []
    for _ in range(rng.integers(1, 60)):
        start = rng.uniform(0, 100)
        gt.append((int(rng.integers(0, 6)), int(rng.integers(0, num_classes)), start, start + rng.uniform(0.5, 20)))
    preds = []
    for _ in range(rng.integers(0, 200)):
        start = rng.uniform(0, 100)
        preds.append((int(rng.integers(0, 8)), int(rng.integers(0, num_classes)), start,
                      start + rng.uniform(0, 25), float(rng.random())))
    assert_matches_reference(gt, preds, list(TIOU_THRESHOLD_PRESETS["activitynet"]), num_classes)


# ------------------------------------------------------------------------------------------------
# Hand-worked cases


def test_hand_worked_example():
    # Class 0: two instances in video 0. Ranked predictions:
    #   0.9 [0, 10]  tIoU 1 with the first instance           -> TP at 0.5 and 0.9
    #   0.8 [21, 31] tIoU 9/11 = 0.818 with the second        -> TP at 0.5, FP at 0.9
    #   0.7 [0, 10]  the first instance is taken               -> FP
    # At 0.5: precision 1, 1, 2/3; recall 1/2, 1, 1  -> AP = 1/2 * 1 + 1/2 * 1 = 1
    # At 0.9: precision 1, 1/2, 1/3; recall 1/2 each  -> AP = 1/2 * 1 = 1/2
    # Class 1 has an instance and no prediction: AP 0, and it counts.
    # Class 2 has predictions and no ground truth: AP NaN, left out of the mAP.
    gt = [(0, 0, 0.0, 10.0), (0, 0, 20.0, 30.0), (0, 1, 40.0, 50.0)]
    preds = [(0, 0, 0.0, 10.0, 0.9), (0, 0, 21.0, 31.0, 0.8), (0, 0, 0.0, 10.0, 0.7), (0, 2, 40.0, 50.0, 0.99)]
    result = evaluate(gt, preds, [0.5, 0.9], num_classes=3)
    np.testing.assert_array_equal(result.average_precision[:, :2], [[1.0, 0.0], [0.5, 0.0]])
    assert np.isnan(result.average_precision[:, 2]).all()
    np.testing.assert_array_equal(result.mean_average_precision, [0.5, 0.25])
    assert result.average_map == 0.375
    np.testing.assert_array_equal(result.true_positive, [[True, True, False, False], [True, False, False, False]])
    np.testing.assert_array_equal(result.num_gt_per_class, [2, 1, 0])


def test_prediction_in_a_video_without_ground_truth_is_a_false_positive():
    # 0.9 in video 7 (no ground truth): FP; 0.8 exact: TP. Precision 0, 1/2; recall 0, 1 -> AP 1/2.
    result = evaluate([(0, 0, 0.0, 10.0)], [(7, 0, 0.0, 10.0, 0.9), (0, 0, 0.0, 10.0, 0.8)], [0.5], 1)
    assert result.average_precision[0, 0] == 0.5


def test_duplicate_ground_truth_counts_twice_in_recall():
    gt = [(0, 0, 0.0, 10.0), (0, 0, 0.0, 10.0)]
    assert evaluate(gt, [(0, 0, 0.0, 10.0, 0.9)], [0.5], 1).average_precision[0, 0] == 0.5
    assert evaluate(gt, [(0, 0, 0.0, 10.0, 0.9), (0, 0, 0.0, 10.0, 0.8)], [0.5], 1).average_precision[0, 0] == 1.0


def test_equal_scores_rank_the_later_listed_prediction_first():
    # Both predictions score 0.5; the later-listed one (a miss) is ranked first: precision 0, 1/2.
    gt = [(0, 0, 0.0, 10.0)]
    hit, miss = (0, 0, 0.0, 10.0, 0.5), (0, 0, 50.0, 60.0, 0.5)
    assert evaluate(gt, [hit, miss], [0.5], 1).average_precision[0, 0] == 0.5
    assert evaluate(gt, [miss, hit], [0.5], 1).average_precision[0, 0] == 1.0


def test_equal_tiou_takes_the_later_listed_instance():
    # The 0.9 prediction [5, 15] overlaps both instances with tIoU 5/15 and takes the later-listed
    # [10, 20]; the 0.8 prediction [10, 20] is then left with [0, 10] (tIoU 0): a false positive.
    gt = [(0, 0, 0.0, 10.0), (0, 0, 10.0, 20.0)]
    preds = [(0, 0, 5.0, 15.0, 0.9), (0, 0, 10.0, 20.0, 0.8)]
    result = evaluate(gt, preds, [0.3], 1)
    np.testing.assert_array_equal(result.true_positive, [[True, False]])
    assert result.average_precision[0, 0] == 0.5
    swapped = evaluate(gt[::-1], preds, [0.3], 1)
    np.testing.assert_array_equal(swapped.true_positive, [[True, True]])


def test_zero_length_prediction_is_a_false_positive():
    result = evaluate([(0, 0, 0.0, 10.0)], [(0, 0, 5.0, 5.0, 0.9)], [0.1], 1)
    np.testing.assert_array_equal(result.true_positive, [[False]])
    assert result.average_precision[0, 0] == 0.0


def test_no_predictions_at_all_gives_zero_map():
    result = temporal_localization_map([0], [0], [[0.0, 1.0]], [], [], np.zeros((0, 2)), [], [0.5], 2)
    assert result.mean_average_precision.tolist() == [0.0]
    assert np.isnan(result.average_precision[0, 1])


# ------------------------------------------------------------------------------------------------
# Float64 arithmetic and thresholds


def test_tiou_of_81_29_in_162_58_is_below_one_half_and_a_false_positive_at_0_5():
    # Lengths 81.29 and 162.58 starting at 0.01: float64 gives 0.4999999999999999 (float32: 0.5).
    pred, gt = [0.01, 81.3], [0.01, 162.59]
    tiou = temporal_iou([pred], [gt])[0, 0]
    assert tiou == python_tiou(pred, gt) == 0.4999999999999999
    as_float32 = np.float32(81.3) - np.float32(0.01)
    assert as_float32 / (np.float32(162.59) - np.float32(0.01)) >= 0.5  # why float32 code disagrees
    result = evaluate([(0, 0, *gt)], [(0, 0, *pred, 1.0)], [0.5], 1)
    assert result.average_precision[0, 0] == 0.0


def test_linspace_thresholds_count_a_tiou_equal_to_their_float_value():
    thumos = TIOU_THRESHOLD_PRESETS["thumos14"]
    assert thumos[1] == 0.39999999999999997 != 0.4
    pred, gt = [0.0, 0.16], [0.0, 0.4]
    assert temporal_iou([pred], [gt])[0, 0] == thumos[1]
    # Inclusive comparison: a match at the linspace 0.4, not at a literal 0.4.
    assert evaluate([(0, 0, *gt)], [(0, 0, *pred, 1.0)], thumos, 1).average_precision[:, 0].tolist() == [
        1.0, 1.0, 0.0, 0.0, 0.0]
    assert evaluate([(0, 0, *gt)], [(0, 0, *pred, 1.0)], [0.4], 1).average_precision[0, 0] == 0.0


def test_presets_are_the_official_linspace_sets():
    np.testing.assert_array_equal(TIOU_THRESHOLD_PRESETS["thumos14"], np.linspace(0.3, 0.7, 5))
    np.testing.assert_array_equal(TIOU_THRESHOLD_PRESETS["activitynet"], np.linspace(0.5, 0.95, 10))
    np.testing.assert_array_equal(TIOU_THRESHOLD_PRESETS["epic"], np.linspace(0.1, 0.5, 5))


def test_temporal_iou_matrix_by_hand():
    tiou = temporal_iou([[0, 10], [5, 5]], [[0, 10], [5, 15], [20, 30], [5, 5]])
    np.testing.assert_array_equal(tiou, [[1.0, 5 / 15, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_interpolated_average_precision_by_hand():
    # Precision is made non-increasing from the right: 1, 2/3, 2/3, then the final 0.
    # Recall steps: 0 -> 1/4 (x1), 1/4 -> 1/2 (x2/3), 1/2 -> 1 (x0)  -> 1/4 + 1/6
    assert interpolated_average_precision([1.0, 0.5, 2 / 3], [0.25, 0.25, 0.5]) == pytest.approx(0.25 + 1 / 6)
    assert interpolated_average_precision([], []) == 0.0
    with pytest.raises(ValueError, match="recall"):
        interpolated_average_precision([1.0, 1.0], [0.5, 0.25])


# ------------------------------------------------------------------------------------------------
# The real THUMOS14 ground truth


def thumos14_test_ground_truth():
    with builtin_resource("thumos14_gt.json") as path:
        return read_ground_truth(path, "test")  # the file says "Test"


def test_perfect_predictions_on_real_thumos14_score_one_everywhere():
    gt = thumos14_test_ground_truth()
    assert (gt.num_videos, gt.num_classes, gt.label.shape[0]) == (212, 20, 3358)
    for thresholds in TIOU_THRESHOLD_PRESETS.values():
        result = temporal_localization_map(gt.video, gt.label, gt.segments, gt.video, gt.label, gt.segments,
                                           np.ones(gt.label.shape[0]), thresholds, gt.num_classes)
        assert result.average_precision.min() == 1.0
        assert result.average_map == 1.0


def test_real_thumos14_with_shifted_predictions_equals_reference():
    gt = thumos14_test_ground_truth()
    rng = np.random.default_rng(3)
    keep = rng.random(gt.label.shape[0]) < 0.25
    lengths = gt.segments[:, 1] - gt.segments[:, 0]
    shifted = gt.segments + (rng.normal(0, 0.3, size=(gt.label.shape[0], 1)) * lengths[:, None])
    shifted = np.clip(shifted, 0, None)
    scores = rng.random(gt.label.shape[0])
    gt_rows = [(int(v), int(c), float(s), float(e)) for v, c, (s, e) in zip(gt.video, gt.label, gt.segments)]
    pred_rows = [(int(v), int(c), float(s), float(e), float(p))
                 for v, c, (s, e), p in zip(gt.video[keep], gt.label[keep], shifted[keep], scores[keep])]
    assert_matches_reference(gt_rows, pred_rows, list(TIOU_THRESHOLD_PRESETS["thumos14"]), gt.num_classes)


# ------------------------------------------------------------------------------------------------
# Class subsets


def test_subset_map_is_the_mean_of_the_subset_classes_ap():
    gt = [(0, 0, 0.0, 10.0), (0, 1, 0.0, 10.0), (0, 2, 0.0, 10.0)]
    preds = [(0, 0, 0.0, 10.0, 0.9), (0, 1, 20.0, 30.0, 0.9), (1, 1, 0.0, 10.0, 0.8), (0, 1, 0.0, 10.0, 0.7)]
    result = evaluate(gt, preds, [0.5], 4)
    # class 1: FP, FP, TP -> AP 1/3; class 0: 1; class 2: 0
    assert result.subset_mean_average_precision([0, 1]).tolist() == [(1.0 + 1 / 3) / 2]
    assert result.subset_average_map([1, 2]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="no ground truth"):
        result.subset_mean_average_precision([0, 3])
    with pytest.raises(ValueError, match="distinct"):
        result.subset_mean_average_precision([0, 0])


# ------------------------------------------------------------------------------------------------
# Bad input


GOOD = dict(gt_video=[0], gt_label=[0], gt_segments=[[0.0, 1.0]], pred_video=[0], pred_label=[0],
            pred_segments=[[0.0, 1.0]], pred_scores=[0.5], thresholds=[0.5], num_classes=1)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(gt_segments=[[1.0, 1.0]]), r"gt_segments\[0\].*positive length"),
        (dict(gt_segments=[[2.0, 1.0]]), r"gt_segments\[0\]"),
        (dict(gt_segments=[[-1.0, 1.0]]), r"gt_segments\[0\].*before 0"),
        (dict(pred_segments=[[2.0, 1.0]]), r"pred_segments\[0\].*start <= end"),
        (dict(pred_segments=[[0.0, np.inf]]), r"pred_segments\[0\].*not finite"),
        (dict(pred_scores=[np.nan]), r"pred_scores\[0\].*not finite"),
        (dict(pred_label=[1]), r"pred_label\[0\] = 1 is outside"),
        (dict(gt_label=[-1]), r"gt_label\[0\] = -1 is negative"),
        (dict(gt_label=[0.0]), r"gt_label must hold integer ids"),
        (dict(thresholds=[0.0]), r"thresholds\[0\]"),
        (dict(thresholds=[1.5]), r"thresholds\[0\]"),
        (dict(thresholds=[]), r"thresholds must be a non-empty"),
        (dict(pred_scores=[0.5, 0.6]), r"pred_scores has 2 rows but pred_video has 1"),
        (dict(gt_video=[], gt_label=[], gt_segments=np.zeros((0, 2))), r"without ground truth"),
        (dict(num_classes=0), r"num_classes"),
    ],
)
def test_bad_input_is_rejected_naming_the_argument(change, message):
    with pytest.raises(ValueError, match=message):
        temporal_localization_map(**{**GOOD, **change})
