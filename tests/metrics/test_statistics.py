"""Bootstrap intervals checked against a plain loop over the same draws, scipy.stats.bootstrap,
coverage on simulated data and cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from instract_eval.metrics.statistics import (
    bootstrap_ci,
    cluster_units,
    PairedJob,
    paired_bootstrap,
    paired_bootstraps,
    resample_indices,
)

SETTINGS = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------------------------------------
# Reference: one resample at a time, written from the definition


def members_by_cluster(keys) -> list[np.ndarray]:
    """Rows of each cluster, clusters numbered by first appearance."""
    order: dict = {}
    for row, key in enumerate(keys):
        order.setdefault(key, []).append(row)
    return [np.array(rows) for rows in order.values()]


def loop_distribution(statistic, columns, keys, n_resamples, seed):
    """statistic(*columns resampled) for each resample, drawing clusters one resample at a time."""
    members = members_by_cluster(keys)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(members), size=len(members))
        rows = np.concatenate([members[g] for g in drawn])
        values.append(statistic(*[column[rows] for column in columns]))
    return np.array(values)


def weighted_mean(table: np.ndarray) -> float:
    return float(table[:, 0] @ table[:, 1] / table[:, 1].sum())


# ------------------------------------------------------------------------------------------------
# Draws


def test_resample_indices_do_not_depend_on_the_batch_size_and_match_single_draws():
    full = np.concatenate(list(resample_indices(13, 50, seed=4)))
    rng = np.random.default_rng(4)
    one_at_a_time = np.stack([rng.integers(0, 13, size=13) for _ in range(50)])
    np.testing.assert_array_equal(full, one_at_a_time)
    for batch_size in (1, 7, 50, 1000):
        batches = list(resample_indices(13, 50, seed=4, batch_size=batch_size))
        assert all(batch.shape[0] <= batch_size for batch in batches)
        np.testing.assert_array_equal(np.concatenate(batches), full)


def test_default_batches_bound_memory():
    batches = resample_indices(1_000_000, 20, seed=0)
    assert next(batches).size <= 1 << 22


def test_cluster_units_number_keys_by_first_appearance():
    units, count = cluster_units(["b", "a", "b", ("t", 1), "a"], 5)
    assert units.tolist() == [0, 1, 0, 2, 1] and count == 3
    from_array, _ = cluster_units(np.array([7, 3, 7, 1, 3]), 5)
    from_list, _ = cluster_units([7, 3, 7, 1, 3], 5)
    assert from_array.tolist() == from_list.tolist() == [0, 1, 0, 2, 1]


# ------------------------------------------------------------------------------------------------
# bootstrap_ci: exact agreement with the loop


@SETTINGS
@given(st.integers(2, 30), st.integers(1, 8), st.integers(0, 2**32 - 1), st.booleans())
def test_mean_fast_path_reproduces_the_loop_over_the_same_draws(n, n_clusters, seed, clustered):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(n)
    keys = rng.integers(0, n_clusters + 1, size=n).tolist() if clustered else list(range(n))
    if len(set(keys)) < 2:
        keys[0], keys[-1] = -1, -2
    result = bootstrap_ci(values, clusters=keys if clustered else None, n_resamples=64, seed=seed)
    expected = loop_distribution(np.mean, [values], keys, 64, seed)
    np.testing.assert_allclose(result.distribution, expected, rtol=1e-12, atol=1e-15)
    assert result.estimate == np.mean(values)
    assert result.low == pytest.approx(np.quantile(expected, 0.025), abs=1e-12)
    assert result.high == pytest.approx(np.quantile(expected, 0.975), abs=1e-12)
    assert result.std_error == pytest.approx(np.std(expected, ddof=1), abs=1e-12)
    assert result.num_clusters == len(set(keys)) and result.num_samples == n


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("statistic", [np.median, lambda x: float(np.percentile(x, 90))])
def test_other_statistics_reproduce_the_loop_exactly(statistic, clustered):
    rng = np.random.default_rng(5)
    values = rng.integers(1, 11, size=40).astype(float)  # ranks: many ties
    keys = (np.arange(40) // 3).tolist() if clustered else list(range(40))
    clusters = keys if clustered else None
    result = bootstrap_ci(values, statistic, clusters=clusters, n_resamples=300, seed=9, batch_size=64)
    np.testing.assert_array_equal(result.distribution, loop_distribution(statistic, [values], keys, 300, 9))


@SETTINGS
@given(st.integers(2, 60), st.integers(2, 12), st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_clustered_median_is_vectorised_and_equals_the_loop_to_the_bit(n, n_clusters, levels, seed, halves):
    """Uneven clusters (odd and even resample sizes), many ties, fractional ranks: every resample's
    median equals numpy's on that resample's rows, exactly."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, levels + 1, size=n) / (2.0 if halves else 1.0) + (rng.random(n) if levels > 5 else 0)
    keys = rng.integers(0, n_clusters, size=n).tolist()
    if len(set(keys)) < 2:
        keys[0], keys[-1] = -1, -2
    result = bootstrap_ci(values, np.median, clusters=keys, n_resamples=50, seed=seed, batch_size=17)
    np.testing.assert_array_equal(result.distribution, loop_distribution(np.median, [values], keys, 50, seed))
    generic = bootstrap_ci(values, lambda x: float(np.median(x)), clusters=keys, n_resamples=50, seed=seed)
    np.testing.assert_array_equal(result.distribution, generic.distribution)


def test_paired_bootstraps_share_the_draws_and_equal_the_loop_for_each_job():
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 40, size=150).tolist()  # about 40 videos
    other_keys = (np.arange(90) // 2).tolist()  # 45 videos: another stream of draws
    ranks_a, ranks_b = rng.integers(1, 30, size=150) / 2, rng.integers(1, 30, size=150) / 2
    floats_a, floats_b = rng.random(150), rng.random(150)
    jobs = [PairedJob(ranks_a, ranks_b, np.median, keys),
            PairedJob(ranks_a <= 3, ranks_b <= 3, np.mean, keys),  # hits: one matrix product with the next
            PairedJob(ranks_a, ranks_b, np.mean, keys),  # half ranks
            PairedJob(floats_a, floats_b, np.mean, keys),  # sums not exact in any order: gathered per resample
            PairedJob(rng.random(90), rng.random(90), np.median, other_keys),
            PairedJob(ranks_a, ranks_b, lambda x: float(np.percentile(x, 75)), keys),
            PairedJob(ranks_a, ranks_b[:-1], np.mean, keys),  # bad input: its own error, the others go on
            PairedJob(ranks_a, ranks_b, lambda x: np.nan if x.max() < 14.5 else float(x.max()), keys)]
    shared = paired_bootstraps(jobs, n_resamples=120, seed=5, batch_size=50)
    for number, (job, result) in enumerate(zip(jobs, shared)):
        if number in (6, 7):
            continue
        expected = (loop_distribution(job.statistic, [np.asarray(job.values_b, dtype=float)], job.clusters, 120, 5)
                    - loop_distribution(job.statistic, [np.asarray(job.values_a, dtype=float)], job.clusters, 120, 5))
        if number == 3:
            np.testing.assert_allclose(result.distribution, expected, rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(result.distribution, expected)
        alone = paired_bootstrap(job.values_a, job.values_b, job.statistic, clusters=job.clusters,
                                 n_resamples=120, seed=5)
        np.testing.assert_array_equal(result.distribution, alone.distribution)
        assert (result.low, result.high, result.p_value) == (alone.low, alone.high, alone.p_value)
    assert isinstance(shared[6], ValueError) and "same samples" in str(shared[6])
    assert isinstance(shared[7], ValueError) and "finite on every resample" in str(shared[7])
    with pytest.raises(ValueError, match="finite on every resample"):
        paired_bootstrap(jobs[7].values_a, jobs[7].values_b, jobs[7].statistic, clusters=keys, n_resamples=120, seed=5)


def test_two_column_statistic_resamples_rows_together():
    rng = np.random.default_rng(2)
    table = np.column_stack([rng.random(30), rng.integers(1, 5, size=30)])
    keys = (np.arange(30) % 7).tolist()
    result = bootstrap_ci(table, weighted_mean, clusters=keys, n_resamples=200, seed=1)
    expected = loop_distribution(lambda x, w: float(x @ w / w.sum()), [table[:, 0], table[:, 1]], keys, 200, 1)
    np.testing.assert_allclose(result.distribution, expected, rtol=1e-13)
    assert result.estimate == pytest.approx(weighted_mean(table))


def test_same_seed_same_result_other_seed_other_draws():
    values = np.random.default_rng(0).random(100)
    first, second = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    np.testing.assert_array_equal(first.distribution, second.distribution)
    assert (first.low, first.high, first.std_error) == (second.low, second.high, second.std_error)
    assert not np.array_equal(bootstrap_ci(values, seed=4).distribution, first.distribution)


def test_result_does_not_depend_on_the_batch_size():
    values = np.random.default_rng(1).random(57)
    reference = bootstrap_ci(values, np.median, n_resamples=500)
    for batch_size in (1, 33, 500):
        batched = bootstrap_ci(values, np.median, n_resamples=500, batch_size=batch_size)
        np.testing.assert_array_equal(batched.distribution, reference.distribution)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_fast_paths_agree_with_the_generic_path(method):
    rng = np.random.default_rng(8)
    values = rng.exponential(size=60)
    keys = (np.arange(60) // 4).tolist()
    for clusters in (None, keys):
        fast = bootstrap_ci(values, np.mean, clusters=clusters, n_resamples=400, method=method)
        generic = bootstrap_ci(values, lambda x: float(np.mean(x)), clusters=clusters, n_resamples=400, method=method)
        np.testing.assert_allclose(fast.distribution, generic.distribution, rtol=1e-12)
        assert fast.low == pytest.approx(generic.low, rel=1e-12) and fast.high == pytest.approx(generic.high, rel=1e-12)
    median_fast = bootstrap_ci(values, np.median, n_resamples=400, method=method)
    median_generic = bootstrap_ci(values, lambda x: float(np.median(x)), n_resamples=400, method=method)
    np.testing.assert_array_equal(median_fast.distribution, median_generic.distribution)
    assert (median_fast.low, median_fast.high) == (median_generic.low, median_generic.high)


def test_one_sample_per_cluster_equals_the_plain_bootstrap():
    values = np.random.default_rng(6).random(80)
    plain = bootstrap_ci(values, n_resamples=500, method="bca")
    clustered = bootstrap_ci(values, clusters=[f"video-{i}" for i in range(80)], n_resamples=500, method="bca")
    np.testing.assert_allclose(clustered.distribution, plain.distribution, rtol=1e-13)
    assert (clustered.low, clustered.high) == pytest.approx((plain.low, plain.high), rel=1e-13)
    assert clustered.num_clusters == plain.num_clusters == 80


def test_clusters_widen_the_interval_when_samples_of_a_cluster_agree():
    # 20 videos x 10 captions, the captions of one video scoring alike: 20 independent units, not 200.
    rng = np.random.default_rng(12)
    video_effect = rng.standard_normal(20)
    values = np.repeat(video_effect, 10) + 0.05 * rng.standard_normal(200)
    keys = np.repeat(np.arange(20), 10)
    plain = bootstrap_ci(values, n_resamples=2000)
    clustered = bootstrap_ci(values, clusters=keys, n_resamples=2000)
    assert clustered.num_clusters == 20
    assert clustered.std_error > 2.5 * plain.std_error
    assert clustered.std_error == pytest.approx(video_effect.std(ddof=0) / np.sqrt(20), rel=0.15)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_constant_data_gives_a_zero_width_interval(method):
    exact = bootstrap_ci(np.full(50, 0.1), n_resamples=200, method=method)
    assert exact.low == exact.high == exact.estimate == np.mean(np.full(50, 0.1)) and exact.std_error == 0.0
    keys = [0, 0, 1, 1, 1, 2, 3, 3, 4]
    ranks = bootstrap_ci(np.full(9, 3.0), np.median, clusters=keys, n_resamples=200, method=method)
    assert ranks.low == ranks.high == 3.0
    clustered = bootstrap_ci(np.full(30, 0.7), clusters=np.arange(30) // 7, n_resamples=200, method=method)
    assert clustered.high - clustered.low <= 1e-12 and clustered.estimate == pytest.approx(0.7, abs=1e-15)


def test_coverage_of_the_percentile_interval_for_a_normal_mean():
    rng = np.random.default_rng(2024)
    covered = 0
    for repetition in range(200):
        sample = rng.normal(loc=1.0, scale=2.0, size=200)
        result = bootstrap_ci(sample, n_resamples=1000, seed=repetition)
        covered += result.low <= 1.0 <= result.high
    assert 0.88 <= covered / 200 <= 0.99


@pytest.mark.parametrize("method, scipy_method", [("percentile", "percentile"), ("bca", "BCa")])
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_agrees_with_scipy_bootstrap_on_a_large_sample(method, scipy_method, statistic):
    sample = np.random.default_rng(17).exponential(size=1000)
    ours = bootstrap_ci(sample, statistic, n_resamples=10_000, method=method, seed=1)
    reference = stats.bootstrap(
        (sample,), statistic, n_resamples=10_000, method=scipy_method, rng=np.random.default_rng(2)
    )
    tolerance = 0.15 * ours.std_error
    assert ours.low == pytest.approx(reference.confidence_interval.low, abs=tolerance)
    assert ours.high == pytest.approx(reference.confidence_interval.high, abs=tolerance)
    assert ours.std_error == pytest.approx(reference.standard_error, rel=0.05)


def test_bca_shifts_the_interval_of_a_skewed_statistic_like_scipy():
    # For the mean of exponential data BCa moves both ends up relative to the percentile interval.
    sample = np.random.default_rng(21).exponential(size=60)
    percentile = bootstrap_ci(sample, n_resamples=20_000, method="percentile")
    bca = bootstrap_ci(sample, n_resamples=20_000, method="bca")
    assert bca.low > percentile.low and bca.high > percentile.high
    reference = stats.bootstrap((sample,), np.mean, n_resamples=20_000, method="BCa", rng=np.random.default_rng(0))
    assert bca.low == pytest.approx(reference.confidence_interval.low, abs=0.15 * bca.std_error)
    assert bca.high == pytest.approx(reference.confidence_interval.high, abs=0.15 * bca.std_error)


def test_confidence_level_orders_the_intervals():
    sample = np.random.default_rng(3).random(100)
    narrow, wide = bootstrap_ci(sample, confidence=0.5), bootstrap_ci(sample, confidence=0.99)
    assert wide.low < narrow.low < narrow.estimate < narrow.high < wide.high
    assert narrow.confidence == 0.5 and narrow.n_resamples == 10_000 and narrow.method == "percentile"


def test_boolean_hits_are_accepted():
    hits = np.array([True, False, True, True])
    assert bootstrap_ci(hits, n_resamples=10).estimate == 0.75


# ------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": [1.0]}, "at least 2"),
        ({"values": []}, "at least 2"),
        ({"values": np.ones((2, 2, 2))}, "1-D"),
        ({"values": [1.0, np.nan, 2.0]}, "values has NaN at index 1"),
        ({"values": [1.0, np.inf]}, "values has an infinite value"),
        ({"values": ["a", "b"]}, "real numbers"),
        ({"clusters": [0, 0, 1]}, "clusters has 3 keys but there are 4 samples"),
        ({"clusters": [0, 0, 0, 0]}, "at least 2 clusters"),
        ({"clusters": [0, None, 1, 1]}, r"clusters\[1\]"),
        ({"clusters": [0, [1], 1, 1]}, "not hashable"),
        ({"clusters": np.zeros((2, 2))}, "clusters must be 1-D"),
        ({"clusters": "abcd"}, "clusters must be a sequence"),
        ({"n_resamples": 1}, "n_resamples"),
        ({"n_resamples": 10.0}, "n_resamples"),
        ({"confidence": 0.0}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 95}, "confidence"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"method": "basic"}, "method"),
        ({"statistic": "mean"}, "statistic must be a callable"),
        ({"statistic": lambda x: np.nan}, "statistic returned nan"),
        ({"statistic": lambda x: x}, "statistic must return one number"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(kwargs, message):
    arguments = {"values": [0.1, 0.2, 0.3, 0.4], "n_resamples": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(**arguments)


def test_statistic_failing_on_a_resample_is_reported():
    values = np.array([0.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="on a resample"):
        bootstrap_ci(values, lambda x: float(np.log(x.sum())) if x.sum() > 0 else np.nan, n_resamples=200)


# ------------------------------------------------------------------------------------------------
# paired_bootstrap


def test_identical_runs_give_zero_difference_zero_width_and_p_one():
    values = np.random.default_rng(0).random(100)
    for statistic in (np.mean, np.median):
        for method in ("percentile", "bca"):
            result = paired_bootstrap(
                values, values.copy(), statistic, clusters=np.arange(100) // 5, n_resamples=500, method=method
            )
            assert result.estimate == result.low == result.high == result.std_error == 0.0
            assert result.p_value == 1.0
            assert result.estimate_a == result.estimate_b == statistic(values)


def test_planted_shift_is_found():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    result = paired_bootstrap(base, base + 0.1, clusters=np.arange(300) // 3, n_resamples=2000)
    assert result.estimate == pytest.approx(0.1)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)  # the shift is the same everywhere
    noisy = paired_bootstrap(base, base + 0.1 + 0.2 * rng.standard_normal(300), n_resamples=2000)
    assert 0 < noisy.low < 0.1 < noisy.high
    assert noisy.p_value == 0.0
    assert noisy.estimate == pytest.approx(noisy.estimate_b - noisy.estimate_a)


def test_no_difference_gives_a_large_p_value_and_an_interval_around_zero():
    rng = np.random.default_rng(4)
    run_a = (rng.random(400) < 0.6).astype(float)
    run_b = run_a.copy()
    # 20 hits lost and 20 gained: the runs differ on 40 samples but not on average.
    lost = rng.choice(np.flatnonzero(run_a == 1), 20, replace=False)
    gained = rng.choice(np.flatnonzero(run_a == 0), 20, replace=False)
    flip = np.concatenate([lost, gained])
    run_b[flip] = 1 - run_b[flip]
    result = paired_bootstrap(run_a, run_b, n_resamples=4000)
    assert result.estimate == 0.0
    assert result.low < 0 < result.high
    assert result.p_value > 0.05


def test_p_value_follows_its_definition():
    rng = np.random.default_rng(5)
    a = rng.random(50)
    b = a + 0.02 + 0.1 * rng.standard_normal(50)
    result = paired_bootstrap(a, b, n_resamples=3000)
    below, above = np.mean(result.distribution <= 0), np.mean(result.distribution >= 0)
    assert result.p_value == pytest.approx(min(1.0, 2 * min(below, above)), abs=1e-15)
    assert 0 < result.p_value < 1


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_paired_uses_the_same_draws_for_both_runs(statistic, clustered):
    rng = np.random.default_rng(7)
    a, b = rng.integers(1, 8, size=30).astype(float), rng.integers(1, 8, size=30).astype(float)
    keys = (np.arange(30) // 4).tolist() if clustered else list(range(30))
    result = paired_bootstrap(a, b, statistic, clusters=keys if clustered else None, n_resamples=300, seed=2)
    expected = loop_distribution(lambda x, y: statistic(y) - statistic(x), [a, b], keys, 300, 2)
    np.testing.assert_allclose(result.distribution, expected, rtol=1e-12, atol=1e-15)
    assert result.num_clusters == len(set(keys))


def test_paired_mean_equals_the_bootstrap_of_per_sample_differences():
    rng = np.random.default_rng(9)
    a, b = rng.random(120), rng.random(120)
    keys = np.arange(120) // 6
    paired = paired_bootstrap(a, b, clusters=keys, n_resamples=1000, seed=3)
    single = bootstrap_ci(b - a, clusters=keys, n_resamples=1000, seed=3)
    np.testing.assert_allclose(paired.distribution, single.distribution, atol=1e-12)
    assert paired.std_error == pytest.approx(single.std_error, rel=1e-9)


def test_paired_respects_clusters():
    # The change is a per-video effect shared by that video's 10 captions: only 15 independent units.
    rng = np.random.default_rng(10)
    a = rng.random(150)
    b = a + np.repeat(0.05 * rng.standard_normal(15), 10)
    keys = np.repeat([f"v{i}" for i in range(15)], 10)
    plain = paired_bootstrap(a, b, n_resamples=2000)
    clustered = paired_bootstrap(a, b, clusters=keys, n_resamples=2000)
    assert clustered.num_clusters == 15 and plain.num_clusters == 150
    assert clustered.std_error > 2.5 * plain.std_error


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError, match=r"values_a has shape \(3,\) but values_b has \(4,\)"):
        paired_bootstrap([1.0, 2, 3], [1.0, 2, 3, 4])
    with pytest.raises(ValueError, match="values_b has NaN"):
        paired_bootstrap([1.0, 2], [1.0, np.nan])
    with pytest.raises(ValueError, match="values_a has 1 samples"):
        paired_bootstrap([1.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0, 2], [1.0, 2], confidence=1.5)
    with pytest.raises(ValueError, match="at least 2 clusters"):
        paired_bootstrap([1.0, 2], [1.0, 2], clusters=["v", "v"])
