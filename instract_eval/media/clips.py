"""One request, end to end: plan the timestamps, decode once, reverse if asked, transform.

This is the unit of work a DataLoader worker does. All temporal clips of a request come from one
open file and one forward decoding pass over the union of their timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .decode import VideoReader
from .request import ClipRequest
from .sampling import ClipPlan, plan_request
from .spec import FrameSpec
from .transforms import apply_frame_spec

__all__ = ["ClipFrames", "clip_key", "decode_clip_frames", "load_clip"]


@dataclass(frozen=True)
class ClipFrames:
    """Decoded frames of a request before pixel transforms.

    ``frames``: uint8 ``[K, T, H, W, 3]``; ``times``: the sampled instants ``[K, T]``;
    ``source_times``: presentation times of the frames used ``[K, T]``. All three are in output
    order, i.e. already reversed along T for a reversed request.
    """

    key: str
    frames: torch.Tensor
    times: np.ndarray
    source_times: np.ndarray
    plan: ClipPlan


def clip_key(request: ClipRequest, spec: FrameSpec) -> str:
    """Cache identity of an encoded clip: the request and the frame spec together."""
    return f"{request.key()}#{spec.key()}"


def decode_clip_frames(request: ClipRequest, spec: FrameSpec, *, threads: int | None = None) -> ClipFrames:
    """Decode the frames of every temporal clip of ``request`` (uint8, no resizing)."""
    with VideoReader(request.path, threads=threads) as reader:
        try:
            plan = plan_request(request, spec, reader.info.duration)
        except ValueError as error:
            raise InputError(str(error), path=request.path) from error
        decoded = reader.frames_at(plan.times.reshape(-1))
    num_clips, num_frames = plan.times.shape
    frames = decoded.frames.reshape(num_clips, num_frames, *decoded.frames.shape[1:])
    times = plan.times
    source = decoded.source_times.reshape(num_clips, num_frames)
    if request.reverse:
        frames, times, source = frames.flip(1), times[:, ::-1].copy(), source[:, ::-1].copy()
    return ClipFrames(key=request.key(), frames=frames, times=times, source_times=source, plan=plan)


def load_clip(request: ClipRequest, spec: FrameSpec, *, threads: int | None = None) -> torch.Tensor:
    """The model input for ``request``: float32 ``[K, T, 3, H, W]`` (K temporal clips)."""
    return apply_frame_spec(decode_clip_frames(request, spec, threads=threads).frames, spec)
