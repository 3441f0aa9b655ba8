"""DTW, Soft-DTW and InstrAction's normalized DTW cost, checked against brute-force enumeration of
every monotone path, scipy's cosine distance and cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from instract_eval.metrics.alignment import (
    cosine_cost_matrix,
    cosine_similarity_matrix,
    dtw,
    normalized_dtw_cost,
    normalized_dtw_cost_from_similarity,
    soft_dtw,
    soft_dtw_alignment,
)

SETTINGS = settings(max_examples=40, deadline=None)

STEPS = ((1, 1), (1, 0), (0, 1))  # the tie preference of dtw(), read backwards: diagonal, vertical, horizontal


# ------------------------------------------------------------------------------------------------
# Independent references


def all_paths(rows: int, columns: int) -> list[list[tuple[int, int]]]:
    """Every monotone, continuous path from (0, 0) to (rows-1, columns-1), by plain recursion."""
    if (rows, columns) == (1, 1):
        return [[(0, 0)]]
    paths = []
    for di, dj in STEPS:
        i, j = rows - 1 - di, columns - 1 - dj
        if i >= 0 and j >= 0:
            paths.extend(path + [(rows - 1, columns - 1)] for path in all_paths(i + 1, j + 1))
    return paths


def path_cost(cost: np.ndarray, path) -> float:
    return float(sum(cost[i, j] for i, j in path))


def brute_soft_dtw(cost: np.ndarray, gamma: float) -> float:
    """-gamma log sum_P exp(-cost(P) / gamma), a stable log-sum-exp over the enumerated paths."""
    totals = np.array([path_cost(cost, path) for path in all_paths(*cost.shape)])
    smallest = totals.min()
    return float(smallest - gamma * np.log(np.exp(-(totals - smallest) / gamma).sum()))


def brute_expected_alignment(cost: np.ndarray, gamma: float) -> np.ndarray:
    paths = all_paths(*cost.shape)
    totals = np.array([path_cost(cost, path) for path in paths])
    weights = np.exp(-(totals - totals.min()) / gamma)
    weights /= weights.sum()
    expected = np.zeros(cost.shape)
    for weight, path in zip(weights, paths):
        for i, j in path:
            expected[i, j] += weight
    return expected


def backward_steps(path) -> tuple[int, ...]:
    """The path's steps read from its end, coded by the tie preference (0 diagonal, 1 vertical, 2 horizontal)."""
    codes = []
    for (i0, j0), (i1, j1) in zip(path[-2::-1], path[::-1]):
        codes.append(STEPS.index((i1 - i0, j1 - j0)))
    return tuple(codes)


def count_paths(rows: int, columns: int) -> int:
    """Delannoy number D(rows-1, columns-1)."""
    m, n = rows - 1, columns - 1
    return sum(math.comb(m, k) * math.comb(n, k) * 2**k for k in range(min(m, n) + 1))


cost_matrices = st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=st.floats(-3, 10, allow_nan=False, width=64))
)
integer_cost_matrices = st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
    lambda shape: arrays(np.int64, shape, elements=st.integers(0, 3))
)
gammas = st.floats(0.05, 10)


def assert_valid_path(path: np.ndarray, rows: int, columns: int) -> None:
    assert path.dtype == np.int64 and path.ndim == 2 and path.shape[1] == 2
    assert tuple(path[0]) == (0, 0)
    assert tuple(path[-1]) == (rows - 1, columns - 1)
    steps = {tuple(step) for step in np.diff(path, axis=0)}
    assert steps <= {(1, 0), (0, 1), (1, 1)}
    assert max(rows, columns) <= path.shape[0] <= rows + columns - 1


# ------------------------------------------------------------------------------------------------
# Cosine cost


@SETTINGS
@given(
    st.integers(1, 6).flatmap(
        lambda d: st.tuples(
            arrays(np.float64, st.tuples(st.integers(1, 5), st.just(d)), elements=st.floats(-5, 5, width=64)),
            arrays(np.float64, st.tuples(st.integers(1, 5), st.just(d)), elements=st.floats(-5, 5, width=64)),
        )
    )
)
def test_cosine_cost_matches_scipy_cdist(pair):
    a, b = pair
    assume((np.abs(a).max(axis=1) > 1e-3).all() and (np.abs(b).max(axis=1) > 1e-3).all())
    expected = cdist(a, b, metric="cosine")
    np.testing.assert_allclose(cosine_cost_matrix(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(cosine_similarity_matrix(a, b), 1 - expected, atol=1e-12)


def test_cosine_cost_hand_worked():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [-3.0, 0.0], [5.0, 0.0]])
    half = 1 - 1 / np.sqrt(2)
    np.testing.assert_allclose(cosine_cost_matrix(a, b), [[1.0, 2.0, 0.0], [half, 1 + 1 / np.sqrt(2), half]], atol=1e-15)


def test_cosine_is_scale_free_even_at_extreme_magnitudes():
    a = np.array([[1e-200, 1e-200]])
    b = np.array([[1e200, 0.0]])
    np.testing.assert_allclose(cosine_similarity_matrix(a, b), [[1 / np.sqrt(2)]], rtol=1e-14)


def test_cosine_of_a_vector_with_itself_is_exactly_one_after_clipping():
    a = np.random.default_rng(0).standard_normal((50, 7))
    similarity = cosine_similarity_matrix(a, a)
    assert similarity.max() <= 1.0 and similarity.min() >= -1.0
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-15)


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((2, 3)), np.ones((2, 3)), r"a\[0\] is a zero vector"),
        (np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]), r"b\[1\] is a zero vector"),
        (np.ones((2, 3)), np.ones((2, 4)), "embedding size"),
        (np.ones(3), np.ones((2, 3)), "a must be a 2-D array"),
        (np.ones((0, 3)), np.ones((2, 3)), "a is empty"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "a has NaN"),
        (np.ones((1, 2)), np.array([[1.0, np.inf]]), "b has an infinite value"),
        (np.array([["x", "y"]]), np.ones((1, 2)), "real numbers"),
    ],
)
def test_cosine_rejects_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        cosine_cost_matrix(a, b)


# ------------------------------------------------------------------------------------------------
# DTW


@SETTINGS
@given(cost_matrices)
def test_dtw_equals_brute_force_minimum_over_all_paths(cost):
    result = dtw(cost)
    best = min(path_cost(cost, path) for path in all_paths(*cost.shape))
    assert result.cost == pytest.approx(best, abs=1e-9)
    assert path_cost(cost, result.path) == pytest.approx(result.cost, abs=1e-9)
    assert result.length == result.path.shape[0]
    assert_valid_path(result.path, *cost.shape)


@SETTINGS
@given(integer_cost_matrices)
def test_dtw_tie_rule_picks_the_lexicographically_first_optimal_path_read_backwards(cost):
    # Integer costs make path sums exact, so ties between paths are real ties.
    paths = all_paths(*cost.shape)
    best = min(path_cost(cost, path) for path in paths)
    optimal = [path for path in paths if path_cost(cost, path) == best]
    expected = min(optimal, key=backward_steps)
    assert [tuple(cell) for cell in dtw(cost).path] == expected


@SETTINGS
@given(
    st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=st.floats(0, 2, width=64))
    )
)
def test_dtw_path_is_valid_and_cumulative_cost_is_consistent(cost):
    result = dtw(cost)
    assert_valid_path(result.path, *cost.shape)
    assert result.cumulative_cost.shape == cost.shape
    assert result.cumulative_cost[-1, -1] == result.cost
    # Along the optimal path the cumulative cost grows by exactly the cell's cost.
    along = result.cumulative_cost[result.path[:, 0], result.path[:, 1]]
    np.testing.assert_allclose(np.diff(along), cost[result.path[1:, 0], result.path[1:, 1]], atol=1e-12)


def test_dtw_hand_worked_3x3():
    # R[i, j] = C[i, j] + min(R[i-1, j-1], R[i-1, j], R[i, j-1]), worked out on paper:
    #   C = 0 5 5     R = 0  5 10
    #       0 5 5         0  5 10
    #       5 0 0         5  0  0
    # Backwards from (2, 2): R(1,1)=5, R(1,2)=10, R(2,1)=0 -> (2, 1); then R(1,0)=0 (diagonal)
    # beats R(1,1)=5 and R(2,0)=5 -> (1, 0); then (0, 0).
    cost = np.array([[0.0, 5, 5], [0, 5, 5], [5, 0, 0]])
    result = dtw(cost)
    assert result.cost == 0.0
    assert result.path.tolist() == [[0, 0], [1, 0], [2, 1], [2, 2]]
    assert result.length == 4
    np.testing.assert_array_equal(result.cumulative_cost, [[0, 5, 10], [0, 5, 10], [5, 0, 0]])


def test_dtw_hand_worked_diagonal_case():
    cost = np.array([[1.0, 3, 4], [2, 1, 3], [4, 2, 1]])
    result = dtw(cost)
    np.testing.assert_array_equal(result.cumulative_cost, [[1, 4, 8], [3, 2, 5], [7, 4, 3]])
    assert result.cost == 3.0 and result.path.tolist() == [[0, 0], [1, 1], [2, 2]]


def test_dtw_tie_rule_on_a_flat_matrix_prefers_diagonal_then_vertical_then_horizontal():
    # All paths cost 0: backwards from (2, 4) the diagonal is taken until row 0, then horizontal.
    assert dtw(np.zeros((3, 5))).path.tolist() == [[0, 0], [0, 1], [0, 2], [1, 3], [2, 4]]
    # 5x3: diagonal until column 0, then vertical.
    assert dtw(np.zeros((5, 3))).path.tolist() == [[0, 0], [1, 0], [2, 0], [3, 1], [4, 2]]
    # With negative costs the diagonal can be dearer: vertical (i-1, j) then beats horizontal (i, j-1).
    # R = [[0, -1], [-1, -2]]; from (1, 1): diagonal 0, vertical -1, horizontal -1 -> (0, 1).
    assert dtw(np.array([[0.0, -1.0], [-1.0, 0.0]])).path.tolist() == [[0, 0], [0, 1], [1, 1]]
    # Diagonal and vertical tie, horizontal dearer: the diagonal wins.
    # R = [[0, 0, 0], [0, 9, 0]]; from (1, 2): diagonal R(0,1) = 0, vertical R(0,2) = 0 -> (0, 1).
    assert dtw(np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]])).path.tolist() == [[0, 0], [0, 1], [1, 2]]


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1)])
def test_dtw_degenerate_shapes_have_a_single_path(shape):
    cost = np.arange(1.0, 1 + np.prod(shape)).reshape(shape)
    result = dtw(cost)
    assert result.cost == cost.sum()
    assert result.length == max(shape)
    assert_valid_path(result.path, *shape)


@SETTINGS
@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_identity_alignment_has_zero_cost_and_diagonal_path(length, dimension, seed):
    sequence = np.random.default_rng(seed).standard_normal((length, dimension))
    cost = cosine_cost_matrix(sequence, sequence)
    off_diagonal = cost[~np.eye(length, dtype=bool)]
    assume(off_diagonal.size == 0 or off_diagonal.min() > 1e-6)
    result = dtw(cost)
    assert result.cost == pytest.approx(0.0, abs=1e-12)
    assert result.length == length
    assert result.path.tolist() == [[i, i] for i in range(length)]
    assert normalized_dtw_cost(sequence, sequence) == pytest.approx(0.0, abs=1e-12)


def test_identity_alignment_with_repeated_tokens_keeps_the_diagonal():
    # Repeated consecutive tokens tie the diagonal with longer zero-cost paths; the tie rule keeps L = K.
    sequence = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    result = dtw(cosine_cost_matrix(sequence, sequence))
    assert result.cost == 0.0 and result.length == 4


@pytest.mark.parametrize(
    "cost, message",
    [
        (np.ones(3), "cost must be a 2-D array"),
        (np.ones((0, 2)), "cost is empty"),
        (np.array([[0.0, np.nan]]), "cost has NaN at row 0, column 1"),
        (np.array([[0.0], [-np.inf]]), "cost has an infinite value at row 1, column 0"),
        (np.array([[True, False]]), "real numbers"),
    ],
)
def test_dtw_rejects_bad_cost(cost, message):
    with pytest.raises(ValueError, match=message):
        dtw(cost)


# ------------------------------------------------------------------------------------------------
# Soft-DTW


@SETTINGS
@given(cost_matrices, gammas)
def test_soft_dtw_equals_brute_force_log_sum_exp_over_paths(cost, gamma):
    assert soft_dtw(cost, gamma) == pytest.approx(brute_soft_dtw(cost, gamma), rel=1e-9, abs=1e-9)


def test_soft_dtw_hand_worked_2x2():
    # Three paths: a+d, a+b+d, a+c+d.
    a, b, c, d, gamma = 0.5, 0.2, 1.0, 0.3, 0.7
    expected = -gamma * np.log(np.exp(-(a + d) / gamma) + np.exp(-(a + b + d) / gamma) + np.exp(-(a + c + d) / gamma))
    assert soft_dtw(np.array([[a, b], [c, d]]), gamma) == pytest.approx(expected, rel=1e-14)
    # A single row has a single path: Soft-DTW is its plain sum.
    assert soft_dtw(np.array([[1.0, 2.0, 3.0]]), 5.0) == pytest.approx(6.0, rel=1e-14)


@SETTINGS
@given(cost_matrices, gammas, gammas)
def test_soft_dtw_is_below_dtw_within_gamma_log_paths_and_non_increasing_in_gamma(cost, gamma_1, gamma_2):
    small, large = sorted((gamma_1, gamma_2))
    hard = dtw(cost).cost
    paths = count_paths(*cost.shape)
    for gamma in (small, large):
        value = soft_dtw(cost, gamma)
        assert value <= hard + 1e-9
        assert value >= hard - gamma * math.log(paths) - 1e-9
    assert soft_dtw(cost, large) <= soft_dtw(cost, small) + 1e-9


@SETTINGS
@given(
    st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=st.floats(0, 2, width=64))
    )
)
def test_soft_dtw_tends_to_dtw_as_gamma_goes_to_zero(cost):
    hard = dtw(cost).cost
    for gamma in (1e-3, 1e-6, 1e-9):
        assert abs(soft_dtw(cost, gamma) - hard) <= gamma * math.log(count_paths(*cost.shape)) + 1e-9


def test_soft_dtw_strictly_decreases_with_gamma_when_several_paths_exist():
    cost = np.random.default_rng(3).random((4, 5))
    values = [soft_dtw(cost, gamma) for gamma in (0.01, 0.1, 1.0, 10.0)]
    assert all(later < earlier for earlier, later in zip(values, values[1:]))


@SETTINGS
@given(cost_matrices, gammas)
def test_expected_alignment_matches_brute_force_path_distribution(cost, gamma):
    result = soft_dtw_alignment(cost, gamma)
    assert result.value == soft_dtw(cost, gamma)
    np.testing.assert_allclose(result.expected_alignment, brute_expected_alignment(cost, gamma), atol=1e-9)


def test_expected_alignment_is_the_gradient():
    cost = np.random.default_rng(7).random((4, 6))
    gamma, step = 0.3, 1e-6
    gradient = soft_dtw_alignment(cost, gamma).expected_alignment
    numeric = np.zeros_like(cost)
    for index in np.ndindex(cost.shape):
        up, down = cost.copy(), cost.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (soft_dtw(up, gamma) - soft_dtw(down, gamma)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, atol=1e-7)


def test_expected_alignment_tends_to_the_dtw_path_indicator():
    cost = np.random.default_rng(11).random((20, 25))
    path = dtw(cost).path
    indicator = np.zeros(cost.shape)
    indicator[path[:, 0], path[:, 1]] = 1.0
    np.testing.assert_allclose(soft_dtw_alignment(cost, 1e-5).expected_alignment, indicator, atol=1e-6)


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_soft_dtw_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        soft_dtw(np.ones((2, 2)), gamma)
    with pytest.raises(ValueError, match="gamma"):
        soft_dtw_alignment(np.ones((2, 2)), gamma)


def test_soft_dtw_rejects_bad_cost():
    with pytest.raises(ValueError, match="cost has NaN"):
        soft_dtw(np.array([[np.nan]]), 1.0)


# ------------------------------------------------------------------------------------------------
# InstrAction Eq. 10


def test_normalized_dtw_cost_hand_worked():
    # S (3 tokens x 2 verb phrases) and C = 1 - S:
    #   S = .9 .1    C = .1 .9    R = .1  1.0
    #       .5 .4        .5 .6        .6  .7
    #       .2 .8        .8 .2       1.4  .8
    # P* = (0,0) (1,0) (2,1): total .8 over L = 3 cells, so C_DTW = .8 / 3.
    similarity = np.array([[0.9, 0.1], [0.5, 0.4], [0.2, 0.8]])
    assert normalized_dtw_cost_from_similarity(similarity) == pytest.approx(0.8 / 3, rel=1e-12)
    assert dtw(1 - similarity).path.tolist() == [[0, 0], [1, 0], [2, 1]]


def test_normalized_dtw_cost_uses_the_minimal_total_path_not_the_minimal_mean():
    # Diagonal: total 2.0, L = 2, mean 1.0. Through (0, 1): total 2.1, L = 3, mean 0.7.
    similarity = np.array([[0.0, 0.9], [0.0, 0.0]])
    assert normalized_dtw_cost_from_similarity(similarity) == pytest.approx(1.0, rel=1e-12)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 6), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_normalized_dtw_cost_from_embeddings_matches_the_definition(tokens, phrases, dimension, seed):
    rng = np.random.default_rng(seed)
    visual, verbs = rng.standard_normal((tokens, dimension)), rng.standard_normal((phrases, dimension))
    similarity = 1 - cdist(visual, verbs, metric="cosine")
    result = dtw(1 - similarity)
    expected = sum(1 - similarity[i, j] for i, j in result.path) / result.length
    value = normalized_dtw_cost(visual, verbs)
    assert value == pytest.approx(expected, abs=1e-12)
    assert value == pytest.approx(normalized_dtw_cost_from_similarity(similarity), abs=1e-12)
    assert 0.0 <= value <= 2.0


def test_normalized_dtw_cost_prefers_the_right_order():
    # Tokens aligned with the phrases in order cost less than the same tokens reversed (Eq. 6 intuition).
    verbs = np.eye(4)
    tokens = np.eye(4) + 0.1
    assert normalized_dtw_cost(tokens, verbs) < normalized_dtw_cost(tokens[::-1], verbs)


@pytest.mark.parametrize(
    "similarity, message",
    [
        (np.array([[1.5, 0.0]]), r"similarity\[0, 0\] = 1.5 is outside \[-1, 1\]"),
        (np.array([[0.0], [-50.0]]), r"similarity\[1, 0\]"),
        (np.array([[np.nan]]), "similarity has NaN"),
        (np.ones((0, 0)), "similarity is empty"),
    ],
)
def test_normalized_dtw_cost_rejects_non_cosine_similarity(similarity, message):
    with pytest.raises(ValueError, match=message):
        normalized_dtw_cost_from_similarity(similarity)


def test_normalized_dtw_cost_names_the_embedding_arguments():
    with pytest.raises(ValueError, match=r"verb_embeddings\[1\] is a zero vector"):
        normalized_dtw_cost(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="visual_tokens has embedding size 3 but verb_embeddings has 2"):
        normalized_dtw_cost(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="visual_tokens has an infinite value"):
        normalized_dtw_cost(np.array([[np.inf, 1.0]]), np.ones((2, 2)))
