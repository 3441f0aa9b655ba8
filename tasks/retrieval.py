"""The retrieval engine: text-to-video and video-to-text, inside pools of clips or over one gallery.

Serves InstrAct-Dynamics (one pool per object, so only the action tells clips apart) and any
global retrieval benchmark (one pool holding everything). Only within-pool similarities are
computed, one pool's block at a time, and only their rank counts are kept: no matrix over all
items is ever built (at InstrAct-Dynamics size it would hold 2.1 GB for 6.5 MB of scores). The
per-pool results, the clip-count-weighted aggregate with the T2V/V2T mean, the per-category
aggregate (InstrAct groups its pools into Ingredients, Processed Food and Tools & Appliances) and
the recall-vs-pool-size curve come from those counts by `instract_eval.metrics.retrieval`.

Several captions per video (MSVD, MSR-VTT with all captions) are allowed in a single-pool task:
texts are then ranked against the unique videos and V2T follows the protocol's ``v2t``
(``max_caption``, CLIP4Clip's, the default; or ``any_caption``, CLIP_benchmark's), as
`instract_eval.metrics.retrieval_metrics` defines them.

Scores: the cosine of the embeddings, or the model's own similarity when it has one; a pair
scorer scores every (video, caption) pair of a pool itself, which costs the sum over pools of
videos x captions (InstrAct-Dynamics: about 2.2 million pairs), stated in the result's ``scoring``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import PAIR_SCORER, task_frame_spec
from instract_eval.media import ClipRequest
from instract_eval.metrics import (
    pool_rank_counts,
    pooled_metrics_from_counts,
    recall_by_pool_size_from_counts,
    retrieval_metrics,
)
from instract_eval.metrics.ranking import RankCounts, ground_truth_ranks, ranks_from_counts
from instract_eval.encoding import Encoder

from .encoding import engine_capability, pair_scoring

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
    capability = engine_capability(model, "retrieval", task)
    spec = task_frame_spec(model.frame_spec(), protocol, task)
    scorer = (_PairScores if capability == PAIR_SCORER else _EmbeddingScores)(encoder, items, spec)
    kept = [item for item in items if scorer.has(item)]
    if not kept:
        raise ValueError(f"task {task}: no item could be evaluated (all videos failed to decode)")
    coverage = {"evaluated": len(kept), "total": len(items), "fraction": len(kept) / len(items),
                "failed_videos": scorer.failed}
    pools: dict[str, list[int]] = {}
    for index, item in enumerate(kept):
        pools.setdefault(item.pool, []).append(index)
    keys = [item.video.key() for item in kept]
    if any(len({keys[i] for i in members}) < len(members) for members in pools.values()):
        return {**_gallery_with_shared_videos(kept, scorer, pools, task, protocol, ties), "coverage": coverage,
                "scoring": scorer.describe()}
    counts, samples = _score_pools(kept, scorer, pools, ties)
    pooled = pooled_metrics_from_counts(counts, ties=ties)
    return {
        "metrics": pooled["weighted"],
        "per_pool": pooled["per_pool"],
        "per_category": _per_category(kept, counts, pools, ties),
        "by_pool_size": recall_by_pool_size_from_counts(counts, ties=ties),
        "coverage": coverage,
        "scoring": scorer.describe(),
        "samples": samples,
    }


def _score_pools(items: Sequence[RetrievalItem], scorer: _EmbeddingScores | _PairScores,
                 pools: Mapping[str, list[int]], ties: str) -> tuple[dict[str, dict[str, RankCounts]], list[dict]]:
    """Each pool's rank counts and its items' samples, one pool's ``[texts, videos]`` block at a time.

    Only the block being ranked is held: at InstrAct-Dynamics size (16,326 clips in 120 pools) the
    blocks hold about 6.5 MB in all, where an ``[N, N]`` matrix over every item would hold 2.1 GB.
    A sample gives the rank of its video among its pool's videos (T2V) and of its caption among the
    pool's captions (V2T), 1-based under the tie policy, in pool order.
    """
    counts: dict[str, dict[str, RankCounts]] = {}
    samples: list[dict] = []
    for pool, members in pools.items():
        chosen = [items[i] for i in members]
        block = scorer.block(pool, [item.text for item in chosen], [item.video for item in chosen])
        counts[pool] = pool_rank_counts(block, pool=pool, members=members)
        t2v = ranks_from_counts(counts[pool]["t2v"], ties=ties)
        v2t = ranks_from_counts(counts[pool]["v2t"], ties=ties)
        for item, t2v_rank, v2t_rank in zip(chosen, t2v, v2t):
            samples.append({"id": item.sample_id, "pool": pool, "video": _video_of(item),
                            "t2v_rank": float(t2v_rank), "v2t_rank": float(v2t_rank)})
    return counts, samples


def _video_of(item: RetrievalItem) -> str:
    return item.video.video_id if item.video.video_id is not None else Path(item.video.path).stem


def _per_category(items: Sequence[RetrievalItem], counts: Mapping[str, dict[str, RankCounts]],
                  pools: Mapping[str, list[int]], ties: str) -> dict:
    """The clip-weighted aggregate over the pools of each category (empty when no item has one)."""
    categories: dict[str, dict[str, dict[str, RankCounts]]] = {}
    for pool, members in pools.items():
        named = {items[i].category for i in members}
        if len(named) > 1:
            raise ValueError(f"pool {pool!r} mixes the categories {sorted(map(str, named))}")
        category = named.pop()
        if category is not None:
            categories.setdefault(category, {})[pool] = counts[pool]
    return {category: {**pooled_metrics_from_counts(chosen, ties=ties)["weighted"],
                       "num_pools": len(chosen), "num_items": sum(c["t2v"].num_queries for c in chosen.values())}
            for category, chosen in sorted(categories.items())}


def _gallery_with_shared_videos(items: Sequence[RetrievalItem], scorer: _EmbeddingScores | _PairScores,
                                pools: Mapping[str, list[int]], task: str, protocol: Mapping[str, Any],
                                ties: str) -> dict:
    """One gallery where several captions describe one video: texts against the unique videos."""
    if len(pools) > 1:
        raise ValueError(f"task {task}: a video is described by several captions, which is only "
                         "supported in a single-pool (global) retrieval task")
    unique = list({item.video.key(): item.video for item in items}.values())
    column = {request.key(): index for index, request in enumerate(unique)}
    scores = scorer.block(next(iter(pools)), [item.text for item in items], unique)
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


class _EmbeddingScores:
    """A dual encoder's scores: cosine of the embeddings, or the model's own similarity on them."""

    def __init__(self, encoder: Encoder, items: Sequence[RetrievalItem], spec: Any):
        self.encoder = encoder
        encoded = encoder.videos([item.video for item in items], spec)
        self.videos, self.failed = encoded.embeddings, encoded.failed
        self.texts = encoder.texts([item.text for item in items])

    def has(self, item: RetrievalItem) -> bool:
        return item.video.key() in self.videos

    def block(self, pool: str, texts: Sequence[str], videos: Sequence[ClipRequest]) -> np.ndarray:
        """``[texts, videos]`` scores (the pool does not matter to embeddings)."""
        raw_texts = np.stack([self.texts[text] for text in texts])
        raw_videos = np.stack([self.videos[video.key()] for video in videos])
        if self.encoder.own_similarity:  # the model's own score, on the raw embeddings
            return self.encoder.similarity(raw_videos, raw_texts).T
        return _unit(raw_texts) @ _unit(raw_videos).T

    def describe(self) -> dict:
        return {"method": "model similarity" if self.encoder.own_similarity else "cosine"}


class _PairScores:
    """A pair scorer's scores: each video against every caption of its pool, in one call per video."""

    def __init__(self, encoder: Encoder, items: Sequence[RetrievalItem], spec: Any):
        self.captions: dict[str, tuple[str, ...]] = {}
        for item in items:
            self.captions.setdefault(item.pool, ())
        for pool in self.captions:
            self.captions[pool] = tuple(dict.fromkeys(item.text for item in items if item.pool == pool))
        self.model = encoder.model
        scored = encoder.pair_scores([(item.video, self.captions[item.pool]) for item in items], spec)
        self.scores, self.failed = scored.scores, scored.failed
        self.pairs = sum(len(captions) for _, captions in self.scores)

    def has(self, item: RetrievalItem) -> bool:
        return (item.video.key(), self.captions[item.pool]) in self.scores

    def block(self, pool: str, texts: Sequence[str], videos: Sequence[ClipRequest]) -> np.ndarray:
        """``[texts, videos]`` scores, read from each video's row over the pool's captions."""
        captions = self.captions[pool]
        index = {caption: i for i, caption in enumerate(captions)}
        columns = [index[text] for text in texts]
        return np.stack([self.scores[(video.key(), captions)][columns] for video in videos], axis=1)

    def describe(self) -> dict:
        return pair_scoring(self.model, self.pairs)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
