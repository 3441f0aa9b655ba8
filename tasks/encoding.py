"""Encode each unique clip and each unique text once, for the task engines.

Clips are decoded in DataLoader workers (`instract_eval.media.clip_loader`); a request with K
temporal clips (ACE: 3) is encoded as K clips whose embeddings are averaged, so the similarity of
the averaged embedding is what the engines score. Non-finite embeddings are an error naming the
items: a NaN would otherwise rank silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec, clip_loader

__all__ = ["EncodedVideos", "encode_videos", "encode_texts", "cosine_scores"]


@dataclass(frozen=True)
class EncodedVideos:
    """Embeddings by request key, and the requests that could not be decoded (with why)."""

    embeddings: dict[str, np.ndarray]
    failed: dict[str, str]


def encode_videos(model, requests: Iterable[ClipRequest], spec: FrameSpec, *, batch_size: int = 8,
                  num_workers: int = 0, allow_missing: bool = False, method: str = "encode_video",
                  keep_clips: bool = False) -> EncodedVideos:
    """``model.<method>`` over the unique requests; missing files raise unless ``allow_missing``.

    ``method`` is ``encode_video`` (``[B, D]`` embeddings) or ``encode_video_tokens`` (``[B, K, D]``
    tokens). The temporal clips of a request are averaged element-wise, unless ``keep_clips``:
    then each embedding gains a leading clip axis, for engines that average scores over clips.
    """
    unique = {request.key(): request for request in requests}
    loader = clip_loader(list(unique.values()), spec, batch_size=batch_size, num_workers=num_workers,
                         on_error="skip" if allow_missing else "raise")
    embeddings: dict[str, np.ndarray] = {}
    encode = getattr(model, method)
    with torch.inference_mode():
        for batch in loader:
            size, num_clips = batch.clips.shape[:2]
            encoded = encode(batch.clips.flatten(0, 1))
            encoded = encoded.reshape(size, num_clips, *encoded.shape[1:]).float()
            encoded = (encoded if keep_clips else encoded.mean(dim=1)).cpu().numpy()
            _check_finite(encoded, batch.keys, "video")
            embeddings.update(zip(batch.keys, encoded))
    failed = {failure.key: f"{failure.path}: {failure.message}" for failure in loader.failures}
    return EncodedVideos(embeddings, failed)


def encode_texts(model, texts: Iterable[str], *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """``model.encode_text`` over the unique texts, in batches."""
    unique = list(dict.fromkeys(texts))
    embeddings: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, len(unique), batch_size):
            chunk = unique[start:start + batch_size]
            encoded = model.encode_text(chunk).float().cpu().numpy()
            _check_finite(encoded, chunk, "text")
            embeddings.update(zip(chunk, encoded))
    return embeddings


def cosine_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query ``[N, D]`` with its own candidates ``[N, C, D]`` -> ``[N, C]``."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=-1, keepdims=True), 1e-12)
    c = candidates / np.maximum(np.linalg.norm(candidates, axis=-1, keepdims=True), 1e-12)
    return np.einsum("nd,ncd->nc", q, c)


def _check_finite(values: np.ndarray, keys: Sequence[str], what: str) -> None:
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        named = [keys[i] for i in np.flatnonzero(bad)[:3]]
        raise InputError(f"the model returned NaN or inf {what} embeddings for {int(bad.sum())} item(s), "
                         f"e.g. {', '.join(named)}", field="--model")
