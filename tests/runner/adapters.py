"""Adapters with faults, for the runner's tests; created as ``tests.runner.adapters:<factory>``."""

from __future__ import annotations

import time

import torch

from instract_eval.adapters.baselines import RandomModel
from instract_eval.adapters.protocols import Segment


class SlowRandom(RandomModel):
    """The random model, sleeping ``delay_s`` per video batch: slow enough to be killed midway."""

    def __init__(self, delay_s: float, **kwargs):
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s)
        return super().encode_video(clips)


def slow_random(delay_s: float = 0.2, seed: int = 0) -> SlowRandom:
    return SlowRandom(delay_s, seed=seed)


class NaNForSomeVideos(RandomModel):
    """The first clip of every batch comes back as NaN."""

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        out = super().encode_video(clips)
        out[0] = float("nan")
        return out


def nan_videos() -> NaNForSomeVideos:
    return NaNForSomeVideos(seed=0)


class OutOfMemoryAbove(RandomModel):
    """Raises `torch.OutOfMemoryError` for batches above ``max_batch`` clips, and counts its calls."""

    def __init__(self, max_batch: int, **kwargs):
        super().__init__(**kwargs)
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        if len(clips) > self.max_batch:
            raise torch.OutOfMemoryError(f"CUDA out of memory (test: batch {len(clips)} > {self.max_batch})")
        self.batch_sizes.append(len(clips))
        return super().encode_video(clips)


def out_of_memory_above(max_batch: int = 2, seed: int = 0) -> OutOfMemoryAbove:
    return OutOfMemoryAbove(max_batch, seed=seed)


class LocalizerOnly:
    """A localizer and nothing else; records whether anything was decoded for it."""

    name = "localizer-only"

    def localize(self, video, classes, descriptions):
        return [Segment(0.0, 1.0, classes[0], 0.5)]


def localizer_only() -> LocalizerOnly:
    return LocalizerOnly()


class LateRank(RandomModel):
    """The random model, slow to start on rank 1: rank 0 fills the cache before rank 1 reads it."""

    def frame_spec(self):
        import os

        if os.environ.get("RANK") == "1" and not getattr(self, "_waited", False):
            time.sleep(2.0)
            self._waited = True
        return super().frame_spec()


def late_rank(seed: int = 0) -> LateRank:
    return LateRank(seed=seed)


class RandomPairScorer:
    """A pair scorer (no embeddings exposed): the random model's cosine of each (clip, caption)."""

    name = "random-pair-scorer"

    def __init__(self, seed: int):
        self.inner = RandomModel(seed=seed)

    def frame_spec(self):
        return self.inner.frame_spec()

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        videos = torch.nn.functional.normalize(self.inner.encode_video(clips).double(), dim=-1)
        rows = []
        for video, captions in zip(videos, texts):
            captions = torch.nn.functional.normalize(self.inner.encode_text(captions).double(), dim=-1)
            rows.append(captions @ video)
        return torch.stack(rows)


def random_pair_scorer(seed: int = 0) -> RandomPairScorer:
    return RandomPairScorer(seed)
