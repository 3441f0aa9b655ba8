"""Text-video retrieval metrics: global (one gallery) and pooled (InstrAct-Dynamics object pools).

``similarity[i, j]`` scores text ``i`` against video ``j`` (rows are texts, columns videos).
Text-to-video (T2V) ranks every video for a text; video-to-text (V2T) ranks texts, or caption
groups, for a video. Ranks, R@K and ties are those of :mod:`instract_eval.metrics.ranking`; every
rate is a fraction in [0, 1] and every rank is 1-based.

Reference behaviour (CLIP4Clip ``metrics.compute_metrics``, CLIP_benchmark, InstrAct):

* R@K = share of queries whose ground truth ranks within the top K; "MR"/"MedianR" = numpy
  median of ranks; "MeanR" = mean rank.
* CLIP4Clip's ``compute_metrics`` locates the ground truth by searching the sorted row for its
  value, so a query whose ground truth ties with ``t`` other entries contributes ``t + 1`` entries
  (one per tied position) to every average and to the denominator. We do not reproduce that
  miscount: every query counts once and ties follow ``ties=``. On tie-free input our R@K,
  median_rank and mean_rank equal CLIP4Clip's (R@K divided by 100).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping

import numpy as np

from .ranking import (
    RankCounts,
    _as_index_vector,
    _as_score_matrix,
    _check_finite,
    _check_k,
    _check_ks,
    _check_ties,
    _describe_nonfinite,
    concatenate_counts,
    multi_positive_rank_counts,
    rank_counts,
    rank_metrics,
)

__all__ = [
    "V2T_DEFINITIONS",
    "retrieval_rank_counts",
    "retrieval_metrics",
    "pooled_rank_counts",
    "pool_rank_counts",
    "pooled_retrieval_metrics",
    "pooled_metrics_from_counts",
    "recall_by_pool_size",
    "recall_by_pool_size_from_counts",
    "expected_recall_at_pool_size",
]

V2T_DEFINITIONS = ("max_caption", "any_caption")
DIRECTIONS = ("t2v", "v2t")


def _check_v2t(v2t: str) -> str:
    if not isinstance(v2t, str) or v2t not in V2T_DEFINITIONS:
        raise ValueError(f"v2t must be one of {', '.join(map(repr, V2T_DEFINITIONS))}, got {v2t!r}")
    return v2t


def _as_similarity(similarity: object) -> np.ndarray:
    values = _as_score_matrix(similarity, "similarity")
    _check_finite(values, "similarity")
    return values


def _square_counts(block: np.ndarray) -> dict[str, RankCounts]:
    """T2V and V2T counts of a square, already checked block whose ground truth is the diagonal."""
    diagonal = np.arange(block.shape[0])
    return {"t2v": rank_counts(block, diagonal), "v2t": rank_counts(block.T, diagonal)}


def _mean_of_directions(t2v: dict, v2t: dict, ks: tuple[int, ...]) -> dict:
    return {f"R@{k}": (t2v[f"R@{k}"] + v2t[f"R@{k}"]) / 2.0 for k in ks}


# --------------------------------------------------------------------------------------------
# One gallery


def retrieval_rank_counts(
    similarity: object, *, text_to_video: object = None, v2t: str = "max_caption"
) -> dict[str, RankCounts]:
    """Per-query rank counts ``{"t2v": RankCounts, "v2t": RankCounts}`` for retrieval.

    The per-query values a bootstrap resamples come from these with
    :func:`~instract_eval.metrics.ranking.recall_at_k_per_query` and
    :func:`~instract_eval.metrics.ranking.ranks_from_counts`. Arguments as in
    :func:`retrieval_metrics`.
    """
    v2t = _check_v2t(v2t)
    values = _as_similarity(similarity)
    n_texts, n_videos = values.shape
    if text_to_video is None:
        if n_texts != n_videos:
            raise ValueError(
                f"similarity has shape {values.shape}: without text_to_video it must be square "
                "(text i describes video i)"
            )
        return _square_counts(values)

    owner = _as_index_vector(text_to_video, n_texts, n_videos, "text_to_video", "videos")
    captions_per_video = np.bincount(owner, minlength=n_videos)
    if (captions_per_video == 0).any():
        video = int(np.flatnonzero(captions_per_video == 0)[0])
        raise ValueError(f"video {video} has no caption in text_to_video: every video needs at least one")
    t2v = rank_counts(values, owner)
    if v2t == "max_caption":
        # Group the caption rows by video and take, for every (candidate video u, query video v),
        # the best similarity of any caption of u to v.
        order = np.argsort(owner, kind="stable")
        starts = np.concatenate(([0], np.cumsum(captions_per_video)[:-1]))
        best_caption = np.maximum.reduceat(values[order], starts, axis=0)  # [candidate u, query v]
        v2t_counts = rank_counts(best_caption.T, np.arange(n_videos))
    else:
        positives = owner[None, :] == np.arange(n_videos)[:, None]  # [video, text]
        v2t_counts = multi_positive_rank_counts(values.T, positives)
    return {"t2v": t2v, "v2t": v2t_counts}


def retrieval_metrics(
    similarity: object,
    *,
    text_to_video: object = None,
    ties: str = "expected",
    ks: Iterable[int] = (1, 5, 10),
    v2t: str = "max_caption",
) -> dict:
    """Text-to-video and video-to-text retrieval metrics over one gallery.

    Without ``text_to_video`` the matrix is square and text ``i`` describes video ``i``: T2V ranks
    the diagonal entry within row ``i``, V2T within column ``i`` (the transpose), as CLIP4Clip's
    ``compute_metrics`` and InstrAct do.

    With ``text_to_video`` (one video index per text row; every video needs >= 1 caption) T2V ranks
    each text's video among all videos, and V2T follows one of two definitions in use:

    ``"max_caption"`` (CLIP4Clip, multi-sentence evaluation, e.g. MSR-VTT/MSVD with all captions)
        Video ``v`` scores candidate video ``u`` by ``max_{i : text_to_video[i] = u} similarity[i, v]``
        (the best caption of ``u``); the ground truth is ``u = v``. One rank per video among videos.
    ``"any_caption"`` (CLIP_benchmark ``zeroshot_retrieval``)
        Video ``v`` ranks all captions; its rank is that of its best-placed own caption (a hit at
        K when any own caption is in the top K). Other own captions are not competitors; ties use
        the multi-positive rule of :func:`~instract_eval.metrics.ranking.multi_positive_rank_counts`.

    With one caption per video both reduce to the square case. R@K is the fraction of queries
    with rank <= K; ``median_rank`` is the numpy median of ranks ("MR"/"MedianR"), ``mean_rank``
    the mean ("MeanR"). Ties follow ``ties`` (see :mod:`~instract_eval.metrics.ranking`); unlike
    CLIP4Clip, a tied query counts once (module docstring), so values agree on tie-free input.

    Returns
    -------
    dict
        ``{"t2v": {...}, "v2t": {...}}``, each with ``"R@k"`` for k in ``ks``, ``"median_rank"``,
        ``"mean_rank"``, ``"num_queries"`` and ``"num_tied"``.
    """
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    counts = retrieval_rank_counts(similarity, text_to_video=text_to_video, v2t=v2t)
    return {direction: rank_metrics(counts[direction], ties=ties, ks=ks) for direction in DIRECTIONS}


# --------------------------------------------------------------------------------------------
# Pools


def _check_pools(pools: object, n_items: int) -> dict[Hashable, np.ndarray]:
    """Validate ``pools`` (name -> item indices) and return int64 index arrays.

    Pools must be non-empty, hold integer indices in ``[0, n_items)``, list no item twice and be
    pairwise disjoint. Items in no pool are allowed and simply not evaluated.
    """
    if not isinstance(pools, Mapping):
        raise ValueError(f"pools must be a mapping of pool name to item indices, got {type(pools).__name__}")
    if not pools:
        raise ValueError("pools is empty: give at least one pool")
    checked: dict[Hashable, np.ndarray] = {}
    for name, members in pools.items():
        array = np.asarray(members)
        if array.ndim != 1:
            raise ValueError(f"pools[{name!r}] must be a 1-D list of item indices, got shape {array.shape}")
        if array.shape[0] == 0:
            raise ValueError(f"pools[{name!r}] is empty: every pool needs at least one item")
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"pools[{name!r}] must hold integer item indices, got dtype {array.dtype}")
        bad = (array < 0) | (array >= n_items)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"pools[{name!r}][{j}] = {int(array[j])} is out of range for {n_items} items")
        checked[name] = array.astype(np.int64, copy=False)

    names = list(checked)
    items = np.concatenate(list(checked.values()))
    owner = np.repeat(np.arange(len(names)), [len(a) for a in checked.values()])
    order = np.argsort(items, kind="stable")
    repeated = np.flatnonzero(items[order][1:] == items[order][:-1])
    if repeated.size:
        first, second = order[repeated[0]], order[repeated[0] + 1]
        item = int(items[first])
        a, b = names[owner[first]], names[owner[second]]
        if a == b:
            raise ValueError(f"pools[{a!r}] lists item {item} more than once")
        raise ValueError(f"item {item} is in both pools {a!r} and {b!r}: pools must be disjoint")
    return checked


def _as_pooled_similarity(similarity: object) -> np.ndarray:
    """The square matrix as given (not copied: only pool blocks are ever read or converted)."""
    values = np.asarray(similarity)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty 2-D array [texts, videos], got shape {values.shape}")
    if values.dtype == np.bool_ or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"similarity must hold real numbers, got dtype {values.dtype}")
    if values.shape[0] != values.shape[1]:
        raise ValueError(
            f"similarity has shape {values.shape}: pooled retrieval needs the square matrix over all "
            "items (text i describes video i)"
        )
    return values


def _pool_block(values: np.ndarray, name: Hashable, members: np.ndarray) -> np.ndarray:
    """The within-pool block of the dense matrix; only its entries are read, and only they must be finite."""
    return _checked_block(values[np.ix_(members, members)], name, members)


def _checked_block(block: np.ndarray, name: Hashable, members: np.ndarray | None) -> np.ndarray:
    """``block`` as float64, refused at its first non-finite entry (named by item index when known)."""
    block = block.astype(np.float64, copy=False)
    bad = ~np.isfinite(block)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        row, column = (r, c) if members is None else (int(members[r]), int(members[c]))
        raise ValueError(
            f"similarity has {_describe_nonfinite(block[r, c])} at row {row}, "
            f"column {column} (inside pool {name!r})"
        )
    return block


def pool_rank_counts(block: object, *, pool: Hashable = "pool", members: object = None) -> dict[str, RankCounts]:
    """``{"t2v": RankCounts, "v2t": RankCounts}`` of one pool from its own square block.

    ``block[i, j]`` scores the pool's text ``i`` against its video ``j`` (text ``i`` describes
    video ``i``). This is the per-pool path: an engine scores one pool at a time and keeps only
    these counts, so nothing of size ``[N, N]`` over all items is ever built, and the counts equal
    those :func:`pooled_rank_counts` reads from the same block of a dense matrix. ``pool`` and
    ``members`` (the pool's item indices) only name the offending entry in errors.
    """
    values = np.asarray(block)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[0] != values.shape[1]:
        raise ValueError(f"pool {pool!r}: the block must be a non-empty square [texts, videos] array, "
                         f"got shape {values.shape}")
    if values.dtype == np.bool_ or not (np.issubdtype(values.dtype, np.floating)
                                        or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"pool {pool!r}: the block must hold real numbers, got dtype {values.dtype}")
    indices = None if members is None else np.asarray(members)
    if indices is not None and indices.shape != (values.shape[0],):
        raise ValueError(f"pool {pool!r}: members has shape {indices.shape} for a block of {values.shape[0]} items")
    return _square_counts(_checked_block(values, pool, indices))


def pooled_rank_counts(similarity: object, pools: object) -> dict[Hashable, dict[str, RankCounts]]:
    """Per-pool rank counts ``{pool: {"t2v": RankCounts, "v2t": RankCounts}}``.

    Query ``i`` of a pool is ranked only against the pool's other items; queries appear in the
    order the pool lists them. Arguments as in :func:`pooled_retrieval_metrics`.
    """
    values = _as_pooled_similarity(similarity)
    checked = _check_pools(pools, values.shape[0])
    return {name: _square_counts(_pool_block(values, name, members)) for name, members in checked.items()}


def _check_counts(counts: object) -> Mapping[Hashable, Mapping[str, RankCounts]]:
    """Per-pool counts as :func:`pool_rank_counts` gives them: a non-empty mapping of pool to both directions."""
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError("counts must be a non-empty mapping of pool name to {'t2v': ..., 'v2t': ...} rank counts")
    for name, entry in counts.items():
        if not isinstance(entry, Mapping) or any(not isinstance(entry.get(d), RankCounts) for d in DIRECTIONS):
            raise ValueError(f"counts[{name!r}] must hold RankCounts under 't2v' and 'v2t' (see pool_rank_counts)")
    return counts


def pooled_retrieval_metrics(
    similarity: object, pools: object, *, ties: str = "expected", ks: Iterable[int] = (1, 5, 10)
) -> dict:
    """Retrieval inside disjoint pools with a clip-count-weighted aggregate (InstrAct-Dynamics).

    ``similarity`` is the square ``[N, N]`` matrix over all items (text ``i`` describes video
    ``i``) and ``pools`` maps a pool name to its item indices. Each pool is a small gallery: only
    its within-pool block ``similarity[pool][:, pool]`` is read, so entries outside every pool's
    block never influence anything (they may even be NaN). Pools must be non-empty, in range and
    pairwise disjoint; items that belong to no pool are allowed and are not evaluated.

    The aggregate follows the official InstrAct-Dynamics evaluator, which sums hits over all pools
    and divides by the total clip count::

        weighted R@K = sum_pools sum_{i in pool} P(rank_i <= K) / sum_pools |pool|

    i.e. R@K over the concatenated per-query values (not the mean of per-pool R@K);
    ``median_rank``/``mean_rank`` there are over all concatenated per-query ranks, and
    ``mean`` is InstrAct's "Mean" column, ``(T2V + V2T) / 2`` for each R@K.

    Returns
    -------
    dict
        ``{"per_pool": {name: {"t2v": {...}, "v2t": {...}, "num_items": n}},
        "weighted": {"t2v": {...}, "v2t": {...}, "mean": {"R@k": ...}}}`` where each direction dict
        has ``"R@k"`` for k in ``ks``, ``"median_rank"``, ``"mean_rank"``, ``"num_queries"``, ``"num_tied"``.
    """
    ties, ks = _check_ties(ties), _check_ks(ks)  # bad options are refused before any block is read
    return pooled_metrics_from_counts(pooled_rank_counts(similarity, pools), ties=ties, ks=ks)


def pooled_metrics_from_counts(
    counts: Mapping[Hashable, Mapping[str, RankCounts]], *, ties: str = "expected", ks: Iterable[int] = (1, 5, 10)
) -> dict:
    """:func:`pooled_retrieval_metrics` from per-pool counts (:func:`pool_rank_counts` of each
    pool's block, in pool order), for engines that never hold the dense matrix. Same result."""
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    counts = _check_counts(counts)
    per_pool = {
        name: {
            **{d: rank_metrics(c[d], ties=ties, ks=ks) for d in DIRECTIONS},
            "num_items": c["t2v"].num_queries,
        }
        for name, c in counts.items()
    }
    weighted = {d: rank_metrics(concatenate_counts([c[d] for c in counts.values()]), ties=ties, ks=ks)
                for d in DIRECTIONS}
    weighted["mean"] = _mean_of_directions(weighted["t2v"], weighted["v2t"], ks)
    return {"per_pool": per_pool, "weighted": weighted}


def recall_by_pool_size(
    similarity: object, pools: object, *, ties: str = "expected", ks: Iterable[int] = (1, 5, 10)
) -> dict[int, dict]:
    """Observed retrieval metrics grouped by pool size (how recall falls as galleries grow).

    Pools with the same number of items are pooled together and summarised clip-weighted, exactly
    as :func:`pooled_retrieval_metrics` summarises all pools. Arguments as there.

    Returns
    -------
    dict
        ``{size: {"num_pools", "num_items", "t2v": {...}, "v2t": {...}, "mean": {"R@k": ...}}}``
        for each observed size in increasing order; direction dicts as in
        :func:`pooled_retrieval_metrics`.
    """
    ties, ks = _check_ties(ties), _check_ks(ks)  # bad options are refused before any block is read
    return recall_by_pool_size_from_counts(pooled_rank_counts(similarity, pools), ties=ties, ks=ks)


def recall_by_pool_size_from_counts(
    counts: Mapping[Hashable, Mapping[str, RankCounts]], *, ties: str = "expected", ks: Iterable[int] = (1, 5, 10)
) -> dict[int, dict]:
    """:func:`recall_by_pool_size` from per-pool counts (see :func:`pooled_metrics_from_counts`)."""
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    counts = _check_counts(counts)
    by_size: dict[int, list[dict[str, RankCounts]]] = {}
    for c in counts.values():
        by_size.setdefault(c["t2v"].num_queries, []).append(c)
    result: dict[int, dict] = {}
    for size in sorted(by_size):
        group = by_size[size]
        entry: dict = {"num_pools": len(group), "num_items": size * len(group)}
        for d in DIRECTIONS:
            entry[d] = rank_metrics(concatenate_counts([c[d] for c in group]), ties=ties, ks=ks)
        entry["mean"] = _mean_of_directions(entry["t2v"], entry["v2t"], ks)
        result[size] = entry
    return result


# --------------------------------------------------------------------------------------------
# Expected recall at a smaller pool size (exact, no sampling)


def _log_factorials(upper: int) -> np.ndarray:
    """log(n!) for n = 0..upper (a loop over integers up to the pool size, not over queries)."""
    return np.array([math.lgamma(n + 1.0) for n in range(upper + 1)])


def _log_comb(n: np.ndarray, r: np.ndarray | int, log_fact: np.ndarray) -> np.ndarray:
    """log C(n, r), -inf where the binomial coefficient is 0 (r < 0 or r > n)."""
    n = np.asarray(n)
    r = np.broadcast_to(np.asarray(r), n.shape)
    ok = (r >= 0) & (r <= n)
    n_safe = np.where(ok, n, 0)
    r_safe = np.where(ok, r, 0)
    return np.where(ok, log_fact[n_safe] - log_fact[r_safe] - log_fact[n_safe - r_safe], -np.inf)


def _subsampled_recall(
    better: np.ndarray, tied: np.ndarray, distractors: np.ndarray, draws: int, k: int, log_fact: np.ndarray
) -> np.ndarray:
    """Exact P(rank <= k) per query when ``draws`` of its ``distractors`` are kept uniformly at
    random and its ``tied`` distractors are ordered against the ground truth uniformly at random.

    With ``B = better``, ``T = tied``, ``W`` the rest, and ``b'``/``t'`` the kept better/tied
    distractors (multivariate hypergeometric), the answer is
    ``sum_{b' < k} sum_{t'} P(b', t') * min(1, (k - b') / (t' + 1))``. The sum over ``t'`` is
    closed: using ``C(T, t') / (t' + 1) = C(T + 1, t' + 1) / (T + 1)`` and Vandermonde,
    ``sum_{t'} C(T, t') C(W, m - t') c / (t' + 1) = c (C(T + W + 1, m + 1) - C(W, m + 1)) / (T + 1)``
    with ``c = k - b'`` and ``m = draws - b'``; terms with ``t' < c`` (where the min is 1) are
    corrected one by one. Cost: O(k^2) vector operations. Queries with ``T = 0`` (all of them
    under the optimistic and pessimistic policies) take the hypergeometric CDF directly.
    """
    if draws < k:  # the ground truth cannot fall below rank draws + 1 <= k
        return np.ones(better.shape[0], dtype=np.float64)
    rest = distractors - better - tied  # W
    tied_or_worse = tied + rest  # R
    untied = tied == 0
    log_total = _log_comb(distractors, draws, log_fact)
    probability = np.zeros(better.shape[0], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for kept_better in range(min(k, draws + 1)):
            room = k - kept_better  # c
            remaining = draws - kept_better  # m
            log_better = _log_comb(better, kept_better, log_fact) - log_total
            # Without tied distractors the rank is 1 + b': add the hypergeometric pmf directly.
            probability += np.where(untied, np.exp(log_better + _log_comb(rest, remaining, log_fact)), 0.0)
            for kept_tied in range(room):  # correction where min(1, c/(t'+1)) = 1
                weight = 1.0 - room / (kept_tied + 1.0)
                if weight == 0.0:
                    continue
                log_p = log_better + _log_comb(tied, kept_tied, log_fact) + _log_comb(rest, remaining - kept_tied, log_fact)
                probability += np.where(untied, 0.0, weight * np.exp(log_p))
            log_all = _log_comb(tied_or_worse + 1, remaining + 1, log_fact)
            log_no_tied = _log_comb(rest, remaining + 1, log_fact)
            usable = np.isfinite(log_all) & np.isfinite(log_better) & ~untied
            fraction = -np.expm1(np.where(usable, log_no_tied - log_all, 0.0))
            closed = room / (tied + 1.0) * np.exp(np.where(usable, log_better + log_all, -np.inf)) * fraction
            probability += np.where(usable, closed, 0.0)
    return np.clip(probability, 0.0, 1.0)


def expected_recall_at_pool_size(
    similarity: object,
    pools: object,
    sizes: Iterable[int],
    *,
    ties: str = "expected",
    ks: Iterable[int] = (1, 5, 10),
) -> dict[int, dict]:
    """Exact expected R@K if every pool were cut down to ``s`` items at random (no sampling).

    For each target size ``s``, each query's candidate set is taken to be its ground truth plus
    ``s - 1`` of the other ``P - 1`` items of its pool chosen uniformly at random. The number of
    strictly-better distractors that survive is hypergeometric, so::

        optimistic : P(b' <= K - 1),        b' ~ Hypergeom(P - 1, b, s - 1)
        pessimistic: P(b' + t' <= K - 1),   b' + t' ~ Hypergeom(P - 1, b + t, s - 1)
        expected   : E[min(1, max(0, K - b') / (t' + 1))] over the joint (b', t'),

    the last being P(rank <= K) when ties in the subset are also broken at random, computed in
    closed form (see ``_subsampled_recall``). ``mean_rank`` is the exact expected mean rank,
    ``1 + (s - 1)/(P - 1) * (b + t/2)`` under "expected" (``b`` resp. ``b + t`` for the others).
    At ``s = P`` this reproduces :func:`pooled_retrieval_metrics`; at ``s = 1`` every R@K is 1.

    Pools with fewer than ``s`` items cannot be cut to ``s`` and are left out of that size (the
    result says how many pools and items it covers); a size larger than every pool is an error.
    Aggregation over pools is clip-weighted as in :func:`pooled_retrieval_metrics`.

    Returns
    -------
    dict
        ``{s: {"num_pools", "num_items", "t2v": {"R@k"..., "mean_rank"}, "v2t": {...},
        "mean": {"R@k": ...}}}`` in the order of ``sizes``.
    """
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise ValueError(f"sizes must be a sequence of positive integers, got {sizes!r}")
    targets = tuple(dict.fromkeys(_check_k(s, name=f"sizes[{i}]") for i, s in enumerate(sizes)))
    if not targets:
        raise ValueError("sizes is empty: give at least one target pool size")
    counts = pooled_rank_counts(similarity, pools)
    pool_sizes = np.array([c["t2v"].num_queries for c in counts.values()])
    largest = int(pool_sizes.max())
    too_big = [s for s in targets if s > largest]
    if too_big:
        raise ValueError(f"sizes contains {too_big[0]}, larger than every pool (the largest has {largest} items)")

    size_of_query = np.repeat(pool_sizes, pool_sizes)
    log_fact = _log_factorials(largest + 1)
    joined = {d: concatenate_counts([c[d] for c in counts.values()]) for d in DIRECTIONS}
    result: dict[int, dict] = {}
    for s in targets:
        keep = size_of_query >= s
        entry: dict = {"num_pools": int(np.count_nonzero(pool_sizes >= s)), "num_items": int(np.count_nonzero(keep))}
        for d in DIRECTIONS:
            better = joined[d].better[keep]
            tied = joined[d].tied[keep]
            distractors = size_of_query[keep] - 1
            if ties == "optimistic":
                better_eff, tied_eff = better, np.zeros_like(tied)
            elif ties == "pessimistic":
                better_eff, tied_eff = better + tied, np.zeros_like(tied)
            else:
                better_eff, tied_eff = better, tied
            direction = {
                f"R@{k}": float(np.mean(_subsampled_recall(better_eff, tied_eff, distractors, s - 1, k, log_fact)))
                for k in ks
            }
            ahead = better_eff + tied_eff / 2.0
            share = np.divide(s - 1, distractors, out=np.zeros(distractors.shape), where=distractors > 0)
            direction["mean_rank"] = float(np.mean(1.0 + share * ahead))
            entry[d] = direction
        entry["mean"] = _mean_of_directions(entry["t2v"], entry["v2t"], ks)
        result[s] = entry
    return result
