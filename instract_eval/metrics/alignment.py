"""Sequence alignment between visual tokens and verb phrases: cosine cost, DTW, Soft-DTW.

InstrAction (Sec. 4.2, Eqs. 4-5) aligns the ``K`` temporally ordered action tokens of a video
with the ``M`` verb phrases of its caption. Eq. 4 gives the cost of pairing token ``s_i`` with
phrase ``v_j`` as the cosine distance ``C_ij = 1 - cos(s_i, v_j)``; DTW finds the monotone path
through ``C`` with minimal cumulative cost, and Soft-DTW (Cuturi & Blondel, 2017) is its smooth
relaxation, used as the training loss. The alignment diagnostic of the paper's Figure 8 (Eq. 10)
is the mean cost along the optimal DTW path, :func:`normalized_dtw_cost`.

Conventions shared by every function here:

* A *path* is a sequence of index pairs ``(i, j)`` from ``(0, 0)`` to ``(K - 1, M - 1)`` whose
  steps are ``(1, 0)``, ``(0, 1)`` or ``(1, 1)``: monotone and continuous, so every token and
  every phrase is matched at least once. Its length ``L`` is its number of cells,
  ``max(K, M) <= L <= K + M - 1``.
* The cumulative cost ``R`` obeys ``R[i, j] = C[i, j] + min(R[i-1, j-1], R[i-1, j], R[i, j-1])``
  with ``R[0, 0] = C[0, 0]`` and out-of-range predecessors at ``+inf``; DTW = ``R[K-1, M-1]``.
* Recursions run along anti-diagonals (``i + j`` constant): every cell of one anti-diagonal
  depends only on the two previous ones, so each of the ``K + M - 1`` steps is one vectorised
  numpy operation. Time ``O(K M)``, memory ``O(K M)``.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "DTWResult",
    "SoftDTWResult",
    "cosine_similarity_matrix",
    "cosine_cost_matrix",
    "dtw",
    "normalized_dtw_cost",
    "normalized_dtw_cost_from_similarity",
    "soft_dtw",
    "soft_dtw_alignment",
]

# Cosine similarities handed to Eq. 10 may exceed [-1, 1] by rounding only; anything further out
# is not a cosine similarity (typically logits already divided by a temperature).
_SIMILARITY_SLACK = 1e-6


class DTWResult(NamedTuple):
    """Outcome of :func:`dtw`.

    ``cost``
        Minimal cumulative cost over all monotone, continuous paths (``R[K-1, M-1]``).
    ``path``
        int64 array ``[L, 2]`` of the optimal path's ``(i, j)`` cells, from ``(0, 0)`` to
        ``(K-1, M-1)``; the tie rule is described in :func:`dtw`.
    ``length``
        ``L``, the number of cells on ``path``.
    ``cumulative_cost``
        The ``[K, M]`` matrix ``R``: ``R[i, j]`` is the minimal cost of a path from ``(0, 0)``
        to ``(i, j)``.
    """

    cost: float
    path: np.ndarray
    length: int
    cumulative_cost: np.ndarray


class SoftDTWResult(NamedTuple):
    """Outcome of :func:`soft_dtw_alignment`.

    ``value``
        Soft-DTW of the cost matrix, as returned by :func:`soft_dtw`.
    ``expected_alignment``
        ``[K, M]`` matrix ``E`` with ``E[i, j]`` the probability that cell ``(i, j)`` lies on a
        path drawn from the Gibbs distribution ``p(P) ∝ exp(-cost(P) / gamma)``; it equals the
        gradient of ``value`` with respect to the cost matrix.
    """

    value: float
    expected_alignment: np.ndarray


# ------------------------------------------------------------------------------------------------
# Validation


def _as_matrix(values: object, name: str) -> np.ndarray:
    """A finite, non-empty, real 2-D float64 array, or a ValueError naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): need at least one row and one column")
    real = np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)
    if array.dtype == bool or not real:
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        row, column = np.argwhere(~np.isfinite(array))[0]
        kind = "NaN" if np.isnan(array[row, column]) else "an infinite value"
        raise ValueError(f"{name} has {kind} at row {row}, column {column}")
    return array


def _check_gamma(gamma: object) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not np.isfinite(gamma):
        raise ValueError(f"gamma must be a finite positive number, got {gamma!r}")
    if gamma <= 0:
        raise ValueError(f"gamma = {gamma!r} must be > 0 (gamma -> 0 is hard DTW: call dtw instead)")
    return float(gamma)


def _anti_diagonal(d: int, rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``(i, j)`` with ``i + j = d``, ``1 <= i <= rows``, ``1 <= j <= columns`` (1-based)."""
    i = np.arange(max(1, d - columns), min(rows, d - 1) + 1)
    return i, d - i


# ------------------------------------------------------------------------------------------------
# Cost matrices


def _cosine_similarity(a: object, b: object, names: tuple[str, str]) -> np.ndarray:
    """Validated, clipped cosine similarity; ``names`` are the caller's argument names for errors."""
    first = _as_matrix(a, names[0])
    second = _as_matrix(b, names[1])
    if first.shape[1] != second.shape[1]:
        raise ValueError(
            f"{names[0]} has embedding size {first.shape[1]} but {names[1]} has {second.shape[1]}: "
            "both need [*, D] with the same D"
        )
    normalised = []
    for name, matrix in zip(names, (first, second)):
        largest = np.abs(matrix).max(axis=1)
        if not (largest > 0).all():
            row = int(np.flatnonzero(largest == 0)[0])
            raise ValueError(f"{name}[{row}] is a zero vector: its cosine similarity is undefined")
        # Dividing by the largest entry first keeps the norm free of overflow and underflow.
        scaled = matrix / largest[:, None]
        normalised.append(scaled / np.linalg.norm(scaled, axis=1)[:, None])
    return np.clip(normalised[0] @ normalised[1].T, -1.0, 1.0)


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity ``S[i, j] = a_i . b_j / (||a_i|| ||b_j||)``, shape ``[K, M]``.

    Parameters
    ----------
    a : array ``[K, D]``
        One sequence of embeddings (InstrAction: the action tokens ``s_i``).
    b : array ``[M, D]``
        The other sequence (InstrAction: the verb-phrase embeddings ``v_j``).

    Rows are normalised before the product, and the result is clipped to ``[-1, 1]`` so that
    rounding never yields a similarity above 1 (or a negative cosine distance). A zero row has no
    direction, so its cosine is undefined: it is rejected with a ValueError rather than given an
    arbitrary similarity that would silently bias an alignment.
    """
    return _cosine_similarity(a, b, ("a", "b"))


def cosine_cost_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance ``C[i, j] = 1 - cos(a_i, b_j)``, in ``[0, 2]``, shape ``[K, M]``.

    InstrAction Eq. 4; equal (to rounding) to ``scipy.spatial.distance.cdist(a, b, "cosine")``.
    Zero rows are rejected as in :func:`cosine_similarity_matrix`.
    """
    return 1.0 - cosine_similarity_matrix(a, b)


# ------------------------------------------------------------------------------------------------
# Hard DTW


def dtw(cost: np.ndarray) -> DTWResult:
    """Dynamic time warping: the minimal-cost monotone, continuous path through ``cost``.

    ``DTW(C) = min_P sum_{(i, j) in P} C[i, j]`` over paths from ``(0, 0)`` to ``(K-1, M-1)`` with
    steps ``(1, 0)``, ``(0, 1)``, ``(1, 1)`` (Sakoe & Chiba, 1978, symmetric step pattern with unit
    weights; the "goal of DTW" in InstrAction Sec. 4.2). Computed by the recursion of the module
    docstring along anti-diagonals: ``O(K M)`` time and memory. Costs may be any finite reals.

    Tie rule (deterministic): the path is recovered backwards from ``(K-1, M-1)``; at each cell the
    predecessor is the one of smallest cumulative cost ``R``, and exact ties are broken in the
    order diagonal ``(i-1, j-1)``, then vertical ``(i-1, j)``, then horizontal ``(i, j-1)``.
    Among equally cheap paths this picks the one whose step sequence, read from the end, is
    lexicographically first in that order; preferring the diagonal keeps tied paths short. (This
    is the order of ``tslearn.metrics.dtw_path``.) Ties are exact float equalities of ``R``.

    Returns
    -------
    DTWResult
        ``cost``, ``path`` (``[L, 2]`` int64, forward order), ``length`` ``L`` and the cumulative
        cost matrix.
    """
    matrix = _as_matrix(cost, "cost")
    rows, columns = matrix.shape
    # 1-based cumulative costs with a border of +inf; R[0, 0] = 0 seeds the recursion.
    cumulative = np.full((rows + 1, columns + 1), np.inf)
    cumulative[0, 0] = 0.0
    for d in range(2, rows + columns + 1):
        i, j = _anti_diagonal(d, rows, columns)
        best = np.minimum(np.minimum(cumulative[i - 1, j - 1], cumulative[i - 1, j]), cumulative[i, j - 1])
        cumulative[i, j] = matrix[i - 1, j - 1] + best

    path = [(rows - 1, columns - 1)]
    i, j = rows, columns
    while (i, j) != (1, 1):
        # np.argmin returns the first minimum: diagonal, then vertical, then horizontal.
        step = int(np.argmin((cumulative[i - 1, j - 1], cumulative[i - 1, j], cumulative[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        path.append((i - 1, j - 1))
    cells = np.array(path[::-1], dtype=np.int64)
    return DTWResult(
        cost=float(cumulative[rows, columns]),
        path=cells,
        length=int(cells.shape[0]),
        cumulative_cost=cumulative[1:, 1:].copy(),
    )


# ------------------------------------------------------------------------------------------------
# InstrAction Eq. 10


def normalized_dtw_cost_from_similarity(similarity: np.ndarray) -> float:
    """InstrAction's normalized DTW cost (Eq. 10) from a cosine-similarity matrix.

    ``C_DTW = (1 / L) * sum_{(i, j) in P*} (1 - S[i, j])``

    ``S`` (``[T, V]``) holds the cosine similarities between the ``T`` visual tokens of one video
    (Perceiver action latents, or raw frame embeddings for the paper's baseline) and the ``V``
    verb-phrase embeddings of its caption. ``P*`` is the optimal DTW path (:func:`dtw`) under the
    Eq. 4 cost ``1 - S``, i.e. the path of minimal *total* cost, and ``L`` its number of cells;
    hence ``C_DTW = DTW(1 - S) / L``, the mean cosine distance along the alignment, in ``[0, 2]``
    (lower is better). ``P*`` minimises the total, not the mean: a longer path with a lower mean
    but a higher total is not chosen, as in DTW. Tied paths follow :func:`dtw`'s rule.

    This is the per-video value; the paper's Figure 8 reports one number per representation
    (0.97 raw embeddings, 0.91 action latents), which the caller aggregates over videos.

    ``similarity`` must be cosine similarities: values outside ``[-1, 1]`` (beyond rounding) are
    rejected, since ``1 - S`` is then not the Eq. 4 distance (e.g. logits divided by a temperature).
    """
    matrix = _as_matrix(similarity, "similarity")
    outside = np.abs(matrix) > 1.0 + _SIMILARITY_SLACK
    if outside.any():
        row, column = np.argwhere(outside)[0]
        raise ValueError(
            f"similarity[{row}, {column}] = {float(matrix[row, column])!r} is outside [-1, 1]: pass cosine similarities, "
            "not temperature-scaled logits"
        )
    distance = 1.0 - np.clip(matrix, -1.0, 1.0)
    result = dtw(distance)
    return float(distance[result.path[:, 0], result.path[:, 1]].sum() / result.length)


def normalized_dtw_cost(visual_tokens: np.ndarray, verb_embeddings: np.ndarray) -> float:
    """InstrAction's normalized DTW cost (Eq. 10) from the two embedding sequences.

    ``visual_tokens`` is ``[T, D]`` in temporal order, ``verb_embeddings`` is ``[V, D]`` in caption
    order; ``S = cosine_similarity_matrix(visual_tokens, verb_embeddings)`` and the value is
    :func:`normalized_dtw_cost_from_similarity` of ``S``. Zero vectors are rejected.
    """
    similarity = _cosine_similarity(visual_tokens, verb_embeddings, ("visual_tokens", "verb_embeddings"))
    return normalized_dtw_cost_from_similarity(similarity)


# ------------------------------------------------------------------------------------------------
# Soft-DTW


def _soft_cumulative(matrix: np.ndarray, gamma: float) -> np.ndarray:
    """1-based Soft-DTW cumulative costs with a +inf border (``[K+1, M+1]``)."""
    rows, columns = matrix.shape
    cumulative = np.full((rows + 1, columns + 1), np.inf)
    cumulative[0, 0] = 0.0
    for d in range(2, rows + columns + 1):
        i, j = _anti_diagonal(d, rows, columns)
        candidates = np.stack((cumulative[i - 1, j - 1], cumulative[i - 1, j], cumulative[i, j - 1]))
        smallest = candidates.min(axis=0)  # finite: every cell has a finite predecessor
        # soft-min_gamma(a) = -gamma log sum exp(-a / gamma) = m - gamma log sum exp(-(a - m) / gamma)
        soft_minimum = smallest - gamma * np.log(np.exp(-(candidates - smallest) / gamma).sum(axis=0))
        cumulative[i, j] = matrix[i - 1, j - 1] + soft_minimum
    return cumulative


def soft_dtw(cost: np.ndarray, gamma: float) -> float:
    """Soft-DTW of a cost matrix (Cuturi & Blondel, 2017; InstrAction Eq. 5).

    ``R[i, j] = C[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])`` with
    ``softmin_gamma(a_1..a_n) = -gamma log sum_k exp(-a_k / gamma)`` (computed stably by shifting
    with the minimum) and the DTW borders; the value is ``R[K-1, M-1]``. Equivalently
    ``-gamma log sum_P exp(-cost(P) / gamma)`` over all monotone, continuous paths ``P``.

    Because ``softmin <= min`` and the value is the smoothed minimum over all ``N`` paths,
    ``DTW(C) - gamma log N <= soft_dtw(C, gamma) <= DTW(C)``: it tends to :func:`dtw` as
    ``gamma -> 0`` and does not increase with ``gamma`` (its derivative in ``gamma`` is minus the
    entropy of the path distribution). It can be below every path cost, even negative.

    ``gamma`` must be > 0. Anti-diagonal recursion: ``O(K M)`` time and memory.
    """
    matrix = _as_matrix(cost, "cost")
    smoothing = _check_gamma(gamma)
    return float(_soft_cumulative(matrix, smoothing)[-1, -1])


def soft_dtw_alignment(cost: np.ndarray, gamma: float) -> SoftDTWResult:
    """Soft-DTW value and its gradient, the expected alignment matrix.

    ``E[i, j] = d soft_dtw(C, gamma) / d C[i, j] = sum_P p(P) [(i, j) in P]`` with
    ``p(P) = exp(-cost(P) / gamma) / sum_Q exp(-cost(Q) / gamma)``: the probability that cell
    ``(i, j)`` is on the path under the Gibbs distribution over paths. Computed by the backward
    recursion of Cuturi & Blondel (2017, Algorithm 2), ``E[i, j] = sum over successors (i', j')
    of E[i', j'] exp((R[i', j'] - R[i, j] - C[i', j']) / gamma)`` with ``E[K-1, M-1] = 1``, again
    along anti-diagonals. Every exponent is <= 0, so the recursion is stable for small ``gamma``;
    as ``gamma -> 0``, ``E`` tends to the indicator of the DTW path when that path is unique.
    """
    matrix = _as_matrix(cost, "cost")
    smoothing = _check_gamma(gamma)
    rows, columns = matrix.shape
    forward = _soft_cumulative(matrix, smoothing)
    # 1-based arrays with a row and column past the end: successors outside the matrix get
    # R = -inf (weight 0); the virtual cell (K+1, M+1) carries the seed E = 1 with zero cost.
    cumulative = np.full((rows + 2, columns + 2), -np.inf)
    cumulative[1 : rows + 1, 1 : columns + 1] = forward[1:, 1:]
    cumulative[rows + 1, columns + 1] = forward[rows, columns]
    padded_cost = np.zeros((rows + 2, columns + 2))
    padded_cost[1 : rows + 1, 1 : columns + 1] = matrix
    expected = np.zeros((rows + 2, columns + 2))
    expected[rows + 1, columns + 1] = 1.0
    for d in range(rows + columns, 1, -1):
        i, j = _anti_diagonal(d, rows, columns)
        here = cumulative[i, j]
        total = np.zeros(i.shape[0])
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            weight = np.exp((cumulative[i + di, j + dj] - here - padded_cost[i + di, j + dj]) / smoothing)
            total += expected[i + di, j + dj] * weight
        expected[i, j] = total
    return SoftDTWResult(
        value=float(forward[rows, columns]), expected_alignment=expected[1 : rows + 1, 1 : columns + 1]
    )
