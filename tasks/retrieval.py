"""The retrieval engine: text-to-video and video-to-text, inside pools of clips or over one gallery.

Serves InstrAct-Dynamics (one pool per object, so only the action tells clips apart) and any
global retrieval benchmark (one pool holding everything). Only within-pool similarities are
computed; the per-pool results, the clip-count-weighted aggregate with the T2V/V2T mean, the
per-category aggregate (InstrAct groups its pools into Ingredients, Processed Food and Tools &
Appliances) and the recall-vs-pool-size curve come from `instract_eval.metrics.retrieval`.

Several captions per video (MSVD, MSR-VTT with all captions) are allowed in a single-pool task:
texts are then ranked against the unique videos and V2T follows the protocol's ``v2t``
(``max_caption``, CLIP4Clip's, the default; or ``any_caption``, CLIP_benchmark's), as
`instract_eval.metrics.retrieval_metrics` defines them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import task_frame_spec
from instract_eval.media import ClipRequest
from instract_eval.metrics import pooled_retrieval_metrics, recall_by_pool_size, retrieval_metrics
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.encoding import Encoder

from .encoding import engine_capability

__all__ = ["RetrievalItem", "evaluate_retrieval"]


@dataclass(frozen=True)
class RetrievalItem:
    """A caption and the clip it describes, in a named pool (and optionally a category of pools)."""

    text: str
    video: ClipRequest
    pool: str = "all"
    sample_id: str = ""
    category: str | None = None


def evaluate_retrieval(encoder: Encoder, items: Sequence[RetrievalItem], *, task: str,
                       protocol: Mapping[str, Any], ties: str = "expected") -> dict:
    """``{"metrics": t2v/v2t/mean, "per_pool", "per_category", "by_pool_size", "coverage", "samples"}``.

    ``samples`` gives each item's ``t2v_rank`` (and ``v2t_rank`` for pooled retrieval) with its
    pool and video, for paired comparisons of two runs.
    """
    model = encoder.model
    engine_capability(model, "retrieval", task)
    spec = task_frame_spec(model.frame_spec(), protocol, task)
    videos = encoder.videos([item.video for item in items], spec)
    texts = encoder.texts([item.text for item in items])
    kept = [item for item in items if item.video.key() in videos.embeddings]
    if not kept:
        raise ValueError(f"task {task}: no item could be evaluated (all videos failed to decode)")
    coverage = {"evaluated": len(kept), "total": len(items), "fraction": len(kept) / len(items),
                "failed_videos": videos.failed}
    raw_texts = np.stack([texts[item.text] for item in kept])
    text_matrix = _unit(raw_texts)
    pools: dict[str, list[int]] = {}
    for index, item in enumerate(kept):
        pools.setdefault(item.pool, []).append(index)
    keys = [item.video.key() for item in kept]
    if any(len({keys[i] for i in members}) < len(members) for members in pools.values()):
        return {**_gallery_with_shared_videos(kept, raw_texts, videos.embeddings, pools, task, protocol, ties,
                                              encoder), "coverage": coverage}
    raw_videos = np.stack([videos.embeddings[key] for key in keys])
    video_matrix = _unit(raw_videos)
    similarity = np.full((len(kept), len(kept)), np.nan)
    for members in pools.values():
        block = np.ix_(members, members)
        if encoder.own_similarity:  # the model's own score, on the raw embeddings
            similarity[block] = encoder.similarity(raw_videos[members], raw_texts[members]).T
        else:
            similarity[block] = text_matrix[members] @ video_matrix[members].T
    pooled = pooled_retrieval_metrics(similarity, pools, ties=ties)
    return {
        "metrics": pooled["weighted"],
        "per_pool": pooled["per_pool"],
        "per_category": _per_category(kept, similarity, pools, ties),
        "by_pool_size": recall_by_pool_size(similarity, pools, ties=ties),
        "coverage": coverage,
        "samples": _pooled_samples(kept, similarity, pools, ties),
    }


def _pooled_samples(items: Sequence[RetrievalItem], similarity: np.ndarray, pools: Mapping[str, list[int]],
                    ties: str) -> list[dict]:
    """Per item: the rank of its video among its pool's videos (T2V) and of its caption among the
    pool's captions (V2T), 1-based under the tie policy."""
    samples: list[dict] = []
    for pool, members in pools.items():
        block = similarity[np.ix_(members, members)]
        diagonal = np.arange(len(members))
        t2v = ground_truth_ranks(block, diagonal, ties=ties)
        v2t = ground_truth_ranks(block.T, diagonal, ties=ties)
        for index, t2v_rank, v2t_rank in zip(members, t2v, v2t):
            item = items[index]
            samples.append({"id": item.sample_id, "pool": pool, "video": _video_of(item),
                            "t2v_rank": float(t2v_rank), "v2t_rank": float(v2t_rank)})
    return samples


def _video_of(item: RetrievalItem) -> str:
    return item.video.video_id if item.video.video_id is not None else Path(item.video.path).stem


def _per_category(items: Sequence[RetrievalItem], similarity: np.ndarray, pools: Mapping[str, list[int]],
                  ties: str) -> dict:
    """The clip-weighted aggregate over the pools of each category (empty when no item has one)."""
    categories: dict[str, dict[str, list[int]]] = {}
    for pool, members in pools.items():
        named = {items[i].category for i in members}
        if len(named) > 1:
            raise ValueError(f"pool {pool!r} mixes the categories {sorted(map(str, named))}")
        category = named.pop()
        if category is not None:
            categories.setdefault(category, {})[pool] = members
    return {category: {**pooled_retrieval_metrics(similarity, chosen, ties=ties)["weighted"],
                       "num_pools": len(chosen), "num_items": sum(len(m) for m in chosen.values())}
            for category, chosen in sorted(categories.items())}


def _gallery_with_shared_videos(items: Sequence[RetrievalItem], raw_texts: np.ndarray,
                                embeddings: Mapping[str, np.ndarray], pools: Mapping[str, list[int]],
                                task: str, protocol: Mapping[str, Any], ties: str, encoder: Encoder) -> dict:
    """One gallery where several captions describe one video: texts against the unique videos."""
    if len(pools) > 1:
        raise ValueError(f"task {task}: a video is described by several captions, which is only "
                         "supported in a single-pool (global) retrieval task")
    unique = list(dict.fromkeys(item.video.key() for item in items))
    column = {key: index for index, key in enumerate(unique)}
    raw_videos = np.stack([embeddings[key] for key in unique])
    if encoder.own_similarity:
        scores = encoder.similarity(raw_videos, raw_texts).T
    else:
        scores = _unit(raw_texts) @ _unit(raw_videos).T
    owner = np.array([column[item.video.key()] for item in items])
    v2t = str(protocol.get("v2t", "max_caption"))
    metrics = retrieval_metrics(scores, text_to_video=owner, ties=ties, v2t=v2t)
    metrics["mean"] = {key: (metrics["t2v"][key] + metrics["v2t"][key]) / 2
                       for key in metrics["t2v"] if key.startswith("R@")}
    t2v_ranks = ground_truth_ranks(scores, owner, ties=ties)
    samples = [{"id": item.sample_id, "video": _video_of(item), "t2v_rank": float(rank)}
               for item, rank in zip(items, t2v_ranks)]
    return {"metrics": metrics, "v2t_definition": v2t, "num_videos": len(unique), "num_texts": len(items),
            "samples": samples}


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
