"""Clip windows, temporal clips and timestamps, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from instract_eval.media import ClipRequest, FrameSpec, plan_request, resolve_window, sample_times, split_clips
from instract_eval.media.sampling import GRID_TIE_S


def official_instract_window(start: float, end: float, min_time: float, context: float) -> tuple[float, float]:
    """The official loader's arithmetic (train_loader.py), written out: min length, then context."""
    if end - start < min_time:
        difference = min_time - (end - start)
        start = max(0.0, start - difference / 2.0)
        end = start + min_time
    return max(0.0, start - context), end + context


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (30.0, 40.0, (25.0, 45.0)),  # long enough: context only
        (30.0, 31.0, (23.0, 38.0)),  # widened symmetrically to 5 s, then 5 s each side
        (1.0, 2.0, (0.0, 10.0)),  # widening would start before 0: starts at 0, keeps 5 s
        (95.0, 99.0, (89.5, 100.0)),  # trimmed at the end of a 100 s video
        (0.0, 0.0, (0.0, 10.0)),
    ],
)
def test_instract_window_matches_official_arithmetic_then_clamps(start: float, end: float, expected: tuple) -> None:
    window = resolve_window(start, end, 100.0, context_s=5.0, min_clip_s=5.0)
    assert window == pytest.approx(expected)
    lo, hi = official_instract_window(start, end, 5.0, 5.0)
    assert window == pytest.approx((lo, min(hi, 100.0)))


def test_window_without_protocol_padding_and_whole_video() -> None:
    assert resolve_window(2.0, 3.0, 10.0) == (2.0, 3.0)
    assert resolve_window(0.0, None, 10.0) == (0.0, 10.0)
    assert resolve_window(-1.0, 3.0, 10.0) == (0.0, 3.0)
    assert resolve_window(4.0, 4.0, 10.0) == (4.0, 4.0)  # an instant


@pytest.mark.parametrize(("start", "end", "context"), [(12.0, 13.0, 0.0), (-5.0, -2.0, 1.0)])
def test_window_outside_the_video_is_an_error(start: float, end: float, context: float) -> None:
    with pytest.raises(ValueError, match="outside the video"):
        resolve_window(start, end, 10.0, context_s=context)


def test_context_can_rescue_a_segment_just_past_the_end() -> None:
    # The official loader decodes whatever the context reaches; so do we.
    assert resolve_window(10.5, 11.0, 10.0, context_s=1.0) == (9.5, 10.0)


def test_uniform_midpoints() -> None:
    times = sample_times((2.0, 6.0), FrameSpec(4, "uniform"))
    np.testing.assert_allclose(times, [2.5, 3.5, 4.5, 5.5])


def test_uniform_on_a_grid_is_the_official_linspace_over_grid_cells() -> None:
    # InstrAct: 15 s window at 5 fps -> 75 cells; np.linspace(0, 74, 16, dtype=int) of them.
    times = sample_times((10.0, 25.0), FrameSpec(16, "uniform", fps=5.0))
    picks = np.linspace(0, 74, 16, dtype=int)
    assert list(picks) == [0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49, 54, 59, 64, 69, 74]
    # cell midpoints, a hair early so that a source frame exactly on a midpoint is not chosen (ffmpeg)
    np.testing.assert_allclose(times, 10.0 + (picks + 0.5) / 5.0 - GRID_TIE_S, rtol=0, atol=1e-12)


def test_uniform_grid_rounds_the_cell_count_and_repeats_when_short() -> None:
    spec = FrameSpec(4, "uniform", fps=5.0)
    # 1.1 s at 5 fps: 5.5 cells round to 6 (midpoints 0.1 .. 1.1); picks floor(linspace(0, 5, 4)) = [0, 1, 3, 5]
    np.testing.assert_allclose(sample_times((0.0, 1.1), spec) + GRID_TIE_S, [0.1, 0.3, 0.7, 1.1])
    # 0.5 s at 5 fps: round(2.5) -> 3 cells [0.1, 0.3, 0.5]; 4 picks floor(linspace(0, 2, 4)) = [0, 0, 1, 2]
    np.testing.assert_allclose(sample_times((0.0, 0.5), spec) + GRID_TIE_S, [0.1, 0.1, 0.3, 0.5])
    # an instant: one cell, capped at the window end
    np.testing.assert_allclose(sample_times((3.0, 3.0), spec) + GRID_TIE_S, [3.0] * 4)


def test_fixed_fps_times_are_cell_centres() -> None:
    np.testing.assert_allclose(sample_times((1.0, 1.5), FrameSpec(5, "fps", fps=10.0)), [1.05, 1.15, 1.25, 1.35, 1.45])


def test_uniform_clips_are_equal_consecutive_parts() -> None:
    clips = split_clips((0.0, 6.0), 3, FrameSpec(2), duration=10.0)
    assert clips == ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0))


def test_fps_single_clip_is_centred_on_the_window() -> None:
    spec = FrameSpec(30, "fps", fps=10.0)  # ACE ATA: 3 s
    assert split_clips((10.0, 20.0), 1, spec, duration=60.0) == ((13.5, 16.5),)
    assert split_clips((10.0, 11.0), 1, spec, duration=60.0) == ((9.0, 12.0),)  # longer than the segment


def test_fps_multi_clips_span_the_window_evenly() -> None:
    spec = FrameSpec(5, "fps", fps=10.0)  # 0.5 s clips
    clips = split_clips((1.0, 5.0), 3, spec, duration=10.0)
    np.testing.assert_allclose(clips, [(1.0, 1.5), (2.75, 3.25), (4.5, 5.0)])
    np.testing.assert_allclose(split_clips((1.0, 1.2), 3, spec, duration=10.0), [(0.85, 1.35)] * 3)


def test_fps_clips_are_shifted_inside_the_video() -> None:
    spec = FrameSpec(30, "fps", fps=10.0)
    assert split_clips((0.0, 1.0), 1, spec, duration=60.0) == ((0.0, 3.0),)
    assert split_clips((59.0, 60.0), 1, spec, duration=60.0) == ((57.0, 60.0),)
    assert split_clips((0.0, 2.0), 1, spec, duration=2.0) == ((-0.5, 2.5),)  # video shorter than a clip


def test_plan_combines_window_clips_and_times() -> None:
    request = ClipRequest("v.mp4", 2.0, 2.4, context_s=1.0, min_clip_s=1.0, num_clips=2)
    plan = plan_request(request, FrameSpec(2, "uniform"), duration=6.0)
    assert plan.window == pytest.approx((0.7, 3.7))
    np.testing.assert_allclose(plan.clips, [(0.7, 2.2), (2.2, 3.7)])
    np.testing.assert_allclose(plan.times, [[1.075, 1.825], [2.575, 3.325]])
