"""Drawing poses into RGB frames with numpy, and writing and reading them as MP4 through PyAV.

Shapes are rasterised by point-in-shape tests on a supersampled grid (4 x 4 samples per pixel),
so sub-pixel motion, rotation and scaling change the frames smoothly: the dynamics are continuous,
not snapped to whole pixels. Every shape carries a dark mark near its top, so that turning is
visible even on a circle. Appearing and disappearing blend the object with the background.

MP4 files are H.264 (libx264, crf 10, one thread, no assembly: deterministic output) or MPEG-4 Part 2 when
libx264 is missing, yuv420p (converted by numpy, see `rgb_to_yuv420p`), at a fixed frame rate.
The encoded bytes may depend on the encoder build; on one machine the files, and so the decoded
frames, are a deterministic function of the seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np

from .motion import BASE_RADIUS, EXTENT, Pose
from .vocabulary import COLOURS, ObjectKind

SUPERSAMPLE = 4
MARK_OFFSET = 0.5    # of the radius, towards the shape's own "up"
MARK_RADIUS = 0.32   # of the radius
MARK_DARKNESS = 0.3  # the mark's colour is the object's colour times this
# One thread and x264's plain-C code paths: with its assembly kernels, libx264 produced different
# bytes for the same frames from one run to the next on tiny (32-pixel) frames; in C it does not.
# At this size the cost is a few milliseconds per clip.
X264_OPTIONS = {"crf": "10", "preset": "medium", "threads": "1", "x264-params": "asm=0"}
MPEG4_OPTIONS = {"qscale": "2"}


def background(canvas: int, seed: int) -> np.ndarray:
    """A light, faintly textured background (float32 [H, W, 3]); tint and texture depend on ``seed``.

    The texture is smooth (a 4 x 4 grid of random values, bilinearly interpolated), a few grey
    levels deep: enough that frames are not flat, far too faint to be mistaken for an object.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, size=(4, 4))
    grid = np.linspace(0.0, 3.0, canvas)
    low = np.floor(grid).astype(int).clip(0, 2)
    frac = grid - low
    rows = coarse[low] * (1.0 - frac)[:, None] + coarse[low + 1] * frac[:, None]        # [canvas, 4]
    texture = rows[:, low] * (1.0 - frac)[None, :] + rows[:, low + 1] * frac[None, :]  # [canvas, canvas]
    tint = rng.uniform(-8.0, 8.0, size=3)
    image = 226.0 + tint[None, None, :] + 4.0 * texture[:, :, None]
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of local coordinates (units of the radius, v pointing down) in a shape."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.1
    if shape == "cross":
        return ((np.abs(u) <= 0.36) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.36) & (np.abs(u) <= 1.0))
    if shape == "triangle":
        # Equilateral, apex up (v < 0), vertices on a circle of radius 1.1.
        half_side = 1.1 * math.sqrt(3.0) / 2.0
        bottom = 0.55
        slope = (v + 1.1) / (bottom + 1.1) * half_side  # half-width at height v
        return (v <= bottom) & (v >= -1.1) & (np.abs(u) <= slope)
    raise KeyError(f"no drawing for shape {shape!r}")


def draw(frame: np.ndarray, kind: ObjectKind, pose: Pose) -> None:
    """Blend one object into ``frame`` (float32 [H, W, 3]) in place."""
    if pose.alpha <= 0.0:
        return
    canvas = frame.shape[0]
    radius = BASE_RADIUS * canvas * pose.scale
    reach = EXTENT * radius + 1.0
    x0, x1 = max(int(math.floor(pose.x - reach)), 0), min(int(math.ceil(pose.x + reach)), frame.shape[1])
    y0, y1 = max(int(math.floor(pose.y - reach)), 0), min(int(math.ceil(pose.y + reach)), canvas)
    if x0 >= x1 or y0 >= y1:
        return
    offsets = (np.arange(SUPERSAMPLE, dtype=np.float64) + 0.5) / SUPERSAMPLE
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).reshape(-1)
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).reshape(-1)
    dx, dy = np.meshgrid(xs - pose.x, ys - pose.y)
    theta = math.radians(pose.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # Rotate the sample points by -angle into the shape's own frame (y down: +angle is clockwise).
    u = (cos * dx + sin * dy) / radius
    v = (-sin * dx + cos * dy) / radius
    body = _inside(kind.shape, u, v)
    mark = body & ((u * u + (v + MARK_OFFSET) ** 2) <= MARK_RADIUS ** 2)

    def coverage(mask: np.ndarray) -> np.ndarray:
        h, w = y1 - y0, x1 - x0
        return mask.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)[..., None]

    colour = np.asarray(COLOURS[kind.colour], np.float32)
    region = frame[y0:y1, x0:x1]
    body_cover = coverage(body) * np.float32(pose.alpha)
    region += body_cover * (colour - region)
    mark_cover = coverage(mark) * np.float32(pose.alpha)
    region += mark_cover * (colour * np.float32(MARK_DARKNESS) - region)


def render(kinds: Sequence[ObjectKind], poses_per_frame: Sequence[Sequence[Pose]], canvas: int,
           background_seed: int) -> np.ndarray:
    """uint8 frames [T, H, W, 3]; objects are drawn in order, later ones on top."""
    base = background(canvas, background_seed)
    frames = np.empty((len(poses_per_frame), canvas, canvas, 3), np.uint8)
    previous: tuple | None = None
    for index, poses in enumerate(poses_per_frame):
        key = tuple(poses)
        if key == previous:  # idle stretches: the frame is unchanged
            frames[index] = frames[index - 1]
            continue
        frame = base.copy()
        for kind, pose in zip(kinds, poses):
            draw(frame, kind, pose)
        frames[index] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        previous = key
    return frames


def video_codec() -> str:
    """libx264 where PyAV's FFmpeg has it, otherwise the always-built-in MPEG-4 Part 2 encoder."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes of an RGB frame, stacked as PyAV's [H * 3 / 2, W] layout.

    Converting here rather than letting the encoder call swscale matters: frames converted inside
    ``stream.encode`` made libx264's output vary from run to run, while these planes, built by
    numpy, give the same bytes every time. Chroma is the mean of each 2 x 2 block.
    """
    rgb = frame.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    height, width = y.shape

    def subsample(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(-1) for p in (y, subsample(cb), subsample(cr))]
    return np.concatenate(planes).reshape(height * 3 // 2, width)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """Encode uint8 RGB frames [T, H, W, 3] (H and W even) as an MP4 at a fixed frame rate."""
    codec = video_codec()
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = X264_OPTIONS if codec == "libx264" else MPEG4_OPTIONS
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_mp4(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """All frames of a video as uint8 RGB [T, H, W, 3], and its frame rate."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = float(stream.average_rate)
    return np.stack(frames), rate
