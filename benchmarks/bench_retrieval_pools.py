"""Peak memory and time of pooled retrieval at InstrAct-Dynamics size: the dense path vs the per-pool engine.

Run from the repository root::

    python benchmarks/bench_retrieval_pools.py [--clips 16326] [--pools 120] [--dim 512] [--seed 0]

The engine's input is a dual encoder's embeddings, so the benchmark feeds it random unit-free
float32 embeddings (``--dim``, one per clip and one per caption) through an encoder that serves
them from memory: what is measured is the scoring and ranking, not a model. Pools are of uneven
size (a seeded Dirichlet split of the clips, every pool at least 2), as InstrAct-Dynamics' object
pools are.

1. ``dense``: the engine's former path, kept here as the reference: every pool's block written
   into one ``[N, N]`` float64 matrix, NaN outside the pools, then the dense metric functions
   (`pooled_retrieval_metrics`, `recall_by_pool_size`) and each pool's ranks read from it.
2. ``per-pool``: `evaluate_retrieval` as it is now: one pool's block scored, counted and dropped
   at a time.

Both compute from the same embeddings; the benchmark asserts that their metrics, per-pool and
by-pool-size results and samples are equal, then prints each path's tracemalloc peak (numpy's
allocations included; the embeddings, made before, are not counted) and wall time (a second run,
without tracemalloc), and the ratios.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable, Sequence

import numpy as np

from instract_eval.encoding import Encoder
from instract_eval.encoding.encoder import EncodedVideos
from instract_eval.media import ClipRequest, FrameSpec
from instract_eval.metrics import pooled_retrieval_metrics, recall_by_pool_size
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.tasks.retrieval import RetrievalItem, evaluate_retrieval

PROTOCOL = {"num_frames": 8}


class _EmbeddingModel:
    """The dual encoder the engine checks for; its outputs come from `_ServedEncoder`, never from here."""

    name = "random-embeddings"

    def frame_spec(self) -> FrameSpec:
        return FrameSpec(num_frames=8, size=None, crop=None)

    def encode_video(self, clips):  # pragma: no cover - the served encoder answers instead
        raise AssertionError("the benchmark serves embeddings from memory")

    def encode_text(self, texts):  # pragma: no cover
        raise AssertionError("the benchmark serves embeddings from memory")


class _ServedEncoder(Encoder):
    """An `Encoder` whose videos and texts are given embeddings (no decoding, no model call)."""

    def __init__(self, videos: dict[str, np.ndarray], texts: dict[str, np.ndarray]):
        super().__init__(_EmbeddingModel())
        self._videos, self._texts = videos, texts

    def videos(self, requests, spec, **_):
        return EncodedVideos({request.key(): self._videos[request.key()] for request in requests}, {})

    def texts(self, texts):
        return {text: self._texts[text] for text in texts}


def pool_sizes(clips: int, pools: int, rng: np.random.Generator) -> np.ndarray:
    """Uneven pool sizes summing to ``clips``, each at least 2."""
    shares = rng.dirichlet(np.full(pools, 1.5))
    sizes = 2 + np.floor(shares * (clips - 2 * pools)).astype(np.int64)
    sizes[: clips - int(sizes.sum())] += 1
    return sizes


def build_task(clips: int, pools: int, dim: int, seed: int) -> tuple[list[RetrievalItem], _ServedEncoder, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = pool_sizes(clips, pools, rng)
    owner = rng.permutation(np.repeat(np.arange(pools), sizes))  # pools interleaved in the item list
    videos = rng.standard_normal((clips, dim)).astype(np.float32)
    texts = (videos + rng.standard_normal((clips, dim)).astype(np.float32) * 12).astype(np.float32)
    items = [RetrievalItem(f"caption {i}", ClipRequest(f"/videos/clip{i}.mp4", 0.0, 1.0, video_id=f"clip{i}"),
                           pool=f"pool{owner[i]}", sample_id=f"dyn/{i}") for i in range(clips)]
    encoder = _ServedEncoder({item.video.key(): videos[i] for i, item in enumerate(items)},
                             {item.text: texts[i] for i, item in enumerate(items)})
    return items, encoder, sizes


def dense_path(encoder: _ServedEncoder, items: Sequence[RetrievalItem]) -> dict:
    """The former engine: an [N, N] float64 matrix, NaN outside the pools, and the dense functions."""
    pools: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        pools.setdefault(item.pool, []).append(index)
    similarity = np.full((len(items), len(items)), np.nan)
    for members in pools.values():
        texts = np.stack([encoder._texts[items[i].text] for i in members])
        videos = np.stack([encoder._videos[items[i].video.key()] for i in members])
        unit_texts = texts / np.maximum(np.linalg.norm(texts, axis=1, keepdims=True), 1e-12)
        unit_videos = videos / np.maximum(np.linalg.norm(videos, axis=1, keepdims=True), 1e-12)
        similarity[np.ix_(members, members)] = unit_texts @ unit_videos.T
    pooled = pooled_retrieval_metrics(similarity, pools)
    samples = []
    for pool, members in pools.items():
        block = similarity[np.ix_(members, members)]
        diagonal = np.arange(len(members))
        t2v, v2t = ground_truth_ranks(block, diagonal), ground_truth_ranks(block.T, diagonal)
        samples += [{"id": items[i].sample_id, "pool": pool, "video": items[i].video.video_id,
                     "t2v_rank": float(a), "v2t_rank": float(b)} for i, a, b in zip(members, t2v, v2t)]
    return {"metrics": pooled["weighted"], "per_pool": pooled["per_pool"], "per_category": {},
            "by_pool_size": recall_by_pool_size(similarity, pools), "samples": samples}


def measured(run: Callable[[], dict]) -> tuple[dict, int, float]:
    """``run()``'s result, its tracemalloc peak in bytes and its wall time in seconds (timed in a
    second run without tracemalloc, which slows Python code down)."""
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    start = time.perf_counter()
    result = run()
    return result, peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16_326)
    parser.add_argument("--pools", type=int, default=120)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items, encoder, sizes = build_task(args.clips, args.pools, args.dim, args.seed)
    within = int((sizes.astype(np.int64) ** 2).sum())
    print(f"{args.clips:,} clips in {args.pools} pools (sizes {sizes.min()}..{sizes.max()}), D={args.dim}: "
          f"{within:,} within-pool scores ({within * 8 / 1e6:.1f} MB as float64), "
          f"dense matrix {args.clips ** 2 * 8 / 1e9:.2f} GB")
    after, after_peak, after_s = measured(
        lambda: evaluate_retrieval(encoder, items, task="instract-dynamics", protocol=PROTOCOL))
    before, before_peak, before_s = measured(lambda: dense_path(encoder, items))
    for key in ("metrics", "per_pool", "per_category", "by_pool_size", "samples"):
        assert after[key] == before[key], f"{key} differs between the two paths"
    print(f"{'path':<10} {'peak MB':>9} {'seconds':>8}")
    print(f"{'dense':<10} {before_peak / 1e6:>9.1f} {before_s:>8.2f}")
    print(f"{'per-pool':<10} {after_peak / 1e6:>9.1f} {after_s:>8.2f}")
    print(f"peak {before_peak / after_peak:.0f}x smaller, time {before_s / after_s:.2f}x; results identical "
          f"(T2V R@1 {after['metrics']['t2v']['R@1']:.4f}, V2T R@1 {after['metrics']['v2t']['R@1']:.4f})")


if __name__ == "__main__":
    main()
