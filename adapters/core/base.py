"""What every torch adapter of a published model does the same way, written once.

An adapter is an ``nn.Module`` (the runner moves it with ``.to(device)`` and calls ``.eval()``)
that knows its name, its frame spec and the file it was loaded from. `TorchAdapter` gives it:

- ``frame_spec()`` from the spec it was built with;
- ``weights_fingerprint()``: the SHA-256 of the checkpoint file (or directory) it was loaded from,
  so retrained weights at the same path never read stale cache, plus the settings that change
  outputs without being arguments;
- ``similarity(videos, texts)``: cosine by default; families whose official score is another
  (a logit scale, a sigmoid with bias, a raw dot product) override it;
- ``device``: where its parameters are, so texts are tokenised onto it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from .checkpoints import file_sha256

__all__ = ["TorchAdapter", "require_checkpoint", "positive_int"]


class TorchAdapter(nn.Module):
    """Base of the published-model adapters; see the module docstring."""

    name = "adapter"

    def __init__(self, *, spec: FrameSpec, checkpoint: str | os.PathLike | None, settings: str = ""):
        super().__init__()
        self.spec = spec
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self._settings = settings
        self._sha256: str | None = None

    def frame_spec(self) -> FrameSpec:
        return self.spec

    def weights_fingerprint(self) -> str:
        """SHA-256 of the checkpoint (computed once), with the output-relevant settings."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint) if self.checkpoint is not None else "no-checkpoint"
        return f"{self._sha256};{self._settings}" if self._settings else self._sha256

    @property
    def device(self) -> torch.device:
        for parameter in self.parameters():
            return parameter.device
        return torch.device("cpu")

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` videos and ``[N, D]`` texts to ``[B, N]`` scores: cosine unless overridden."""
        return F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T

    def extra_repr(self) -> str:
        return f"name={self.name}, checkpoint={self.checkpoint}"


def require_checkpoint(model: str, checkpoint: Any) -> Path:
    """The checkpoint path, or one line saying how to give one."""
    if checkpoint is None:
        raise InputError(f"model {model} needs weights: pass pretrained=TAG (instract-eval list models --details "
                         "shows the tags) or checkpoint=PATH", field="--model-args")
    return Path(os.fspath(checkpoint))


def positive_int(model: str, name: str, value: Any) -> int:
    """``value`` as a positive integer, or one line naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{model}: {name} must be a positive integer, got {value!r}", field="--model-args")
    return value
