"""Tiny test videos whose frames say which frame they are, and checks that they really do.

Every frame is two flat grey halves: the left half is ``4 * (i % 64)``, the right half
``4 * (i // 64)``, so a decoded frame gives back its index ``i`` exactly (up to 4095) even
after the RGB -> YUV 4:2:0 -> RGB round trip. Videos are lossless H.264 (``qp=0``) with a
keyframe every 5 frames when libx264 is available, high-bit-rate MPEG-4 Part 2 otherwise.

The other media tests import `write_video` and `frame_indices` from here; the tests in this file
guard that premise, so a broken fixture fails here first instead of everywhere.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

GOP = 5
_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def frame_image(index: int, width: int = 32, height: int = 24) -> np.ndarray:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = 4 * (index % 64)
    image[:, width // 2 :] = 4 * (index // 64)
    return image


def write_video(
    path: Path,
    num_frames: int,
    fps: int = 10,
    *,
    width: int = 32,
    height: int = 24,
    pts_ms: list[int] | None = None,
    faststart: bool = False,
) -> Path:
    """An MP4 of ``num_frames`` index-coded frames at ``fps`` (or at ``pts_ms`` milliseconds).

    ``faststart`` puts the index (``moov``) before the data, as streaming sites do, so a file cut
    short still opens and claims its full duration.
    """
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        options = {"qp": "0", "preset": "ultrafast", "bframes": "0"} if _CODEC == "libx264" else {}
        stream = container.add_stream(_CODEC, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = GOP
        if _CODEC == "mpeg4":
            stream.bit_rate = 4_000_000
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(index, width, height), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_indices(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """The index coded in each frame of uint8 ``[..., H, W, 3]`` frames."""
    frames = np.asarray(frames, dtype=np.float64)
    width = frames.shape[-2]
    left = frames[..., 2:-2, 2 : width // 2 - 2, :].mean(axis=(-3, -2, -1))
    right = frames[..., 2:-2, width // 2 + 2 : -2, :].mean(axis=(-3, -2, -1))
    return (np.rint(right / 4) * 64 + np.rint(left / 4)).astype(np.int64)


def _decode_all(path: Path) -> tuple[list[float], list[np.ndarray], list[bool]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times, images, keys = [], [], []
        for frame in container.decode(stream):
            times.append(float(frame.pts * stream.time_base))
            images.append(frame.to_ndarray(format="rgb24"))
            keys.append(bool(frame.key_frame))
    return times, images, keys


def test_written_frames_decode_to_their_index(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cfr.mp4", num_frames=70, fps=10)
    times, images, _ = _decode_all(path)
    assert list(frame_indices(np.stack(images))) == list(range(70))
    np.testing.assert_allclose(times, np.arange(70) / 10)


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path) -> None:
    pts = [0, 100, 150, 400, 450, 900]
    path = write_video(tmp_path / "vfr.mp4", num_frames=6, pts_ms=pts)
    times, images, _ = _decode_all(path)
    assert list(frame_indices(np.stack(images))) == list(range(6))
    np.testing.assert_allclose(times, np.array(pts) / 1000)


@pytest.mark.skipif(_CODEC != "libx264", reason="only libx264 honours the GOP setting")
def test_keyframes_are_sparse_so_seeking_is_exercised(tmp_path: Path) -> None:
    _, _, keys = _decode_all(write_video(tmp_path / "gop.mp4", num_frames=20))
    assert [i for i, key in enumerate(keys) if key] == [0, 5, 10, 15]
