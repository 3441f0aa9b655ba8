"""Rank metrics for multiple choice and retrieval: 1-based ranks, R@K, median and mean rank.

A *query* is one row of a score matrix ``scores[N, C]``: ``C`` candidates, one (or several) of
which are the ground truth. Everything here is derived from three integer counts per query
(:class:`RankCounts`): how many negatives score strictly above the best-scoring positive, how
many negatives tie with it, and how many positives share its score. Those counts fix the rank
under every tie policy, so ranks, R@K, accuracy and the per-query values that a bootstrap
resamples all come from one vectorised pass over the matrix.

Tie policies (``ties=``), for a query with ``b`` valid negatives scoring strictly higher than the
best positive, ``n`` valid negatives scoring exactly equal to it and ``m'`` positives at that
score (``m' = 1`` with a single ground truth, where ``n`` is written ``t``):

``"expected"`` (default)
    The exact expectation under uniformly random tie-breaking. Rank = ``1 + b + n / (m' + 1)``
    (``1 + b + t/2`` for one positive); R@K = P(rank <= K), ``clip((K - b) / (t + 1), 0, 1)`` for
    one positive. A collapsed model (constant scores) gets exactly chance: R@1 = 1/C and mean
    rank (C + 1)/2, neither flattered nor punished.
``"optimistic"``
    The ground truth wins every tie: rank = ``1 + b``. This is what the official ActionBench
    (AA/OR: an exact tie counts as correct) and, on short rows, InstrAct evaluators do.
``"pessimistic"``
    The ground truth loses every tie: rank = ``1 + b + n``.

Conventions: ranks are 1-based, rates are fractions in [0, 1], ``median_rank`` is
``numpy.median`` (the mean of the two middle values for an even count, as InstrAct's
``quantile(rank, 0.5)``). Candidates can be switched off per query with a boolean ``mask`` of the
same shape (variable candidate counts, e.g. InstrAct-Logic); entries where the mask is False are
never read, so they may hold any padding (NaN, -inf, 0).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "TIE_POLICIES",
    "RankCounts",
    "rank_counts",
    "multi_positive_rank_counts",
    "concatenate_counts",
    "ranks_from_counts",
    "recall_at_k_per_query",
    "recall_at_k",
    "median_rank",
    "mean_rank",
    "rank_metrics",
    "ground_truth_ranks",
    "mcq_metrics",
]

TIE_POLICIES = ("expected", "optimistic", "pessimistic")


class RankCounts(NamedTuple):
    """Per-query counts that fix the rank of the ground truth under every tie policy.

    All three are int64 arrays of shape ``[N]``:

    ``better``
        ``b``: valid negatives scoring strictly above the best-scoring positive.
    ``tied``
        ``n`` (``t`` with one positive): valid negatives scoring exactly the best positive's score.
        A query "is tied" when this is > 0; ties among positives alone never change the rank.
    ``tied_positives``
        ``m'``: positives scoring exactly the best positive's score, that one included (>= 1;
        always 1 when each query has a single ground truth).
    """

    better: np.ndarray
    tied: np.ndarray
    tied_positives: np.ndarray

    @property
    def num_queries(self) -> int:
        return int(self.better.shape[0])

    @property
    def num_tied(self) -> int:
        """Number of queries whose best positive ties with at least one negative."""
        return int(np.count_nonzero(self.tied))


# --------------------------------------------------------------------------------------------
# Input checks shared by the metric modules (retrieval, classification import them).


def _show(value: object) -> str:
    """repr of a value as the user wrote it (numpy scalars shown as plain Python numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_ties(ties: str) -> str:
    if not isinstance(ties, str) or ties not in TIE_POLICIES:
        allowed = ", ".join(repr(p) for p in TIE_POLICIES)
        raise ValueError(f"ties must be one of {allowed}, got {_show(ties)}")
    return ties


def _check_k(k: object, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or int(k) < 1:
        raise ValueError(f"{name} must be a positive integer (a 1-based rank cut-off), got {_show(k)}")
    return int(k)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise ValueError(f"ks must be a sequence of positive integers, got {ks!r}")
    values = [_check_k(k, name=f"ks[{i}]") for i, k in enumerate(ks)]
    if not values:
        raise ValueError("ks is empty: give at least one rank cut-off K")
    return tuple(dict.fromkeys(values))  # drop repeats, keep order


def _describe_nonfinite(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    return "+inf" if value > 0 else "-inf"


def _as_score_matrix(scores: object, name: str) -> np.ndarray:
    """A 2-D, non-empty, real-valued float64 array (finiteness is checked separately)."""
    array = np.asarray(scores)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [queries, candidates], got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): need at least one query and one candidate")
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _check_finite(array: np.ndarray, name: str, where: np.ndarray | None = None) -> None:
    """Raise naming the first non-finite entry of ``array`` (only entries where ``where`` is True)."""
    bad = ~np.isfinite(array)
    if where is not None:
        bad &= where
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        kind = _describe_nonfinite(array[row, column])
        raise ValueError(f"{name} has {kind} at row {row}, column {column}")


def _as_mask(mask: object, shape: tuple[int, int], name: str = "mask", against: str = "scores") -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != shape:
        raise ValueError(f"{name} must have the shape of {against} {shape}, got {array.shape}")
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{name} must be boolean (or 0/1 integers), got dtype {array.dtype}")


def _as_index_vector(values: object, length: int, upper: int, name: str, what: str) -> np.ndarray:
    """A 1-D int64 vector of ``length`` entries, each in ``[0, upper)``."""
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of {length} indices (one per query), got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {array.dtype}")
    bad = (array < 0) | (array >= upper)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {int(array[i])} is out of range for {upper} {what}")
    return array.astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# Counting


def rank_counts(scores: object, answers: object = None, mask: object = None) -> RankCounts:
    """Count, per query, the valid candidates scoring above and equal to the ground truth.

    For query ``i`` with ground-truth score ``g = scores[i, answers[i]]``::

        better[i] = #{j valid : scores[i, j] >  g}
        tied[i]   = #{j valid : scores[i, j] == g, j != answers[i]}
        tied_positives[i] = 1

    These counts give the rank under each tie policy (:func:`ranks_from_counts`) and R@K
    (:func:`recall_at_k_per_query`); they equal what ``scipy.stats.rankdata(-row, method=...)``
    implies (``"min"`` rank = 1 + better, ``"max"`` rank = 1 + better + tied).

    Parameters
    ----------
    scores : array-like of shape (N, C)
        Higher is better. Entries where ``mask`` is True must be finite.
    answers : array-like of int, shape (N,), optional
        Column of the ground truth in each row; defaults to column 0 (InstrAct, ActionBench).
    mask : array-like of bool, shape (N, C), optional
        Which candidates exist in each row; False entries are ignored entirely (never read).
        The ground-truth entry must be valid.

    Returns
    -------
    RankCounts
    """
    values = _as_score_matrix(scores, "scores")
    n_queries, n_candidates = values.shape
    valid = None if mask is None else _as_mask(mask, values.shape)
    if answers is None:
        answer_index = np.zeros(n_queries, dtype=np.int64)
    else:
        answer_index = _as_index_vector(answers, n_queries, n_candidates, "answers", "candidates")
    rows = np.arange(n_queries)
    if valid is not None:
        answer_valid = valid[rows, answer_index]
        if not answer_valid.all():
            i = int(np.flatnonzero(~answer_valid)[0])
            raise ValueError(
                f"mask[{i}, {int(answer_index[i])}] is False: the ground-truth candidate of row {i} "
                f"(answers[{i}]) must be valid"
            )
    _check_finite(values, "scores", valid)
    if valid is not None:
        values = np.where(valid, values, 0.0)  # padding never reaches a comparison
    truth = values[rows, answer_index][:, None]
    higher = values > truth
    equal = values == truth
    if valid is not None:
        higher &= valid
        equal &= valid
    better = np.count_nonzero(higher, axis=1).astype(np.int64)
    tied = np.count_nonzero(equal, axis=1).astype(np.int64) - 1  # the ground truth equals itself
    return RankCounts(better, tied, np.ones(n_queries, dtype=np.int64))


def multi_positive_rank_counts(scores: object, positives: object, mask: object = None) -> RankCounts:
    """Counts for queries with several ground-truth candidates; the rank is the best positive's.

    With ``s*`` the highest score among the positives of query ``i``::

        better[i]         = #{valid negatives j : scores[i, j] >  s*}
        tied[i]           = #{valid negatives j : scores[i, j] == s*}
        tied_positives[i] = #{positives j      : scores[i, j] == s*}   (>= 1)

    Positives other than the best one never push it down, so they are not counted as
    competitors. Used for video-to-text retrieval with several captions per video (CLIP_benchmark's
    definition: a video query is a hit at K when any of its captions is in the top K).

    Parameters
    ----------
    scores : array-like of shape (N, C)
    positives : array-like of bool, shape (N, C)
        True for every ground-truth candidate; each row needs at least one, and each must be valid.
    mask : array-like of bool, shape (N, C), optional
        As in :func:`rank_counts`.
    """
    values = _as_score_matrix(scores, "scores")
    is_positive = _as_mask(positives, values.shape, name="positives")
    valid = None if mask is None else _as_mask(mask, values.shape)
    empty_rows = ~is_positive.any(axis=1)
    if empty_rows.any():
        raise ValueError(f"positives row {int(np.flatnonzero(empty_rows)[0])} has no ground-truth candidate")
    if valid is not None:
        outside = is_positive & ~valid
        if outside.any():
            row, column = (int(i) for i in np.argwhere(outside)[0])
            raise ValueError(f"positives[{row}, {column}] is True but mask[{row}, {column}] is False: "
                             "a ground-truth candidate must be valid")
    _check_finite(values, "scores", valid)
    if valid is not None:
        values = np.where(valid, values, 0.0)
        negatives = valid & ~is_positive
    else:
        negatives = ~is_positive
    best = np.max(np.where(is_positive, values, -np.inf), axis=1)[:, None]
    better = np.count_nonzero(negatives & (values > best), axis=1).astype(np.int64)
    tied = np.count_nonzero(negatives & (values == best), axis=1).astype(np.int64)
    tied_positives = np.count_nonzero(is_positive & (values == best), axis=1).astype(np.int64)
    return RankCounts(better, tied, tied_positives)


def concatenate_counts(parts: Sequence[RankCounts]) -> RankCounts:
    """Join the counts of several query sets (e.g. all pools) into one, in the order given."""
    if not parts:
        raise ValueError("parts is empty: nothing to concatenate")
    return RankCounts(*(np.concatenate([getattr(p, field) for p in parts]) for field in RankCounts._fields))


# --------------------------------------------------------------------------------------------
# From counts to ranks and recall


def ranks_from_counts(counts: RankCounts, *, ties: str = "expected") -> np.ndarray:
    """Per-query 1-based rank of the best-placed ground truth, as float64 ``[N]``.

    ``optimistic``: ``1 + b``; ``pessimistic``: ``1 + b + n``; ``expected``: ``1 + b + n/(m'+1)``,
    the expected number of tied negatives ahead of the first of ``m'`` tied positives when the
    ``n + m'`` tied candidates are put in uniformly random order (``1 + b + t/2`` for one
    positive, the average rank of ``scipy.stats.rankdata(method="average")``).
    """
    ties = _check_ties(ties)
    better = counts.better.astype(np.float64)
    if ties == "optimistic":
        return 1.0 + better
    if ties == "pessimistic":
        return 1.0 + better + counts.tied
    return 1.0 + better + counts.tied / (counts.tied_positives + 1.0)


def recall_at_k_per_query(counts: RankCounts, k: int, *, ties: str = "expected") -> np.ndarray:
    """Per-query R@K, float64 ``[N]``: the 0/1 hit, or under ``"expected"`` its exact probability.

    ``optimistic``: ``1[1 + b <= K]``; ``pessimistic``: ``1[1 + b + n <= K]``.
    ``expected``: P(rank <= K) under uniformly random tie-breaking. With ``j = K - 1 - b`` tied
    negatives allowed ahead of the first tied positive, and ``X`` the number of the ``n`` tied
    negatives that precede the first of the ``m'`` tied positives in a random order,
    ``P(X >= a) = C(n, a) / C(n + m', a)`` (the first ``a`` places all go to negatives), so::

        P(rank <= K) = 0                                       if j < 0
                     = 1                                       if j >= n
                     = 1 - prod_{i=0..j} (n - i) / (n + m' - i)  otherwise

    which for ``m' = 1`` is ``clip((K - b) / (t + 1), 0, 1)``, computed in that closed form.
    These are the per-sample values a bootstrap resamples; their mean is :func:`recall_at_k`.
    """
    ties = _check_ties(ties)
    k = _check_k(k)
    better, tied, tied_positives = counts
    if ties == "optimistic":
        return (1 + better <= k).astype(np.float64)
    if ties == "pessimistic":
        return (1 + better + tied <= k).astype(np.float64)
    single = np.clip((k - better) / (tied + 1.0), 0.0, 1.0)
    several = tied_positives > 1
    if not several.any():
        return single
    allowed = k - 1 - better  # j
    open_rows = several & (allowed >= 0) & (allowed < tied)
    all_negatives_first = np.ones(better.shape[0], dtype=np.float64)
    steps = int(min(k, tied[open_rows].max(initial=-1) + 1))
    for i in range(steps):  # a loop over the cut-off K, never over queries
        factor = np.where(open_rows & (i <= allowed), (tied - i) / np.maximum(tied + tied_positives - i, 1), 1.0)
        all_negatives_first *= factor
    multi = np.where(allowed < 0, 0.0, np.where(allowed >= tied, 1.0, 1.0 - all_negatives_first))
    return np.where(several, multi, single)


def recall_at_k(counts: RankCounts, k: int, *, ties: str = "expected") -> float:
    """R@K: the fraction of queries whose ground truth ranks within the top K (mean of
    :func:`recall_at_k_per_query`). Matches CLIP4Clip/InstrAct R@K divided by 100 on tie-free input."""
    return float(np.mean(recall_at_k_per_query(counts, k, ties=ties)))


def _as_rank_vector(ranks: object) -> np.ndarray:
    array = np.asarray(ranks, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"ranks[{i}] = {array[i]} is not a finite 1-based rank")
    return array


def median_rank(ranks: object) -> float:
    """Median of 1-based ranks (``numpy.median``: mean of the two middle values for an even
    count), InstrAct's "MR" and CLIP4Clip's "MedianR". Under ``ties="expected"`` the ranks are
    per-query expected ranks, so this is the median of expected ranks, not the expectation of
    the median."""
    return float(np.median(_as_rank_vector(ranks)))


def mean_rank(ranks: object) -> float:
    """Mean of 1-based ranks (CLIP4Clip's "MeanR"). Under ``ties="expected"`` this is exactly the
    expected mean rank, since expectation is linear."""
    return float(np.mean(_as_rank_vector(ranks)))


def rank_metrics(counts: RankCounts, *, ties: str = "expected", ks: Iterable[int] = (1, 5, 10)) -> dict:
    """The rank summary used by retrieval: ``{"R@k" for k in ks, "median_rank", "mean_rank",
    "num_queries", "num_tied"}``, plain Python numbers (see :func:`recall_at_k`,
    :func:`median_rank`, :func:`mean_rank`; ``num_tied`` counts queries with ``n > 0``)."""
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    if counts.num_queries == 0:
        raise ValueError("counts has no queries")
    result: dict = {f"R@{k}": recall_at_k(counts, k, ties=ties) for k in ks}
    ranks = ranks_from_counts(counts, ties=ties)
    result["median_rank"] = median_rank(ranks)
    result["mean_rank"] = mean_rank(ranks)
    result["num_queries"] = counts.num_queries
    result["num_tied"] = counts.num_tied
    return result


# --------------------------------------------------------------------------------------------
# Score-matrix entry points


def ground_truth_ranks(
    scores: object, answers: object = None, mask: object = None, *, ties: str = "expected"
) -> np.ndarray:
    """1-based rank of each query's ground truth among its valid candidates, float64 ``[N]``.

    ``rank = 1 + b`` (optimistic), ``1 + b + t`` (pessimistic), ``1 + b + t/2`` (expected), with
    ``b``/``t`` the valid candidates scoring above/equal to the ground truth (see
    :func:`rank_counts`). Equal to ``scipy.stats.rankdata(-row, method="min" / "max" /
    "average")[answer]`` over the valid entries of each row.
    """
    _check_ties(ties)
    return ranks_from_counts(rank_counts(scores, answers, mask), ties=ties)


def mcq_metrics(
    scores: object,
    answers: object = None,
    mask: object = None,
    *,
    ties: str = "expected",
    ks: Iterable[int] = (1, 5),
) -> dict:
    """Multiple-choice metrics: R@K, median and mean rank, accuracy.

    One query per row; the ground truth is ``answers[i]`` (column 0 by default) among the valid
    candidates of the row. Serves ActionBench AA/OR/VR (2 candidates, accuracy), InstrAct-Semantic
    (10 candidates, positive first: R@1, R@5, MR = median rank) and InstrAct-Logic (up to 3
    candidates with a ``mask``: accuracy)::

        R@K         = mean_i P(rank_i <= K)        (a 0/1 hit unless ties="expected")
        accuracy    = R@1
        median_rank = numpy.median(rank_i)          InstrAct "MR" (quantile 0.5)
        mean_rank   = mean(rank_i)

    Ties follow ``ties`` (module docstring); ``num_tied`` counts the queries whose ground truth
    ties with another valid candidate, so a result always says how much the policy mattered.
    ``ties="optimistic"`` reproduces the official ActionBench AA/OR rule (an exact tie is
    correct); ActionBench VR's coin flip for probabilities within 1e-5 is a near-tie rule that
    no exact-tie policy reproduces.

    Returns
    -------
    dict
        ``"R@k"`` for each k in ``ks``, ``"median_rank"``, ``"mean_rank"``, ``"accuracy"`` (floats),
        ``"num_queries"``, ``"num_tied"`` (ints).
    """
    ties = _check_ties(ties)
    ks = _check_ks(ks)
    counts = rank_counts(scores, answers, mask)
    summary = rank_metrics(counts, ties=ties, ks=ks)
    result = {key: summary[key] for key in (*(f"R@{k}" for k in ks), "median_rank", "mean_rank")}
    result["accuracy"] = recall_at_k(counts, 1, ties=ties)
    result["num_queries"] = summary["num_queries"]
    result["num_tied"] = summary["num_tied"]
    return result
