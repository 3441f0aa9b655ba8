"""Rank metrics checked against scipy's rankdata, brute-force tie-breaking and hand-worked cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import rankdata

from instract_eval.metrics.ranking import (
    TIE_POLICIES,
    RankCounts,
    concatenate_counts,
    ground_truth_ranks,
    mcq_metrics,
    mean_rank,
    median_rank,
    multi_positive_rank_counts,
    rank_counts,
    rank_metrics,
    ranks_from_counts,
    recall_at_k,
    recall_at_k_per_query,
)

SETTINGS = settings(max_examples=50, deadline=None)


# ------------------------------------------------------------------------------------------------
# Strategies and independent references


@st.composite
def mcq_cases(draw, max_rows: int = 4, max_columns: int = 6, with_mask: bool = True):
    """Small integer-valued score matrices (many ties), answers and validity masks."""
    n_rows = draw(st.integers(1, max_rows))
    n_columns = draw(st.integers(1, max_columns))
    # Negative values too, so that a masked entry read as 0 would change ranks.
    scores = draw(arrays(np.int64, (n_rows, n_columns), elements=st.integers(-2, 1))).astype(float)
    answers = draw(arrays(np.int64, (n_rows,), elements=st.integers(0, n_columns - 1)))
    if with_mask:
        mask = draw(arrays(np.bool_, (n_rows, n_columns)))
        mask[np.arange(n_rows), answers] = True
    else:
        mask = np.ones((n_rows, n_columns), dtype=bool)
    return scores, answers, mask


@st.composite
def multi_positive_cases(draw, max_rows: int = 3, max_columns: int = 6):
    n_rows = draw(st.integers(1, max_rows))
    n_columns = draw(st.integers(1, max_columns))
    scores = draw(arrays(np.int64, (n_rows, n_columns), elements=st.integers(-1, 1))).astype(float)
    mask = draw(arrays(np.bool_, (n_rows, n_columns)))
    positives = draw(arrays(np.bool_, (n_rows, n_columns))) & mask
    for row in range(n_rows):  # every row needs one valid positive
        if not positives[row].any():
            column = draw(st.integers(0, n_columns - 1))
            positives[row, column] = mask[row, column] = True
    return scores, positives, mask


def brute_force_rank_distribution(scores_row, positives_row, valid_row) -> list[int]:
    """Rank of the best-placed positive under every equally likely tie-breaking order.

    Each permutation of the valid candidates is a priority used to order equal scores; averaging
    over all permutations is uniformly random tie-breaking.
    """
    candidates = [j for j in range(len(scores_row)) if valid_row[j]]
    ranks = []
    for priority in itertools.permutations(range(len(candidates))):
        tie_break = dict(zip(candidates, priority))
        order = sorted(candidates, key=lambda j: (-scores_row[j], tie_break[j]))
        ranks.append(1 + min(order.index(j) for j in candidates if positives_row[j]))
    return ranks


def single_positive_matrix(scores, answers):
    positives = np.zeros(scores.shape, dtype=bool)
    positives[np.arange(scores.shape[0]), answers] = True
    return positives


# ------------------------------------------------------------------------------------------------
# Counts and ranks against independent computations


@SETTINGS
@given(mcq_cases())
def test_ranks_equal_scipy_rankdata_over_valid_candidates(case):
    scores, answers, mask = case
    methods = {"optimistic": "min", "pessimistic": "max", "expected": "average"}
    for ties, method in methods.items():
        ours = ground_truth_ranks(scores, answers, mask, ties=ties)
        for i in range(scores.shape[0]):
            valid = np.flatnonzero(mask[i])
            reference = rankdata(-scores[i, valid], method=method)[list(valid).index(answers[i])]
            assert ours[i] == pytest.approx(reference, abs=1e-12)


@SETTINGS
@given(mcq_cases(max_rows=3, max_columns=6))
def test_expected_rank_and_recall_equal_brute_force_tie_breaking(case):
    scores, answers, mask = case
    positives = single_positive_matrix(scores, answers)
    counts = rank_counts(scores, answers, mask)
    for ties in TIE_POLICIES:
        ranks = ranks_from_counts(counts, ties=ties)
        for i in range(scores.shape[0]):
            outcomes = brute_force_rank_distribution(scores[i], positives[i], mask[i])
            reference_rank = {"expected": np.mean(outcomes), "optimistic": min(outcomes), "pessimistic": max(outcomes)}[ties]
            assert ranks[i] == pytest.approx(reference_rank, abs=1e-12)
            for k in range(1, 8):
                per_query = recall_at_k_per_query(counts, k, ties=ties)[i]
                if ties == "expected":
                    reference = np.mean([r <= k for r in outcomes])
                else:
                    reference = float(reference_rank <= k)
                assert per_query == pytest.approx(reference, abs=1e-12)


@SETTINGS
@given(multi_positive_cases())
def test_multi_positive_rank_and_recall_equal_brute_force(case):
    scores, positives, mask = case
    counts = multi_positive_rank_counts(scores, positives, mask)
    for i in range(scores.shape[0]):
        outcomes = brute_force_rank_distribution(scores[i], positives[i], mask[i])
        assert ranks_from_counts(counts, ties="expected")[i] == pytest.approx(np.mean(outcomes), abs=1e-12)
        assert ranks_from_counts(counts, ties="optimistic")[i] == min(outcomes)
        assert ranks_from_counts(counts, ties="pessimistic")[i] == max(outcomes)
        # "tied" means the tie-breaking order can change the rank; ties among positives cannot.
        assert (counts.tied[i] > 0) == (max(outcomes) > min(outcomes))
        for k in range(1, 8):
            expected = recall_at_k_per_query(counts, k, ties="expected")[i]
            assert expected == pytest.approx(np.mean([r <= k for r in outcomes]), abs=1e-12)
            assert recall_at_k_per_query(counts, k, ties="optimistic")[i] == float(min(outcomes) <= k)
            assert recall_at_k_per_query(counts, k, ties="pessimistic")[i] == float(max(outcomes) <= k)


@SETTINGS
@given(mcq_cases())
def test_single_positive_as_multi_positive_gives_same_counts(case):
    scores, answers, mask = case
    single = rank_counts(scores, answers, mask)
    multi = multi_positive_rank_counts(scores, single_positive_matrix(scores, answers), mask)
    for field in RankCounts._fields:
        np.testing.assert_array_equal(getattr(single, field), getattr(multi, field))


def test_multi_positive_hand_worked():
    # Best positive score 5 shared by 2 positives; 2 negatives tie with it, 1 negative beats it.
    scores = np.array([[6.0, 5.0, 5.0, 5.0, 5.0, 1.0, 0.0]])
    positives = np.array([[False, True, False, True, False, False, True]])
    counts = multi_positive_rank_counts(scores, positives)
    assert (counts.better[0], counts.tied[0], counts.tied_positives[0]) == (1, 2, 2)
    # Tied group: 2 negatives + 2 positives; negatives ahead of the first positive: 0 w.p. 1/2,
    # 1 w.p. 1/3, 2 w.p. 1/6, so E = 2/3 and the rank is 2 + that.
    assert ranks_from_counts(counts)[0] == pytest.approx(2 + 2 / 3)
    assert recall_at_k_per_query(counts, 1)[0] == 0.0
    assert recall_at_k_per_query(counts, 2)[0] == pytest.approx(1 / 2)
    assert recall_at_k_per_query(counts, 3)[0] == pytest.approx(5 / 6)
    assert recall_at_k_per_query(counts, 4)[0] == 1.0
    assert counts.num_tied == 1
    # Two positives sharing the top score with no tied negative: rank 1 whatever the order.
    only_positives_tied = multi_positive_rank_counts(np.array([[3.0, 3.0, 1.0]]), np.array([[True, True, False]]))
    assert only_positives_tied.num_tied == 0
    assert ranks_from_counts(only_positives_tied)[0] == 1.0


def test_single_positive_recall_uses_closed_form():
    # clip((K - b) / (t + 1), 0, 1) with b = 1, t = 3.
    counts = rank_counts(np.array([[2.0, 3.0, 2.0, 2.0, 2.0, 0.0]]))
    assert [recall_at_k_per_query(counts, k)[0] for k in range(1, 7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------
# Hand-worked metrics


def test_instract_semantic_median_rank_of_even_count_is_mean_of_middle_values():
    # Positive in column 0 of 10 candidates; ranks 1, 2, 3 and 10 (no ties).
    negatives = np.arange(9, 0, -1, dtype=float)  # columns 1..9 score 9, 8, ..., 1
    positive = np.array([11.0, 8.5, 7.5, 0.5])  # 0, 1, 2 and 9 negatives above it
    scores = np.column_stack([positive, np.tile(negatives, (4, 1))])
    np.testing.assert_array_equal(ground_truth_ranks(scores), [1.0, 2.0, 3.0, 10.0])
    result = mcq_metrics(scores)
    assert result == {
        "R@1": 0.25,
        "R@5": 0.75,
        "median_rank": 2.5,
        "mean_rank": 4.0,
        "accuracy": 0.25,
        "num_queries": 4,
        "num_tied": 0,
    }


def test_actionbench_two_candidates_and_tie_policies():
    # AA: [original text, antonym text]. Row 2 is an exact tie.
    scores = np.array([[0.9, 0.1], [0.2, 0.7], [0.5, 0.5], [0.6, 0.4]])
    assert mcq_metrics(scores, ties="optimistic", ks=(1,))["accuracy"] == 0.75  # official rule
    assert mcq_metrics(scores, ties="pessimistic", ks=(1,))["accuracy"] == 0.5
    expected = mcq_metrics(scores, ties="expected", ks=(1,))
    assert expected["accuracy"] == pytest.approx(0.625)
    assert expected["mean_rank"] == pytest.approx((1 + 2 + 1.5 + 1) / 4)
    assert expected["num_tied"] == 1


def test_instract_logic_variable_candidates_with_mask():
    # Up to 3 candidates; row 1 has only 2 (padding NaN in the masked slot is never read).
    scores = np.array([[0.8, 0.9, 0.1], [0.7, 0.2, np.nan], [0.3, 0.3, 0.3]])
    mask = np.array([[True, True, True], [True, True, False], [True, True, True]])
    result = mcq_metrics(scores, mask=mask, ks=(1, 2))
    # ranks: 2, 1, expected 2 (3-way tie) -> R@1 = (0 + 1 + 1/3) / 3, R@2 = (1 + 1 + 2/3) / 3
    assert result["accuracy"] == pytest.approx(4 / 9)
    assert result["R@2"] == pytest.approx(8 / 9)
    assert result["median_rank"] == 2.0
    assert result["num_tied"] == 1
    # The masked slot is ignored even when it would beat the ground truth.
    padded = np.where(mask, scores, 100.0)
    assert mcq_metrics(padded, mask=mask, ks=(1, 2)) == result


def test_mcq_metrics_has_exact_keys_and_python_types():
    result = mcq_metrics(np.random.default_rng(0).normal(size=(7, 10)), ks=(1, 5, 3))
    assert list(result) == ["R@1", "R@5", "R@3", "median_rank", "mean_rank", "accuracy", "num_queries", "num_tied"]
    for key in ("R@1", "R@5", "R@3", "median_rank", "mean_rank", "accuracy"):
        assert type(result[key]) is float
    assert type(result["num_queries"]) is int and type(result["num_tied"]) is int
    assert result["num_queries"] == 7


def test_answers_default_to_column_zero():
    scores = np.random.default_rng(1).normal(size=(5, 4))
    scores[:, 0] = 5.0  # column 0 always wins, column 3 never does
    scores[:, 3] = -5.0
    assert mcq_metrics(scores) == mcq_metrics(scores, answers=np.zeros(5, dtype=int))
    assert mcq_metrics(scores)["accuracy"] == 1.0
    assert mcq_metrics(scores, answers=np.full(5, 3))["mean_rank"] == 4.0


# ------------------------------------------------------------------------------------------------
# Properties


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 40))
def test_constant_scores_give_exactly_chance_under_expected(n_candidates, n_queries):
    scores = np.full((n_queries, n_candidates), 0.25)
    result = mcq_metrics(scores, ks=(1, 5))
    assert result["R@1"] == pytest.approx(1 / n_candidates, rel=1e-12)
    assert result["R@5"] == pytest.approx(min(5 / n_candidates, 1.0), rel=1e-12)
    assert result["mean_rank"] == pytest.approx((n_candidates + 1) / 2, rel=1e-12)
    assert result["median_rank"] == pytest.approx((n_candidates + 1) / 2, rel=1e-12)
    assert result["num_tied"] == (n_queries if n_candidates > 1 else 0)
    assert mcq_metrics(scores, ties="optimistic")["R@1"] == 1.0
    assert mcq_metrics(scores, ties="pessimistic")["R@1"] == (0.0 if n_candidates > 1 else 1.0)


@SETTINGS
@given(mcq_cases())
def test_perfect_scores_give_rank_one_under_every_policy(case):
    scores, answers, mask = case
    scores = scores.copy()
    scores[np.arange(scores.shape[0]), answers] = 10.0  # strictly above every other candidate
    for ties in TIE_POLICIES:
        result = mcq_metrics(scores, answers, mask, ties=ties, ks=(1, 5))
        assert result["R@1"] == result["R@5"] == result["accuracy"] == 1.0
        assert result["median_rank"] == result["mean_rank"] == 1.0
        assert result["num_tied"] == 0


@SETTINGS
@given(mcq_cases(), st.randoms(use_true_random=False))
def test_invariant_to_shuffling_candidates_and_queries(case, random):
    scores, answers, mask = case
    n_rows, n_columns = scores.shape
    column_order = list(range(n_columns))
    random.shuffle(column_order)
    column_order = np.array(column_order)
    new_position = np.argsort(column_order)  # old column j is now at new_position[j]
    row_order = np.array(random.sample(range(n_rows), n_rows))
    for ties in TIE_POLICIES:
        before = mcq_metrics(scores, answers, mask, ties=ties, ks=(1, 2, 5))
        shuffled_columns = mcq_metrics(scores[:, column_order], new_position[answers], mask[:, column_order], ties=ties, ks=(1, 2, 5))
        shuffled_rows = mcq_metrics(scores[row_order], answers[row_order], mask[row_order], ties=ties, ks=(1, 2, 5))
        for other in (shuffled_columns, shuffled_rows):
            assert other.keys() == before.keys()
            for key in before:
                assert other[key] == pytest.approx(before[key], abs=1e-12)


@SETTINGS
@given(mcq_cases())
def test_recall_is_monotone_in_k_and_policies_are_ordered(case):
    scores, answers, mask = case
    counts = rank_counts(scores, answers, mask)
    n_columns = scores.shape[1]
    previous = {ties: np.zeros(scores.shape[0]) for ties in TIE_POLICIES}
    for k in range(1, n_columns + 2):
        per_query = {ties: recall_at_k_per_query(counts, k, ties=ties) for ties in TIE_POLICIES}
        for ties in TIE_POLICIES:
            assert np.all(per_query[ties] >= previous[ties] - 1e-15)
            assert np.all((per_query[ties] >= 0) & (per_query[ties] <= 1))
        assert np.all(per_query["optimistic"] >= per_query["expected"] - 1e-15)
        assert np.all(per_query["expected"] >= per_query["pessimistic"] - 1e-15)
        previous = per_query
    for ties in TIE_POLICIES:  # every valid candidate fits within the top C
        np.testing.assert_array_equal(recall_at_k_per_query(counts, n_columns, ties=ties), 1.0)
    optimistic, expected, pessimistic = (ranks_from_counts(counts, ties=t) for t in ("optimistic", "expected", "pessimistic"))
    assert np.all(optimistic <= expected) and np.all(expected <= pessimistic)
    np.testing.assert_array_equal(counts.tied > 0, pessimistic > optimistic)


@SETTINGS
@given(multi_positive_cases())
def test_multi_positive_recall_monotone_and_ordered(case):
    scores, positives, mask = case
    counts = multi_positive_rank_counts(scores, positives, mask)
    previous = np.zeros(scores.shape[0])
    for k in range(1, scores.shape[1] + 1):
        expected = recall_at_k_per_query(counts, k)
        assert np.all(expected >= previous - 1e-15)
        assert np.all(recall_at_k_per_query(counts, k, ties="optimistic") >= expected - 1e-15)
        assert np.all(expected >= recall_at_k_per_query(counts, k, ties="pessimistic") - 1e-15)
        previous = expected
    np.testing.assert_allclose(previous, 1.0)


@SETTINGS
@given(mcq_cases(with_mask=False))
def test_masked_padding_is_never_read(case):
    scores, answers, _ = case
    n_rows, n_columns = scores.shape
    padded = np.concatenate([scores, np.full((n_rows, 2), np.nan)], axis=1)
    padded[0, -1] = np.inf
    mask = np.concatenate([np.ones((n_rows, n_columns), bool), np.zeros((n_rows, 2), bool)], axis=1)
    for ties in TIE_POLICIES:
        assert mcq_metrics(padded, answers, mask, ties=ties) == mcq_metrics(scores, answers, ties=ties)


def test_mean_and_median_rank_helpers_and_rank_metrics():
    assert median_rank([1, 2, 3, 10]) == 2.5
    assert median_rank([4, 1, 2]) == 2.0
    assert mean_rank([1, 2, 3, 10]) == 4.0
    counts = RankCounts(np.array([0, 2, 1]), np.array([0, 0, 2]), np.array([1, 1, 1]))
    summary = rank_metrics(counts, ks=(1, 2))
    assert summary == {
        # query 3: b = 1, t = 2 -> P(rank <= K) = clip((K - 1) / 3, 0, 1)
        "R@1": pytest.approx((1 + 0 + 0) / 3),
        "R@2": pytest.approx((1 + 0 + 1 / 3) / 3),
        "median_rank": 3.0,
        "mean_rank": pytest.approx((1 + 3 + 3) / 3),
        "num_queries": 3,
        "num_tied": 1,
    }
    assert recall_at_k(counts, 3) == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert recall_at_k(counts, 4) == 1.0
    joined = concatenate_counts([counts, RankCounts(np.array([5]), np.array([0]), np.array([1]))])
    np.testing.assert_array_equal(joined.better, [0, 2, 1, 5])
    assert joined.num_queries == 4


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "value, kind", [(np.nan, "NaN"), (np.inf, r"\+inf"), (-np.inf, "-inf")]
)
def test_nonfinite_scores_are_rejected_with_position(value, kind):
    scores = np.zeros((5, 4))
    scores[3, 2] = value
    with pytest.raises(ValueError, match=f"scores has {kind} at row 3, column 2"):
        mcq_metrics(scores)


def test_answer_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"answers\[5\] = 12 is out of range for 10 candidates"):
        mcq_metrics(np.zeros((6, 10)), answers=[0, 1, 2, 3, 4, 12])
    with pytest.raises(ValueError, match=r"answers\[1\] = -1 is out of range"):
        ground_truth_ranks(np.zeros((2, 3)), answers=[0, -1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scores": np.zeros(4)}, "scores must be a 2-D array"),
        ({"scores": np.zeros((0, 3))}, "scores is empty"),
        ({"scores": np.array([["a", "b"]])}, "scores must hold real numbers"),
        ({"scores": np.zeros((2, 2), dtype=bool)}, "scores must hold real numbers"),
        ({"scores": np.zeros((3, 2)), "answers": [0, 1]}, "answers must be a 1-D array of 3 indices"),
        ({"scores": np.zeros((2, 2)), "answers": [0.0, 1.0]}, "answers must hold integer indices"),
        ({"scores": np.zeros((2, 2)), "mask": np.ones((2, 3), bool)}, r"mask must have the shape of scores \(2, 2\)"),
        ({"scores": np.zeros((2, 2)), "mask": np.full((2, 2), 0.5)}, "mask must be boolean"),
        (
            {"scores": np.zeros((3, 2)), "answers": [0, 1, 0], "mask": [[1, 1], [1, 0], [1, 1]]},
            r"mask\[1, 1\] is False: the ground-truth candidate of row 1",
        ),
        ({"scores": np.zeros((2, 2)), "ties": "random"}, "ties must be one of 'expected', 'optimistic', 'pessimistic'"),
        ({"scores": np.zeros((2, 2)), "ks": (1, 0)}, r"ks\[1\] must be a positive integer"),
        ({"scores": np.zeros((2, 2)), "ks": (1.5,)}, r"ks\[0\] must be a positive integer"),
        ({"scores": np.zeros((2, 2)), "ks": (True,)}, r"ks\[0\] must be a positive integer"),
        ({"scores": np.zeros((2, 2)), "ks": ()}, "ks is empty"),
        ({"scores": np.zeros((2, 2)), "ks": 5}, "ks must be a sequence"),
    ],
)
def test_bad_mcq_input_raises(kwargs, message):
    scores = kwargs.pop("scores")
    with pytest.raises(ValueError, match=message):
        mcq_metrics(scores, **kwargs)


def test_nan_at_valid_entry_is_rejected_even_with_mask():
    scores = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, np.nan]])
    mask = np.array([[True, False, True], [True, True, True]])
    with pytest.raises(ValueError, match="scores has NaN at row 1, column 2"):
        mcq_metrics(scores, mask=mask)


def test_bad_multi_positive_input_raises():
    scores = np.zeros((2, 3))
    with pytest.raises(ValueError, match="positives row 1 has no ground-truth candidate"):
        multi_positive_rank_counts(scores, [[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"positives\[0, 2\] is True but mask\[0, 2\] is False"):
        multi_positive_rank_counts(scores, [[False, False, True], [True, False, False]], mask=[[1, 1, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="positives must have the shape of scores"):
        multi_positive_rank_counts(scores, [[True, False]])


def test_bad_rank_vectors_and_k_raise():
    with pytest.raises(ValueError, match="ranks must be a non-empty 1-D array"):
        median_rank([])
    with pytest.raises(ValueError, match=r"ranks\[1\] = 0.0 is not a finite 1-based rank"):
        mean_rank([1, 0])
    counts = rank_counts(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k_per_query(counts, 0)
    with pytest.raises(ValueError, match="ties must be one of"):
        ranks_from_counts(counts, ties="average")
    with pytest.raises(ValueError, match="parts is empty"):
        concatenate_counts([])
