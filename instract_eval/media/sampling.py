"""Where in time frames are taken: clip windows, temporal clips and frame timestamps.

Pure functions on floats (seconds, measured from the first frame of the video), so every rule
here can be checked without a video. The decoder then shows, for each timestamp, the frame
*displayed* at that instant (`decode.py`).

Window (`resolve_window`), in this order, following the official InstrAct loader
(``model/data/train_loader.py`` ``_prepare_sample`` and ``_decode_video``, reused by its
``eval_loader.py``):

1. ``end=None`` means the end of the video.
2. Minimum length: a segment shorter than ``min_clip_s`` is widened symmetrically to exactly
   ``min_clip_s``; if that would start before 0 it starts at 0 instead and keeps the length
   (``start = max(0, start - deficit / 2); end = start + min_clip_s``). Like the official code
   it is *not* shifted back at the end of the video; step 4 trims it there.
3. Context: ``context_s`` is added on both sides (``start - context_s``, ``end + context_s``).
4. Clamping: the window is cut to ``[0, duration]``. The official code does the same implicitly
   (``max(0, ...)`` at the start, ffmpeg stopping at the end of the file). A window that is empty
   after clamping (the whole segment lies outside the video) is an error; a zero-length window
   inside the video is a single instant and gives the frame shown then.

Temporal clips (`split_clips`), ``K = num_clips``:

- ``sampling="uniform"``: the window is cut into ``K`` equal consecutive parts (TSN-style test
  clips), each sampled on its own. ``K = 1`` is the whole window.
- ``sampling="fps"``: each clip lasts ``L = num_frames / fps``. ``K = 1``: centred on the window
  midpoint (ACE/SRT: centred on the segment midpoint). ``K > 1``: centres evenly spaced so the
  first clip starts at the window start and the last one ends at the window end (centres
  ``a + L/2 + k (b - a - L) / (K - 1)``); a window shorter than ``L`` gives ``K`` copies of the
  centred clip. A clip that sticks out of ``[0, duration]`` is shifted inside, keeping its length
  and spacing, so no frame is repeated to pad; only a video shorter than ``L`` gets one clip
  centred on the video, whose outer timestamps show the first and last frames.

Timestamps in a clip ``[a, b]`` (`sample_times`):

- ``"fps"``: ``a + (i + 1/2) / fps``, ``i = 0..N-1`` (the centres of ``N`` cells of ``1/fps``,
  symmetric about the clip centre).
- ``"uniform"`` with ``fps=None``: ``a + (i + 1/2) (b - a) / N``, the midpoints of ``N`` equal
  parts (endpoints would put the last frame at the window end, which is past the last frame
  whenever the window ends at the end of the video).
- ``"uniform"`` with ``fps=r`` (InstrAct: 16 frames, r = 5): the official loader resamples the
  window with ffmpeg's ``fps`` filter and keeps ``np.linspace(0, M - 1, N, dtype=int)`` of the
  ``M`` resampled frames (first and last included, indices truncated). Checked against
  libavfilter's own ``fps`` filter (``tests/media/test_clips.py``): its output frame ``k`` is the
  last source frame whose timestamp is *strictly* before ``a + (k + 1/2) / r`` (it rounds source
  timestamps to the grid half away from zero, so a source frame exactly on a cell midpoint
  belongs to the next cell), and it emits as many frames as the input lasts in grid steps,
  rounded. So here: grid ``g_k = a + (k + 1/2) / r - 10 us`` (the 10 microseconds turn the
  decoder's "frame shown at t" into "shown just before t", which only matters on exact ties, and
  these are common: 10, 25 and 30 fps sources all have frames on the midpoints of a 5 fps grid),
  ``M = max(1, floor((b - a) r + 1/2))``, times ``g[floor(linspace(0, M - 1, N))]`` (capped at
  ``b``). Known differences from the official code: it asks ffmpeg for 0.1 s more than the window
  (``-t D + 0.1``), so its grid can hold one cell more (later frames up to one ``1/r`` step
  later); when ``M < N`` it pads with black frames where we repeat grid frames (floor of the
  linspace), never returning fewer frames; it resizes with ffmpeg's bicubic ``scale`` and rounds
  to uint8 (see `transforms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .request import ClipRequest
from .spec import FrameSpec

__all__ = ["GRID_TIE_S", "ClipPlan", "resolve_window", "split_clips", "sample_times", "plan_request"]

# How far grid times sit before the cell midpoint: ffmpeg's tie rule (module docstring). Larger
# than the decoder's 1 us tolerance, far smaller than any frame interval.
GRID_TIE_S = 1e-5


@dataclass(frozen=True)
class ClipPlan:
    """The resolved sampling of one request: window, clips and timestamps ``[K, T]`` in seconds."""

    window: tuple[float, float]
    clips: tuple[tuple[float, float], ...]
    times: np.ndarray
    duration: float


def resolve_window(
    start: float,
    end: float | None,
    duration: float,
    *,
    context_s: float = 0.0,
    min_clip_s: float = 0.0,
) -> tuple[float, float]:
    """The sampling window of a segment: minimum length, then context, then clamping (see module doc).

    Raises ValueError when the window is empty after clamping to ``[0, duration]``.
    """
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"video duration must be positive, got {duration!r}")
    start = float(start)
    end = duration if end is None else float(end)
    if end < start:
        raise ValueError(f"segment end {end} is before its start {start}")
    if end - start < min_clip_s:
        deficit = min_clip_s - (end - start)
        start = max(0.0, start - deficit / 2.0)
        end = start + min_clip_s
    lo = max(0.0, start - context_s)
    hi = min(duration, end + context_s)
    if lo > hi:
        raise ValueError(
            f"segment [{start:g}, {end:g}] s (with {context_s:g} s context) lies outside the video "
            f"[0, {duration:g}] s"
        )
    return lo, hi


def split_clips(
    window: tuple[float, float], num_clips: int, spec: FrameSpec, duration: float
) -> tuple[tuple[float, float], ...]:
    """The ``num_clips`` temporal clips of a window (rules in the module docstring)."""
    a, b = window
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    length = spec.clip_duration_s
    if length is None:
        step = (b - a) / num_clips
        return tuple((a + k * step, a + (k + 1) * step if k < num_clips - 1 else b) for k in range(num_clips))
    if num_clips == 1 or b - a <= length:
        centres = [(a + b) / 2.0] * num_clips
    else:
        spacing = (b - a - length) / (num_clips - 1)
        centres = [a + length / 2.0 + k * spacing for k in range(num_clips)]
    return tuple(_fit_clip(c - length / 2.0, length, duration) for c in centres)


def _fit_clip(lo: float, length: float, duration: float) -> tuple[float, float]:
    if length >= duration:
        lo = (duration - length) / 2.0
    elif lo < 0.0:
        lo = 0.0
    elif lo + length > duration:
        lo = duration - length
    return lo, lo + length


def sample_times(clip: tuple[float, float], spec: FrameSpec) -> np.ndarray:
    """The ``spec.num_frames`` timestamps (float64 seconds, ascending) of one clip."""
    a, b = clip
    n = spec.num_frames
    i = np.arange(n, dtype=np.float64)
    if spec.sampling == "fps":
        assert spec.fps is not None
        return a + (i + 0.5) / spec.fps
    if spec.fps is None:
        return a + (i + 0.5) * (b - a) / n
    cells = max(1, math.floor((b - a) * spec.fps + 0.5))
    grid = np.minimum(a + (np.arange(cells, dtype=np.float64) + 0.5) / spec.fps, b) - GRID_TIE_S
    picks = np.linspace(0, cells - 1, n).astype(np.int64)
    return grid[picks]


def plan_request(request: ClipRequest, spec: FrameSpec, duration: float) -> ClipPlan:
    """Window, clips and timestamps for a request on a video of ``duration`` seconds.

    Timestamps are always in forward time order; reversal is applied to the decoded frames.
    """
    window = resolve_window(
        request.start, request.end, duration, context_s=request.context_s, min_clip_s=request.min_clip_s
    )
    clips = split_clips(window, request.num_clips, spec, duration)
    times = np.stack([sample_times(clip, spec) for clip in clips])
    return ClipPlan(window=window, clips=clips, times=times, duration=duration)
