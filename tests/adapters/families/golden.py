"""Shared checks of a port against the official implementation's outputs (``tests/data/official/*``).

Each family's folder holds a tiny checkpoint written in the official on-disk format, the official
code's outputs on fixed frames and captions (``golden.safetensors``), and the script that made
them. A port is right when every embedding has cosine >= 0.9999 to the official one and its
``similarity`` is within 1e-5 of the official score (scaled by the logit scale when the official
score carries one): the cosine check alone misses mistakes that move the scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

OFFICIAL = Path(__file__).resolve().parents[2] / "data" / "official"
MIN_COSINE = 0.9999
MAX_SCORE_DIFFERENCE = 1e-5


@dataclass
class Golden:
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def captions(self) -> list[str]:
        return json.loads(self.metadata["captions"])


def load_golden(family: str, name: str = "golden.safetensors") -> Golden:
    from safetensors import safe_open

    with safe_open(str(OFFICIAL / family / name), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = dict(handle.metadata() or {})
    return Golden(tensors, metadata)


def worst_cosine(ours: torch.Tensor, official: torch.Tensor) -> float:
    """The smallest row-wise cosine between two ``[N, D]`` embedding sets."""
    assert ours.shape == official.shape, (ours.shape, official.shape)
    return float(F.cosine_similarity(ours.double(), official.double(), dim=-1).min())


def assert_matches(ours: torch.Tensor, official: torch.Tensor, what: str) -> float:
    cosine = worst_cosine(ours, official)
    assert cosine >= MIN_COSINE, f"{what}: worst cosine to the official embedding {cosine:.7f}"
    return cosine


def assert_scores(ours: torch.Tensor, official: torch.Tensor, scale: float = 1.0) -> float:
    assert ours.shape == official.shape, (ours.shape, official.shape)
    difference = float((ours.double() - official.double()).abs().max())
    assert difference <= MAX_SCORE_DIFFERENCE * max(scale, 1.0), \
        f"similarity differs from the official score by {difference:.3g} (scale {scale:.3g})"
    return difference
