"""The multiple-choice engine: a video against candidate texts, or a text against candidate videos.

Serves InstrAct-Semantic (10 captions, positive first), InstrAct-Logic (up to 3 order captions,
missing ones masked), ActionBench AA and OR (a clip against [text, altered text]) and ActionBench
VR (a text against [clip, the same clip reversed in time]). Candidates of different lengths are
padded and masked. A dual encoder scores a candidate by the cosine of the two embeddings; a pair
scorer (a cross-encoder or a generative VLM) scores each (clip, caption) pair itself, VR's text
query against each candidate clip. The ranks, R@K, median/mean rank and accuracy come from
`instract_eval.metrics.mcq_metrics` under the task's tie policy.

Coverage: an item whose video cannot be decoded is an error, unless the user asked for
``allow_missing``; then it is left out and the result says how many items were evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import DUAL_ENCODER, task_frame_spec
from instract_eval.media import ClipRequest, FrameSpec
from instract_eval.metrics import mcq_metrics
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.encoding import Encoder

from .encoding import cosine_scores, engine_capability, pair_scoring

__all__ = ["MCQItem", "evaluate_mcq"]


@dataclass(frozen=True)
class MCQItem:
    """One query and its candidates; ``answer`` indexes the correct candidate (0 by convention)."""

    query: ClipRequest | str
    candidates: tuple[ClipRequest, ...] | tuple[str, ...]
    answer: int = 0
    sample_id: str = ""

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError(f"item {self.sample_id!r} has no candidates")
        kinds = {type(c) for c in self.candidates}
        if len(kinds) != 1 or isinstance(self.query, type(self.candidates[0])):
            raise ValueError(f"item {self.sample_id!r}: a video query needs text candidates and vice versa")
        if not 0 <= self.answer < len(self.candidates):
            raise ValueError(f"item {self.sample_id!r}: answer {self.answer} is not a candidate index")


def evaluate_mcq(encoder: Encoder, items: Sequence[MCQItem], *, task: str, protocol: Mapping[str, Any],
                 ties: str = "expected") -> dict:
    """Score every item and summarise: ``{"metrics", "chance", "coverage", "samples"}``.

    ``chance`` is the accuracy (R@1) a constant scorer gets under expected ties, the mean over
    items of 1 / number of candidates: the line that AA, VR and OR are read against.
    """
    model = encoder.model
    capability = engine_capability(model, "mcq", task)
    spec = task_frame_spec(model.frame_spec(), protocol, task)
    score_items = _embedding_scores if capability == DUAL_ENCODER else _pair_scores
    kept, rows, failed = score_items(encoder, items, spec)
    if not kept:
        raise ValueError(f"task {task}: no item could be evaluated (all videos failed to decode)")
    width = max(len(item.candidates) for item in kept)
    scores = np.full((len(kept), width), -np.inf)
    mask = np.zeros((len(kept), width), dtype=bool)
    for index, row in enumerate(rows):
        scores[index, :len(row)] = row
        mask[index, :len(row)] = True
    answers = np.array([item.answer for item in kept])
    metrics = mcq_metrics(scores, answers, mask, ties=ties)
    ranks = ground_truth_ranks(scores, answers, mask, ties=ties)
    return {
        "metrics": metrics,
        "chance": float(np.mean(1.0 / mask.sum(axis=1))),
        "scoring": (pair_scoring(model, int(mask.sum())) if capability != DUAL_ENCODER else
                    {"method": "model similarity" if encoder.own_similarity else "cosine"}),
        "coverage": {"evaluated": len(kept), "total": len(items), "fraction": len(kept) / len(items),
                     "failed_videos": failed},
        "samples": [{"id": item.sample_id, "video": _video_of(item), "scores": row[m].tolist(),
                     "answer": item.answer, "rank": float(rank)}
                    for item, row, m, rank in zip(kept, scores, mask, ranks)],
    }


def _embedding_scores(encoder: Encoder, items: Sequence[MCQItem], spec: FrameSpec) -> tuple[list[MCQItem], list, dict]:
    """A dual encoder's candidate scores: the model's own similarity of the query and each candidate
    (videos first), else the cosine of their embeddings."""
    requests = [v for item in items for v in (item.query, *item.candidates) if isinstance(v, ClipRequest)]
    texts = [t for item in items for t in (item.query, *item.candidates) if isinstance(t, str)]
    videos = encoder.videos(requests, spec)
    text_embeddings = encoder.texts(texts)

    def embedding(value: ClipRequest | str) -> np.ndarray | None:
        return text_embeddings[value] if isinstance(value, str) else videos.embeddings.get(value.key())

    kept = [item for item in items if all(embedding(v) is not None for v in (item.query, *item.candidates))]
    if encoder.own_similarity:
        rows = [_own_scores(encoder, embedding(item.query), np.stack([embedding(c) for c in item.candidates]),
                            video_query=isinstance(item.query, ClipRequest)) for item in kept]
    else:
        rows = [cosine_scores(embedding(item.query)[None], np.stack([embedding(c) for c in item.candidates])[None])[0]
                for item in kept]
    return kept, rows, videos.failed


def _own_scores(encoder: Encoder, query: np.ndarray, candidates: np.ndarray, *, video_query: bool) -> np.ndarray:
    """``[C]`` scores of one query against its candidates through the model's similarity (videos, texts)."""
    if video_query:
        return encoder.similarity(query[None], candidates)[0]
    return encoder.similarity(candidates, query[None])[:, 0]


def _pair_scores(encoder: Encoder, items: Sequence[MCQItem], spec: FrameSpec) -> tuple[list[MCQItem], list, dict]:
    """A pair scorer's candidate scores: a clip against its captions, or (VR) each candidate clip
    against the query caption."""
    def pairs(item: MCQItem) -> list[tuple[ClipRequest, tuple[str, ...]]]:
        if isinstance(item.query, ClipRequest):
            return [(item.query, tuple(item.candidates))]
        return [(candidate, (item.query,)) for candidate in item.candidates]

    scored = encoder.pair_scores([pair for item in items for pair in pairs(item)], spec)
    kept, rows = [], []
    for item in items:
        found = [scored.scores.get((request.key(), texts)) for request, texts in pairs(item)]
        if all(value is not None for value in found):
            kept.append(item)
            rows.append(np.concatenate(found))
    return kept, rows, scored.failed


def _video_of(item: MCQItem) -> str:
    """The video an item is about: the cluster key for bootstraps over samples."""
    request = item.query if isinstance(item.query, ClipRequest) else item.candidates[0]
    return request.video_id if request.video_id is not None else Path(request.path).stem

