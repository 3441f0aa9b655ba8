"""What a model wants to see: the frame specification (`FrameSpec`) that adapters declare.

A model's preprocessing is part of its identity: the same checkpoint fed 8 frames instead of 16,
or CLIP statistics instead of ImageNet ones, gives different numbers. `FrameSpec` records all of
it in one frozen, hashable value with a stable text key, so the runner can put it into the cache
key of every encoded clip and two specs that preprocess identically always share a cache entry.

Sampling modes (the full rules, with the official code they follow, are in `sampling.py`):

``"uniform"``
    ``num_frames`` frames spread over the whole clip window, however long it is. With ``fps`` set
    (InstrAct: 16 frames from a 5 fps grid), the window is first cut into a ``1/fps`` grid and the
    frames are picked from the grid the way the official InstrAct loader does; with ``fps=None``
    the frames are the midpoints of ``num_frames`` equal parts of the window.
``"fps"``
    ``num_frames`` frames ``1/fps`` apart, i.e. a clip of fixed duration ``num_frames / fps``
    centred in the window (ACE/SRT: ATA 30 frames at 10 fps = 3 s).

Pixels, as each family's official preprocessing states them:

- ``resize``: ``"short_side"`` scales the shorter side to ``size`` keeping the aspect ratio (CLIP's
  ``Resize(size)``); ``"squash"`` scales both sides to ``size`` (ViCLIP's demo, PE-Core,
  Singularity, VideoMAE TAD features);
- ``interpolation``: ``"bilinear"`` or ``"bicubic"``, antialiased, rounded to uint8 as PIL does;
- then a centre square of ``crop`` (None: the whole frame);
- ``value_range``: pixels are scaled to ``[0, value_range]`` (1: ``ToTensor``; 255: LaViLa's raw
  pixel values), then ``mean`` is subtracted and ``std`` divided per RGB channel, both in the
  units of that range.

The defaults (short side, bilinear, 0..1) are what the key omits, so specs written before these
fields existed keep their cache keys.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SAMPLING_MODES",
    "RESIZE_MODES",
    "INTERPOLATIONS",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INSTRACT_CONTEXT_S",
    "INSTRACT_MIN_CLIP_S",
    "ACE_CLIP_FRAMES",
    "FrameSpec",
    "instract_frame_spec",
    "ace_frame_spec",
]

SAMPLING_MODES = ("uniform", "fps")
RESIZE_MODES = ("short_side", "squash")
INTERPOLATIONS = ("bilinear", "bicubic")

# OpenAI CLIP statistics: used by CLIP4Clip, ViCLIP, InternVideo and the official InstrAct loader.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# InstrAct Bench protocol (PROTOCOLS.md): 5 s of context on each side, clips widened to >= 5 s.
INSTRACT_CONTEXT_S = 5.0
INSTRACT_MIN_CLIP_S = 5.0

# ACE / SRT clips: dataset -> (frames, fps); frames / fps is the clip duration (3 s, 2 s, 1 s).
ACE_CLIP_FRAMES: dict[str, tuple[int, float]] = {
    "ata": (30, 10.0),
    "ikea": (25, 12.5),
    "gtea": (15, 15.0),
}


@dataclass(frozen=True)
class FrameSpec:
    """How frames are sampled in time and turned into a model input tensor ``[T, 3, H, W]``.

    ``fps`` is the sampling rate for ``sampling="fps"`` (required) and the optional grid rate for
    ``sampling="uniform"``. ``size`` is the target of the shorter side (None: no resize); ``crop``
    the side of the centre square crop (None: no crop). ``resize``, ``interpolation`` and
    ``value_range`` are described in the module docstring. ``fixed_frames``: the model cannot take
    another frame count (a temporal embedding of fixed length that its official code never
    interpolates), so a task asking for one fails before decoding. Frozen and hashable; `key` is
    the stable text form used in cache keys.
    """

    num_frames: int
    sampling: Literal["uniform", "fps"] = "uniform"
    fps: float | None = None
    size: int | None = 224
    crop: int | None = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize: Literal["short_side", "squash"] = "short_side"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    value_range: float = 1.0
    fixed_frames: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.sampling == "fps" and self.fps is None:
            raise ValueError("sampling='fps' needs fps")
        if self.fps is not None:
            if not math.isfinite(float(self.fps)) or float(self.fps) <= 0:
                raise ValueError(f"fps must be a positive number, got {self.fps!r}")
            object.__setattr__(self, "fps", float(self.fps))
        for name in ("size", "crop"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.crop is not None and self.size is not None and self.crop > self.size:
            raise ValueError(f"crop ({self.crop}) cannot exceed the resized shorter side ({self.size})")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} must be three finite numbers (R, G, B), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if any(v <= 0 for v in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not math.isfinite(float(self.value_range)) or float(self.value_range) <= 0:
            raise ValueError(f"value_range must be a positive number, got {self.value_range!r}")
        object.__setattr__(self, "value_range", float(self.value_range))
        object.__setattr__(self, "fixed_frames", bool(self.fixed_frames))

    @property
    def clip_duration_s(self) -> float | None:
        """Duration covered by one clip for ``sampling="fps"`` (None for uniform: the whole window)."""
        return self.num_frames / self.fps if self.sampling == "fps" and self.fps else None

    def key(self) -> str:
        """A canonical text form: equal for specs that preprocess identically, stable across runs.

        Floats are written with ``repr`` (shortest round-trip form), so ``5`` and ``5.0`` agree.
        ``fixed_frames`` is not part of it: it constrains tasks, not pixels.
        """
        parts = [
            f"frames={self.num_frames}",
            f"sampling={self.sampling}",
            f"fps={_num(self.fps)}",
            f"size={self.size}",
            f"crop={self.crop}",
            "mean=" + ",".join(_num(v) for v in self.mean),
            "std=" + ",".join(_num(v) for v in self.std),
        ]
        if self.resize != "short_side":
            parts.append(f"resize={self.resize}")
        if self.interpolation != "bilinear":
            parts.append(f"interpolation={self.interpolation}")
        if self.value_range != 1.0:
            parts.append(f"range={_num(self.value_range)}")
        return "framespec/v1;" + ";".join(parts)

    def fingerprint(self) -> str:
        """A short hash of `key` (16 hex digits) for file names and compact cache keys."""
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]


def instract_frame_spec(
    mean: tuple[float, float, float] = CLIP_MEAN, std: tuple[float, float, float] = CLIP_STD
) -> FrameSpec:
    """The InstrAct Bench official configuration: 16 frames uniform over a 5 fps grid, 224 px."""
    return FrameSpec(num_frames=16, sampling="uniform", fps=5.0, size=224, crop=224, mean=mean, std=std)


def ace_frame_spec(
    dataset: str,
    size: int = 224,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> FrameSpec:
    """The ACE/SRT clip of one dataset (``ata``, ``ikea`` or ``gtea``), 224x224 crops."""
    try:
        frames, fps = ACE_CLIP_FRAMES[dataset.lower()]
    except KeyError:
        raise ValueError(f"unknown ACE dataset {dataset!r}; expected one of {sorted(ACE_CLIP_FRAMES)}") from None
    return FrameSpec(num_frames=frames, sampling="fps", fps=fps, size=size, crop=size, mean=mean, std=std)


def _num(value: float | None) -> str:
    return "none" if value is None else repr(float(value))
