"""PyAV decoding: which frame is shown at an instant, seeking, odd videos, and errors naming the file."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from instract_eval.errors import InputError
from instract_eval.media import VideoReader, decode_frames, probe_video, read_last_frame
from tests.media.test_fixture_videos import frame_indices, write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6.0 s at 10 fps: frame i is shown during [i/10, (i+1)/10)."""
    return write_video(tmp_path_factory.mktemp("decode") / "cfr.mp4", num_frames=60, fps=10)


def test_probe_reads_metadata(video: Path) -> None:
    info = probe_video(video)
    assert info.duration == pytest.approx(6.0)
    assert (info.width, info.height, info.num_frames) == (32, 24, 60)
    assert info.average_fps == pytest.approx(10.0)
    assert info.path == str(video)


def test_matroska_without_stream_duration(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", num_frames=30, fps=10)  # duration only on the container
    assert probe_video(path).duration == pytest.approx(3.0)
    assert list(frame_indices(decode_frames(path, [0.0, 1.55, 2.95]).frames)) == [0, 15, 29]


@pytest.mark.parametrize(
    "suffix",
    [
        ".mpg",  # MPEG-PS: only the first packet of each PES carries a timestamp
        ".h264",  # raw elementary stream: no timestamps, no duration, cannot seek
    ],
)
def test_frames_without_timestamps_follow_the_previous_frame(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", num_frames=40, fps=10)
    with VideoReader(path) as reader:
        assert list(frame_indices(reader.frames_at([0.0, 2.55, 3.95]).frames)) == [0, 25, 39]
        assert list(frame_indices(reader.frames_at([1.05, 3.05]).frames)) == [10, 30]


def test_each_time_gets_the_frame_whose_interval_contains_it(video: Path) -> None:
    times = [0.0, 0.05, 0.099, 0.1, 0.3, 2.55, 5.95, 0.05]
    result = decode_frames(video, times)
    assert result.frames.shape == (8, 24, 32, 3)
    assert str(result.frames.dtype) == "torch.uint8"
    assert list(frame_indices(result.frames)) == [0, 0, 0, 1, 3, 25, 59, 0]
    np.testing.assert_allclose(result.source_times, [0.0, 0.0, 0.0, 0.1, 0.3, 2.5, 5.9, 0.0])


def test_times_past_either_end_get_the_edge_frames(video: Path) -> None:
    result = decode_frames(video, [-0.3, 6.0, 6.4])
    assert list(frame_indices(result.frames)) == [0, 59, 59]


def test_time_far_past_the_last_frame_is_an_error_naming_the_file(video: Path) -> None:
    with pytest.raises(InputError, match="truncated") as caught:
        decode_frames(video, [1.0, 9.0])
    assert caught.value.path == str(video)


def test_seeking_skips_the_start_and_gives_the_same_frames(video: Path) -> None:
    times = [4.12, 4.37, 4.61]
    with VideoReader(video) as reader:
        result = reader.frames_at(times)
        again = reader.frames_at([0.05, 4.12])  # a reader can be reused, backwards too
    assert list(frame_indices(result.frames)) == [41, 43, 46]
    assert list(frame_indices(again.frames)) == [0, 41]
    # Keyframes every 5 frames: the decoder starts at frame 40, not 0 (one frame past the last time).
    assert result.frames_decoded <= 10


def test_a_seek_that_lands_too_late_falls_back_to_decoding_from_the_start(video: Path) -> None:
    with VideoReader(video) as reader:
        container = reader._container
        real_seek = container.seek
        calls = []

        def overshooting_seek(offset, **kwargs):
            calls.append(offset)
            if len(calls) == 1:  # a demuxer bug: land on a keyframe one second later
                return real_seek(offset + int(1 / reader._time_base), **kwargs)
            return real_seek(offset, **kwargs)

        reader._container = _SeekProxy(container, overshooting_seek)
        result = reader.frames_at([2.05, 2.35])
    assert len(calls) == 2
    assert list(frame_indices(result.frames)) == [20, 23]


class _SeekProxy:
    def __init__(self, container, seek):
        self._container, self.seek = container, seek

    def __getattr__(self, name):
        return getattr(self._container, name)


def test_variable_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "vfr.mp4", num_frames=6, pts_ms=[0, 100, 150, 400, 450, 900])
    result = decode_frames(path, [0.12, 0.16, 0.39, 0.44, 0.7, 0.95])
    assert list(frame_indices(result.frames)) == [1, 2, 2, 3, 4, 5]


def test_video_whose_first_frame_is_late(tmp_path: Path) -> None:
    path = write_video(tmp_path / "late.mp4", num_frames=4, pts_ms=[300, 400, 500, 600])
    # Times count from the first frame (the stream start), as players and ffmpeg -ss do.
    result = decode_frames(path, [0.0, 0.15, 0.35])
    assert list(frame_indices(result.frames)) == [0, 1, 3]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(InputError, match="not found") as caught:
        decode_frames(missing, [0.0])
    assert caught.value.path == str(missing)
    assert str(missing) in str(caught.value)


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        probe_video(tmp_path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as caught:
        decode_frames(path, [0.0])
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


def test_truncated_file(tmp_path: Path, video: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(video.read_bytes()[: os.path.getsize(video) // 2])
    with pytest.raises(InputError) as caught:
        decode_frames(path, [0.5])
    assert caught.value.path == str(path)


def test_partial_download_with_index_first_is_caught(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", num_frames=60, fps=10, width=64, height=48, faststart=True)
    path = tmp_path / "partial.mp4"
    path.write_bytes(whole.read_bytes()[: int(os.path.getsize(whole) * 0.4)])
    assert probe_video(path).duration == pytest.approx(6.0)  # the metadata still says 6 s
    assert list(frame_indices(decode_frames(path, [0.55]).frames)) == [5]
    # Either the demuxer hits the end of the data or the last frame comes far too early.
    with pytest.raises(InputError, match="truncated") as caught:
        decode_frames(path, [0.55, 5.55])
    assert caught.value.path == str(path)


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream") as caught:
        probe_video(path)
    assert caught.value.path == str(path)


def test_no_timestamps_is_a_usage_error(video: Path) -> None:
    with VideoReader(video) as reader, pytest.raises(ValueError):
        reader.frames_at([])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".avi", ".mpg"])
def test_read_last_frame_accepts_a_whole_video_of_each_container(tmp_path: Path, suffix: str) -> None:
    """No false alarm, with or without a frame count in the index or a timestamp on every packet
    (MPEG-PS: a seek near its end gives no frame, and the reader then decodes from the start)."""
    path = write_video(tmp_path / f"clip{suffix}", num_frames=40, fps=10)
    assert 3.5 <= read_last_frame(path) <= 3.9 + 1e-6
    assert decode_frames(path, [3.95]).frames.shape[0] == 1


def test_read_last_frame_catches_a_file_cut_at_a_packet_boundary(tmp_path: Path) -> None:
    """A partial download that ends between two packets decodes without an error, and sampling
    holds its last frame for up to `END_TOLERANCE_S`; `read_last_frame` (what `check` runs) must
    still see that frames are missing (issue 12, item 5)."""
    whole = write_video(tmp_path / "whole.mp4", num_frames=60, fps=10, faststart=True)
    assert read_last_frame(whole) == pytest.approx(5.9)
    with av.open(str(whole)) as container:
        starts = [packet.pos for packet in container.demux(container.streams.video[0]) if packet.size]
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole.read_bytes()[: starts[-3]])  # the last 3 frames (0.3 s) never arrived
    assert list(frame_indices(decode_frames(path, [5.95]).frames)) == [56]  # sampling does not notice
    with pytest.raises(InputError, match="57 of the 60 frames") as caught:
        read_last_frame(path)
    assert caught.value.path == str(path)


def test_a_raw_stream_is_probed_without_touching_freed_memory(tmp_path: Path) -> None:
    """Probing a raw .h264 counts its packets, which reopens the container; the probe then read the
    freed stream object, a segfault in most fresh processes. Ten opens in a fresh process."""
    import subprocess
    import sys

    path = write_video(tmp_path / "clip.h264", num_frames=40, fps=10)
    script = ("import sys\nfrom instract_eval.media.decode import VideoReader\n"
              "for _ in range(10):\n    with VideoReader(sys.argv[1]) as reader:\n"
              "        assert reader.info.num_frames == 40 or reader.info.duration > 0\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
