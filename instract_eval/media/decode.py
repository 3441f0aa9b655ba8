"""Decode the frames shown at given instants of a video file, with PyAV.

Why this shape: samplers think in seconds, not frame indices, so that variable frame rates,
videos whose first frame is not at 0 and windows that run past the end all have one meaning.
For each requested time ``t`` (seconds from the stream's start time, the reference ffmpeg's
``-ss`` uses too; normally the timestamp of the first frame) the decoder returns the frame whose
presentation interval ``[pts_i, pts_{i+1})`` contains ``t`` (the frame a player would show),
with a 1 microsecond tolerance so that ``t = k / fps`` computed in floating point lands on frame
``k``. A time before the first frame gets the first frame; a time after the last frame gets the
last frame, unless it is more than `END_TOLERANCE_S` (or two frame durations) past the end of
the last frame: then the file is shorter than its metadata says (a truncated download) and that
is an error, never a silently shorter or padded clip.

Decoding seeks to the last keyframe at or before the first requested time and decodes forward,
converting to RGB only the frames that are used. If seeking fails (raw streams), gives no frame
at all (MPEG-PS near its end) or lands after the requested time, the reader decodes from the
beginning of the file instead of returning wrong frames. A frame without a timestamp (MPEG-PS,
raw H.264) is placed one frame duration after the previous one, as ffmpeg's best-effort
timestamps do.

Every failure to open or decode (missing file, not a video, corrupt data, no video stream)
raises `InputError` naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np
import torch
from av.error import FFmpegError

from ..errors import InputError

__all__ = ["END_TOLERANCE_S", "SEEK_GAP_S", "VideoInfo", "DecodedFrames", "VideoReader", "probe_video", "decode_frames",
           "decoder_threads", "read_last_frame"]

END_TOLERANCE_S = 1.0
# Without a container index, `VideoReader.iter_frames` seeks across gaps longer than this (no GOP
# of a real file is longer, so the seek lands after the frames already decoded).
SEEK_GAP_S = 10.0
_EPS = 1e-6
_RECENT_FRAMES = 256


class _SeekMissed(Exception):
    """A seek landed after the first requested time, on an untimed frame, or on no frame."""


@dataclass
class _Scan:
    """The state of one forward decoding pass, kept between calls so a later one can continue it.

    ``current``: the frame decoded last but not passed yet (with its time and RGB array if made);
    ``previous``: the frame before it, which shows every time before ``current``'s.
    """

    frames: Iterator[av.VideoFrame]
    seek: bool
    previous: av.VideoFrame | None = None
    previous_time: float = 0.0
    previous_array: np.ndarray | None = None
    current: tuple[av.VideoFrame, float, np.ndarray | None] | None = None
    exhausted: bool = False
    last_served: float = -math.inf
    previous_first: bool = False  # whether `previous` is the file's first frame (shown from -inf)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream (times in seconds)."""

    path: str
    duration: float
    width: int
    height: int
    average_fps: float | None
    num_frames: int | None


class DecodedFrames(NamedTuple):
    """Frames for the requested times, in request order.

    ``frames``: uint8 ``[T, H, W, 3]`` RGB. ``source_times``: float64 ``[T]``, the presentation
    time of the frame used for each request. ``frames_decoded``: how many frames the decoder
    produced (a measure of the work done, used by tests and the benchmark).
    """

    frames: torch.Tensor
    source_times: np.ndarray
    frames_decoded: int


class VideoReader:
    """An open video file; use as a context manager. Not shareable across processes."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError("video file not found", path=self.path)
        if not os.path.isfile(self.path):
            raise InputError("not a regular file", path=self.path)
        self._threads = threads
        self._scan: _Scan | None = None
        self._keyframes: np.ndarray | None | bool = False  # False: not read yet
        # (shown from, shown until, rgb, its time) of the last frames converted and passed, for a
        # later `iter_frames` call whose first times are earlier (two batches' windows overlap).
        self._recent: deque[tuple[float, float, np.ndarray, float]] = deque(maxlen=_RECENT_FRAMES)
        self.frames_decoded = 0  # by this reader so far, for the record and the benchmarks
        self._open()
        try:
            self._time_base: Fraction = self._stream.time_base or Fraction(1, 1_000_000)
            self._start_pts = self._stream.start_time or 0
            self._seconds_per_tick = float(self._time_base)  # exact Fractions cost ~10% per frame
            self._last_time: float | None = None  # of the last decoded frame, for error messages
            self._next_time: float | None = None  # extrapolated time of the next frame
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    def _open(self) -> None:
        try:
            self._container = av.open(self.path, mode="r")
        except (FFmpegError, OSError, ValueError) as error:
            raise InputError(f"cannot open video ({_reason(error)})", path=self.path) from error
        if not self._container.streams.video:
            self._container.close()
            raise InputError("file has no video stream", path=self.path)
        self._stream = self._container.streams.video[0]
        self.threads = decoder_threads() if self._threads is None else self._threads
        if self.threads > 1:
            # Frame and slice threading: a one-slice H.264 file (most downloads) gets nothing from
            # slice threading, FFmpeg's default; frames decode the same either way.
            self._stream.thread_type = "AUTO"
        self._stream.thread_count = self.threads
        self._at_start = True

    def _rewind(self) -> None:
        """Back to the first frame; raw streams cannot seek, so reopen them."""
        self._scan = None
        if self._at_start:
            return
        try:
            self._container.seek(0)
        except FFmpegError:
            self._container.close()
            self._open()
        self._at_start = True

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _probe(self) -> VideoInfo:
        stream = self._stream
        duration = None
        if stream.duration:
            duration = float(stream.duration * self._time_base)
        elif self._container.duration:
            start = self._container.start_time or 0
            duration = (self._container.duration - max(0, self._start_pts_us() - start)) / av.time_base
        if duration is None or not math.isfinite(duration) or duration <= 0:
            duration = self._duration_from_packets()
            # Counting the packets of a raw stream rewinds it by reopening the container, which
            # frees the stream object read above: touching it then reads freed memory (a segfault).
            stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        width = stream.codec_context.width
        height = stream.codec_context.height
        if not width or not height:
            raise InputError("video stream has no frame size", path=self.path)
        return VideoInfo(
            path=self.path,
            duration=float(duration),
            width=int(width),
            height=int(height),
            average_fps=float(rate) if rate else None,
            num_frames=int(stream.frames) if stream.frames else None,
        )

    def _start_pts_us(self) -> int:
        return int(self._start_pts * self._time_base * av.time_base)

    def _duration_from_packets(self) -> float:
        """Fallback when the container has no duration: the end of the last packet (no decoding).

        Packets without a timestamp (raw elementary streams) follow the previous one.
        """
        end = None
        position = self._start_pts
        rate = self._stream.average_rate or self._stream.guessed_rate
        default_duration = int(1 / (rate * self._time_base)) if rate else 0
        try:
            self._at_start = False
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flushing packet at the end
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                position = (stamp if stamp is not None else position) + (packet.duration or default_duration)
                end = position if end is None else max(end, position)
            self._rewind()
        except FFmpegError as error:
            raise InputError(f"cannot read video ({_reason(error)})", path=self.path) from error
        if end is None or end <= self._start_pts:
            raise InputError("video stream has no frames or no timing", path=self.path)
        return float((end - self._start_pts) * self._time_base)

    def frames_at(self, times: Sequence[float] | np.ndarray) -> DecodedFrames:
        """The frames shown at ``times`` (seconds from the stream start), in the order given."""
        requested = np.asarray(times, dtype=np.float64).reshape(-1)
        if requested.size == 0:
            raise ValueError("no timestamps requested")
        if not np.all(np.isfinite(requested)):
            raise ValueError(f"timestamps must be finite, got {requested}")
        unique, inverse = np.unique(requested, return_inverse=True)
        arrays: list[np.ndarray] = [None] * len(unique)  # type: ignore[list-item]
        source = np.zeros(len(unique), dtype=np.float64)
        before = self.frames_decoded
        self._scan = None  # a fresh pass: seek (or rewind) for the first time
        for index, array, shown in self._serve_run(unique):
            arrays[index], source[index] = array, shown
        self._scan = None
        frames = torch.from_numpy(np.stack([arrays[k] for k in inverse]))
        return DecodedFrames(frames=frames, source_times=source[inverse], frames_decoded=self.frames_decoded - before)

    def iter_frames(self, times: np.ndarray) -> Iterator[tuple[int, np.ndarray, float]]:
        """``(i, rgb, shown_time)`` for each of the ascending, distinct ``times``, in that order.

        The frames are those `frames_at` gives, but the pass is shared: the decoder goes forward
        through the stream and seeks only where a keyframe lies between two consecutive times
        (from the container's index; without one, where they are more than `SEEK_GAP_S` apart),
        so every keyframe interval some time falls in is decoded once, and frames are converted
        to RGB only when some time shows them. A caller that serves many clip requests of one
        video from it (`clips.iter_clip_frames`) decodes each GOP once instead of once per request.
        Consecutive calls continue the same pass when the next call's first time is later than
        the previous call's last one and no keyframe lies between.
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if times.size == 0:
            return
        if np.any(np.diff(times) <= 0) or not np.all(np.isfinite(times)):
            raise ValueError("iter_frames needs finite, strictly ascending times")
        keyframes = self._keyframe_times()
        run_start = 0
        for end in range(1, len(times) + 1):
            if end < len(times) and not self._worth_seeking(keyframes, times[end - 1], times[end]):
                continue
            run = times[run_start:end]
            scan = self._scan
            if scan is not None and run_start == 0:  # times the previous call's frames already show
                for index, array, shown in self._from_recent(scan, run):
                    yield index, array, shown
                    run_start = index + 1
                run = times[run_start:end]
                if not len(run):
                    run_start = end
                    continue
            if scan is not None and run[0] > scan.last_served and \
                    not self._worth_seeking(keyframes, scan.last_served, run[0]):
                served = self._serve(scan, run)  # carry on forward from the previous call
            else:
                served = self._serve_run(run)
            for index, array, shown in served:
                yield run_start + index, array, shown
            run_start = end

    def _held(self) -> list[tuple[float, float, np.ndarray, float]]:
        """The current pass's frame shown at its `last_served` time, as a `_recent` entry (or none)."""
        scan = self._scan
        if scan is None or scan.current is None or scan.previous is None or scan.previous_array is None:
            return []
        start = -math.inf if scan.previous_first else scan.previous_time
        return [(start, scan.current[1], scan.previous_array, scan.previous_time)]

    def _from_recent(self, scan: _Scan, times: np.ndarray) -> Iterator[tuple[int, np.ndarray, float]]:
        """The leading ``times`` shown by frames converted recently, until one is not."""
        held = self._held()
        for index, time in enumerate(times):
            if time > scan.last_served:
                return
            for start, until, array, shown in [*self._recent, *held]:
                if start <= time + _EPS < until:
                    yield index, array, shown
                    break
            else:
                return

    def _serve_run(self, times: np.ndarray) -> Iterator[tuple[int, np.ndarray, float]]:
        """A new pass for ascending ``times``: seek before the first, or start from the beginning
        when the seek fails, lands after the first time or gives no frame (see the module doc)."""
        try:
            for seek in ((True, False) if times[0] > 0 else (False,)):
                scan = self._begin(times[0], seek=seek)
                if scan is None:
                    continue
                try:
                    yield from self._serve(scan, times)
                except _SeekMissed:
                    continue
                return
        except FFmpegError as error:
            self._scan = None
            where = "" if self._last_time is None else f" after {self._last_time:.3f} s"
            raise InputError(
                f"cannot decode video{where} ({_reason(error)}; truncated or corrupt file?)", path=self.path
            ) from error

    def _begin(self, first_time: float, *, seek: bool) -> _Scan | None:
        """Position the demuxer for a new pass (None when the stream cannot seek)."""
        self._recent.extend(self._held())
        self._scan = None
        if seek:
            target = self._start_pts + int(math.floor(first_time / self._time_base))
            self._at_start = False
            try:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            except FFmpegError:  # not seekable (raw streams)
                return None
        else:
            self._rewind()
        self._at_start = False
        self._last_time = self._next_time = None
        self._scan = _Scan(frames=self._container.decode(self._stream), seek=seek)  # after _rewind: it may have reopened
        return self._scan

    def _serve(self, scan: _Scan, times: np.ndarray) -> Iterator[tuple[int, np.ndarray, float]]:
        """Go forward in ``scan`` and yield the frame shown at each of the ascending ``times``.

        Raises `_SeekMissed` (before yielding anything) when a seek landed after ``times[0]`` or
        on a frame without timestamp, or gave no frame at all: the caller starts from the beginning.
        """
        pending = 0
        try:
            while pending < len(times):
                if scan.current is not None:
                    frame, now, frame_array = scan.current
                    scan.current = None
                else:
                    frame = next(scan.frames, None) if not scan.exhausted else None
                    if frame is None:
                        scan.exhausted = True
                        break
                    now = self._frame_time(frame, first_of_file=not scan.seek and scan.previous is None)
                    if now is None:  # after a seek, a frame without timestamp: its time is unknown
                        raise _SeekMissed
                    self._last_time = now
                    self.frames_decoded += 1
                    frame_array = None
                    if scan.previous is None and scan.seek and now > times[0] + _EPS:
                        raise _SeekMissed
                # Times before `now` are shown by the previous frame (or, before the first frame of
                # the file, by this one).
                first = scan.previous is None
                holder_array = frame_array if first else scan.previous_array
                holder_time = now if first else scan.previous_time
                while pending < len(times) and times[pending] + _EPS < now:
                    if holder_array is None:
                        holder_array = self._rgb(frame if first else scan.previous)
                    scan.last_served = float(times[pending])
                    yield pending, holder_array, holder_time
                    pending += 1
                if pending == len(times):  # keep this frame for the next call
                    scan.current = (frame, now, holder_array if first else None)
                    if not first:
                        scan.previous_array = holder_array
                    return
                if not first and holder_array is not None:  # passed: shown over [its time, now)
                    self._recent.append((-math.inf if scan.previous_first else holder_time, now, holder_array, holder_time))
                scan.previous_first = first and not scan.seek
                scan.previous, scan.previous_time = frame, now
                scan.previous_array = holder_array if first else None
            if scan.previous is None and scan.seek:  # the seek gave no frame at all (MPEG-PS near its end)
                raise _SeekMissed
            if scan.previous is None:
                raise InputError("video has no decodable frames", path=self.path)
            frame_duration = self._frame_duration(scan.previous)
            end = scan.previous_time + frame_duration
            tolerance = max(END_TOLERANCE_S, 2.0 * frame_duration)
            if times[-1] > end + tolerance:
                raise InputError(
                    f"video ends at {end:.3f} s but {times[-1]:.3f} s was requested "
                    f"(metadata duration {self.info.duration:.3f} s; truncated file?)",
                    path=self.path,
                )
            if scan.previous_array is None:
                scan.previous_array = self._rgb(scan.previous)
            self._recent.append((-math.inf if scan.previous_first else scan.previous_time, end + tolerance,
                                scan.previous_array, scan.previous_time))
            while pending < len(times):
                scan.last_served = float(times[pending])
                yield pending, scan.previous_array, scan.previous_time
                pending += 1
        except FFmpegError as error:
            self._scan = None
            where = "" if self._last_time is None else f" after {self._last_time:.3f} s"
            raise InputError(
                f"cannot decode video{where} ({_reason(error)}; truncated or corrupt file?)", path=self.path
            ) from error
        except BaseException:
            self._scan = None
            raise

    def _keyframe_times(self) -> np.ndarray | None:
        """Times (s) of the keyframes the container's index lists, ascending; None without an index.

        Index timestamps are decoding times; shifted by the first keyframe's delay they estimate
        presentation times. An estimate off either way costs work (a seek skipped, or one that
        lands on the keyframe before), never a wrong frame: every pass picks frames by their own
        timestamps.
        """
        if self._keyframes is False:
            entries = []
            try:
                entries = [entry.timestamp for entry in self._stream.index_entries if entry.is_keyframe]
            except (AttributeError, FFmpegError):  # older PyAV, or a format without an index
                pass
            if entries:
                times = (np.asarray(sorted(entries), dtype=np.float64) - self._start_pts) * self._seconds_per_tick
                # The first keyframe is the first frame, shown at 0: its index time is minus the
                # decoding delay (B-frame reordering, an edit list), which every keyframe shares.
                self._keyframes = times - min(0.0, float(times[0]))
            else:
                self._keyframes = None
        return self._keyframes

    @staticmethod
    def _worth_seeking(keyframes: np.ndarray | None, before: float, after: float) -> bool:
        """Whether a seek from just after ``before`` to ``after`` skips frames: a keyframe in between."""
        if keyframes is None:
            return after - before > SEEK_GAP_S
        return bool(np.any((keyframes > before + _EPS) & (keyframes <= after + _EPS)))

    def last_frame_time(self) -> float:
        """Decode the frame shown at the end of the video and return its time; see `read_last_frame`."""
        self._require_listed_frames()
        info = self.info
        nominal = 1.0 / info.average_fps if info.average_fps else 0.0
        shown = float(self.frames_at([max(0.0, info.duration - nominal / 2)]).source_times[0])
        # The decoded frame's own duration where it has one: a raw stream's nominal rate can be
        # ffmpeg's guess (25 fps) rather than the rate its packets are timed at.
        own = self._next_time - shown if self._next_time is not None else 0.0
        frame = own if own > _EPS else nominal
        slack = 2.0 * frame if frame else END_TOLERANCE_S
        if shown < info.duration - slack - _EPS:
            raise InputError(f"its last frame starts at {shown:.3f} s but its metadata says it lasts "
                             f"{info.duration:.3f} s (truncated file?)", path=self.path)
        return shown

    def _require_listed_frames(self) -> None:
        """Every frame the container's index lists must have its packet in the file (demuxing
        only, no decoding); formats without a frame count are left to the end-time check."""
        listed = self.info.num_frames
        if not listed:
            return
        self._at_start = False
        self._scan = None
        try:
            found = sum(1 for packet in self._container.demux(self._stream) if packet.size)
        except FFmpegError as error:
            raise InputError(f"cannot read video ({_reason(error)}; truncated or corrupt file?)",
                             path=self.path) from error
        self._rewind()
        if found < listed:
            raise InputError(f"holds {found} of the {listed} frames its metadata lists (truncated file?)",
                             path=self.path)

    def _frame_time(self, frame: av.VideoFrame, *, first_of_file: bool) -> float | None:
        """Presentation time in seconds; frames without one follow the previous frame (as ffmpeg does)."""
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is not None:
            now = (pts - self._start_pts) * self._seconds_per_tick
        elif self._next_time is not None:
            now = self._next_time
        elif first_of_file:
            now = 0.0
        else:
            return None
        self._next_time = now + self._frame_duration(frame)
        return now

    def _frame_duration(self, frame: av.VideoFrame) -> float:
        duration = getattr(frame, "duration", None)
        if duration:
            return duration * self._seconds_per_tick
        rate = self.info.average_fps if hasattr(self, "info") else None
        return 1.0 / rate if rate else 0.0

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        if frame.width != self.info.width or frame.height != self.info.height:
            frame = frame.reformat(width=self.info.width, height=self.info.height)
        return frame.to_ndarray(format="rgb24")


def decoder_threads(processes: int = 1) -> int:
    """Decoder threads per process when ``processes`` decode at once: this machine's usable cores
    (its affinity mask, as a container or ``taskset`` limits it) shared out, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Duration, size and frame rate of a video file, from its metadata (no decoding)."""
    with VideoReader(path) as reader:
        return reader.info


def decode_frames(path: str | os.PathLike, times: Sequence[float] | np.ndarray) -> DecodedFrames:
    """The frames shown at ``times`` (seconds) in the video at ``path``: uint8 ``[T, H, W, 3]``."""
    with VideoReader(path) as reader:
        return reader.frames_at(times)


def read_last_frame(path: str | os.PathLike) -> float:
    """Check that the video at ``path`` is whole and decode its last frame; returns that frame's time (s).

    Why not `decode_frames` at the end: sampling holds the last frame for up to `END_TOLERANCE_S`
    past the end of the data, and with B-frames the last frame in display order is decoded before
    the frames just before it, so a download cut between two packets still "shows" a last frame.
    A check before a run must see the gap: it counts the packets (cheap, no decoding) against the
    frame count in the index, then decodes the frame shown at the very end, which must start
    within two frame durations of the end the metadata gives.
    """
    with VideoReader(path) as reader:
        return reader.last_frame_time()


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
