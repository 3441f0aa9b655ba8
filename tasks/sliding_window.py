"""Zero-shot temporal localization with a dual encoder: score sliding windows against class texts.

The classic zero-shot TAL baseline for CLIP-style models: cut the video into overlapping windows,
embed each window with the model's video encoder and each class text with its text encoder, turn
the cosine similarities of a window into class probabilities (softmax at temperature ``tau``), and
merge each run of consecutive windows whose most probable class is the same into one segment,
scored by the mean probability over the run. It needs nothing but the dual-encoder capability, so
any dual encoder can answer localization tasks through it.

Windows are decoded by the same media pipeline as every clip of the harness
(`instract_eval.media.clip_loader`, the model's own frame spec), so a window is exactly the clip a
``ClipRequest(video, start, start + window_s)`` would give.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, clip_loader
from instract_eval.media.decode import probe_video

from .protocols import Segment

__all__ = ["window_starts", "merge_windows", "sliding_window_localize"]


def window_starts(duration: float, window_s: float, stride_s: float) -> np.ndarray:
    """Starts of windows every ``stride_s`` covering ``[0, duration]``; the last one ends at the end.

    A video shorter than one window gets one window over the whole video.
    """
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"window_s and stride_s must be positive, got {window_s}, {stride_s}")
    last = max(duration - window_s, 0.0)
    starts = np.arange(0.0, last + 1e-9, stride_s)
    if starts[-1] < last - 1e-9:
        starts = np.append(starts, last)
    return starts


def merge_windows(starts: np.ndarray, window_s: float, duration: float, probabilities: np.ndarray,
                  classes: list[str]) -> list[Segment]:
    """One segment per run of consecutive windows sharing their most probable class.

    ``probabilities`` is ``[windows, classes]``. A run covers ``[first start, last start +
    window_s]`` (clipped to the video) and scores the mean top probability over its windows.
    """
    best = probabilities.argmax(axis=1)
    segments: list[Segment] = []
    first = 0
    for index in range(1, len(best) + 1):
        if index == len(best) or best[index] != best[first]:
            run = probabilities[first:index, best[first]]
            end = min(float(starts[index - 1]) + window_s, duration)
            segments.append(Segment(float(starts[first]), end, classes[best[first]], float(run.mean())))
            first = index
    return segments


def sliding_window_localize(model: Any, video: str, texts: Mapping[str, str], *, window_s: float = 1.0,
                            stride_s: float = 0.25, tau: float = 0.05, batch_size: int = 64) -> list[Segment]:
    """Segments of ``video`` for the classes of ``texts`` (class -> the text that describes it)."""
    path = Path(video)
    if path.suffix.lower() in (".npy", ".npz", ".safetensors"):
        raise InputError("a sliding-window localizer decodes video frames and cannot read a feature file",
                         path=path)
    duration = probe_video(path).duration
    if not math.isfinite(duration) or duration <= 0:
        raise InputError(f"the video's duration is {duration}; cannot place windows", path=path)
    classes = list(texts)
    starts = window_starts(duration, window_s, stride_s)
    requests = [ClipRequest(str(path), float(start), min(float(start) + window_s, duration)) for start in starts]
    device = _device_of(model)
    embeddings = []
    with torch.inference_mode():
        for batch in clip_loader(requests, model.frame_spec(), batch_size=batch_size):
            embeddings.append(model.encode_video(batch.clips[:, 0].to(device)).float().cpu())
        text = model.encode_text([texts[name] for name in classes]).float().cpu()
    windows = torch.nn.functional.normalize(torch.cat(embeddings), dim=-1)
    text = torch.nn.functional.normalize(text, dim=-1)
    probabilities = torch.softmax(windows @ text.T / tau, dim=1).numpy()
    return merge_windows(starts, window_s, duration, probabilities, classes)


def _device_of(model: Any) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return parameter.device
    return torch.device("cpu")
