"""Turn decoded uint8 frames into a model input, in torch only (there is no CPU torchvision here).

The geometry follows torchvision's ``Resize(size)`` + ``CenterCrop(crop)``, then ``ToTensor`` and
``Normalize(mean, std)``, which is what CLIP-style video models were trained with:

- resize the shorter side to ``size`` with ``interpolate(mode="bilinear", antialias=True,
  align_corners=False)``; the longer side becomes ``int(size * long / short)`` (truncated, as
  torchvision does). `apply_frame_spec` resizes the uint8 frames directly, in channels-last
  layout: that is PyTorch's uint8 antialiased kernel (the one torchvision v2 uses for uint8
  images, written to match PIL), 8-20x faster on CPU than the float kernel and within one grey
  level of it. Its output is rounded to uint8, as PIL's resize (CLIP's preprocessing) and
  ffmpeg's ``scale`` (the official InstrAct loader) also round. `resize_short_side` takes either
  dtype.
- centre crop: offsets ``(H - crop) // 2`` and ``(W - crop) // 2`` (ffmpeg's ``crop`` filter, used
  by the official InstrAct loader, also rounds down);
- scale to [0, 1] and normalise ``(x - mean) / std`` per RGB channel, in float32.

A spec may instead ask for ``resize="squash"`` (both sides to ``size``), ``interpolation="bicubic"``
(antialiased, uint8 in and out, as PIL's bicubic used by CLIP's ``Resize``) and pixel values in
``[0, value_range]`` before the mean and std (LaViLa: 0..255).

The official InstrAct loader crops the centre square first and then scales it to 224x224 with
ffmpeg's bicubic ``scale``; for a square ``crop == size`` that is the same region, resampled with
a different kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .spec import FrameSpec

__all__ = ["to_float", "resize_short_side", "resize_to", "center_crop", "normalize", "reverse_time", "apply_frame_spec"]


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` in [0, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [..., H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
    return frames.movedim(-1, -3).to(torch.float32).div_(255.0)


def resize_short_side(images: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize ``[..., C, H, W]`` (uint8 or float) so that ``min(H, W) == size`` (antialiased).

    uint8 in gives uint8 out (rounded), computed in channels-last layout, PyTorch's fast path.
    """
    height, width = images.shape[-2:]
    short, long = (height, width) if height <= width else (width, height)
    if short == size:
        return images
    new_long = int(size * long / short)
    return resize_to(images, (size, new_long) if height <= width else (new_long, size), interpolation)


def resize_to(images: torch.Tensor, target: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize ``[..., C, H, W]`` to exactly ``target`` (height, width), antialiased; uint8 stays uint8."""
    if tuple(images.shape[-2:]) == tuple(target):
        return images
    flat = images.reshape(-1, *images.shape[-3:])
    if flat.dtype == torch.uint8:
        flat = flat.contiguous(memory_format=torch.channels_last)
    resized = F.interpolate(flat, size=target, mode=interpolation, align_corners=False, antialias=True)
    return resized.reshape(*images.shape[:-2], *target)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size x size`` square of ``[..., H, W]`` (offsets rounded down)."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {height}x{width}")
    top = (height - size) // 2
    left = (width - size) // 2
    return images[..., top : top + size, left : left + size]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of ``[..., 3, H, W]``."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean_t) / std_t


def reverse_time(clip: torch.Tensor, time_dim: int) -> torch.Tensor:
    """The clip played backwards: a flip of the time axis (ActionBench's video-reversal probe)."""
    return clip.flip(time_dim)


def apply_frame_spec(frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
    """uint8 ``[..., T, H, W, 3]`` -> float32 ``[..., T, 3, crop, crop]`` as the model expects."""
    if frames.dtype != torch.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [..., H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
    images = frames.movedim(-1, -3)  # a channels-last view: no copy
    if spec.size is not None:
        if spec.resize == "squash":
            images = resize_to(images, (spec.size, spec.size), spec.interpolation)
        else:
            images = resize_short_side(images, spec.size, spec.interpolation)
    if spec.crop is not None:
        images = center_crop(images, spec.crop)
    # One float allocation: (x * range / 255 - mean) / std computed in place as
    # (x - mean * 255 / range) / (std * 255 / range); with range 1 that is (x - 255 mean) / (255 std).
    images = images.to(torch.float32, memory_format=torch.contiguous_format)
    scale = 255.0 / spec.value_range
    mean = torch.tensor(spec.mean, dtype=torch.float32).mul_(scale).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).mul_(scale).view(3, 1, 1)
    return images.sub_(mean).div_(std)
