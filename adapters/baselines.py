"""Two built-in reference adapters: ``random`` (the chance baseline) and ``null`` (harness overhead).

``random``
    Every task needs a floor: what a model that understands nothing scores under the exact same
    protocol (same clips, same candidates, same metric code). A random-features model gives it,
    and unlike a shuffled-score baseline it goes through the whole pipeline (decoding, batching,
    caching, the capability checks), so it also smoke-tests a task end to end. Its outputs are a
    pure function of (seed, input): a video embedding depends only on that clip's pixels, a text
    embedding only on the text, a localization only on the video's file name, duration and class,
    never on batch composition or call order. The runner's cache and the batch-size invariance the
    harness promises can therefore be checked against it bit for bit.
``null``
    Returns zeros without looking at its inputs, so a run with it measures what the harness
    itself costs (decoding, resizing, normalizing, batching, scoring). Its frame spec asks for
    224 px frames with CLIP statistics, like a typical CLIP-style adapter, so that the measured
    overhead is the realistic one rather than that of decoding thumbnails.

Neither has weights (no ``weights_fingerprint``): their outputs are fixed by their arguments,
which `model_fingerprint` already includes. Both are plain classes, not ``nn.Module``\\ s, and
provide the dual-encoder, token-encoder and localizer capabilities.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec
from instract_eval.media.decode import probe_video
from instract_eval.media.features import FEATURE_SUFFIXES, read_features

from .cards import ModelCard
from .protocols import DUAL_ENCODER, LOCALIZER, TOKEN_ENCODER, Segment
from .registry import register_model

__all__ = ["RandomModel", "NullModel", "random_model", "null_model"]

_ARGS_FIELD = "--model-args"
# Domain-separation tags: the projections, text vectors and segments draw from distinct streams.
_TAG_VIDEO, _TAG_FRAME, _TAG_TEXT, _TAG_SEGMENTS = 1, 2, 3, 4


class RandomModel:
    """Seeded random features: a chance-level dual encoder, token encoder and localizer.

    Video: each frame is average-pooled to a ``grid x grid`` RGB grid (so the embedding responds to
    coarse layout and colour over time, not to pixel noise), the ``[T, 3, grid, grid]`` result is
    flattened and multiplied by a fixed Gaussian matrix drawn from the seed (one matrix per clip
    length ``T``, since tasks may ask for other frame counts than `frame_spec`), and the result is
    L2-normalized. Tokens: each frame's pooled grid times a per-frame matrix (``[B, T, D]``).
    Text: a unit Gaussian vector drawn from a generator seeded by (seed, SHA-256 of the UTF-8
    text). All of it is computed per clip and per text in float64 on the CPU, so a row is
    bitwise identical whatever the batch it came in, and identical on every device.
    """

    name = "random"
    grid = 4

    def __init__(self, *, seed: int = 0, dim: int = 64, frames: int = 8, size: int = 32,
                 feature_fps: float | None = None):
        self.seed = seed
        self.dim = dim
        self.frames = frames
        self.size = size
        self.feature_fps = feature_fps
        self._projections: dict[tuple[int, int], np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"RandomModel(seed={self.seed}, dim={self.dim}, frames={self.frames}, size={self.size}, "
                f"feature_fps={self.feature_fps})")

    def frame_spec(self) -> FrameSpec:
        """``frames`` uniform frames, ``size`` px square, scaled to [-1, 1] (mean and std 0.5)."""
        return FrameSpec(num_frames=self.frames, sampling="uniform", size=self.size, crop=self.size,
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    # -- video

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, dim]`` unit vectors; row ``i`` depends on clip ``i`` only."""
        _check_clips(clips)
        rows = []
        for clip in clips:  # one clip at a time: the same arithmetic whatever the batch
            pooled = self._pooled(clip).reshape(-1)
            rows.append(_unit(pooled @ self._projection(_TAG_VIDEO, pooled.size)))
        return _as_tensor(np.stack(rows) if rows else np.zeros((0, self.dim)), clips.device)

    def encode_video_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, T, dim]``: one unit vector per frame, in temporal order."""
        _check_clips(clips)
        rows = []
        for clip in clips:
            pooled = self._pooled(clip)
            rows.append(_unit(pooled @ self._projection(_TAG_FRAME, pooled.shape[1])))
        empty = np.zeros((0, clips.shape[1], self.dim))
        return _as_tensor(np.stack(rows) if rows else empty, clips.device)

    def _pooled(self, clip: torch.Tensor) -> np.ndarray:
        """``[T, 3, H, W]`` to float64 ``[T, 3 * grid * grid]``."""
        frames = clip.detach().to(device="cpu", dtype=torch.float64)
        pooled = F.adaptive_avg_pool2d(frames, self.grid)
        return pooled.reshape(pooled.shape[0], -1).numpy()

    def _projection(self, tag: int, rows: int) -> np.ndarray:
        """The fixed ``[rows, dim]`` Gaussian matrix for ``tag``, scaled by ``1 / sqrt(rows)``."""
        key = (tag, rows)
        if key not in self._projections:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, tag, rows, self.dim]))
            self._projections[key] = rng.standard_normal((rows, self.dim)) / math.sqrt(rows)
        return self._projections[key]

    # -- text

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``B`` strings to ``[B, dim]`` unit vectors; each depends on its text (and the seed) only."""
        rows = [_unit(_generator(self.seed, _TAG_TEXT, text).standard_normal(self.dim)) for text in texts]
        return _as_tensor(np.stack(rows) if rows else np.zeros((0, self.dim)), torch.device("cpu"))

    # -- localization

    def localize(self, video: str, classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Segment]:
        """0 to 3 random segments per class inside the video, with random scores.

        The draws for a class are seeded by (seed, the video's file name, the class) alone, so
        they do not change with the class list, its order, the directory the videos are in, or
        the descriptions (ignored: a chance localizer gains nothing from language, so its LAP
        is 0 by construction).
        """
        duration = self._duration(video)
        file_name = Path(video).name
        segments = []
        for label in classes:
            rng = _generator(self.seed, _TAG_SEGMENTS, f"{file_name}\0{label}")
            for _ in range(int(rng.integers(0, 4))):
                start, end = np.sort(rng.uniform(0.0, duration, size=2))
                segments.append(Segment(start=float(start), end=float(end), label=label,
                                        score=float(rng.uniform())))
        return segments

    def _duration(self, video: str) -> float:
        """Seconds covered by a video file (its metadata) or a feature file (rows / ``feature_fps``)."""
        if Path(video).suffix.lower() in FEATURE_SUFFIXES:
            if self.feature_fps is None:
                raise InputError("the random model needs feature_fps (feature rows per second) to place "
                                 "segments in a feature file; pass --model-args feature_fps=...",
                                 path=video, field=_ARGS_FIELD)
            return read_features(video, dtype=None).shape[0] / self.feature_fps
        return probe_video(video).duration


class NullModel:
    """Zeros for everything, for timing the harness; its inputs are never read.

    The frame spec still asks for ``size`` px (224 by default) frames with CLIP mean and std, so
    the harness decodes, resizes and normalizes as it would for a typical CLIP-style adapter and
    the time measured is the realistic overhead. Outputs are created on the input's device so no
    host-device copy is added that a real model would not cause.
    """

    name = "null"

    def __init__(self, *, dim: int = 8, frames: int = 8, size: int = 224):
        self.dim = dim
        self.frames = frames
        self.size = size

    def __repr__(self) -> str:
        return f"NullModel(dim={self.dim}, frames={self.frames}, size={self.size})"

    def frame_spec(self) -> FrameSpec:
        """``frames`` uniform frames, ``size`` px square, CLIP statistics (the common adapter setup)."""
        return FrameSpec(num_frames=self.frames, sampling="uniform", size=self.size, crop=self.size)

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` zeros on ``clips.device``, without reading the pixels."""
        return torch.zeros(clips.shape[0], self.dim, device=clips.device)

    def encode_video_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, dim]`` zeros on ``clips.device``."""
        return torch.zeros(clips.shape[0], clips.shape[1], self.dim, device=clips.device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``[B, dim]`` zeros."""
        return torch.zeros(len(texts), self.dim)

    def localize(self, video: str, classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Segment]:
        """No segments (and the video is not opened)."""
        return []


RANDOM_CARD = ModelCard(
    family="reference", capabilities=(DUAL_ENCODER, TOKEN_ENCODER, LOCALIZER),
    description="chance baseline: seeded random-feature dual encoder, token encoder and localizer",
    tokenizer="none (a text's vector is drawn from its SHA-256)", code_licence="MIT (this project)",
    weights_licence="no weights")
NULL_CARD = ModelCard(
    family="reference", capabilities=(DUAL_ENCODER, TOKEN_ENCODER, LOCALIZER),
    description="zeros without reading inputs: measures harness overhead (decodes 224 px)",
    tokenizer="none", code_licence="MIT (this project)", weights_licence="no weights")


@register_model("random", card=RANDOM_CARD)
def random_model(seed: int = 0, dim: int = 64, frames: int = 8, size: int = 32,
                 feature_fps: float | None = None) -> RandomModel:
    """The chance baseline: seeded random features (dual encoder, token encoder, localizer).

    ``feature_fps``: feature rows per second, needed only to localize in feature files
    (``.npy``/``.npz``/``.safetensors``), whose duration is ``rows / feature_fps``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"random: seed must be a non-negative integer, got {seed!r}", field=_ARGS_FIELD)
    if feature_fps is not None:
        if isinstance(feature_fps, bool) or not isinstance(feature_fps, (int, float)) \
                or not math.isfinite(feature_fps) or feature_fps <= 0:
            raise InputError(f"random: feature_fps must be a positive number, got {feature_fps!r}",
                             field=_ARGS_FIELD)
        feature_fps = float(feature_fps)
    return RandomModel(seed=seed, dim=_positive("random", "dim", dim), frames=_positive("random", "frames", frames),
                       size=_positive("random", "size", size), feature_fps=feature_fps)


@register_model("null", card=NULL_CARD)
def null_model(dim: int = 8, frames: int = 8, size: int = 224) -> NullModel:
    """Zeros for every output, to measure the harness's own cost (frames still decoded at ``size`` px)."""
    return NullModel(dim=_positive("null", "dim", dim), frames=_positive("null", "frames", frames),
                     size=_positive("null", "size", size))


# ------------------------------------------------------------------------------------------------


def _positive(model: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{model}: {name} must be a positive integer, got {value!r}", field=_ARGS_FIELD)
    return value


def _check_clips(clips: torch.Tensor) -> None:
    if clips.ndim != 5 or clips.shape[2] != 3:
        raise ValueError(f"expected clips of shape [B, T, 3, H, W], got {tuple(clips.shape)}")


def _generator(seed: int, tag: int, text: str) -> np.random.Generator:
    """A generator determined by (seed, tag, text) alone: SHA-256 keeps any text a fixed-size seed."""
    digest = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big")
    return np.random.default_rng(np.random.SeedSequence([seed, tag, digest]))


def _unit(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize the last axis (a zero vector stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _as_tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)
