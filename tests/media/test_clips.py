"""Requests end to end on index-coded videos: exactly which frames each protocol samples."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from instract_eval.errors import InputError
from instract_eval.media import (
    ClipRequest,
    FrameSpec,
    apply_frame_spec,
    decode_clip_frames,
    instract_frame_spec,
    load_clip,
)
from tests.media.test_fixture_videos import frame_indices, write_video

RAW = dict(size=None, crop=None)  # keep decoded pixels as they are, to read the frame index


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6.0 s at 10 fps: frame i is shown during [i/10, (i+1)/10)."""
    return write_video(tmp_path_factory.mktemp("clips") / "cfr.mp4", num_frames=60, fps=10)


def sampled(request: ClipRequest, spec: FrameSpec) -> list[list[int]]:
    return frame_indices(decode_clip_frames(request, spec).frames).tolist()


def test_uniform_midpoints_over_the_whole_video(video: Path) -> None:
    assert sampled(ClipRequest(str(video)), FrameSpec(6, "uniform", **RAW)) == [[5, 15, 25, 35, 45, 55]]


def test_instract_style_min_length_context_and_grid(video: Path) -> None:
    # [2.0, 2.4] widened to 1 s -> [1.7, 2.7]; 1 s context -> [0.7, 3.7]; 5 fps grid: 15 cells
    # with midpoints 0.8, 1.0, ..., 3.6; picks floor(linspace(0, 14, 16)) = 0,0,1,...,14. Every
    # midpoint is exactly the start of a 10 fps frame, and ffmpeg's tie rule takes the frame before.
    request = ClipRequest(str(video), 2.0, 2.4, context_s=1.0, min_clip_s=1.0)
    expected = [7, 7] + list(range(9, 37, 2))
    assert sampled(request, FrameSpec(16, "uniform", fps=5.0, **RAW)) == [expected]


def test_context_is_clamped_at_both_ends(video: Path) -> None:
    spec = FrameSpec(3, "uniform", **RAW)
    # [0.2, 0.5] + 1 s context -> [0, 1.5]: midpoints 0.25, 0.75, 1.25
    assert sampled(ClipRequest(str(video), 0.2, 0.5, context_s=1.0), spec) == [[2, 7, 12]]
    # [5.5, 6.0] + 1 s context -> [4.5, 6.0]: midpoints 4.75, 5.25, 5.75
    assert sampled(ClipRequest(str(video), 5.5, 6.0, context_s=1.0), spec) == [[47, 52, 57]]
    # a segment running past the end of the file is cut at the end: [5.0, 6.0]
    assert sampled(ClipRequest(str(video), 5.0, 9.0), FrameSpec(2, "uniform", **RAW)) == [[52, 57]]


def test_fixed_fps_clip_centred_on_the_segment(video: Path) -> None:
    spec = FrameSpec(5, "fps", fps=10.0, **RAW)  # 0.5 s
    assert sampled(ClipRequest(str(video), 2.0, 3.0), spec) == [[23, 24, 25, 26, 27]]
    # near the end the clip moves inside the video instead of repeating the last frame
    assert sampled(ClipRequest(str(video), 5.8, 6.0), spec) == [[55, 56, 57, 58, 59]]
    # 20 fps on a 10 fps video shows every frame twice
    assert sampled(ClipRequest(str(video), 3.0, 3.0), FrameSpec(4, "fps", fps=20.0, **RAW)) == [[29, 29, 30, 30]]


def test_multi_clip_fps_spreads_clips_over_the_window(video: Path) -> None:
    request = ClipRequest(str(video), 1.0, 5.0, num_clips=3)
    clips = sampled(request, FrameSpec(5, "fps", fps=10.0, **RAW))
    assert clips == [[10, 11, 12, 13, 14], [28, 29, 30, 31, 32], [45, 46, 47, 48, 49]]


def test_multi_clip_uniform_splits_the_window(video: Path) -> None:
    clips = sampled(ClipRequest(str(video), num_clips=3), FrameSpec(2, "uniform", **RAW))
    assert clips == [[5, 15], [25, 35], [45, 55]]


def test_reversal_flips_time_only(video: Path) -> None:
    spec = FrameSpec(4, "uniform", **RAW)
    forward = decode_clip_frames(ClipRequest(str(video), 1.0, 3.0, num_clips=2), spec)
    backward = decode_clip_frames(ClipRequest(str(video), 1.0, 3.0, num_clips=2, reverse=True), spec)
    assert frame_indices(forward.frames).tolist() == [[11, 13, 16, 18], [21, 23, 26, 28]]
    assert frame_indices(backward.frames).tolist() == [[18, 16, 13, 11], [28, 26, 23, 21]]
    np.testing.assert_allclose(backward.times, forward.times[:, ::-1])
    assert backward.key != forward.key


def test_short_video_still_gives_every_frame_requested(tmp_path: Path) -> None:
    # 0.5 s video, InstrAct spec: window [0, 0.5] -> 3 grid cells (0.1, 0.3, 0.5, each a tie that
    # goes to the frame before): 16 frames, repeated, never padded.
    path = write_video(tmp_path / "short.mp4", num_frames=5, fps=10)
    request = ClipRequest(str(path), 0.1, 0.3, context_s=5.0, min_clip_s=5.0)
    frames = decode_clip_frames(request, FrameSpec(16, "uniform", fps=5.0, **RAW)).frames
    assert frame_indices(frames).tolist() == [[0] * 8 + [2] * 7 + [4]]
    assert load_clip(request, instract_frame_spec()).shape == (1, 16, 3, 224, 224)


def test_segment_outside_the_video_names_the_file(video: Path) -> None:
    with pytest.raises(InputError, match="outside the video") as caught:
        decode_clip_frames(ClipRequest(str(video), 8.0, 9.0), FrameSpec(4))
    assert caught.value.path == str(video)


def test_load_clip_applies_the_spec_to_the_decoded_frames(video: Path) -> None:
    request = ClipRequest(str(video), 1.0, 4.0, num_clips=2)
    spec = FrameSpec(3, "uniform", size=16, crop=12)
    clip = load_clip(request, spec)
    assert clip.shape == (2, 3, 3, 12, 12) and clip.dtype == torch.float32
    expected = apply_frame_spec(decode_clip_frames(request, spec).frames, spec)
    torch.testing.assert_close(clip, expected, rtol=0, atol=0)


# --- the official InstrAct pipeline, emulated with libavfilter's own `fps` filter ----------------


def ffmpeg_fps_filter_picks(path: Path, window_start: float, window_s: float, fps: float, num_frames: int) -> list[int]:
    """What ``ffmpeg -ss S -t D -vf fps=R`` then ``np.linspace(0, M - 1, N, dtype=int)`` keeps.

    Frames in [S, S + D) are shifted to start at 0 (accurate seek + trim), pushed through the
    real `fps` filter, and end-of-input is marked at the end of the last frame (a sentinel frame
    there, never output, then EOF), as ffmpeg's decoder does.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        source = [(float(f.pts * stream.time_base), f) for f in container.decode(stream)]
    kept = [(t - window_start, f) for t, f in source if window_start - 1e-9 <= t < window_start + window_s - 1e-9]
    frame_s = source[1][0] - source[0][0]
    graph = av.filter.Graph()
    time_base = Fraction(1, 100_000)
    buffer = graph.add_buffer(width=32, height=24, format="yuv420p", time_base=time_base)
    fps_filter = graph.add("fps", f"fps={fps}")
    sink = graph.add("buffersink")
    buffer.link_to(fps_filter)
    fps_filter.link_to(sink)
    graph.configure()
    outputs: list[int] = []

    def drain() -> None:
        while True:
            try:
                frame = sink.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            outputs.append(int(frame_indices(frame.to_ndarray(format="rgb24"))))

    sentinel = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 252, np.uint8), format="rgb24").reformat(format="yuv420p")
    for t, frame in [*kept, (kept[-1][0] + frame_s, sentinel)]:
        frame.pts, frame.time_base = round(t / time_base), time_base
        buffer.push(frame)
        drain()
    buffer.push(None)
    drain()
    assert 63 * 64 + 63 not in outputs  # the sentinel marks the end and is never shown
    return [outputs[i] for i in np.linspace(0, len(outputs) - 1, num_frames, dtype=int)]


@pytest.mark.parametrize(
    ("fps", "start", "window_s"),
    [(10, 0.0, 3.0), (10, 0.33, 2.0), (10, 1.05, 4.3), (25, 0.5, 2.0), (30, 0.21, 1.9), (30, 0.0, 1.3)],
)
def test_uniform_grid_matches_the_ffmpeg_fps_filter(tmp_path: Path, fps: int, start: float, window_s: float) -> None:
    path = write_video(tmp_path / f"src{fps}.mp4", num_frames=int(fps * (start + window_s)) + 3, fps=fps)
    spec = FrameSpec(8, "uniform", fps=5.0, **RAW)
    ours = sampled(ClipRequest(str(path), start, start + window_s), spec)[0]
    assert ours == ffmpeg_fps_filter_picks(path, start, window_s, 5.0, 8)
