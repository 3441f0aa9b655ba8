"""Zero-shot temporal localization of a dual encoder: sliding windows scored against class texts.

The classic zero-shot TAL baseline for CLIP-style models: cut the video into overlapping windows,
embed each window with the model's video encoder and each class text with its text encoder, turn
the cosine similarities of a window into class probabilities (softmax at temperature ``tau``), and
merge each run of consecutive windows whose most probable class is the same into one segment,
scored by the mean probability over the run. The localization engine uses it for any dual encoder
(a model that localizes itself is asked first).

The windows go through the run's `Encoder` like every other clip: each window is a
``ClipRequest(video, start, start + window_s)`` decoded with the model's own frame spec (the
window is the clip), batched by ``--batch-size``, cached, split over ranks, under the run's
precision, with its out-of-memory halving. A second run, or the conflicting LAP run, reads them back.

Settings (`WindowSettings`): ``window_s``, ``stride_s``, ``tau`` and ``text`` (``"name"``: the class
name, or ``"description"``: the task's description of the class when it has one). They come from
the engine's defaults, overridden by the model's ``sliding_window`` attribute, overridden by the
task protocol's ``sliding_window`` mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instract_eval.adapters.protocols import Segment
from instract_eval.encoding import Encoder
from instract_eval.errors import InputError
from instract_eval.media import FEATURE_SUFFIXES, ClipRequest
from instract_eval.media.decode import probe_video

__all__ = ["WindowSettings", "window_settings", "window_starts", "merge_windows", "sliding_window_segments"]


@dataclass(frozen=True)
class WindowSettings:
    """Where windows go and how they are scored (see the module docstring)."""

    window_s: float = 1.0
    stride_s: float = 0.25
    tau: float = 0.05
    text: str = "name"

    def __post_init__(self) -> None:
        for name in ("window_s", "stride_s", "tau"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"sliding_window.{name} must be a positive number, got {value!r}",
                                 field=f"sliding_window.{name}")
        if self.text not in ("name", "description"):
            raise InputError(f"sliding_window.text must be 'name' or 'description', got {self.text!r}",
                             field="sliding_window.text")


def window_settings(model: Any, task_settings: Mapping[str, Any]) -> WindowSettings:
    """The engine's defaults, then the model's ``sliding_window``, then the task protocol's."""
    settings = WindowSettings()
    known = {field.name for field in fields(WindowSettings)}
    for source, where in ((getattr(model, "sliding_window", None), "the model's sliding_window"),
                          (task_settings, "the task protocol's sliding_window")):
        if not source:
            continue
        if not isinstance(source, Mapping) or set(source) - known:
            extra = sorted(set(source) - known) if isinstance(source, Mapping) else source
            raise InputError(f"{where} has unknown settings {extra} (known: {', '.join(sorted(known))})",
                             field="sliding_window")
        settings = replace(settings, **dict(source))
    return settings


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


def sliding_window_segments(encoder: Encoder, videos: Sequence[tuple[str, Path]], classes: Sequence[str],
                            descriptions: Mapping[str, str] | None, settings: WindowSettings) -> list[list[Segment]]:
    """The segments of each ``(name, file)`` for ``classes``, windows encoded through ``encoder``."""
    plans = []
    for name, path in videos:
        if Path(path).suffix.lower() in FEATURE_SUFFIXES:
            raise InputError("a dual encoder localizes by sliding windows over video frames and cannot read a "
                             "feature file; give the task videos, or use a feature-based localizer", path=path)
        duration = probe_video(path).duration
        if not math.isfinite(duration) or duration <= 0:
            raise InputError(f"the video's duration is {duration}; cannot place windows", path=path)
        starts = window_starts(duration, settings.window_s, settings.stride_s)
        requests = [ClipRequest(str(path), float(start), min(float(start) + settings.window_s, duration),
                                video_id=name) for start in starts]
        plans.append((duration, starts, requests))
    texts = {label: (descriptions or {}).get(label, label) if settings.text == "description" else label
             for label in classes}
    encoded = encoder.videos([request for _, _, requests in plans for request in requests],
                             encoder.model.frame_spec())
    by_text = encoder.texts(texts.values())
    # float32 torch arithmetic, as the windows' scores have always been computed
    text = F.normalize(torch.from_numpy(np.stack([by_text[texts[label]] for label in classes])).float(), dim=-1)
    answers = []
    for (name, path), (duration, starts, requests) in zip(videos, plans):
        broken = [request.key() for request in requests if request.key() not in encoded.embeddings]
        if broken:  # only reachable with allow_missing: a file that opens but a window that does not decode
            raise InputError(f"video '{name}': window {broken[0]} could not be decoded "
                             f"({encoded.failed.get(broken[0], 'unknown error')})", path=path)
        windows = F.normalize(torch.from_numpy(np.stack([encoded.embeddings[r.key()] for r in requests])).float(),
                              dim=-1)
        probabilities = torch.softmax(windows @ text.T / settings.tau, dim=1).numpy()
        answers.append(merge_windows(starts, settings.window_s, duration, probabilities, list(classes)))
    return answers
