"""Retrieval metrics against hand-worked matrices, loop references and exact subset enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import hypergeom, multivariate_hypergeom

from instract_eval.metrics.ranking import TIE_POLICIES, recall_at_k_per_query
from instract_eval.metrics.retrieval import (
    expected_recall_at_pool_size,
    pool_rank_counts,
    pooled_metrics_from_counts,
    pooled_rank_counts,
    pooled_retrieval_metrics,
    recall_by_pool_size,
    recall_by_pool_size_from_counts,
    retrieval_metrics,
    retrieval_rank_counts,
)

SETTINGS = settings(max_examples=50, deadline=None)


# ------------------------------------------------------------------------------------------------
# Independent references


def argsort_reference(similarity: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Tie-free T2V metrics the way CLIP4Clip reports them: sort each row, find the diagonal's
    position, R@K in percent, MR = median position + 1, MeanR = mean position + 1."""
    positions = np.array([int(np.flatnonzero(np.argsort(-row) == i)[0]) for i, row in enumerate(similarity)])
    result = {f"R@{k}": 100.0 * np.mean(positions < k) for k in ks}
    result["MR"] = np.median(positions) + 1
    result["MeanR"] = np.mean(positions) + 1
    return result


def loop_max_caption_v2t(similarity, text_to_video, n_videos) -> np.ndarray:
    """CLIP4Clip multi-sentence V2T, one video at a time: candidate u scores max over its captions."""
    ranks = []
    for v in range(n_videos):
        candidate_scores = [max(similarity[i, v] for i in range(len(text_to_video)) if text_to_video[i] == u) for u in range(n_videos)]
        ranks.append(1 + sum(score > candidate_scores[v] for score in candidate_scores))
    return np.array(ranks, dtype=float)


def loop_any_caption_v2t(similarity, text_to_video, n_videos, k) -> np.ndarray:
    """CLIP_benchmark V2T on tie-free input: hit when any own caption is among the top-k captions."""
    hits = []
    for v in range(n_videos):
        top = np.argsort(-similarity[:, v])[:k]
        hits.append(any(text_to_video[i] == v for i in top))
    return np.array(hits, dtype=float)


def distinct_similarity(rng, shape) -> np.ndarray:
    """A tie-free matrix: a random permutation of distinct values."""
    return rng.permutation(np.prod(shape)).reshape(shape).astype(float) / np.prod(shape)


@st.composite
def pooled_cases(draw, max_pools: int = 3, max_pool_size: int = 5, spare_items: bool = True):
    sizes = draw(st.lists(st.integers(1, max_pool_size), min_size=1, max_size=max_pools))
    n_spare = draw(st.integers(0, 2)) if spare_items else 0
    n_items = sum(sizes) + n_spare
    order = draw(st.permutations(range(n_items)))
    pools, start = {}, 0
    for p, size in enumerate(sizes):
        pools[f"pool{p}"] = list(order[start:start + size])
        start += size
    similarity = draw(arrays(np.int64, (n_items, n_items), elements=st.integers(0, 3))).astype(float)
    return similarity, pools


# ------------------------------------------------------------------------------------------------
# One gallery


def test_hand_worked_three_by_three():
    similarity = np.array(
        [
            [0.9, 0.5, 0.1],  # text 0: its video first                      -> rank 1
            [0.8, 0.3, 0.6],  # text 1: two videos above its own              -> rank 3
            [0.2, 0.2, 0.2],  # text 2: tied with both others, b=0, t=2        -> rank 1..3
        ]
    )
    result = retrieval_metrics(similarity, ks=(1, 2, 3))
    t2v, v2t = result["t2v"], result["v2t"]
    assert t2v == {
        "R@1": pytest.approx((1 + 0 + 1 / 3) / 3),
        "R@2": pytest.approx((1 + 0 + 2 / 3) / 3),
        "R@3": 1.0,
        "median_rank": 2.0,  # ranks 1, 3, 2
        "mean_rank": 2.0,
        "num_queries": 3,
        "num_tied": 1,
    }
    # Columns: video 0 {0.9*, 0.8, 0.2} -> 1; video 1 {0.5, 0.3*, 0.2} -> 2; video 2 {0.1, 0.6, 0.2*} -> 2.
    assert v2t == {
        "R@1": pytest.approx(1 / 3),
        "R@2": 1.0,
        "R@3": 1.0,
        "median_rank": 2.0,
        "mean_rank": pytest.approx(5 / 3),
        "num_queries": 3,
        "num_tied": 0,
    }
    assert retrieval_metrics(similarity, ties="optimistic", ks=(1,))["t2v"]["R@1"] == pytest.approx(2 / 3)
    assert retrieval_metrics(similarity, ties="pessimistic", ks=(1,))["t2v"]["mean_rank"] == pytest.approx(7 / 3)


@pytest.mark.parametrize("size", [1, 7, 30, 64])
def test_tie_free_values_equal_clip4clip_convention(size):
    rng = np.random.default_rng(size)
    similarity = distinct_similarity(rng, (size, size))
    for ties in TIE_POLICIES:
        result = retrieval_metrics(similarity, ties=ties)
        for direction, matrix in (("t2v", similarity), ("v2t", similarity.T)):
            reference = argsort_reference(matrix)
            for k in (1, 5, 10):
                assert 100.0 * result[direction][f"R@{k}"] == pytest.approx(reference[f"R@{k}"], abs=1e-9)
            assert result[direction]["median_rank"] == reference["MR"]
            assert result[direction]["mean_rank"] == pytest.approx(reference["MeanR"])
            assert result[direction]["num_tied"] == 0


def test_constant_similarity_is_chance():
    result = retrieval_metrics(np.ones((20, 20)))
    for direction in ("t2v", "v2t"):
        assert result[direction]["R@1"] == pytest.approx(1 / 20)
        assert result[direction]["R@5"] == pytest.approx(5 / 20)
        assert result[direction]["R@10"] == pytest.approx(10 / 20)
        assert result[direction]["mean_rank"] == pytest.approx(10.5)
        assert result[direction]["median_rank"] == pytest.approx(10.5)
        assert result[direction]["num_tied"] == 20


@SETTINGS
@given(st.integers(2, 6), st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_multi_caption_definitions_equal_loop_references(n_videos, n_extra_captions, seed):
    rng = np.random.default_rng(seed)
    text_to_video = np.concatenate([np.arange(n_videos), rng.integers(0, n_videos, n_extra_captions)])
    rng.shuffle(text_to_video)
    similarity = distinct_similarity(rng, (text_to_video.shape[0], n_videos))
    max_caption = retrieval_metrics(similarity, text_to_video=text_to_video, v2t="max_caption", ks=(1, 2, 3))
    any_caption = retrieval_metrics(similarity, text_to_video=text_to_video, v2t="any_caption", ks=(1, 2, 3))
    ranks = loop_max_caption_v2t(similarity, text_to_video, n_videos)
    for k in (1, 2, 3):
        assert max_caption["v2t"][f"R@{k}"] == pytest.approx(np.mean(ranks <= k))
        assert any_caption["v2t"][f"R@{k}"] == pytest.approx(np.mean(loop_any_caption_v2t(similarity, text_to_video, n_videos, k)))
    assert max_caption["v2t"]["median_rank"] == np.median(ranks)
    assert max_caption["v2t"]["num_queries"] == any_caption["v2t"]["num_queries"] == n_videos
    # T2V does not depend on the V2T definition: each text ranks its own video among all videos.
    t2v_ranks = [1 + np.sum(similarity[i] > similarity[i, v]) for i, v in enumerate(text_to_video)]
    assert max_caption["t2v"] == any_caption["t2v"]
    assert max_caption["t2v"]["mean_rank"] == pytest.approx(np.mean(t2v_ranks))
    assert max_caption["t2v"]["num_queries"] == text_to_video.shape[0]


def test_v2t_definitions_differ_on_a_hand_worked_case():
    # Captions 0 and 1 describe video 0, caption 2 describes video 1.
    text_to_video = np.array([0, 0, 1])
    similarity = np.array(
        [
            [0.0, 0.8],  # caption 0
            [0.0, 0.7],  # caption 1
            [0.0, 0.6],  # caption 2
        ]
    )
    max_v2t = retrieval_metrics(similarity, text_to_video=text_to_video, ks=(1, 2, 3))["v2t"]
    any_v2t = retrieval_metrics(similarity, text_to_video=text_to_video, v2t="any_caption", ks=(1, 2, 3))["v2t"]
    # Video 1 (column 1). max_caption compares videos: [max(0.8, 0.7), 0.6*] -> rank 2.
    # any_caption compares captions: [0.8, 0.7, 0.6*] -> rank 3.
    # Video 0 (column 0) is all zeros. max_caption: [0*, 0] -> expected rank 1.5.
    # any_caption: own captions 0 and 1 tie with caption 2 -> 1 + 1/(2 + 1).
    assert max_v2t["mean_rank"] == pytest.approx((1.5 + 2) / 2)
    assert any_v2t["mean_rank"] == pytest.approx((1 + 1 / 3 + 3) / 2)
    assert max_v2t["R@1"] == pytest.approx(0.5 / 2)
    assert any_v2t["R@1"] == pytest.approx((2 / 3) / 2)
    assert max_v2t["R@2"] == pytest.approx(1.0)
    assert any_v2t["R@2"] == pytest.approx(0.5)
    assert max_v2t["num_tied"] == any_v2t["num_tied"] == 1


def test_identity_text_to_video_equals_square_case():
    rng = np.random.default_rng(3)
    similarity = rng.integers(0, 3, size=(6, 6)).astype(float)
    square = retrieval_metrics(similarity)
    for v2t in ("max_caption", "any_caption"):
        assert retrieval_metrics(similarity, text_to_video=np.arange(6), v2t=v2t) == square


def test_retrieval_rank_counts_feed_per_query_values():
    similarity = np.array([[0.9, 0.5, 0.1], [0.8, 0.3, 0.6], [0.2, 0.2, 0.2]])
    counts = retrieval_rank_counts(similarity)
    np.testing.assert_allclose(recall_at_k_per_query(counts["t2v"], 1), [1.0, 0.0, 1 / 3])
    np.testing.assert_allclose(recall_at_k_per_query(counts["v2t"], 1), [1.0, 0.0, 0.0])


# ------------------------------------------------------------------------------------------------
# Pools


def test_pooled_hand_worked_and_weighting():
    # Items 0-1 form pool "a" (both correct); items 2-4 form pool "b" (one correct); item 5 is in
    # no pool. Everything outside the two diagonal blocks is NaN.
    similarity = np.full((6, 6), np.nan)
    similarity[np.ix_([0, 1], [0, 1])] = [[0.9, 0.1], [0.2, 0.8]]
    similarity[np.ix_([2, 3, 4], [2, 3, 4])] = [[0.5, 0.6, 0.7], [0.1, 0.9, 0.0], [0.3, 0.8, 0.2]]
    pools = {"a": [0, 1], "b": [2, 3, 4]}
    result = pooled_retrieval_metrics(similarity, pools, ks=(1, 5, 10))
    assert result["per_pool"]["a"]["num_items"] == 2
    assert result["per_pool"]["a"]["t2v"]["R@1"] == 1.0
    # Pool b T2V ranks: item 2 -> 3, item 3 -> 1, item 4 -> 3 (0.3 and 0.8 above 0.2).
    assert result["per_pool"]["b"]["t2v"]["R@1"] == pytest.approx(1 / 3)
    assert result["per_pool"]["b"]["t2v"]["mean_rank"] == pytest.approx(7 / 3)
    # Clip-count weighting: (2 hits + 1 hit) / 5 clips, not the mean of per-pool R@1 (2/3).
    assert result["weighted"]["t2v"]["R@1"] == pytest.approx(3 / 5)
    assert result["weighted"]["t2v"]["median_rank"] == 1.0  # ranks 1, 1, 3, 1, 3
    assert result["weighted"]["t2v"]["mean_rank"] == pytest.approx(9 / 5)
    assert result["weighted"]["t2v"]["num_queries"] == 5
    # Pool b V2T (columns): item 2 {0.5*, 0.1, 0.3} -> 1; item 3 {0.6, 0.9*, 0.8} -> 1; item 4 {0.7, 0.0, 0.2*} -> 2.
    assert result["weighted"]["v2t"]["R@1"] == pytest.approx(4 / 5)
    assert result["weighted"]["mean"]["R@1"] == pytest.approx((3 / 5 + 4 / 5) / 2)
    assert set(result["weighted"]["mean"]) == {"R@1", "R@5", "R@10"}


@SETTINGS
@given(pooled_cases(), st.sampled_from(TIE_POLICIES))
def test_pooled_reads_only_within_pool_blocks(case, ties):
    similarity, pools = case
    n_items = similarity.shape[0]
    inside = np.zeros((n_items, n_items), dtype=bool)
    for members in pools.values():
        inside[np.ix_(members, members)] = True
    poisoned = np.where(inside, similarity, np.nan)
    poisoned[~inside & (np.arange(n_items)[:, None] == 0)] = np.inf
    clean = pooled_retrieval_metrics(similarity, pools, ties=ties, ks=(1, 2))
    assert pooled_retrieval_metrics(poisoned, pools, ties=ties, ks=(1, 2)) == clean
    # Each pool equals plain retrieval on its own block; the weighted figures are the
    # clip-weighted average of per-pool values.
    total = sum(len(m) for m in pools.values())
    for name, members in pools.items():
        block = retrieval_metrics(similarity[np.ix_(members, members)], ties=ties, ks=(1, 2))
        assert clean["per_pool"][name]["t2v"] == block["t2v"]
        assert clean["per_pool"][name]["v2t"] == block["v2t"]
        assert clean["per_pool"][name]["num_items"] == len(members)
    for direction in ("t2v", "v2t"):
        for k in (1, 2):
            weighted = sum(clean["per_pool"][n][direction][f"R@{k}"] * len(m) for n, m in pools.items()) / total
            assert clean["weighted"][direction][f"R@{k}"] == pytest.approx(weighted, abs=1e-12)
        assert clean["weighted"][direction]["num_queries"] == total
    for k in (1, 2):
        assert clean["weighted"]["mean"][f"R@{k}"] == pytest.approx(
            (clean["weighted"]["t2v"][f"R@{k}"] + clean["weighted"]["v2t"][f"R@{k}"]) / 2
        )


@SETTINGS
@given(pooled_cases(spare_items=False), st.sampled_from(TIE_POLICIES))
def test_per_pool_blocks_give_what_the_dense_matrix_gives(case, ties):
    """The engine's per-pool path (one block at a time) against the dense [N, N] functions."""
    similarity, pools = case
    counts = {name: pool_rank_counts(similarity[np.ix_(m, m)], pool=name, members=m) for name, m in pools.items()}
    assert pooled_metrics_from_counts(counts, ties=ties, ks=(1, 2)) == pooled_retrieval_metrics(
        similarity, pools, ties=ties, ks=(1, 2))
    assert recall_by_pool_size_from_counts(counts, ties=ties, ks=(1, 3)) == recall_by_pool_size(
        similarity, pools, ties=ties, ks=(1, 3))
    dense = pooled_rank_counts(similarity, pools)
    for name in pools:
        for direction in ("t2v", "v2t"):
            for a, b in zip(counts[name][direction], dense[name][direction]):
                np.testing.assert_array_equal(a, b)


def test_pool_rank_counts_refuses_bad_blocks_naming_the_pool_and_items():
    with pytest.raises(ValueError, match=r"pool 'p': the block must be a non-empty square"):
        pool_rank_counts(np.zeros((2, 3)), pool="p")
    with pytest.raises(ValueError, match="must hold real numbers"):
        pool_rank_counts(np.zeros((2, 2), dtype=bool), pool="p")
    block = np.array([[1.0, 0.0], [np.inf, 1.0]])
    with pytest.raises(ValueError, match=r"\+inf at row 7, column 3 \(inside pool 'p'\)"):
        pool_rank_counts(block, pool="p", members=[3, 7])
    with pytest.raises(ValueError, match=r"counts\['p'\] must hold RankCounts"):
        pooled_metrics_from_counts({"p": {"t2v": pool_rank_counts(np.eye(2))["t2v"]}})
    with pytest.raises(ValueError, match="non-empty mapping"):
        recall_by_pool_size_from_counts({})


@SETTINGS
@given(pooled_cases(), st.randoms(use_true_random=False))
def test_pooled_invariant_to_item_relabelling(case, random):
    similarity, pools = case
    n_items = similarity.shape[0]
    new_index = list(range(n_items))
    random.shuffle(new_index)
    new_index = np.array(new_index)
    moved = np.empty_like(similarity)
    moved[np.ix_(new_index, new_index)] = similarity
    moved_pools = {name: list(new_index[members]) for name, members in reversed(list(pools.items()))}
    before = pooled_retrieval_metrics(similarity, pools)
    after = pooled_retrieval_metrics(moved, moved_pools)
    for direction in ("t2v", "v2t"):
        for key, value in before["weighted"][direction].items():
            assert after["weighted"][direction][key] == pytest.approx(value, abs=1e-12)


def test_items_outside_every_pool_are_not_evaluated():
    rng = np.random.default_rng(5)
    similarity = rng.normal(size=(7, 7))
    pools = {"x": [0, 2, 4], "y": [1, 3]}
    before = pooled_retrieval_metrics(similarity, pools)
    similarity[5, :] = similarity[:, 6] = 1e9
    assert pooled_retrieval_metrics(similarity, pools) == before
    assert before["weighted"]["t2v"]["num_queries"] == 5


@pytest.mark.parametrize(
    "pools, message",
    [
        ({}, "pools is empty"),
        ([[0, 1]], "pools must be a mapping"),
        ({"a": []}, r"pools\['a'\] is empty"),
        ({"a": [0, 9]}, r"pools\['a'\]\[1\] = 9 is out of range for 4 items"),
        ({"a": [0, -1]}, r"pools\['a'\]\[1\] = -1 is out of range"),
        ({"a": [0.0, 1.0]}, r"pools\['a'\] must hold integer item indices"),
        ({"a": [0, 1, 1]}, r"pools\['a'\] lists item 1 more than once"),
        ({"a": [0, 1], "b": [2, 1]}, "item 1 is in both pools 'a' and 'b'"),
        ({"a": [[0, 1]]}, r"pools\['a'\] must be a 1-D list"),
    ],
)
def test_bad_pools_raise(pools, message):
    with pytest.raises(ValueError, match=message):
        pooled_retrieval_metrics(np.zeros((4, 4)), pools)


def test_nonfinite_inside_a_pool_block_is_named_by_global_position():
    similarity = np.full((5, 5), np.nan)
    similarity[np.ix_([1, 3], [1, 3])] = [[1.0, 2.0], [np.inf, 0.0]]
    with pytest.raises(ValueError, match=r"similarity has \+inf at row 3, column 1 \(inside pool 'p'\)"):
        pooled_retrieval_metrics(similarity, {"p": [1, 3]})
    with pytest.raises(ValueError, match="pooled retrieval needs the square matrix"):
        pooled_retrieval_metrics(np.zeros((4, 5)), {"p": [0]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"similarity": np.zeros((3, 4))}, r"similarity has shape \(3, 4\): without text_to_video it must be square"),
        ({"similarity": np.array([[1.0, np.nan], [0.0, 1.0]])}, "similarity has NaN at row 0, column 1"),
        ({"similarity": np.zeros((3, 2)), "text_to_video": [0, 1, 2]}, r"text_to_video\[2\] = 2 is out of range for 2 videos"),
        ({"similarity": np.zeros((3, 3)), "text_to_video": [0, 0, 1]}, "video 2 has no caption in text_to_video"),
        ({"similarity": np.zeros((3, 2)), "text_to_video": [0, 1]}, "text_to_video must be a 1-D array of 3 indices"),
        ({"similarity": np.zeros((2, 2)), "v2t": "mean_caption"}, "v2t must be one of 'max_caption', 'any_caption'"),
        ({"similarity": np.zeros((2, 2)), "ties": "best"}, "ties must be one of"),
        ({"similarity": np.zeros((2, 2)), "ks": (0,)}, r"ks\[0\] must be a positive integer"),
    ],
)
def test_bad_retrieval_input_raises(kwargs, message):
    similarity = kwargs.pop("similarity")
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(similarity, **kwargs)


# ------------------------------------------------------------------------------------------------
# Recall against pool size


def test_recall_by_pool_size_groups_pools_of_equal_size():
    rng = np.random.default_rng(11)
    similarity = rng.integers(0, 4, size=(12, 12)).astype(float)
    pools = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7, 8, 9, 10], "solo": [11]}
    grouped = recall_by_pool_size(similarity, pools, ks=(1, 2))
    assert list(grouped) == [1, 3, 5]
    assert (grouped[3]["num_pools"], grouped[3]["num_items"]) == (2, 6)
    three = pooled_retrieval_metrics(similarity, {"a": pools["a"], "b": pools["b"]}, ks=(1, 2))["weighted"]
    assert grouped[3]["t2v"] == three["t2v"]
    assert grouped[3]["v2t"] == three["v2t"]
    assert grouped[3]["mean"] == three["mean"]
    assert grouped[1]["t2v"]["R@1"] == 1.0 and grouped[1]["t2v"]["num_queries"] == 1


def brute_force_subsampled_recall(similarity, pools, size, k, ties):
    """Average over every subset of size-1 distractors and every tie-breaking order of the kept
    candidates: the exact expected R@k and mean rank of each direction."""
    results = {}
    for direction in ("t2v", "v2t"):
        matrix = similarity if direction == "t2v" else similarity.T
        hits, ranks = [], []
        for members in pools.values():
            if len(members) < size:
                continue
            for query in members:
                others = [m for m in members if m != query]
                query_hits, query_ranks = [], []
                for kept in itertools.combinations(others, size - 1):
                    candidates = [query, *kept]
                    outcomes = []
                    for priority in itertools.permutations(range(size)):
                        order = sorted(range(size), key=lambda j: (-matrix[query, candidates[j]], priority[j]))
                        outcomes.append(1 + order.index(0))
                    if ties == "expected":
                        query_hits.append(np.mean([r <= k for r in outcomes]))
                        query_ranks.append(np.mean(outcomes))
                    else:
                        rank = min(outcomes) if ties == "optimistic" else max(outcomes)
                        query_hits.append(float(rank <= k))
                        query_ranks.append(rank)
                hits.append(np.mean(query_hits))
                ranks.append(np.mean(query_ranks))
        results[direction] = (np.mean(hits), np.mean(ranks))
    return results


@settings(max_examples=25, deadline=None)
@given(pooled_cases(max_pools=2, max_pool_size=5, spare_items=False), st.sampled_from(TIE_POLICIES), st.integers(1, 3))
def test_expected_recall_at_pool_size_equals_subset_enumeration(case, ties, k):
    similarity, pools = case
    largest = max(len(m) for m in pools.values())
    sizes = list(range(1, largest + 1))
    exact = expected_recall_at_pool_size(similarity, pools, sizes, ties=ties, ks=(k,))
    for size in sizes:
        reference = brute_force_subsampled_recall(similarity, pools, size, k, ties)
        for direction in ("t2v", "v2t"):
            assert exact[size][direction][f"R@{k}"] == pytest.approx(reference[direction][0], abs=1e-12)
            assert exact[size][direction]["mean_rank"] == pytest.approx(reference[direction][1], abs=1e-12)
        assert exact[size]["mean"][f"R@{k}"] == pytest.approx((reference["t2v"][0] + reference["v2t"][0]) / 2, abs=1e-12)
        assert exact[size]["num_items"] == sum(len(m) for m in pools.values() if len(m) >= size)


@SETTINGS
@given(pooled_cases(max_pools=3, max_pool_size=6), st.sampled_from(TIE_POLICIES))
def test_expected_recall_at_full_size_equals_observed_and_falls_with_size(case, ties):
    similarity, pools = case
    largest = max(len(m) for m in pools.values())
    largest_pools = {name: m for name, m in pools.items() if len(m) == largest}
    curve = expected_recall_at_pool_size(similarity, largest_pools, range(1, largest + 1), ties=ties, ks=(1, 3))
    observed = recall_by_pool_size(similarity, pools, ties=ties, ks=(1, 3))[largest]
    full = pooled_retrieval_metrics(similarity, largest_pools, ties=ties, ks=(1, 3))["weighted"]
    for direction in ("t2v", "v2t"):
        # At the pools' own size nothing is removed: the observed values come back.
        for k in (1, 3):
            assert curve[largest][direction][f"R@{k}"] == pytest.approx(observed[direction][f"R@{k}"], abs=1e-12)
        assert curve[largest][direction]["mean_rank"] == pytest.approx(full[direction]["mean_rank"], abs=1e-12)
        # A gallery of one is always a hit.
        assert curve[1][direction]["R@1"] == 1.0
        assert curve[1][direction]["mean_rank"] == 1.0
        # Removing random distractors can only help: recall falls as the size grows.
        for k in (1, 3):
            values = [curve[s][direction][f"R@{k}"] for s in range(1, largest + 1)]
            assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))


def test_expected_recall_at_pool_size_matches_scipy_hypergeometric_on_large_pools():
    # One pool of 60 items with many ties: optimistic/pessimistic are hypergeometric CDFs, the
    # expected policy a double sum over the multivariate hypergeometric (b', t').
    rng = np.random.default_rng(7)
    size = 60
    similarity = rng.integers(0, 6, size=(size, size)).astype(float)
    pools = {"big": list(range(size))}
    counts = pooled_rank_counts(similarity, pools)["big"]["t2v"]
    target, k = 17, 5
    draws = target - 1
    exact = {
        ties: expected_recall_at_pool_size(similarity, pools, [target], ties=ties, ks=(k,))[target]["t2v"][f"R@{k}"]
        for ties in TIE_POLICIES
    }
    better, tied = counts.better, counts.tied
    optimistic = np.mean(hypergeom(size - 1, better, draws).cdf(k - 1))
    pessimistic = np.mean(hypergeom(size - 1, better + tied, draws).cdf(k - 1))
    expected = []
    for b, t in zip(better, tied):
        total = 0.0
        for kept_b in range(min(k, draws + 1)):
            for kept_t in range(draws - kept_b + 1):
                p = multivariate_hypergeom.pmf([kept_b, kept_t, draws - kept_b - kept_t], m=[b, t, size - 1 - b - t], n=draws)
                total += p * min(1.0, (k - kept_b) / (kept_t + 1))
        expected.append(total)
    assert exact["optimistic"] == pytest.approx(optimistic, abs=1e-10)
    assert exact["pessimistic"] == pytest.approx(pessimistic, abs=1e-10)
    assert exact["expected"] == pytest.approx(np.mean(expected), abs=1e-10)
    assert exact["optimistic"] > exact["expected"] > exact["pessimistic"]


def test_expected_recall_at_pool_size_constant_model_is_chance_at_every_size():
    similarity = np.zeros((40, 40))
    pools = {"p": list(range(25)), "q": list(range(25, 40))}
    curve = expected_recall_at_pool_size(similarity, pools, [1, 4, 10, 15], ks=(1, 5, 10))
    for size in (1, 4, 10, 15):
        for k in (1, 5, 10):
            assert curve[size]["t2v"][f"R@{k}"] == pytest.approx(min(k / size, 1.0), abs=1e-12)
        assert curve[size]["v2t"]["mean_rank"] == pytest.approx((size + 1) / 2, abs=1e-12)
    assert curve[15]["num_pools"] == 2
    assert curve[4]["mean"]["R@1"] == pytest.approx(0.25)


def test_bad_pool_sizes_raise():
    similarity = np.zeros((6, 6))
    pools = {"a": [0, 1, 2], "b": [3, 4]}
    with pytest.raises(ValueError, match=r"sizes contains 4, larger than every pool \(the largest has 3 items\)"):
        expected_recall_at_pool_size(similarity, pools, [2, 4])
    with pytest.raises(ValueError, match=r"sizes\[0\] must be a positive integer"):
        expected_recall_at_pool_size(similarity, pools, [0])
    with pytest.raises(ValueError, match="sizes is empty"):
        expected_recall_at_pool_size(similarity, pools, [])
