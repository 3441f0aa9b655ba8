"""The pooled retrieval engine: text-to-video and video-to-text inside pools of clips.

Serves InstrAct-Dynamics (one pool per object, so only the action tells clips apart) and any
global retrieval benchmark (one pool holding everything). Only within-pool similarities are
computed; the per-pool results, the clip-count-weighted aggregate with the T2V/V2T mean, and the
recall-vs-pool-size curve come from `instract_eval.metrics.retrieval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import DUAL_ENCODER, require_capability, task_frame_spec
from instract_eval.media import ClipRequest
from instract_eval.metrics import pooled_retrieval_metrics, recall_by_pool_size

from .encoding import encode_texts, encode_videos

__all__ = ["RetrievalItem", "evaluate_retrieval"]


@dataclass(frozen=True)
class RetrievalItem:
    """A caption and the clip it describes, in a named pool."""

    text: str
    video: ClipRequest
    pool: str = "all"
    sample_id: str = ""


def evaluate_retrieval(model: Any, items: Sequence[RetrievalItem], *, task: str, protocol: Mapping[str, Any],
                       ties: str = "expected", batch_size: int = 8, num_workers: int = 0,
                       allow_missing: bool = False) -> dict:
    """``{"metrics": weighted t2v/v2t/mean, "per_pool", "by_pool_size", "coverage"}``."""
    require_capability(model, DUAL_ENCODER, task)
    spec = task_frame_spec(model.frame_spec(), protocol)
    videos = encode_videos(model, [item.video for item in items], spec, batch_size=batch_size,
                           num_workers=num_workers, allow_missing=allow_missing)
    texts = encode_texts(model, [item.text for item in items])
    kept = [item for item in items if item.video.key() in videos.embeddings]
    if not kept:
        raise ValueError(f"task {task}: no item could be evaluated (all videos failed to decode)")
    pools: dict[str, list[int]] = {}
    for index, item in enumerate(kept):
        pools.setdefault(item.pool, []).append(index)
    text_matrix = _unit(np.stack([texts[item.text] for item in kept]))
    video_matrix = _unit(np.stack([videos.embeddings[item.video.key()] for item in kept]))
    similarity = np.full((len(kept), len(kept)), np.nan)
    for members in pools.values():
        block = np.ix_(members, members)
        similarity[block] = text_matrix[members] @ video_matrix[members].T
    pooled = pooled_retrieval_metrics(similarity, pools, ties=ties)
    return {
        "metrics": pooled["weighted"],
        "per_pool": pooled["per_pool"],
        "by_pool_size": recall_by_pool_size(similarity, pools, ties=ties),
        "coverage": {"evaluated": len(kept), "total": len(items), "fraction": len(kept) / len(items),
                     "failed_videos": videos.failed},
    }


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
