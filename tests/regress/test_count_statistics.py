"""The classification statistics, vectorised over resamples from counts, equal their one-resample loop to the bit.

Macro F1, the mean of the synonym runs' macro F1 and the seen/unseen harmonic means are
`CountStatistic`s: the bootstrap evaluates a whole batch of resamples from per-video counts. The
reference is the same bootstrap through the generic path (a plain function wrapping the same
statistic is called on each resample's gathered rows): every resampled value must be equal, and
where a resample lacks a group both paths must refuse it with the same message. Small data with
many classes makes classes drop out of some resamples, so the present-class grouping is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instract_eval.metrics.statistics import bootstrap_ci, paired_bootstrap
from instract_eval.sample_metrics import (
    HARMONIC_ACCURACY,
    HARMONIC_MACRO_F1,
    MACRO_F1,
    MEAN_MACRO_F1_OVER_RUNS,
)

SETTINGS = settings(max_examples=60, deadline=None)


def rows_for(statistic, rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    truth = rng.integers(0, classes, size=n)
    guess = np.where(rng.random(n) < 0.5, truth, rng.integers(0, classes + 2, size=n))  # some classes never true
    unseen = (rng.random(n) < 0.4).astype(float)
    if statistic is MACRO_F1:
        return np.column_stack((truth, guess)).astype(float)
    if statistic is MEAN_MACRO_F1_OVER_RUNS:
        runs = [np.where(rng.random(n) < 0.5, truth, rng.integers(0, classes + 1, size=n)) for _ in range(3)]
        return np.column_stack((truth, *runs)).astype(float)
    if statistic is HARMONIC_ACCURACY:
        return np.column_stack((unseen, truth == guess)).astype(float)
    return np.column_stack((unseen, truth, guess)).astype(float)


def both_paths(statistic, values, clusters, seed):
    """(vectorised distribution or error message, loop distribution or error message)."""
    outcomes = []
    for chosen in (statistic, lambda rows: statistic(rows)):
        try:
            outcomes.append(bootstrap_ci(values, chosen, clusters=clusters, n_resamples=60, seed=seed,
                                         batch_size=25).distribution)
        except ValueError as error:
            outcomes.append(str(error))
    return outcomes


@SETTINGS
@given(st.sampled_from([MACRO_F1, MEAN_MACRO_F1_OVER_RUNS, HARMONIC_ACCURACY, HARMONIC_MACRO_F1]),
       st.integers(4, 200), st.integers(1, 40), st.integers(2, 60), st.integers(0, 2**32 - 1), st.booleans())
def test_count_statistics_equal_the_loop_to_the_bit(statistic, n, classes, videos, seed, clustered):
    rng = np.random.default_rng(seed)
    values = rows_for(statistic, rng, n, classes)
    clusters = rng.integers(0, videos, size=n).tolist() if clustered else None
    if clusters is not None and len(set(clusters)) < 2:
        clusters[0], clusters[-1] = -1, -2
    vectorised, loop = both_paths(statistic, values, clusters, seed)
    if isinstance(loop, str):
        assert vectorised == loop
    else:
        assert not isinstance(vectorised, str), vectorised
        np.testing.assert_array_equal(vectorised, loop)


def test_a_resample_without_a_group_is_refused_as_the_loop_refuses_it():
    values = np.column_stack(([0.0] * 9 + [1.0], [1.0] * 10))  # one unseen sample among ten
    vectorised, loop = both_paths(HARMONIC_ACCURACY, values, None, 3)
    assert isinstance(loop, str) and vectorised == loop
    assert "statistic returned nan on a resample" in loop


@pytest.mark.parametrize("statistic", [MACRO_F1, MEAN_MACRO_F1_OVER_RUNS, HARMONIC_ACCURACY, HARMONIC_MACRO_F1])
def test_paired_intervals_of_the_count_statistics_equal_the_loop(statistic):
    rng = np.random.default_rng(4)
    first, second = rows_for(statistic, rng, 400, 8), rows_for(statistic, rng, 400, 8)
    second[:, 0] = first[:, 0]  # same samples: the same group, or the same true class
    if statistic is HARMONIC_MACRO_F1:
        second[:, 1] = first[:, 1]
    clusters = (np.arange(400) // 3).tolist()
    fast = paired_bootstrap(first, second, statistic, clusters=clusters, n_resamples=300, seed=2)
    slow = paired_bootstrap(first, second, lambda rows: statistic(rows), clusters=clusters, n_resamples=300, seed=2)
    np.testing.assert_array_equal(fast.distribution, slow.distribution)
    assert (fast.low, fast.high, fast.p_value) == (slow.low, slow.high, slow.p_value)
