"""ActionVLM's LAP, hallucination rates and ambiguity-clip calibration against hand-worked values
(Table 2 and Table 5 rows rebuilt by construction) and plain-Python reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instract_eval.metrics.localization_diagnostics import (
    ambiguity_calibration,
    fixed_output_flags,
    hallucination_rates,
    language_advantage_on_performance,
    repeating_listing_flags,
)

SETTINGS = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------------------------------------------
# Independent references (plain Python, no numpy)


def reference_fixed(responses, videos, durations, grid_s, normalized_grid, share_percent, min_videos):
    """Fixed flags by dictionaries of frozensets; the share is an integer percent (exact arithmetic)."""
    distinct = len(set(videos))
    required = min_videos
    while required * 100 < share_percent * distinct:  # smallest m >= min_videos with m >= share * V
        required += 1
    flags = [False] * len(responses)
    for grid, relative in ((grid_s, False), (normalized_grid, True)):
        if grid is None:
            continue
        keys, owners = [], {}
        for segments, video, duration in zip(responses, videos, durations):
            if not segments:
                keys.append(None)
                continue
            scale = duration if relative else 1.0
            key = frozenset((math.floor(s / scale / grid + 0.5), math.floor(e / scale / grid + 0.5)) for s, e in segments)
            keys.append(key)
            owners.setdefault(key, set()).add(video)
        for i, key in enumerate(keys):
            if key is not None and len(owners[key]) >= required:
                flags[i] = True
    return flags


def reference_repeating(responses, tolerance, max_segments, truncated):
    flags = []
    for i, segments in enumerate(responses):
        flag = bool(truncated[i]) if truncated is not None else False
        if max_segments is not None and len(segments) > max_segments:
            flag = True
        for a in range(len(segments)):
            for b in range(a + 1, len(segments)):
                if abs(segments[a][0] - segments[b][0]) <= tolerance and abs(segments[a][1] - segments[b][1]) <= tolerance:
                    flag = True
        flags.append(flag)
    return flags


def reference_calibration(clips, confidences, segments, windows, thresholds, crop):
    result = {"mConf": 0.0, "mLen": 0.0, **{f"acc@{t:g}": 0.0 for t in thresholds}}
    for c, (a, b) in enumerate(windows):
        best = None
        for i in range(len(clips)):
            if clips[i] == c and (best is None or confidences[i] > confidences[best]):
                best = i  # strict ">": the first-listed of equal confidences stays
        s, e = segments[best]
        span = max(0.0, min(e, b) - max(s, a)) if crop else e - s
        length = span / (b - a)
        result["mConf"] += confidences[best] / len(windows)
        result["mLen"] += length / len(windows)
        for t in thresholds:
            if length < t:
                result[f"acc@{t:g}"] += 1 / len(windows)
    return result


# ------------------------------------------------------------------------------------------------
# LAP


@pytest.mark.parametrize(
    ("aligned_percent", "lap_percent"),
    [
        (72.0, 2.6),  # ActionVLM full
        (59.3, 8.8),  # ActionVLM, only F_lang
        (33.4, 14.8),  # VTimeLLM
        (42.9, 16.5),  # TimeMarker
    ],
)
def test_lap_reproduces_table2_rows(aligned_percent, lap_percent):
    # Table 2 prints the aligned average mAP and LAP; the conflicting run is what those imply:
    # C = A (1 - LAP), e.g. 0.720 * 0.974 = 0.70128 for the full ActionVLM.
    aligned = aligned_percent / 100
    conflicting = aligned * (1 - lap_percent / 100)
    assert language_advantage_on_performance(aligned, conflicting) == pytest.approx(lap_percent / 100, abs=1e-12)


def test_lap_hand_values():
    # (0.720 - 0.70128) / 0.720 = 0.01872 / 0.720 = 0.026
    assert language_advantage_on_performance(0.720, 0.70128) == pytest.approx(0.026, abs=1e-12)
    # (0.5 - 0.4) / 0.5 = 0.2; a conflicting run at 0 loses everything: LAP = 1
    assert language_advantage_on_performance(0.5, 0.4) == pytest.approx(0.2, abs=1e-15)
    assert language_advantage_on_performance(0.3, 0.0) == 1.0
    assert language_advantage_on_performance(0.3, 0.3) == 0.0


def test_lap_is_negative_when_the_conflicting_run_is_better():
    # (0.4 - 0.5) / 0.4 = -0.25
    assert language_advantage_on_performance(0.4, 0.5) == pytest.approx(-0.25, abs=1e-15)


def test_lap_zero_aligned_map_is_undefined():
    with pytest.raises(ValueError, match="aligned_average_map is 0"):
        language_advantage_on_performance(0.0, 0.1)
    with pytest.raises(ValueError, match="aligned_average_map is 0"):
        language_advantage_on_performance(0, 0)


@pytest.mark.parametrize(
    ("aligned", "conflicting", "message"),
    [
        (72.0, 70.128, "aligned_average_map = 72.0 is outside \\[0, 1\\]"),  # percent, not fractions
        (0.72, 70.128, "conflicting_average_map = 70.128 is outside"),
        (-0.1, 0.2, "aligned_average_map = -0.1 is outside"),
        (float("nan"), 0.2, "aligned_average_map must be a finite number"),
        (0.5, float("inf"), "conflicting_average_map must be a finite number"),
        (True, 0.2, "aligned_average_map must be a finite number"),
        ("0.5", 0.2, "aligned_average_map must be a finite number"),
    ],
)
def test_lap_rejects_bad_inputs(aligned, conflicting, message):
    with pytest.raises(ValueError, match=message):
        language_advantage_on_performance(aligned, conflicting)


@SETTINGS
@given(st.integers(1, 1000), st.integers(0, 1000))
def test_lap_matches_the_relative_drop(aligned_permille, conflicting_permille):
    aligned, conflicting = aligned_permille / 1000, conflicting_permille / 1000
    expected = (aligned_permille - conflicting_permille) / aligned_permille  # exact integers, one division
    assert language_advantage_on_performance(aligned, conflicting) == pytest.approx(expected, rel=1e-12, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Hallucination rates: a hand-worked example

# Five videos (V = 5), so with the defaults an answer is fixed once 2 distinct videos share it
# (max(2, ceil(0.05 * 5)) = 2). Durations: v0 100 s, v1 200 s, v2 50 s, v3 80 s, v4 120 s.
HAND_RESPONSES = [
    [[0.0, 10.0]],  # r0 v0: "0-10 s" ............................ fixed (seconds key shared with r1)
    [[0.0, 10.0]],  # r1 v1: same seconds on another video ........ fixed
    [[0.0, 50.0]],  # r2 v2: the whole video, normalized (0, 100) .. fixed (shared with r3)
    [[0.0, 80.0]],  # r3 v3: the whole video ...................... fixed
    [[12.25, 20.0], [12.5, 20.5]],  # r4 v4: ends 0.25 and 0.5 apart (<= 0.5) .. repeating
    [[0.0, 10.0]],  # r5 v0: r0's answer again; the key has 2 videos .......... fixed
    [],  # r6 v4: empty ............................................. neither
    [[5.0, 7.0], [30.0, 35.0], [5.0, 7.0]],  # r7 v2: exact repeat ........ repeating
    [[1.0, 2.0]],  # r8 v3: generation truncated ...................... repeating
    [[40.0, 60.0]],  # r9 v1: an ordinary answer ........................ neither
]
HAND_VIDEOS = ["v0", "v1", "v2", "v3", "v4", "v0", "v4", "v2", "v3", "v1"]
HAND_DURATIONS = [100.0, 200.0, 50.0, 80.0, 120.0, 100.0, 120.0, 50.0, 80.0, 200.0]
HAND_TRUNCATED = [False] * 8 + [True, False]
HAND_FIXED = [True, True, True, True, False, True, False, False, False, False]  # 5 of 10
HAND_REPEATING = [False, False, False, False, True, False, False, True, True, False]  # 3 of 10


def test_hallucination_rates_hand_example():
    result = hallucination_rates(HAND_RESPONSES, HAND_VIDEOS, HAND_DURATIONS, truncated=HAND_TRUNCATED)
    assert result["fixed"] == 0.5
    assert result["repeating"] == 0.3
    assert result["num_responses"] == 10
    assert result["num_empty"] == 1
    assert result["fixed_min_videos"] == 2
    assert result["fixed_flags"].tolist() == HAND_FIXED
    assert result["repeating_flags"].tolist() == HAND_REPEATING
    assert fixed_output_flags(HAND_RESPONSES, HAND_VIDEOS, HAND_DURATIONS).tolist() == HAND_FIXED
    assert repeating_listing_flags(HAND_RESPONSES, truncated=HAND_TRUNCATED).tolist() == HAND_REPEATING


def test_each_space_catches_its_own_constant():
    # Only seconds: r2/r3 (whole video, 50 s vs 80 s) no longer match -> fixed are r0, r1, r5.
    seconds = fixed_output_flags(HAND_RESPONSES, HAND_VIDEOS, HAND_DURATIONS, normalized_grid=None)
    assert np.flatnonzero(seconds).tolist() == [0, 1, 5]
    # Only relative time: r0/r5 (0.1 of v0) and r1 (0.05 of v1) differ -> fixed are r2, r3.
    relative = fixed_output_flags(HAND_RESPONSES, HAND_VIDEOS, HAND_DURATIONS, grid_s=None)
    assert np.flatnonzero(relative).tolist() == [2, 3]
    with pytest.raises(ValueError, match="both None"):
        fixed_output_flags(HAND_RESPONSES, HAND_VIDEOS, HAND_DURATIONS, grid_s=None, normalized_grid=None)


def test_the_same_answer_on_one_video_is_not_fixed():
    responses = [[[0.0, 10.0]], [[0.0, 10.0]], [[0.0, 10.0]], [[3.0, 4.0]]]
    flags = fixed_output_flags(responses, [7, 7, 7, 8], [100.0, 100.0, 100.0, 90.0])
    assert flags.tolist() == [False, False, False, False]
    # A second video with the same answer makes all three fixed.
    flags = fixed_output_flags(responses, [7, 7, 9, 8], [100.0, 100.0, 60.0, 90.0])
    assert flags.tolist() == [True, True, True, False]


def test_fixed_keys_ignore_order_and_repeats():
    responses = [[[0.0, 10.0], [20.0, 30.0]], [[20.0, 30.0], [0.0, 10.0], [0.0, 10.0]], [[0.0, 10.0]]]
    flags = fixed_output_flags(responses, [0, 1, 2], [100.0, 150.0, 300.0], normalized_grid=None)
    assert flags.tolist() == [True, True, False]


def test_fixed_grid_boundary_rounds_half_up():
    # grid 0.5 s: 10.2 / 0.5 + 0.5 = 20.9 -> cell 20, same as 10.0; 10.25 / 0.5 + 0.5 = 21.0 -> cell 21.
    def flags(end_b):
        return fixed_output_flags([[[0.0, 10.0]], [[0.0, end_b]]], [0, 1], [100.0, 100.0], normalized_grid=None).tolist()

    assert flags(10.2) == [True, True]
    assert flags(10.24) == [True, True]
    assert flags(10.25) == [False, False]
    # Straddling a cell boundary splits even very close values (the documented price of a grid):
    # 9.74 -> 19.48 + 0.5 = 19.98 -> 19, 9.75 -> 20.
    assert fixed_output_flags([[[0.0, 9.74]], [[0.0, 9.75]]], [0, 1], [100.0, 100.0], normalized_grid=None).tolist() == [
        False,
        False,
    ]


def test_fixed_normalized_grid_boundary():
    # normalized grid 0.01: 0.5 of 100 s -> 50.5 -> cell 50; 0.504 of 100 s -> 50.9 -> 50; 0.505 -> 51.
    def flags(end_b):
        return fixed_output_flags([[[0.0, 50.0]], [[0.0, end_b]]], [0, 1], [100.0, 100.0], grid_s=None).tolist()

    assert flags(50.4) == [True, True]
    assert flags(50.75) == [False, False]


def test_fixed_share_threshold_counts_distinct_videos():
    # 41 videos, min_share 0.05: ceil(2.05) = 3 videos needed. Two sharing an answer are not enough.
    def case(num_sharing):
        responses = [[[0.0, 10.0]] if v < num_sharing else [[float(v), float(v) + 1.5]] for v in range(41)]
        durations = [100.0 + v for v in range(41)]
        return hallucination_rates(responses, list(range(41)), durations)

    two, three = case(2), case(3)
    assert two["fixed_min_videos"] == 3 and two["fixed"] == 0.0
    assert three["fixed"] == pytest.approx(3 / 41)
    assert np.flatnonzero(three["fixed_flags"]).tolist() == [0, 1, 2]


def test_fixed_share_threshold_is_exact_at_integers():
    # 100 videos * 0.07 = 7 exactly, but 7.000000000000001 in floats: 7 videos suffice, 6 do not.
    def case(num_sharing):
        responses = [[[0.0, 10.0]] if v < num_sharing else [[float(v), float(v) + 3.0]] for v in range(100)]
        return hallucination_rates(responses, list(range(100)), [500.0 + v for v in range(100)], min_share=0.07)

    seven, six = case(7), case(6)
    assert seven["fixed_min_videos"] == 7
    assert seven["fixed"] == pytest.approx(7 / 100)
    assert six["fixed"] == 0.0


def test_min_videos_raises_the_floor():
    responses = [[[0.0, 10.0]], [[0.0, 10.0]], [[5.0, 6.0]]]
    assert fixed_output_flags(responses, [0, 1, 2], [100.0, 110.0, 120.0], min_videos=2).tolist() == [True, True, False]
    assert fixed_output_flags(responses, [0, 1, 2], [100.0, 110.0, 120.0], min_videos=3).tolist() == [False] * 3
    with pytest.raises(ValueError, match="min_videos must be an integer >= 2"):
        fixed_output_flags(responses, [0, 1, 2], [100.0, 110.0, 120.0], min_videos=1)


@pytest.mark.parametrize(
    ("second", "tolerance", "expected"),
    [
        ([10.5, 20.5], 0.5, True),  # both ends exactly 0.5 apart: inclusive
        ([10.5, 20.75], 0.5, False),  # end 0.75 apart
        ([10.75, 20.0], 0.5, False),  # start 0.75 apart
        ([9.5, 19.5], 0.5, True),
        ([10.0, 20.0], 0.0, True),  # tolerance 0: exact repeats only
        ([10.0, 20.25], 0.0, False),
        ([10.25, 20.25], 0.25, True),
    ],
)
def test_repeat_tolerance_boundary(second, tolerance, expected):
    responses = [[[10.0, 20.0], [40.0, 45.0], second]]
    assert repeating_listing_flags(responses, tolerance_s=tolerance).tolist() == [expected]


def test_repeat_detection_looks_past_neighbours():
    # Sorted by start: [10, 40], [10.25, 11], [10.5, 40.5]; the repeat pair is the 1st and 3rd.
    responses = [[[10.5, 40.5], [10.25, 11.0], [10.0, 40.0]]]
    assert repeating_listing_flags(responses).tolist() == [True]
    assert repeating_listing_flags([[[10.0, 40.0], [10.25, 11.0], [10.5, 41.0]]]).tolist() == [False]


def test_max_segments_and_truncated():
    listing = [[float(3 * k), float(3 * k + 1)] for k in range(4)]  # 4 distinct segments
    assert repeating_listing_flags([listing]).tolist() == [False]  # no cap by default
    assert repeating_listing_flags([listing], max_segments=3).tolist() == [True]
    assert repeating_listing_flags([listing], max_segments=4).tolist() == [False]
    # A truncated generation flags even when nothing could be parsed from it.
    assert repeating_listing_flags([[], listing, []], truncated=[True, False, False]).tolist() == [True, False, False]
    assert repeating_listing_flags([[], []], truncated=np.array([0, 1])).tolist() == [False, True]


def test_empty_responses():
    result = hallucination_rates([[], np.zeros((0, 2)), []], [0, 1, 2], [10.0, 20.0, 30.0])
    assert result["fixed"] == 0.0 and result["repeating"] == 0.0
    assert result["num_responses"] == 3 and result["num_empty"] == 3
    # Empty answers count in the denominator: 1 fixed pair among 4 responses.
    result = hallucination_rates([[[0, 5]], [[0, 5]], [], []], [0, 1, 2, 3], [10.0, 20.0, 30.0, 40.0])
    assert result["fixed"] == 0.5 and result["num_empty"] == 2


@pytest.mark.parametrize(
    ("responses", "videos", "durations", "kwargs", "message"),
    [
        ([[[0, 1]], [[0, 1]], [[2, 3]], [[5.0, 6.0], [5.0, 2.0]]], [0, 1, 2, 3], [9, 9, 9, 9], {},
         r"responses\[3\]\[1\] = \[5.0, 2.0\] has start > end"),
        ([[[0, 1]], [[np.nan, 3]]], [0, 1], [9, 9], {}, r"responses\[1\]\[0\] = \[nan, 3.0\] is not finite"),
        ([[[0, 1]], [[-1.0, 3.0]]], [0, 1], [9, 9], {}, r"responses\[1\]\[0\] = \[-1.0, 3.0\] starts before 0"),
        ([[[0, 1, 2]]], [0], [9], {}, r"responses\[0\] must have shape \[K, 2\]"),
        ([], [], [], {}, "responses is empty"),
        ("0-10", [0], [9], {}, "responses must be a sequence"),
        ([[[0, 1]], [[2, 3]]], [0], [9, 9], {}, "video_ids must be a 1-D array of 2 ids"),
        ([[[0, 1]], [[2, 3]]], [0.5, 1.5], [9, 9], {}, "video_ids must hold integer or string ids"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9], {}, "durations has 1 entries but 2 are needed"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 0], {}, r"durations\[1\] = 0.0 is not positive"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, np.inf], {}, r"durations\[1\] = inf is not finite"),
        ([[[0, 1]], [[2, 3]]], ["a", "a"], [9, 10], {}, r"durations\[1\] = 10.0 but durations\[0\] = 9.0 for the same video 'a'"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"truncated": [True]}, "truncated must be a 1-D array of 2 booleans"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"truncated": [0.5, 1.0]}, "truncated must be boolean"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"grid_s": 0.0}, "grid_s must be positive"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"normalized_grid": 2.0}, "normalized_grid = 2.0 exceeds 1"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"min_share": 5.0}, "min_share = 5.0 is outside"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"tolerance_s": -0.1}, "tolerance_s must be >= 0"),
        ([[[0, 1]], [[2, 3]]], [0, 1], [9, 9], {"max_segments": 0}, "max_segments must be an integer >= 1"),
    ],
)
def test_hallucination_rates_reject_bad_inputs(responses, videos, durations, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hallucination_rates(responses, videos, durations, **kwargs)


@st.composite
def response_sets(draw):
    n = draw(st.integers(1, 12))
    num_videos = draw(st.integers(1, 5))
    video_durations = [draw(st.sampled_from([10.0, 20.0, 40.0])) for _ in range(num_videos)]
    quarter = st.integers(0, 24).map(lambda q: q / 4)  # exact in binary, on and off the grid
    responses, videos = [], []
    for _ in range(n):
        segments = []
        for _ in range(draw(st.integers(0, 4))):
            a, b = sorted((draw(quarter), draw(quarter)))
            segments.append([a, b])
        responses.append(segments)
        videos.append(draw(st.integers(0, num_videos - 1)))
    durations = [video_durations[v] for v in videos]
    truncated = draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n))
    return responses, videos, durations, truncated


@SETTINGS
@given(
    response_sets(),
    st.sampled_from([None, 0.5, 1.0]),
    st.sampled_from([None, 0.01, 0.1]),
    st.integers(0, 60),
    st.integers(2, 4),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    st.sampled_from([None, 1, 2, 3]),
)
def test_hallucination_rates_match_reference_loops(case, grid_s, normalized_grid, share_percent, min_videos, tolerance, cap):
    responses, videos, durations, truncated = case
    if grid_s is None and normalized_grid is None:
        grid_s = 0.5
    result = hallucination_rates(
        responses,
        videos,
        durations,
        grid_s=grid_s,
        normalized_grid=normalized_grid,
        min_share=share_percent / 100,
        min_videos=min_videos,
        tolerance_s=tolerance,
        max_segments=cap,
        truncated=truncated,
    )
    fixed = reference_fixed(responses, videos, durations, grid_s, normalized_grid, share_percent, min_videos)
    repeating = reference_repeating(responses, tolerance, cap, truncated)
    assert result["fixed_flags"].tolist() == fixed
    assert result["repeating_flags"].tolist() == repeating
    assert result["fixed"] == pytest.approx(sum(fixed) / len(responses))
    assert result["repeating"] == pytest.approx(sum(repeating) / len(responses))
    assert result["num_empty"] == sum(1 for r in responses if not r)


# ------------------------------------------------------------------------------------------------
# Ambiguity calibration


def table5_learnable_clips():
    """40 clips rebuilt so that the top-1 predictions give Table 5's "learnable" row.

    Clip c is the 10 s window [20c + 10, 20c + 20]. Top-1 cropped lengths: 6 clips 1.0 s (0.1),
    12 clips 3.5 s (0.35), 14 clips 5.5 s (0.55), 8 clips 8.775 s (0.8775). Then, by hand:

        acc@0.3 = 6 / 40 = 0.15,  acc@0.5 = 18 / 40 = 0.45,  acc@0.7 = 32 / 40 = 0.80
        mLen    = (6 * 0.1 + 12 * 0.35 + 14 * 0.55 + 8 * 0.8775) / 40
                = (0.6 + 4.2 + 7.7 + 7.02) / 40 = 19.52 / 40 = 0.488
        mConf   = (20 * 0.02 + 20 * 0.056) / 40 = 1.52 / 40 = 0.038   (alternating top-1 scores)

    The six 0.1 clips' top-1 spans start 5 s before the clip ([20c + 5, 20c + 11]): 6 s raw, 1 s
    inside. Each clip also has two lower-confidence distractors covering the whole clip, one listed
    before the top-1 and one after it (scores 0.01 and 0.015), which a wrong selection would pick.
    """
    lengths = [1.0] * 6 + [3.5] * 12 + [5.5] * 14 + [8.775] * 8
    clips, confidences, segments, windows = [], [], [], []
    for c, length in enumerate(lengths):
        a = 20.0 * c + 10.0
        windows.append([a, a + 10.0])
        top = 0.02 if c % 2 == 0 else 0.056
        start = a - 5.0 if length == 1.0 else a + 0.5
        end = a + 1.0 if length == 1.0 else a + 0.5 + length
        clips += [c, c, c]
        confidences += [0.01, top, 0.015]
        segments += [[a, a + 10.0], [start, end], [a - 2.0, a + 10.0]]
    return clips, confidences, segments, windows


def test_ambiguity_calibration_reproduces_table5_learnable_row():
    clips, confidences, segments, windows = table5_learnable_clips()
    result = ambiguity_calibration(clips, confidences, segments, windows)
    assert result["num_clips"] == 40
    assert result["acc@0.3"] == 0.15 and result["acc@0.5"] == 0.45 and result["acc@0.7"] == 0.80
    assert result["mLen"] == pytest.approx(0.488, abs=1e-12)
    assert result["mConf"] == pytest.approx(0.038, abs=1e-12)
    assert result["top1_index"].tolist() == [3 * c + 1 for c in range(40)]
    assert set(result) == {
        "mConf", "mLen", "acc@0.3", "acc@0.5", "acc@0.7", "num_clips",
        "top1_index", "top1_confidence", "normalized_length",
    }  # fmt: skip


def test_ambiguity_calibration_without_cropping_uses_the_raw_span():
    # The six 0.1 clips become 6 s / 10 s = 0.6:
    #   mLen = (6 * 0.6 + 4.2 + 7.7 + 7.02) / 40 = 22.52 / 40 = 0.563
    #   acc@0.3 = 0, acc@0.5 = 12 / 40 = 0.30, acc@0.7 = (6 + 12 + 14) / 40 = 0.80
    clips, confidences, segments, windows = table5_learnable_clips()
    result = ambiguity_calibration(clips, confidences, segments, windows, clip_to_window=False)
    assert result["mLen"] == pytest.approx(0.563, abs=1e-12)
    assert (result["acc@0.3"], result["acc@0.5"], result["acc@0.7"]) == (0.0, 0.30, 0.80)
    assert result["mConf"] == pytest.approx(0.038, abs=1e-12)


def test_ambiguity_calibration_matches_reference_on_table5_clips():
    clips, confidences, segments, windows = table5_learnable_clips()
    for crop in (True, False):
        result = ambiguity_calibration(clips, confidences, segments, windows, clip_to_window=crop)
        expected = reference_calibration(clips, confidences, segments, windows, (0.3, 0.5, 0.7), crop)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-12), key


def test_confidence_tie_goes_to_the_first_listed_prediction():
    # Clip [0, 10]: two predictions at 0.6, first 2 s long (0.2), second 8 s (0.8).
    window = [[0.0, 10.0]]
    first_short = ambiguity_calibration([0, 0, 0], [0.6, 0.3, 0.6], [[1, 3], [0, 10], [1, 9]], window)
    assert first_short["top1_index"].tolist() == [0]
    assert first_short["mLen"] == pytest.approx(0.2)
    assert first_short["acc@0.3"] == 1.0
    first_long = ambiguity_calibration([0, 0, 0], [0.6, 0.3, 0.6], [[1, 9], [0, 10], [1, 3]], window)
    assert first_long["top1_index"].tolist() == [0]
    assert first_long["mLen"] == pytest.approx(0.8)
    assert first_long["acc@0.7"] == 0.0


def test_length_thresholds_are_strict():
    # Lengths 3/10 = 0.3 and 5/10 = 0.5 exactly: neither is "below" its own threshold.
    result = ambiguity_calibration([0, 1], [0.9, 0.9], [[0, 3], [10, 15]], [[0, 10], [10, 20]])
    assert result["normalized_length"].tolist() == [0.3, 0.5]
    assert (result["acc@0.3"], result["acc@0.5"], result["acc@0.7"]) == (0.0, 0.5, 1.0)


def test_custom_thresholds_and_cropping_at_both_ends():
    # Clip [10, 20]; the span [5, 30] is cropped to [10, 20]: length 1.0. Raw: 25 / 10 = 2.5.
    cropped = ambiguity_calibration([0], [0.4], [[5, 30]], [[10, 20]], length_thresholds=(0.25, 1.5))
    assert set(cropped) >= {"acc@0.25", "acc@1.5"} and "acc@0.3" not in cropped
    assert cropped["mLen"] == 1.0 and cropped["acc@1.5"] == 1.0
    raw = ambiguity_calibration([0], [0.4], [[5, 30]], [[10, 20]], length_thresholds=(1.5,), clip_to_window=False)
    assert raw["mLen"] == 2.5 and raw["acc@1.5"] == 0.0


def test_missing_clip_raises_naming_it():
    with pytest.raises(ValueError, match=r"clip_windows\[1\] has no prediction \(2 clip\(s\) lack one: 1, 3\)"):
        ambiguity_calibration([0, 2], [0.5, 0.5], [[0, 1], [20, 21]], [[0, 10], [10, 20], [20, 30], [30, 40]])
    with pytest.raises(ValueError, match=r"clip_windows\[0\] has no prediction"):
        ambiguity_calibration([], [], np.zeros((0, 2)), [[0, 10]])


@pytest.mark.parametrize(
    ("clips", "confidences", "segments", "windows", "message"),
    [
        ([0, 0], [0.5, 0.4], [[1, 2], [5.0, 2.0]], [[0, 10]], r"segments\[1\] = \[5.0, 2.0\] has start > end"),
        ([0, 0], [0.5, 0.4], [[1, 2], [np.nan, 2.0]], [[0, 10]], r"segments\[1\] = \[nan, 2.0\] is not finite"),
        ([0, 0], [0.5, np.nan], [[1, 2], [1, 3]], [[0, 10]], r"confidences\[1\] = nan is not finite"),
        ([0, 0], [0.5, 1.5], [[1, 2], [1, 3]], [[0, 10]], r"confidences\[1\] = 1.5 is outside \[0, 1\]"),
        ([0, 0], [0.5], [[1, 2], [1, 3]], [[0, 10]], "confidences has 1 entries but 2 are needed"),
        ([0, 0], [0.5, 0.4], [[1, 2]], [[0, 10]], "segments has 1 rows but prediction_clips has 2"),
        ([0, 1], [0.5, 0.4], [[1, 2], [1, 3]], [[0, 10]], r"prediction_clips\[1\] = 1 is outside 0..0"),
        ([0, -1], [0.5, 0.4], [[1, 2], [1, 3]], [[0, 10]], r"prediction_clips\[1\] = -1 is outside"),
        ([0.0], [0.5], [[1, 2]], [[0, 10]], "prediction_clips must hold integer clip indices"),
        ([0], [0.5], [[1, 2]], [[5.0, 5.0]], r"clip_windows\[0\] = \[5.0, 5.0\] has zero length"),
        ([0], [0.5], [[1, 2]], [[9.0, 5.0]], r"clip_windows\[0\] = \[9.0, 5.0\] has start > end"),
        ([0], [0.5], [[1, 2]], [[-1.0, 5.0]], r"clip_windows\[0\] = \[-1.0, 5.0\] starts before 0"),
        ([0], [0.5], [[1, 2]], np.zeros((0, 2)), "clip_windows is empty"),
        ([0], [0.5], [[11, 12]], [[0, 10]], r"segments\[0\] = \[11.0, 12.0\] does not touch clip_windows\[0\]"),
    ],
)
def test_ambiguity_calibration_rejects_bad_inputs(clips, confidences, segments, windows, message):
    with pytest.raises(ValueError, match=message):
        ambiguity_calibration(clips, confidences, segments, windows)


def test_ambiguity_calibration_rejects_bad_options():
    args = ([0], [0.5], [[1, 2]], [[0, 10]])
    with pytest.raises(ValueError, match=r"length_thresholds\[1\] = 0.3 repeats 0.3"):
        ambiguity_calibration(*args, length_thresholds=(0.3, 0.30))
    with pytest.raises(ValueError, match="length_thresholds is empty"):
        ambiguity_calibration(*args, length_thresholds=())
    with pytest.raises(ValueError, match=r"length_thresholds\[0\] must be positive"):
        ambiguity_calibration(*args, length_thresholds=(0.0,))
    with pytest.raises(ValueError, match="clip_to_window must be True or False"):
        ambiguity_calibration(*args, clip_to_window="yes")


@st.composite
def calibration_cases(draw):
    num_clips = draw(st.integers(1, 5))
    windows = []
    for c in range(num_clips):
        a = draw(st.integers(0, 20)) / 2
        windows.append([a, a + draw(st.integers(1, 20)) / 2])
    clips, confidences, segments = list(range(num_clips)), [], []  # every clip gets one prediction
    clips += draw(st.lists(st.integers(0, num_clips - 1), max_size=10))
    for c in clips:
        a, b = windows[c]
        start = draw(st.integers(0, 2 * int(b))) / 2  # starts at or before the window end
        end = max(start, a) + draw(st.integers(0, 30)) / 2  # ends at or after the window start
        segments.append([start, end])
        confidences.append(draw(st.integers(0, 4)) / 4)  # few values: many ties
    order = draw(st.permutations(range(len(clips))))
    return [clips[i] for i in order], [confidences[i] for i in order], [segments[i] for i in order], windows


@SETTINGS
@given(calibration_cases(), st.booleans())
def test_ambiguity_calibration_matches_reference_loop(case, crop):
    clips, confidences, segments, windows = case
    thresholds = (0.3, 0.5, 0.7, 1.2)
    result = ambiguity_calibration(clips, confidences, segments, windows, length_thresholds=thresholds, clip_to_window=crop)
    expected = reference_calibration(clips, confidences, segments, windows, thresholds, crop)
    assert result["num_clips"] == len(windows)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
