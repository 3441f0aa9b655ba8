"""Requests, end to end: plan the timestamps, decode, reverse if asked, transform.

All temporal clips of a request come from one open file and one forward decoding pass over the
union of their timestamps (`decode_clip_frames`). `ClipDecoder` goes further for a run's many
requests: the requests of one video (overlapping windows, a clip and its reversal, the tasks that
share long videos) are served together from one pass over the union of all their timestamps, in
time order, which decodes each keyframe interval they need once instead of once per request; the
frames are those `decode_clip_frames` gives, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .decode import VideoReader
from .request import ClipRequest
from .sampling import ClipPlan, plan_request
from .spec import FrameSpec
from .transforms import apply_frame_spec

__all__ = ["ClipFrames", "ClipDecoder", "clip_key", "decode_clip_frames", "load_clip"]


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
    return _clip_frames(request, plan, decoded.frames, decoded.source_times)


def _clip_frames(request: ClipRequest, plan: ClipPlan, frames: torch.Tensor, source: np.ndarray) -> ClipFrames:
    """The decoded ``[K * T, ...]`` frames of ``plan`` shaped per clip, reversed if asked."""
    num_clips, num_frames = plan.times.shape
    frames = frames.reshape(num_clips, num_frames, *frames.shape[1:])
    times = plan.times
    source = source.reshape(num_clips, num_frames)
    if request.reverse:
        frames, times, source = frames.flip(1), times[:, ::-1].copy(), source[:, ::-1].copy()
    return ClipFrames(key=request.key(), frames=frames, times=times, source_times=source, plan=plan)


def load_clip(request: ClipRequest, spec: FrameSpec, *, threads: int | None = None) -> torch.Tensor:
    """The model input for ``request``: float32 ``[K, T, 3, H, W]`` (K temporal clips)."""
    return apply_frame_spec(decode_clip_frames(request, spec, threads=threads).frames, spec)


class ClipDecoder:
    """Decodes many requests, sharing one forward pass among the requests of each video.

    `decode` takes a list of requests and yields ``(position, ClipFrames or InputError)`` for
    each, as soon as its frames are in (so memory holds only the frames of requests in flight, not
    of a whole video). The last video's reader stays open between calls, and its pass continues
    where the previous call stopped when the next requests lie later in it: a loader that hands
    over batches of requests sorted by video and time decodes every GOP once over the whole run.
    Failures are per request and the same as `decode_clip_frames` gives: a segment outside the
    video fails alone, and when the shared pass fails (a truncated file) the requests not yet
    served are decoded one by one, so each gets its own frames or its own error.
    """

    def __init__(self, spec: FrameSpec, *, threads: int | None = None):
        self.spec = spec
        self.threads = threads
        self.frames_decoded = 0  # over every reader this decoder opened
        self._open: VideoReader | None = None
        self._pid = os.getpid()

    def close(self) -> None:
        if self._open is not None:
            self.frames_decoded += self._open.frames_decoded
            self._open.close()
            self._open = None

    def __enter__(self) -> ClipDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decode(self, requests: Sequence[ClipRequest], upcoming: Sequence[ClipRequest] = ()
               ) -> Iterator[tuple[int, ClipFrames | InputError]]:
        """``(i, frames or error)`` for every ``requests[i]``, grouped by video (first-seen order).

        ``upcoming``: the requests of the next call, if known. Frames they need that this pass
        goes through anyway are converted and kept, so a next call whose windows overlap this
        one's (a batch boundary inside a run of overlapping windows) needs no second pass.
        """
        groups: dict[str, list[int]] = {}
        for position, request in enumerate(requests):
            groups.setdefault(request.path, []).append(position)
        for path, members in groups.items():
            later = [request for request in upcoming if request.path == path]
            yield from self._decode_video(path, [(position, requests[position]) for position in members], later)

    def _reader(self, path: str) -> VideoReader:
        if self._pid != os.getpid():  # a forked copy must not touch its parent's open file
            self._open, self._pid = None, os.getpid()
        if self._open is not None and self._open.path == path:
            return self._open
        self.close()
        self._open = VideoReader(path, threads=self.threads)
        return self._open

    def _decode_video(self, path: str, members: list[tuple[int, ClipRequest]], upcoming: list[ClipRequest]
                      ) -> Iterator[tuple[int, ClipFrames | InputError]]:
        try:
            reader = self._reader(path)
        except InputError as error:
            for position, _ in members:
                yield position, error
            return
        planned: list[tuple[int, ClipRequest, ClipPlan]] = []
        for position, request in members:
            try:
                planned.append((position, request, plan_request(request, self.spec, reader.info.duration)))
            except ValueError as error:
                yield position, InputError(str(error), path=request.path)
        if not planned:
            return
        flat = np.concatenate([plan.times.reshape(-1) for _, _, plan in planned])
        unique, inverse = np.unique(flat, return_inverse=True)
        ahead = []
        for request in upcoming:
            try:
                ahead.append(plan_request(request, self.spec, reader.info.duration).times.reshape(-1))
            except ValueError:
                continue
        if ahead:  # converted in passing, kept in the reader for the next call; not served here
            extra = np.concatenate(ahead)
            extra = np.setdiff1d(extra[(extra > unique[0]) & (extra < unique[-1])], unique)
            unique = np.concatenate([unique, extra])
            order_all = np.argsort(unique, kind="stable")
            rank = np.empty_like(order_all)
            rank[order_all] = np.arange(len(unique))
            inverse = rank[inverse]
            unique = unique[order_all]
        bounds = np.cumsum([0] + [plan.times.size for _, _, plan in planned])
        needs = [inverse[bounds[k]:bounds[k + 1]] for k in range(len(planned))]
        # Served in the order their last frame comes; `low[n]`: the earliest frame any request from
        # the n-th on still needs, so frames before it can be let go.
        order = sorted(range(len(planned)), key=lambda k: (int(needs[k].max()), int(needs[k].min()), k))
        low = np.minimum.accumulate([int(needs[k].min()) for k in order][::-1])[::-1]
        arrays: dict[int, np.ndarray] = {}
        source = np.zeros(len(unique), dtype=np.float64)
        served = 0
        try:
            for index, array, shown in reader.iter_frames(unique):
                arrays[index], source[index] = array, shown
                while served < len(order) and needs[order[served]].max() <= index:
                    k = order[served]
                    position, request, plan = planned[k]
                    frames = torch.from_numpy(np.stack([arrays[int(u)] for u in needs[k]]))
                    yield position, _clip_frames(request, plan, frames, source[needs[k]])
                    served += 1
                    if served < len(order):
                        for stale in [u for u in arrays if u < low[served]]:
                            del arrays[stale]
        except InputError:
            # The shared pass failed; one pass per request left gives each its own frames or error.
            self.close()
            for k in order[served:]:
                position, request, _ = planned[k]
                try:
                    decoded = decode_clip_frames(request, self.spec, threads=self.threads)
                except InputError as error:
                    yield position, error
                else:
                    yield position, decoded
