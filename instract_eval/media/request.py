"""What a task asks to see: one clip request (video, segment, protocol window, clips, reversal).

Tasks describe the *protocol* side of sampling (which segment, how much context, the minimum
length, how many temporal clips, time reversal as the VR perturbation); the model describes the
*frame* side in its `FrameSpec`. A request plus a spec fix the decoded tensor completely, so
``(request.key(), spec.key())`` is the cache identity of an encoded clip and the runner decodes
each unique pair once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["ClipRequest"]


@dataclass(frozen=True)
class ClipRequest:
    """A segment ``[start, end]`` (seconds from the start of the video) of the video at ``path``.

    ``context_s``: seconds added on each side before sampling (InstrAct: 5). ``min_clip_s``:
    segments shorter than this are widened to it first (InstrAct: 5). ``num_clips``: temporal
    clips spread over the window (ACE: 3, averaged by the caller). ``reverse``: frames in reverse
    time order. ``video_id``: the name written into `key` instead of ``path``, so that cache
    keys do not depend on where the videos live on this machine. ``end=None`` means "to the end
    of the video" (whole-video requests). The exact window rules are in `sampling.resolve_window`.
    """

    path: str
    start: float = 0.0
    end: float | None = None
    context_s: float = 0.0
    min_clip_s: float = 0.0
    num_clips: int = 1
    reverse: bool = False
    video_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))
        for name in ("start", "context_s", "min_clip_s"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.end is not None:
            end = float(self.end)
            if not math.isfinite(end):
                raise ValueError(f"end must be finite or None, got {self.end!r}")
            if end < self.start:
                raise ValueError(f"end ({end}) is before start ({self.start}) for {self.path}")
            object.__setattr__(self, "end", end)
        if self.context_s < 0 or self.min_clip_s < 0:
            raise ValueError("context_s and min_clip_s must be >= 0")
        if isinstance(self.num_clips, bool) or not isinstance(self.num_clips, int) or self.num_clips < 1:
            raise ValueError(f"num_clips must be a positive integer, got {self.num_clips!r}")
        object.__setattr__(self, "reverse", bool(self.reverse))

    def key(self) -> str:
        """Stable text identity of the request (not of the frame spec: see `clip_key`)."""
        name = self.video_id if self.video_id is not None else self.path
        end = "end" if self.end is None else repr(self.end)
        return (
            f"{name}@{self.start!r}-{end}"
            f";ctx={self.context_s!r};min={self.min_clip_s!r};clips={self.num_clips}"
            + (";reversed" if self.reverse else "")
        )
