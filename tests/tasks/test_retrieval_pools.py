"""The per-pool retrieval engine gives exactly what the dense ``[N, N]`` path gave, without the matrix.

The reference below is the engine's former path, kept here as the independent computation: every
pool's block written into one NaN-filled ``[N, N]`` float64 matrix, then the dense metric
functions and `ground_truth_ranks` on that matrix. The engine now scores and ranks one pool's
block at a time; its whole result (metrics, per-pool, per-category, by pool size, samples) must
equal the reference's, value for value, on random pools with ties, pools of one item and pools
of unequal size.
"""

from __future__ import annotations

import numpy as np
import pytest

from instract_eval.encoding import Encoder
from instract_eval.encoding.encoder import EncodedVideos
from instract_eval.media import ClipRequest
from instract_eval.metrics import pooled_retrieval_metrics, recall_by_pool_size
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.tasks.retrieval import RetrievalItem, evaluate_retrieval

from .test_mcq_engine import PROTOCOL, BrightnessModel


class PrecomputedEncoder(Encoder):
    """An encoder that serves fixed embeddings (no decoding), to drive the engine at any size."""

    def __init__(self, videos: dict[str, np.ndarray], texts: dict[str, np.ndarray], *, own: bool = False):
        super().__init__(BrightnessModel())
        self._videos, self._texts, self._own = videos, texts, own
        self.similarity_calls: list[tuple[int, int]] = []

    @property
    def own_similarity(self) -> bool:
        return self._own

    def similarity(self, videos: np.ndarray, texts: np.ndarray) -> np.ndarray:
        """A model's own score (negative squared distance): ties where embeddings coincide."""
        self.similarity_calls.append((videos.shape[0], texts.shape[0]))
        return -((videos[:, None, :] - texts[None, :, :]) ** 2).sum(axis=-1)

    def videos(self, requests, spec, **_):
        return EncodedVideos({r.key(): self._videos[r.key()] for r in requests if r.key() in self._videos},
                             {r.key(): "not decodable" for r in requests if r.key() not in self._videos})

    def texts(self, texts):
        return {text: self._texts[text] for text in texts}


def random_task(seed: int, sizes: list[int], *, dim: int = 4, levels: int = 3, categories: bool = True):
    """Items in pools of the given sizes, embeddings on a coarse integer grid so that scores tie."""
    rng = np.random.default_rng(seed)
    items, videos, texts = [], {}, {}
    for pool, size in enumerate(sizes):
        for member in range(size):
            request = ClipRequest(f"/videos/v{pool}_{member}.mp4", 0.0, 1.0)
            text = f"caption {pool}.{member}"
            videos[request.key()] = rng.integers(0, levels, dim).astype(np.float32)
            texts[text] = rng.integers(0, levels, dim).astype(np.float32)
            category = ("tools", "food", None)[pool % 3] if categories else None
            items.append(RetrievalItem(text, request, pool=f"p{pool}", sample_id=f"s{pool}.{member}",
                                       category=category))
    order = rng.permutation(len(items))  # pools interleaved in the item list, as a manifest may have them
    return [items[i] for i in order], videos, texts


def dense_reference(encoder: PrecomputedEncoder, items: list[RetrievalItem], ties: str) -> dict:
    """The former engine: one [N, N] matrix, NaN outside the pools, and the dense metric functions."""
    kept = [item for item in items if item.video.key() in encoder._videos]
    pools: dict[str, list[int]] = {}
    for index, item in enumerate(kept):
        pools.setdefault(item.pool, []).append(index)
    similarity = np.full((len(kept), len(kept)), np.nan)
    for members in pools.values():
        texts = np.stack([encoder._texts[kept[i].text] for i in members])
        videos = np.stack([encoder._videos[kept[i].video.key()] for i in members])
        if encoder._own:
            block = encoder.similarity(videos, texts).T
        else:
            unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
            block = unit(texts) @ unit(videos).T
        similarity[np.ix_(members, members)] = block
    pooled = pooled_retrieval_metrics(similarity, pools, ties=ties)
    categories: dict[str, dict[str, list[int]]] = {}
    for pool, members in pools.items():
        if kept[members[0]].category is not None:
            categories.setdefault(kept[members[0]].category, {})[pool] = members
    per_category = {name: {**pooled_retrieval_metrics(similarity, chosen, ties=ties)["weighted"],
                           "num_pools": len(chosen), "num_items": sum(len(m) for m in chosen.values())}
                    for name, chosen in sorted(categories.items())}
    samples = []
    for pool, members in pools.items():
        block = similarity[np.ix_(members, members)]
        diagonal = np.arange(len(members))
        t2v = ground_truth_ranks(block, diagonal, ties=ties)
        v2t = ground_truth_ranks(block.T, diagonal, ties=ties)
        for index, a, b in zip(members, t2v, v2t):
            item = kept[index]
            samples.append({"id": item.sample_id, "pool": pool, "video": item.video.path.rsplit("/", 1)[1][:-4],
                            "t2v_rank": float(a), "v2t_rank": float(b)})
    return {"metrics": pooled["weighted"], "per_pool": pooled["per_pool"], "per_category": per_category,
            "by_pool_size": recall_by_pool_size(similarity, pools, ties=ties), "samples": samples}


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_pool_engine_equals_the_dense_matrix_path(seed, ties):
    sizes = [1, 7, 2, 30, 1, 13, 5, 5, 64]  # pools of one item, equal and unequal sizes
    items, videos, texts = random_task(seed, sizes)
    encoder = PrecomputedEncoder(videos, texts)
    result = evaluate_retrieval(encoder, items, task="toy", protocol=PROTOCOL, ties=ties)
    reference = dense_reference(encoder, items, ties)
    assert result["metrics"]["t2v"]["num_tied"] > 0  # the grid embeddings do tie
    for key in ("metrics", "per_pool", "per_category", "by_pool_size", "samples"):
        assert result[key] == reference[key], key
    assert result["coverage"]["evaluated"] == sum(sizes)


def test_own_similarity_and_failed_videos_match_the_dense_path():
    items, videos, texts = random_task(5, [3, 1, 9, 4], levels=2)
    dropped = items[4].video.key()
    del videos[dropped]  # a video that failed to decode leaves its pool one smaller
    encoder = PrecomputedEncoder(videos, texts, own=True)
    result = evaluate_retrieval(encoder, items, task="toy", protocol=PROTOCOL)
    reference = dense_reference(PrecomputedEncoder(videos, texts, own=True), items, "expected")
    for key in ("metrics", "per_pool", "per_category", "by_pool_size", "samples"):
        assert result[key] == reference[key], key
    assert result["coverage"]["failed_videos"] == {dropped: "not decodable"}
    # The model's own score is asked once per pool, for that pool's block only.
    assert sorted(encoder.similarity_calls) == sorted((n, n) for n in result["by_pool_size"]
                                                      for _ in range(result["by_pool_size"][n]["num_pools"]))


def test_a_non_finite_score_names_the_items_of_the_pool():
    items, videos, texts = random_task(3, [2, 3], categories=False)
    texts[items[0].text] = np.full(4, np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match=r"similarity has NaN at row \d+, column \d+ \(inside pool 'p\d'\)"):
        evaluate_retrieval(PrecomputedEncoder(videos, texts, own=True), items, task="toy", protocol=PROTOCOL)


def test_memory_follows_the_pool_blocks_not_the_item_count():
    """3,000 items in 30 pools: a dense float64 [N, N] matrix alone would take 72 MB; the blocks 2.4 MB."""
    import tracemalloc

    items, videos, texts = random_task(7, [100] * 30, dim=8, levels=50, categories=False)
    encoder = PrecomputedEncoder(videos, texts)
    tracemalloc.start()
    try:
        result = evaluate_retrieval(encoder, items, task="toy", protocol=PROTOCOL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["metrics"]["t2v"]["num_queries"] == 3_000
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB"
