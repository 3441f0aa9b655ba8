"""Time and peak memory of the regression gate on an InstrAct-Dynamics-sized retrieval task, before vs after.

Run from the repository root::

    python benchmarks/bench_regress_scale.py [--resamples 10000] [--clips 16326] [--pools 120] [--videos 5000]

Two result directories (baseline and candidate) hold one pooled retrieval record each with its
sample log, laid out as ``instract-eval run --log-samples`` writes them: ``--clips`` clips in
``--pools`` pools of uneven size, from ``--videos`` videos (so the bootstrap is clustered: every
clip of a drawn video is kept), T2V and V2T ranks inside each pool from seeded random scores, the
candidate's scores the baseline's plus noise. The record's 13 gated metrics (R@1/5/10, median and
mean rank per direction, ``mean.R@K``) all get a paired bootstrap interval.

1. ``before``: the gate's former computation, kept here as the reference (`former_paired`):
   each metric on its own, so each draws the ``[resamples, videos]`` matrix anew; a mean from
   per-video sums gathered for each resample, the median rank one resample at a time (numpy's
   median on the gathered rows).
2. ``after``: `compare_results` as it is now: one stream of draws for the task, shared by its 13
   metrics, its means in one matrix product per batch and the clustered median vectorised over
   resamples.

The benchmark asserts that both give every metric the same interval and p-value, then prints the
wall time of each (reading and rebuilding the logs included in both; the time of that fixed part,
the gate at 2 resamples, is printed too), the tracemalloc peak of each (measured in a separate
run, at up to 2,000 resamples: draws are held one batch at a time), the time of one median rank
before and after, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from instract_eval.metrics import pool_rank_counts, pooled_metrics_from_counts
from instract_eval.metrics.ranking import ranks_from_counts
from instract_eval.metrics.statistics import _units, paired_bootstrap, resample_indices
from instract_eval.regress import _load, _paired, _with_samples, compare_results
from instract_eval.results import describe_metrics, sample_log_of

TASK = "instract-dynamics"


def pool_sizes(clips: int, pools: int, rng: np.random.Generator) -> np.ndarray:
    """Uneven pool sizes summing to ``clips``, each at least 2."""
    shares = rng.dirichlet(np.full(pools, 1.5))
    sizes = 2 + np.floor(shares * (clips - 2 * pools)).astype(np.int64)
    sizes[: clips - int(sizes.sum())] += 1
    return sizes


def write_run(directory: Path, sizes: np.ndarray, videos: np.ndarray, noise: float, seed: int) -> Path:
    """One pooled retrieval record and its sample log, the metrics computed from the logged ranks' counts."""
    rng = np.random.default_rng(seed)
    counts, samples, start = {}, [], 0
    for number, size in enumerate(sizes.tolist()):
        pool = f"pool{number}"
        base = np.random.default_rng(10_000 + number).standard_normal((size, size)) + 2.5 * np.eye(size)
        counts[pool] = pool_rank_counts(base + noise * rng.standard_normal((size, size)), pool=pool)
        t2v, v2t = (ranks_from_counts(counts[pool][d]) for d in ("t2v", "v2t"))
        samples += [{"id": f"{TASK}/{pool}/{m}", "pool": pool, "video": f"video{videos[start + m]}",
                     "t2v_rank": float(t2v[m]), "v2t_rank": float(v2t[m])} for m in range(size)]
        start += size
    metrics = describe_metrics(pooled_metrics_from_counts(counts)["weighted"])
    record = {"schema": "instract-eval/result/1", "model": {"name": "model"},
              "task": {"name": TASK, "kind": "retrieval"}, "ties": {"policy": "expected"},
              "metrics": {name: {**m, "headline": True} for name, m in metrics.items()}}
    directory.mkdir(parents=True)
    path = directory / f"{TASK}.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    sample_log_of(path).write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    return path


def paired_inputs(base: Path, cand: Path) -> dict[str, tuple]:
    """Each gated metric's paired rows (canonical order), cluster keys and statistic, as the gate pairs them."""
    before, after = (_with_samples(_load(path, None, "--model")[TASK]) for path in (base, cand))
    return {name: (*_paired(first, after.samples.per_sample[name]), first.statistic)
            for name, first in before.samples.per_sample.items()}


def former_paired(values_a: np.ndarray, values_b: np.ndarray, statistic: Callable, clusters, n_resamples: int,
                  seed: int) -> tuple[tuple[float, float], float]:
    """One metric's interval and p-value as the former gate computed them: its own draws, the mean
    from per-video sums gathered for each resample, any other statistic on each resample's rows."""
    units = _units(clusters, values_a.shape[0])  # the former gate's units: rows grouped by video
    sums = [np.bincount(units.unit_of_row, weights=values, minlength=units.count) for values in (values_a, values_b)]
    parts = []
    for drawn in resample_indices(units.count, n_resamples, seed):
        if statistic is np.mean:
            size = units.sizes[drawn].sum(axis=1)
            parts.append(sums[1][drawn].sum(axis=1) / size - sums[0][drawn].sum(axis=1) / size)
        else:
            rows = [units.rows(resample) for resample in drawn]
            parts.append(np.array([float(statistic(values_b[r])) - float(statistic(values_a[r])) for r in rows]))
    distribution = np.concatenate(parts)
    alpha = 1 - 0.95
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    tail = min(int(np.count_nonzero(distribution <= 0)), int(np.count_nonzero(distribution >= 0)))
    return (float(low), float(high)), min(1.0, 2.0 * tail / distribution.size)


def former_gate(base: Path, cand: Path, n_resamples: int, seed: int) -> tuple[dict, float]:
    """Each metric's interval as the former gate computed it, and the time of the median ranks alone."""
    results, median_seconds = {}, 0.0
    for name, (values_a, values_b, clusters, statistic) in paired_inputs(base, cand).items():
        start = time.perf_counter()
        results[name] = former_paired(values_a, values_b, statistic, clusters, n_resamples, seed)
        if statistic is np.median:
            median_seconds += time.perf_counter() - start
    return results, median_seconds


def median_now(base: Path, cand: Path, n_resamples: int, seed: int) -> float:
    """Seconds of one median rank's paired bootstrap now (vectorised), averaged over the directions."""
    medians = [entry for entry in paired_inputs(base, cand).values() if entry[3] is np.median]
    start = time.perf_counter()
    for values_a, values_b, clusters, statistic in medians:
        paired_bootstrap(values_a, values_b, statistic, clusters=clusters, n_resamples=n_resamples, seed=seed)
    return (time.perf_counter() - start) / len(medians)


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def peak_bytes(run: Callable[[], object]) -> int:
    """tracemalloc's peak over ``run()`` (numpy's arrays included); run apart from the timing,
    which tracemalloc would slow down."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--clips", type=int, default=16_326)
    parser.add_argument("--pools", type=int, default=120)
    parser.add_argument("--videos", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = pool_sizes(args.clips, args.pools, rng)
    videos = rng.integers(0, args.videos, size=args.clips)
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        base = write_run(root / "baseline", sizes, videos, noise=0.0, seed=1)
        cand = write_run(root / "candidate", sizes, videos, noise=0.6, seed=2)
        print(f"{TASK}: {args.clips:,} clips in {args.pools} pools from {len(set(videos.tolist())):,} videos, "
              f"{args.resamples:,} resamples")
        (former, median_before), before_s = timed(lambda: former_gate(base, cand, args.resamples, args.seed))
        _, fixed_s = timed(lambda: compare_results(base, cand, n_resamples=2, seed=args.seed))
        report, after_s = timed(lambda: compare_results(base, cand, n_resamples=args.resamples, seed=args.seed))
        # Memory is held one batch of draws at a time, so the peak does not grow with the resamples.
        peak_resamples = min(args.resamples, 2_000)
        before_peak = peak_bytes(lambda: former_gate(base, cand, peak_resamples, args.seed))
        after_peak = peak_bytes(lambda: compare_results(base, cand, n_resamples=peak_resamples, seed=args.seed))
        compared = {c.metric: c for c in report.comparisons}
        assert set(compared) == set(former), "the two paths compared different metrics"
        for name, (interval, p_value) in former.items():
            assert (compared[name].interval, compared[name].p_value) == (interval, p_value), name
        median_after = median_now(base, cand, args.resamples, args.seed)
        medians = sum(name.endswith("median_rank") for name in compared)
        print(f"{len(compared)} metrics with an interval, identical on both paths")
        print(f"{'path':<8} {'seconds':>8} {'peak MB':>8} {'per median rank s':>18}")
        print(f"{'before':<8} {before_s:>8.2f} {before_peak / 1e6:>8.1f} {median_before / medians:>18.2f}")
        print(f"{'after':<8} {after_s:>8.2f} {after_peak / 1e6:>8.1f} {median_after:>18.2f}")
        print(f"after: {fixed_s:.2f} s of it reading and rebuilding the logs (the gate at 2 resamples); "
              f"peaks at {peak_resamples:,} resamples (one batch of draws is held at a time)")
        print(f"gate {before_s / after_s:.1f}x faster, a median rank {median_before / medians / median_after:.0f}x, "
              f"peak {before_peak / after_peak:.2f}x")


if __name__ == "__main__":
    main()
