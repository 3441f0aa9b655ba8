"""``actionformer-synth``: the shipped ActionFormer head on ``synth-temporal`` features, frames in.

Why it exists: real TAL work runs a trained head on precomputed features, and the embedded
synthetic world should show what that buys over a dual encoder's sliding window. This model is
the head ``instract-eval train actionformer`` trains on the world's TAL training split (seeds
disjoint from ``synth-tal``), reading the features ``instract-eval features --model
synth-temporal --window 8 --stride 4`` writes. So that it runs on the synth tasks' videos like
any localizer (and in the no-argument ``run``), it computes those features itself: each video's
windows are decoded and encoded exactly as the ``features`` command does (the same requests,
frame spec and encoder), then the head localizes on them (`ActionFormerLocalizer.localize_features`).

The weights file (``adapters/weights/actionformer-synth.pt``: the head's EMA weights, its class
names and architecture settings) is reproduced by the commands in the README's TAL section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import apply_frame_spec, probe_video
from instract_eval.media.clips import ClipDecoder
from instract_eval.runner.features import plan_windows, short_video_spec, window_requests, window_spec

from ..cards import SUPPORTED, ModelCard
from ..protocols import LOCALIZER, Segment
from ..registry import create_model, register_model
from .adapter import ActionFormerLocalizer, FeatureTiming, actionformer

__all__ = ["SYNTH", "ENCODER", "WINDOW", "STRIDE", "FPS", "FramesThroughFeatures", "actionformer_synth",
           "ensure_synth_tal_data"]

SYNTH = "actionformer-synth"
ENCODER = "synth-temporal"
WINDOW, STRIDE, FPS = 8, 4, 8.0    # frames per feature, frames between features, rate: the features command's


def packaged_weights() -> Path:
    return Path(str(resources.files("instract_eval.adapters") / "weights" / f"{SYNTH}.pt"))


class FramesThroughFeatures(nn.Module):
    """A feature-based head behind the encoder that makes its features: ``localize(video, ...)``."""

    localizer_inputs = ("video",)

    def __init__(self, encoder: nn.Module, head: ActionFormerLocalizer, *, window: int, stride: int, fps: float,
                 name: str = SYNTH, batch_size: int = 64):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.window, self.stride, self.fps, self.name, self.batch_size = window, stride, fps, name, batch_size
        self.spec = window_spec(encoder.frame_spec(), window=window, fps=fps, model=ENCODER)

    def frame_spec(self):
        """The frames of one feature window (what the encoder sees)."""
        return self.spec

    @property
    def labels(self) -> list[str]:
        return self.head.labels

    def weights_fingerprint(self) -> str:
        return (f"{self.head.weights_fingerprint()};encoder={self.encoder.weights_fingerprint()};"
                f"window={self.window},stride={self.stride},fps={self.fps}")

    @torch.no_grad()
    def features(self, video: str | os.PathLike) -> tuple[np.ndarray, float]:
        """``[T, C]`` features of ``video`` (the features command's windows) and its duration."""
        path = Path(video)
        info = probe_video(path)
        if not (np.isfinite(info.duration) and info.duration > 0):
            raise InputError(f"the video's duration is {info.duration}; cannot place windows", path=path)
        plan = plan_windows(path.stem, path, info.duration, info.average_fps, window=self.window, stride=self.stride,
                            fps=self.fps)
        spec = short_video_spec(self.spec) if plan.short else self.spec
        requests = window_requests(plan, window=self.window, stride=self.stride, fps=self.fps)
        clips: list[torch.Tensor | None] = [None] * len(requests)
        with ClipDecoder(spec) as decoder:    # the overlapping windows share one pass over the video
            for position, decoded in decoder.decode(requests):
                if isinstance(decoded, InputError):
                    raise decoded
                clips[position] = apply_frame_spec(decoded.frames, spec)
        rows = [self.encoder.encode_video(torch.cat(clips[first:first + self.batch_size])).float().cpu()
                for first in range(0, len(clips), self.batch_size)]
        return torch.cat(rows).numpy(), float(info.duration)

    def localize(self, video: str, classes: Sequence[str], descriptions: Mapping[str, str] | None) -> list[Segment]:
        del descriptions   # a vision-only head
        feats, duration = self.features(video)
        timing = FeatureTiming(fps=self.fps, stride=self.stride, window=self.window, offset=0.0, duration=duration)
        return self.head.localize_features(feats, timing, classes)


CARD = ModelCard(
    family="actionformer",
    description="ActionFormer head trained here on synth-temporal features of the synthetic world's TAL training "
                "split (frames in: it computes its own features, window 8, stride 4 at 8 fps)",
    capabilities=(LOCALIZER,),
    tokenizer="none (vision-only head; descriptions are ignored)",
    code_licence="MIT (this project)",
    weights_licence="MIT (shipped in the package)",
    status=SUPPORTED,
    checkpoint_formats=("our training recipe's weights (state_dict_ema, labels, config)",),
)


@register_model(SYNTH, card=CARD)
def actionformer_synth(checkpoint: str | os.PathLike | None = None) -> FramesThroughFeatures:
    """The shipped head (or another one trained the same way, at ``checkpoint``) on synth-temporal features."""
    head = actionformer(checkpoint=checkpoint or packaged_weights())
    return FramesThroughFeatures(create_model(ENCODER), head, window=WINDOW, stride=STRIDE, fps=FPS)


def ensure_synth_tal_data(root: Path, seed: int = 0, *, size: str = "default") -> Path:
    """``root`` in the layout the TAL recipes read (``annotations.json``, ``features/``, ``videos/``)
    for the synthetic TAL training split: the split (`instract_eval.synth.tal_training`, seeds
    disjoint from ``synth-tal``) under ``root/split``, its ``synth-temporal`` features as the
    features command writes them (kept when already there from the same model and settings), and
    its ground truth. This is what ``instract-eval train actionformer|tridet --data synth`` trains on."""
    from instract_eval.files import make_directories, write_atomic, writing
    from instract_eval.runner.features import FeatureOptions, extract_features, videos_in_directory
    from instract_eval.runner.run import ModelRequest
    from instract_eval.synth.tal_training import ensure_tal_training

    root = Path(root)
    split = ensure_tal_training(root / "split", seed=seed, size=size)
    with writing(root):
        make_directories(root)
    extract_features(ModelRequest(ENCODER), videos_in_directory(split.root / "videos"),
                     FeatureOptions(out=root / "features", window=WINDOW, stride=STRIDE, fps=FPS, batch_size=64,
                                    cache_dir=root / "cache"))
    truth = (split.root / "ground_truth.json").read_bytes()
    annotations = root / "annotations.json"
    if not annotations.is_file() or annotations.read_bytes() != truth:
        write_atomic(annotations, truth)
    link = root / "videos"
    if not link.exists():
        link.symlink_to(split.root / "videos", target_is_directory=True)
    return root
